// The deploy scripts run for real with bash against a scratch root (MAIL_RELAY_ROOT), with stub systemctl, curl,
// journalctl and chown first on PATH. The curl stub answers /health only when the ACTIVE release (through the
// `current` symlink) is a healthy bundle, so rollback is observed, not assumed.
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  relayUploadPath,
  renderActivateRelayRelease,
  renderApplyHostFirewall,
  renderApplyMailConfig,
  renderInstallAndActivateRelay,
  renderInstallHostKey,
  renderInstallFile,
  renderInstallRelayRelease,
  renderStartCloudflared,
  renderStopCloudflared,
  renderStopRelay,
  renderWaitForCloudInit,
} from "../../cloud-init";
import { buildConfig } from "../../testkit/node-config";

let root: string;
let stubs: string;
let log: string;

function stub(name: string, body: string): void {
  writeFileSync(join(stubs, name), `#!/usr/bin/env bash\necho "${name} $*" >> "$STUB_LOG"\n${body}\n`);
  chmodSync(join(stubs, name), 0o755);
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "deploy-root-"));
  stubs = mkdtempSync(join(tmpdir(), "deploy-stubs-"));
  log = join(stubs, "calls.log");
  writeFileSync(log, "");
  stub("systemctl", "exit 0");
  stub("chown", "exit 0");
  stub("journalctl", 'echo "relay[42]: Error: RELAY_ALLOWED_FROM is required (fake journal line)"');
  stub("curl", 'grep -q HEALTHY "$MAIL_RELAY_ROOT/opt/mail-relay/current/relay.js" 2>/dev/null && exit 0 || exit 7');
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(stubs, { recursive: true, force: true });
});

function bash(script: string, input = "") {
  const r = spawnSync("bash", ["-c", script], {
    input,
    encoding: "utf8",
    env: {
      HOME: root,
      PATH: `${stubs}:${process.env.PATH}`,
      MAIL_RELAY_ROOT: root,
      STUB_LOG: log,
      MAIL_RELAY_HEALTH_TIMEOUT: "2",
      MAIL_RELAY_TLS_POLICY_SETTLE: "0",
    },
    timeout: 30_000,
  });
  return { status: r.status, out: r.stdout + r.stderr, calls: readFileSync(log, "utf8") };
}

const healthy = (v: string) => `// HEALTHY ${v}\nconsole.log("relay ${v}");\n`;
const broken = (v: string) => `// broken ${v}\nprocess.exit(1);\n`;
const current = () => readlinkSync(join(root, "opt/mail-relay/current"));
const releases = () =>
  readdirSync(join(root, "opt/mail-relay/releases"))
    .filter((n) => !n.startsWith("."))
    .sort();

function deploy(version: string, bundle: string) {
  const i = bash(renderInstallRelayRelease(version), bundle);
  expect(i.status, i.out).toBe(0);
  return bash(renderActivateRelayRelease(version, 2525));
}

