// Each tested Debian release's own tools on the outbound-TLS files (cloud-init/outbound-tls.ts) and the Ed25519
// OpenDKIM instance: unbound-checkconf on the unbound drop-in, opendkim -n on opendkim-ed25519.conf with its tables,
// and (this machine's release) the real postfix-mta-sts-resolver started from the rendered config, asked through
// Postfix's own socketmap client with the exact smtp_tls_policy_maps value main.cf carries. Each block first proves
// its tool rejects a broken file.
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DANE_POLICY_MAP,
  MTA_STS_POLICY_MAP,
  releaseName,
  renderMtaStsConf,
  renderOpendkimConf,
  renderOpendkimKeyTable,
  renderOpendkimSigningTable,
  renderOpendkimTrustedHosts,
  renderPostfixMainCf,
  renderUnboundConf,
} from "../../cloud-init";
import { buildConfig } from "../../testkit/node-config";
import { waitFor } from "../../testkit/postfix-instance";
import { missing, run, tool } from "../../testkit/real-tools";
import { eachRelease, scratch, type ReleaseTools } from "./release-tools";

for (const { release, tools: found, skip: skip0 } of eachRelease("unbound-checkconf", ["unbound-checkconf"])) {
  const skip = skip0 ?? missing(`unbound-checkconf on ${releaseName(release)}`, { scratch: true });
  describe.skipIf(skip)(`${releaseName(release)}: unbound-checkconf accepts the rendered drop-in`, () => {
    const t = () => found as ReleaseTools;
    const dir = scratch("unbound-");
    // The drop-in as Debian's unbound.conf includes it; no chroot, so the check reads the scratch paths.
    const conf = (dropin: string) => {
      writeFileSync(join(dir(), "mail-relay.conf"), dropin);
      const main = join(dir(), "unbound.conf");
      writeFileSync(main, `server:\n    chroot: ""\ninclude: "${join(dir(), "mail-relay.conf")}"\n`);
      return main;
    };
    it("rejects an unknown option (the check can fail)", () => {
      expect(t().run("unbound-checkconf", [conf(renderUnboundConf() + "    bogus-option: yes\n")]).status).not.toBe(0);
    });
    it("accepts the drop-in: loopback only, DNSSEC hardening on", () => {
      const r = t().run("unbound-checkconf", [conf(renderUnboundConf())]);
      expect(r.status, r.stderr + r.stdout).toBe(0);
      const get = (k: string) =>
        t()
          .run("unbound-checkconf", ["-o", k, conf(renderUnboundConf())])
          .stdout.trim();
      expect(get("harden-dnssec-stripped")).toBe("yes");
      expect(get("interface").split("\n").sort()).toEqual(["127.0.0.1", "::1"]);
    });
  });
}

for (const { release, tools: found, skip: skip0 } of eachRelease("opendkim -n (Ed25519)", ["opendkim"])) {
  const skip = skip0 ?? missing(`opendkim -n (Ed25519) on ${releaseName(release)}`, { scratch: true });
  describe.skipIf(skip)(`${releaseName(release)}: opendkim accepts the Ed25519 instance's conf and tables`, () => {
    const t = () => found as ReleaseTools;
    const cfg = buildConfig({ release });
    const dir = scratch("odk-ed-");
    const place = (conf: string) =>
      conf
        .replaceAll("/run/opendkim-ed25519", dir())
        .replaceAll("/etc/opendkim", dir())
        .replaceAll("/var/spool/postfix", dir());
    beforeAll(() => {
      writeFileSync(join(dir(), "KeyTable.ed25519"), place(renderOpendkimKeyTable(cfg.host, "ed25519")));
      writeFileSync(join(dir(), "SigningTable.ed25519"), renderOpendkimSigningTable(cfg.host, "ed25519"));
      writeFileSync(join(dir(), "TrustedHosts"), renderOpendkimTrustedHosts());
    });
    it("rejects an unknown signature algorithm (the check can fail)", () => {
      const bad = place(renderOpendkimConf(cfg.host, "ed25519")).replace("ed25519-sha256", "ed448-sha256");
      writeFileSync(join(dir(), "bad.conf"), bad);
      expect(t().run("opendkim", ["-n", "-x", join(dir(), "bad.conf")]).status).not.toBe(0);
    });
    it("opendkim -n -x opendkim-ed25519.conf succeeds, signing with ed25519-sha256", () => {
      const conf = place(renderOpendkimConf(cfg.host, "ed25519"));
      expect(conf).toMatch(/^SignatureAlgorithm\s+ed25519-sha256$/m);
      writeFileSync(join(dir(), "opendkim-ed25519.conf"), conf);
      const r = t().run("opendkim", ["-n", "-x", join(dir(), "opendkim-ed25519.conf")]);
      expect(r.status, r.stderr).toBe(0);
    });
  });
}