describe("every deploy script is strict bash", () => {
  const cfg = buildConfig({ smarthost: true });
  const scripts = [
    renderWaitForCloudInit(),
    renderInstallFile({ path: "/etc/postfix/main.cf", mode: "0644", owner: "root", group: "root", secret: false }),
    renderApplyMailConfig(cfg.host),
    renderApplyMailConfig(buildConfig().host),
    renderInstallRelayRelease("v1"),
    renderActivateRelayRelease("v1", 2525),
    renderStartCloudflared(),
    renderStopCloudflared(),
    renderStopRelay(),
    renderInstallHostKey(),
    renderApplyHostFirewall(),
    renderInstallAndActivateRelay("v1", 2525),
    renderActivateRelayRelease("v1", 2525, { tlsPolicy: true }),
  ];
  it.each(scripts.map((s, i) => [i, s]))("script %i uses set -euo pipefail and parses (bash -n)", (_i, s) => {
    expect(s).toMatch(/^#!\/usr\/bin\/env bash\n/);
    expect(s).toContain("\nset -euo pipefail\n");
    const r = spawnSync("bash", ["-n"], { input: s, encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
  });
  it("no script carries file content or secrets: content comes on stdin", () => {
    for (const s of scripts) expect(s).not.toMatch(/PRIVATE KEY|TUNNEL_TOKEN=|SMTP_RELAY_TOKEN=/);
  });
  it("refuses unsafe inputs instead of quoting them into a script", () => {
    expect(() =>
      renderInstallFile({ path: "/etc/x; rm -rf /", mode: "0644", owner: "root", group: "root", secret: false }),
    ).toThrow(/path/);
    expect(() =>
      renderInstallFile({ path: "/etc/x", mode: "644", owner: "root", group: "root", secret: false }),
    ).toThrow(/mode/);
    expect(() =>
      renderInstallFile({ path: "/etc/x", mode: "0644", owner: "root$(id)", group: "root", secret: false }),
    ).toThrow(/owner/);
    expect(() => renderInstallRelayRelease("../../etc")).toThrow(/version/);
    expect(() => renderActivateRelayRelease("v1", 0)).toThrow(/relayPort/);
  });
});

describe("the relay bundle is staged root-only and removed once its release exists", () => {
  it.each([0, 2])("wait-cloud-init (cloud-init exit %i) makes the upload dir 0700, never /var/tmp", (rc) => {
    stub("cloud-init", `exit ${rc}`);
    const r = bash(renderWaitForCloudInit());
    expect(r.status, r.out).toBe(0);
    expect(relayUploadPath("v1")).toMatch(/^\/var\/lib\/mail-relay-upload\//);
    expect(statSync(join(root, "var/lib/mail-relay-upload")).mode & 0o777).toBe(0o700);
  });

  it("installs from the upload, deletes it, activates; a second run needs no upload; without both it fails clearly", () => {
    const up = join(root, relayUploadPath("v1"));
    mkdirSync(join(root, "var/lib/mail-relay-upload"), { recursive: true });
    writeFileSync(up, healthy("v1"));
    const first = bash(renderInstallAndActivateRelay("v1", 2525));
    expect(first.status, first.out).toBe(0);
    expect(existsSync(up)).toBe(false);
    expect(current()).toBe("releases/v1");
    // The upload is gone but the release exists: a re-run (e.g. a changed env file) still activates.
    const again = bash(renderInstallAndActivateRelay("v1", 2525));
    expect(again.status, again.out).toBe(0);
    const missing = bash(renderInstallAndActivateRelay("v2", 2525));
    expect(missing.status).not.toBe(0);
    expect(missing.out).toMatch(/neither the release nor its upload/);
  });

  it("a release that fails to install keeps its upload for the next attempt", () => {
    const up = join(root, relayUploadPath("v3"));
    mkdirSync(join(root, "var/lib/mail-relay-upload"), { recursive: true });
    writeFileSync(up, "this is not javascript (");
    const r = bash(renderInstallAndActivateRelay("v3", 2525));
    expect(r.status).not.toBe(0);
    expect(existsSync(up)).toBe(true);
  });
});

describe("renderApplyHostFirewall (stubbed id, useradd, nft)", () => {
  beforeEach(() => {
    stub("useradd", "exit 0");
    stub("nft", 'if [ "$1" = "-c" ] && grep -q BROKEN "$3"; then echo "syntax error" >&2; exit 1; fi; exit 0');
    mkdirSync(join(root, "etc"), { recursive: true });
  });

  it("creates the cloudflared user first (nft resolves the names it loads), checks with nft -c, then loads with nft -f", () => {
    stub("id", "exit 1");
    writeFileSync(join(root, "etc/nftables.conf"), "flush ruleset\n");
    const r = bash(renderApplyHostFirewall());
    expect(r.status, r.out).toBe(0);
    const calls = r.calls.trim().split("\n");
    const at = (re: RegExp) => calls.findIndex((c) => re.test(c));
    expect(at(/^useradd --system .* cloudflared$/)).toBeGreaterThanOrEqual(0);
    expect(at(/^useradd/)).toBeLessThan(at(/^nft -c -f /));
    expect(at(/^nft -c -f /)).toBeLessThan(at(/^nft -f /));
    // One transaction, never a service restart (stop = flush: a moment without a firewall).
    expect(r.calls).not.toMatch(/systemctl (restart|stop) nftables/);
  });

  it("an existing cloudflared user is kept; a ruleset nft -c refuses is never loaded", () => {
    stub("id", "exit 0");
    writeFileSync(join(root, "etc/nftables.conf"), "BROKEN\n");
    const r = bash(renderApplyHostFirewall());
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/nft -c refused/);
    expect(r.calls).not.toMatch(/^useradd/m);
    expect(r.calls).not.toMatch(/^nft -f /m);
  });
});

describe("renderInstallFile", () => {
  const f = {
    path: "/etc/opendkim/keys/example.com/mail202611.private",
    mode: "0600",
    owner: "opendkim",
    group: "opendkim",
    secret: true,
  } as const;

  it("writes stdin to the path with the mode, chowns it, and leaves no temp file behind", () => {
    const r = bash(renderInstallFile(f), "KEY-CONTENT\n");
    expect(r.status, r.out).toBe(0);
    const dest = join(root, f.path);
    expect(readFileSync(dest, "utf8")).toBe("KEY-CONTENT\n");
    expect((statSync(dest).mode & 0o777).toString(8)).toBe("600");
    expect(r.calls).toMatch(/^chown -- opendkim:opendkim .*\/\.mail202611\.private\.\w+$/m);
    expect(readdirSync(join(root, "etc/opendkim/keys/example.com"))).toEqual(["mail202611.private"]);
  });
  it("replaces an existing file by rename (a reader holding the old file keeps the old content)", () => {
    const g = { path: "/etc/postfix/main.cf", mode: "0644", owner: "root", group: "root", secret: false } as const;
    expect(bash(renderInstallFile(g), "old\n").status).toBe(0);
    const before = statSync(join(root, g.path)).ino;
    expect(bash(renderInstallFile(g), "new\n").status).toBe(0);
    expect(readFileSync(join(root, g.path), "utf8")).toBe("new\n");
    expect(statSync(join(root, g.path)).ino).not.toBe(before);
    expect((statSync(join(root, g.path)).mode & 0o777).toString(8)).toBe("644");
  });
  it("refuses empty stdin and keeps the existing file", () => {
    const g = { path: "/etc/mail-relay.env", mode: "0640", owner: "root", group: "mailrelay", secret: true } as const;
    expect(bash(renderInstallFile(g), "A=1\n").status).toBe(0);
    const r = bash(renderInstallFile(g), "");
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/refusing to install an empty/);
    expect(readFileSync(join(root, g.path), "utf8")).toBe("A=1\n");
    expect(readdirSync(join(root, "etc"))).toEqual(["mail-relay.env"]);
  });
});

describe("relay releases: install, activate, roll back, prune", () => {
  it("installs the bundle atomically into releases/<version>/relay.js and refuses one that does not parse", () => {
    const r = bash(renderInstallRelayRelease("v1"), healthy("v1"));
    expect(r.status, r.out).toBe(0);
    expect(readFileSync(join(root, "opt/mail-relay/releases/v1/relay.js"), "utf8")).toBe(healthy("v1"));
    expect(readdirSync(join(root, "opt/mail-relay/releases/v1"))).toEqual(["relay.js"]);
    const bad = bash(renderInstallRelayRelease("v2"), "function (");
    expect(bad.status).not.toBe(0);
    expect(bad.out).toMatch(/does not parse/);
    expect(existsSync(join(root, "opt/mail-relay/releases/v2/relay.js"))).toBe(false);
  });
  it("switches current to the new release, restarts the relay and succeeds when /health answers", () => {
    const r = deploy("v1", healthy("v1"));
    expect(r.status, r.out).toBe(0);
    expect(current()).toBe("releases/v1");
    expect(lstatSync(join(root, "opt/mail-relay/current")).isSymbolicLink()).toBe(true);
    expect(r.calls).toMatch(
      /systemctl daemon-reload\nsystemctl enable --quiet mail-relay.service\n(systemctl reset-failed mail-relay.service\n)?systemctl restart mail-relay.service/,
    );
    expect(r.calls).toMatch(/curl .*http:\/\/127\.0\.0\.1:2525\/health/);
    expect(r.out).toMatch(/active and healthy/);
  });
  it("rolls back to the previous release when the new one fails its health check, exits non-zero with the log tail", () => {
    expect(deploy("v1", healthy("v1")).status).toBe(0);
    const r = deploy("v2", broken("v2"));
    expect(r.status).not.toBe(0);
    expect(current()).toBe("releases/v1");
    expect(r.out).toMatch(/v2 failed its health check/);
    expect(r.out).toMatch(/journalctl -u mail-relay.service -n 50/);
    expect(r.out).toMatch(/fake journal line/);
    expect(r.out).toMatch(/rolled back: current -> releases\/v1 \(healthy\)/);
    expect(r.calls.match(/systemctl restart mail-relay.service/g)).toHaveLength(2);
    expect(r.calls.match(/systemctl start mail-relay.service/g)).toHaveLength(1);
  });
  it("the rollback stops the failing release before current moves, then clears its failed state and starts the previous one", () => {
    expect(deploy("v1", healthy("v1")).status).toBe(0);
    // The fake systemctl notes where current pointed at each call.
    stub("systemctl", 'echo "$* @ $(readlink "$MAIL_RELAY_ROOT/opt/mail-relay/current")" >> "$STUB_LOG.at"');
    const r = deploy("v2", broken("v2"));
    expect(r.status).not.toBe(0);
    const at = readFileSync(`${log}.at`, "utf8").split("\n");
    const stop = at.indexOf("stop mail-relay.service @ releases/v2");
    const reset = at.lastIndexOf("reset-failed mail-relay.service @ releases/v1");
    const start = at.indexOf("start mail-relay.service @ releases/v1");
    expect(
      [stop, reset, start].every((i) => i >= 0),
      at.join("\n"),
    ).toBe(true);
    expect(stop < reset && reset < start, at.join("\n")).toBe(true);
  });
  it("the health check's time limit does not grow with the queue (the relay answers /health before reading it)", () => {
    const pending = join(root, "var/spool/mail-relay/pending");
    mkdirSync(pending, { recursive: true });
    for (let i = 0; i < 4000; i++) writeFileSync(join(pending, `job${i}.json`), "{}");
    const r = deploy("v1", broken("v1")); // MAIL_RELAY_HEALTH_TIMEOUT=2 in these tests
    expect(r.out).toMatch(/v1 failed its health check \(http:\/\/127\.0\.0\.1:2525\/health, 2s\)/);
  });
  it("fails without a previous release to return to (first deploy broken)", () => {
    const r = deploy("v1", broken("v1"));
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/no previous release to roll back to/);
  });
  it("refuses to activate a release that was never installed, leaving current alone", () => {
    expect(deploy("v1", healthy("v1")).status).toBe(0);
    writeFileSync(log, "");
    const r = bash(renderActivateRelayRelease("v9", 2525));
    expect(r.status).not.toBe(0);
    expect(current()).toBe("releases/v1");
    expect(r.calls).not.toMatch(/restart/);
  });
  it("keeps the newest 5 releases, never pruning the current or previous one", () => {
    const t0 = Date.now() / 1000 - 1000;
    for (let i = 1; i <= 7; i++) {
      expect(deploy(`v${i}`, healthy(`v${i}`)).status).toBe(0);
      utimesSync(join(root, `opt/mail-relay/releases/v${i}`), t0 + i, t0 + i); // distinct mtimes, oldest first
    }
    expect(deploy("v8", healthy("v8")).status).toBe(0);
    expect(releases()).toEqual(["v4", "v5", "v6", "v7", "v8"]);
    expect(current()).toBe("releases/v8");
  });
  it("prunes an old directory whose name holds a space as one name, not as two words", () => {
    const t0 = Date.now() / 1000 - 1000;
    for (let i = 1; i <= 5; i++) {
      expect(deploy(`v${i}`, healthy(`v${i}`)).status).toBe(0);
      utimesSync(join(root, `opt/mail-relay/releases/v${i}`), t0 + i, t0 + i);
    }
    mkdirSync(join(root, "opt/mail-relay/releases/old copy"));
    utimesSync(join(root, "opt/mail-relay/releases/old copy"), t0, t0); // the oldest entry
    const r = deploy("v6", healthy("v6"));
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/pruned old release old copy$/m);
    expect(releases()).toEqual(["v2", "v3", "v4", "v5", "v6"]);
  });
});

describe("the DANE-first TLS policy socketmap runs the release it belongs to (stubbed systemctl)", () => {
  const TLS_UNIT = "mail-relay-tls-policy.service";
  // The stub's socketmap "runs" only for a release whose bundle does not say NO_TLS_POLICY.
  const withTls = (v: string) => `${healthy(v)}// tls-policy ok\n`;
  const withoutTls = (v: string) => `${healthy(v)}// NO_TLS_POLICY\n`;
  beforeEach(() =>
    stub(
      "systemctl",
      `if [ "$1" = is-active ] && [ "$3" = ${TLS_UNIT} ] && ` +
        'grep -q NO_TLS_POLICY "$MAIL_RELAY_ROOT/opt/mail-relay/current/relay.js"; then exit 3; fi; exit 0',
    ),
  );
  const activate = (v: string, bundle: string, tlsPolicy: boolean) => {
    expect(bash(renderInstallRelayRelease(v), bundle).status).toBe(0);
    return bash(renderActivateRelayRelease(v, 2525, { tlsPolicy }));
  };
  it("enforcing stacks: the release is active only once the socketmap runs", () => {
    const r = activate("v1", withTls("v1"), true);
    expect(r.status, r.out).toBe(0);
    expect(r.calls).toMatch(new RegExp(`systemctl enable --quiet ${TLS_UNIT}\n`));
    expect(r.calls).toMatch(new RegExp(`systemctl restart ${TLS_UNIT}\n`));
  });
  it("a release whose socketmap does not run is rolled back like an unhealthy relay", () => {
    expect(activate("v1", withTls("v1"), true).status).toBe(0);
    const r = activate("v2", withoutTls("v2"), true);
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/mail-relay-tls-policy.service is not running/);
    expect(current()).toBe("releases/v1");
    expect(r.out).toMatch(/rolled back: current -> releases\/v1/);
  });
  it("a smarthost or opted-out stack stops a socketmap a former deploy left, and never starts it", () => {
    const r = activate("v1", withTls("v1"), false);
    expect(r.status, r.out).toBe(0);
    expect(r.calls).toMatch(new RegExp(`systemctl disable --now --quiet ${TLS_UNIT}`));
    expect(r.calls).not.toMatch(new RegExp(`systemctl restart ${TLS_UNIT}`));
  });
});