// The resolver is a long-running Python daemon: this machine's own release only (CI installs it; .ci/run).
const mtaSkip = missing("postfix-mta-sts-resolver + postmap socketmap", {
  tools: ["mta-sts-daemon", "postmap", "ip"],
  root: true,
  scratch: true,
});
describe.skipIf(mtaSkip)("postfix-mta-sts-resolver from the rendered config answers Postfix's socketmap client", () => {
  const dir = scratch("mtasts-");
  const ns = `mrsts${process.pid}`;
  let daemon: ChildProcess | undefined;
  const inNs = (cmd: string, args: string[]) => run(tool("ip") as string, ["netns", "exec", ns, cmd, ...args]);
  beforeAll(async () => {
    run(tool("ip") as string, ["netns", "add", ns]);
    inNs(tool("ip") as string, ["link", "set", "lo", "up"]);
    // No DNS in the namespace: every policy lookup fails fast, as for a domain without a policy.
    writeFileSync(join(dir(), "resolv.conf"), "nameserver 127.0.0.1\n");
    writeFileSync(join(dir(), "mta-sts-daemon.yml"), renderMtaStsConf());
    daemon = spawn(
      tool("ip") as string,
      ["netns", "exec", ns, tool("mta-sts-daemon") as string, "-c", join(dir(), "mta-sts-daemon.yml")],
      { stdio: "ignore" },
    );
    await waitFor(() => inNs("ss", ["-Hltn", "sport = :8461"]).stdout.trim() !== "", "mta-sts-daemon on :8461");
  }, 30_000);
  afterAll(() => {
    daemon?.kill("SIGTERM");
    run(tool("ip") as string, ["netns", "del", ns]);
  });
  it("main.cf's smtp_tls_policy_maps asks the table the daemon serves, after the DANE-first one", () => {
    expect(renderPostfixMainCf(buildConfig({ smarthost: false }).host)).toContain(
      `smtp_tls_policy_maps = ${DANE_POLICY_MAP}, ${MTA_STS_POLICY_MAP}`,
    );
  });
  it("a domain without a policy: no entry (postmap exits 1), so Postfix applies smtp_tls_security_level = dane", () => {
    const r = inNs(tool("postmap") as string, ["-q", "example.invalid", MTA_STS_POLICY_MAP]);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).not.toMatch(/fatal|error/i);
  });
  it("the testing zone (asked by the DANE-first socketmap to log testing policies) is served too", () => {
    const r = inNs(tool("postmap") as string, ["-q", "example.invalid", "socketmap:inet:127.0.0.1:8461:testing"]);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).not.toMatch(/fatal|error/i);
  });
  it("a table nobody serves is a lookup error, not 'no policy' (the check can fail: mail would wait)", () => {
    const r = inNs(tool("postmap") as string, ["-q", "example.invalid", "socketmap:inet:127.0.0.1:8469:postfix"]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/connect|refused|error|warning/i);
  });
});