/** Stubs for the mail tools apply-mail-config runs, and the two OpenDKIM sockets it waits for (real unix sockets). */
function stubMailTools(): void {
  stub("postfix", 'echo "postfix/postfix-script: warning: demo"; exit 0');
  stub("postmap", 'touch "${1#hash:}.db"');
  stub("opendkim", "exit 0");
  stub("unbound-checkconf", "exit 0");
  mkdirSync(join(root, "var/spool/postfix/opendkim"), { recursive: true });
  for (const name of ["opendkim.sock", "opendkim-ed25519.sock"]) {
    const sock = join(root, "var/spool/postfix/opendkim", name);
    spawnSync(process.execPath, [
      "-e",
      `require("net").createServer().listen(${JSON.stringify(sock)}, () => process.exit(0))`,
    ]);
    expect(lstatSync(sock).isSocket()).toBe(true);
  }
}

describe("apply mail config and teardown (stubbed tools)", () => {
  beforeEach(() => {
    stubMailTools();
  });
  it("smarthost: postmaps sasl_passwd, checks every config, restarts unbound, MTA-STS and both OpenDKIMs before Postfix", () => {
    mkdirSync(join(root, "etc/postfix"), { recursive: true });
    writeFileSync(join(root, "etc/postfix/sasl_passwd"), "[smtp.eu.mailgun.org]:587 u:p\n");
    const r = bash(renderApplyMailConfig(buildConfig({ smarthost: true }).host));
    expect(r.status, r.out).toBe(0);
    const order = [
      "postmap hash:",
      "postfix check",
      "opendkim -n",
      "opendkim -n -x /etc/opendkim-ed25519.conf",
      "unbound-checkconf",
      "systemctl restart unbound.service",
      "systemctl restart postfix-mta-sts-resolver.service",
      "systemctl restart opendkim.service",
      "systemctl restart opendkim-ed25519.service",
      "systemctl restart postfix.service",
    ].map((c) => r.calls.indexOf(c));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
  });
  it("direct: removes any leftover smarthost password", () => {
    mkdirSync(join(root, "etc/postfix"), { recursive: true });
    writeFileSync(join(root, "etc/postfix/sasl_passwd"), "[old]:587 u:p\n");
    const r = bash(renderApplyMailConfig(buildConfig().host));
    expect(r.status, r.out).toBe(0);
    expect(existsSync(join(root, "etc/postfix/sasl_passwd"))).toBe(false);
    expect(r.calls).not.toMatch(/postmap/);
  });
  it("fails with postfix check's output and restarts nothing when the check fails", () => {
    stub("postfix", 'echo "postfix: fatal: bad main.cf line 3" >&2; exit 1');
    const r = bash(renderApplyMailConfig(buildConfig().host));
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/postfix check failed:\npostfix: fatal: bad main.cf line 3/);
    expect(r.calls).not.toMatch(/restart/);
  });
  it("stop cloudflared: disables the tunnel unit", () => {
    const r = bash(renderStopCloudflared());
    expect(r.status, r.out).toBe(0);
    expect(r.calls).toMatch(/systemctl disable --now cloudflared-mail-relay.service/);
  });
});

describe("teardown never deletes queued mail silently (renderStopRelay)", () => {
  const job = (dir: string, name = "job1.json") => {
    mkdirSync(join(root, dir), { recursive: true });
    writeFileSync(join(root, dir, name), "{}");
    return join(root, dir, name);
  };
  const quick = { drainSeconds: 1, allowQueueLoss: false };
  const pollFast = (script: string) => script.replace('poll="${MAIL_RELAY_DRAIN_POLL:-5}"', 'poll="0.1"');

  it("empty queues: stops the relay at once (SIGTERM via the unit)", () => {
    const r = bash(renderStopRelay({ drainSeconds: 300, allowQueueLoss: false }));
    expect(r.status, r.out).toBe(0);
    expect(r.calls).toMatch(/systemctl disable --now mail-relay.service/);
    expect(r.out).not.toMatch(/draining/);
  });

  it("waits while the relay drains its queue, then stops it", () => {
    const pending = job("var/spool/mail-relay/pending");
    // The relay "hands the job off" while the script waits: a sleep stub removes the file, as the worker would.
    stub("sleep", `rm -f "${pending}"`);
    const r = bash(renderStopRelay({ drainSeconds: 60, allowQueueLoss: false }));
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/draining before teardown: relay queue 1, postfix queue 0/);
    expect(r.calls).toMatch(/systemctl disable --now mail-relay.service/);
  });

  it.each([
    ["a pending relay job", "var/spool/mail-relay/pending"],
    ["a job in processing/", "var/spool/mail-relay/processing"],
    ["a failed relay job", "var/spool/mail-relay/failed"],
    ["mail deferred in Postfix's queue", "var/spool/postfix/deferred/A"],
    ["mail waiting in Postfix's maildrop", "var/spool/postfix/maildrop"],
  ])("%s that does not drain: refuses, leaves the relay running and the file in place", (_what, dir) => {
    const file = job(dir);
    const r = bash(pollFast(renderStopRelay(quick)));
    expect(r.status).toBe(1);
    expect(r.out).toMatch(/refusing to tear down: 1 message\(s\) are still queued/);
    expect(r.out).toMatch(/relay\.allowQueueLoss true/);
    expect(r.calls).not.toMatch(/systemctl disable/);
    expect(existsSync(file)).toBe(true);
  });

  it("failed jobs never drain by themselves: the step refuses without waiting out drainSeconds", () => {
    job("var/spool/mail-relay/failed");
    const r = bash(renderStopRelay({ drainSeconds: 3600, allowQueueLoss: false })); // spawn timeout is 30 s
    expect(r.status).toBe(1);
    expect(r.out).not.toMatch(/draining/);
  });

  it("allowQueueLoss: warns with the count and stops the relay anyway", () => {
    job("var/spool/mail-relay/pending");
    job("var/spool/postfix/deferred/B", "B1");
    const r = bash(pollFast(renderStopRelay({ drainSeconds: 1, allowQueueLoss: true })));
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/WARNING: relay.allowQueueLoss is true: 2 queued message\(s\) are lost/);
    expect(r.calls).toMatch(/systemctl disable --now mail-relay.service/);
  });

  it("refuses a drain time outside 0..3600 s", () => {
    expect(() => renderStopRelay({ drainSeconds: -1, allowQueueLoss: false })).toThrow(/drainSeconds/);
    expect(() => renderStopRelay({ drainSeconds: 1.5, allowQueueLoss: false })).toThrow(/drainSeconds/);
    expect(() => renderStopRelay({ drainSeconds: 3601, allowQueueLoss: false })).toThrow(/drainSeconds/);
  });
});

describe("a deploy step starts a unit whatever its history: failed, or over systemd's start limit (fake systemctl)", () => {
  // The fake refuses to start or restart any unit until `systemctl reset-failed <unit>` has run for it, as systemd does
  // for a unit over StartLimitBurst after a crash loop. Every script that starts units runs against it, so a restart
  // site added without the reset fails here.
  beforeEach(() => {
    stubMailTools();
    stub("cloudflared", "exit 0");
    stub(
      "systemctl",
      [
        'state="$STUB_LOG.state"; mkdir -p "$state"',
        'unit="${*: -1}"',
        'case "$1" in',
        '  reset-failed) touch "$state/$unit" ;;',
        '  start|restart) [ -e "$state/$unit" ] || { echo "Job for $unit failed because start of the service was ' +
          'attempted too often." >&2; exit 1; }; touch "$state/$unit.up" ;;',
        '  is-active) [ -e "$state/$unit.up" ] || exit 3 ;;',
        "esac",
        "exit 0",
      ].join("\n"),
    );
  });
  const smarthostPassword = () => {
    mkdirSync(join(root, "etc/postfix"), { recursive: true });
    writeFileSync(join(root, "etc/postfix/sasl_passwd"), "[smtp.example.net]:587 u:p\n");
  };
  const scripts: [string, () => string, (() => void)?][] = [
    ["apply mail config (direct)", () => renderApplyMailConfig(buildConfig().host)],
    [
      "apply mail config (smarthost)",
      () => renderApplyMailConfig(buildConfig({ smarthost: true }).host),
      smarthostPassword,
    ],
    ["start cloudflared", () => renderStartCloudflared()],
  ];
  for (const [name, render, setup] of scripts) {
    it(`${name}: succeeds, and starts nothing it did not reset first`, () => {
      setup?.();
      const r = bash(render());
      expect(r.status, r.out).toBe(0);
      expect(r.calls).toMatch(/systemctl restart /);
    });
  }
  for (const tlsPolicy of [true, false]) {
    it(`activate a relay release (tlsPolicy ${tlsPolicy}), and roll back from a broken one: both start their units`, () => {
      expect(bash(renderInstallRelayRelease("v1"), healthy("v1")).status).toBe(0);
      const first = bash(renderActivateRelayRelease("v1", 2525, { tlsPolicy }));
      expect(first.status, first.out).toBe(0);
      expect(first.calls).toMatch(/systemctl restart mail-relay-webhooks?\.service/);
      expect(first.out).not.toMatch(/did not start|attempted too often/);
      // The rollback's start is refused too until its own reset: clear what the first deploy reset.
      rmSync(`${log}.state`, { recursive: true, force: true });
      expect(bash(renderInstallRelayRelease("v2"), broken("v2")).status).toBe(0);
      const r = bash(renderActivateRelayRelease("v2", 2525, { tlsPolicy }));
      expect(r.status).not.toBe(0);
      expect(r.out).toMatch(/rolled back: current -> releases\/v1 \(healthy\)/);
      expect(r.out).not.toMatch(/attempted too often/);
    });
  }
});
