// A real Postfix instance and a real OpenDKIM, both from the rendered files, inside a network namespace this test
// creates. Only instance paths are moved to a scratch dir (queue_directory, data_directory, log file) and the next
// hop is pointed at a local smtp-sink; every other rendered setting is exercised as it is.
import { spawn, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  renderOpendkimConf,
  renderOpendkimKeyTable,
  renderOpendkimSigningTable,
  renderOpendkimTrustedHosts,
  renderPostfixMainCf,
  renderPostfixMasterCf,
  type HostSettings,
} from "../../cloud-init";
import { buildConfig } from "./fixtures";
import { missing, removeDir, run, safeScratchDir, tool } from "./real-tools";

const skip = missing("Postfix + OpenDKIM instance in a network namespace", {
  tools: ["postfix", "postconf", "postmap", "opendkim", "smtp-sink", "swaks", "ip", "sendmail"],
  root: true,
  check: () => {
    const probe = `mrprobe${process.pid}`;
    const r = run(tool("ip") as string, ["netns", "add", probe]);
    if (r.status !== 0) return `cannot create a network namespace: ${r.stderr.trim()}`;
    run(tool("ip") as string, ["netns", "del", probe]);
    return undefined;
  },
});

const direct = buildConfig({ ipv6: false });
const smarthost = buildConfig({ smarthost: true, ipv6: false });
const ns = `mrpf${process.pid}`;
const SINK = "127.0.0.1:2626";
const OTHER_ADDR = "10.99.0.1";

let base = "";
let etc = "";
let sinkDir = "";
let opendkim: ChildProcess | undefined;
let sink: ChildProcess | undefined;

const inNs = (cmd: string, args: string[], input?: string) => run(tool("ip") as string, ["netns", "exec", ns, cmd, ...args], { input, timeout: 60_000 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const uid = (name: string) => Number(run("id", ["-u", name]).stdout.trim());
const gid = (name: string) => Number(run("getent", ["group", name]).stdout.split(":")[2]);
const maillog = () => (existsSync(join(base, "maillog")) ? readFileSync(join(base, "maillog"), "utf8") : "");
const sunk = () => readdirSync(sinkDir);

function writePostfixConfig(host: HostSettings, overrides: string[]): void {
  writeFileSync(join(etc, "main.cf"), renderPostfixMainCf(host));
  writeFileSync(join(etc, "master.cf"), renderPostfixMasterCf(host));
  const q = join(base, "queue");
  const r = run(tool("postconf") as string, [
    "-c", etc, "-e",
    `queue_directory=${q}`, `data_directory=${join(base, "data")}`,
    `maillog_file_prefixes=${base}`, `maillog_file=${join(base, "maillog")}`,
    "alias_maps=", "alias_database=",
    ...overrides,
  ]);
  if (r.status !== 0) throw new Error(r.stderr);
}

function startOpendkim(): Promise<void> {
  opendkim = spawn(tool("opendkim") as string, ["-f", "-x", join(base, "dkim", "opendkim.conf")], { stdio: "ignore" });
  return waitFor(() => existsSync(join(base, "queue", "opendkim", "opendkim.sock")), "OpenDKIM socket");
}

async function waitFor(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function smtpSend(server: string, extra: string[] = []) {
  return inNs(tool("swaks") as string, ["--server", server, "--from", "noreply@example.com", "--to", "someone@example.org", "--header", "Subject: mail-relay instance test", "--body", "hello", "--timeout", "10", ...extra]);
}

describe.skipIf(skip)("Postfix + OpenDKIM from the rendered files, in a private network namespace", () => {
  beforeAll(async () => {
    base = safeScratchDir("instance-");
    etc = join(base, "etc");
    sinkDir = join(base, "sink");
    for (const d of [etc, join(base, "queue"), join(base, "data"), sinkDir, join(base, "dkim", "keys", "example.com")]) mkdirSync(d, { recursive: true, mode: 0o755 });
    chownSync(join(base, "data"), uid("postfix"), 0);
    chownSync(sinkDir, uid("postfix"), gid("postfix"));

    expect(run(tool("ip") as string, ["netns", "add", ns]).status).toBe(0);
    inNs(tool("ip") as string, ["link", "set", "lo", "up"]);
    // A non-loopback address, present before Postfix starts: it must not listen there.
    inNs(tool("ip") as string, ["addr", "add", `${OTHER_ADDR}/32`, "dev", "lo"]);

    // OpenDKIM: rendered conf and tables, only paths moved; socket dir made exactly as user-data makes it.
    const dk = join(base, "dkim");
    const place = (t: string) => t.replaceAll("/etc/opendkim", dk).replaceAll("/var/spool/postfix", join(base, "queue")).replaceAll("/run/opendkim", dk);
    writeFileSync(join(dk, "opendkim.conf"), place(renderOpendkimConf(direct.host)));
    writeFileSync(join(dk, "KeyTable"), place(renderOpendkimKeyTable(direct.host)));
    writeFileSync(join(dk, "SigningTable"), renderOpendkimSigningTable(direct.host));
    writeFileSync(join(dk, "TrustedHosts"), renderOpendkimTrustedHosts());
    const key = join(dk, "keys", "example.com", `${direct.host.dkimSelector}.private`);
    writeFileSync(key, direct.secrets.dkimPrivateKeyPem, { mode: 0o600 });
    chownSync(key, uid("opendkim"), gid("opendkim"));

    writePostfixConfig(direct.host, [`relayhost=[${SINK.split(":")[0]}]:${SINK.split(":")[1]}`]);
    const sp = run(tool("postfix") as string, ["-c", etc, "set-permissions"]);
    expect(sp.status, sp.stderr).toBe(0);
    run("install", ["-d", "-o", "opendkim", "-g", "postfix", "-m", "2750", join(base, "queue", "opendkim")]);
    await startOpendkim();

    sink = spawn(tool("ip") as string, ["netns", "exec", ns, tool("smtp-sink") as string, "-u", "postfix", "-d", `${sinkDir}/%M.`, SINK, "10"], { stdio: "ignore" });
    const start = inNs(tool("postfix") as string, ["-c", etc, "start"]);
    expect(start.status, start.stderr + start.stdout).toBe(0);
    await waitFor(() => /daemon started/.test(maillog()), "postfix master");
  });

  afterAll(async () => {
    if (etc) inNs(tool("postfix") as string, ["-c", etc, "stop"]);
    opendkim?.kill("SIGTERM");
    sink?.kill("SIGTERM");
    await sleep(500);
    run(tool("ip") as string, ["netns", "del", ns]);
    if (base) removeDir(base);
  });

  it("listens on 127.0.0.1:25 only: nothing on another address, nothing on 465 or 587", () => {
    const listening = inNs(tool("ss") ?? "/usr/bin/ss", ["-ltnH"]).stdout.trim().split("\n").map((l) => l.split(/\s+/)[3]);
    expect(listening.filter((a) => a !== SINK).sort()).toEqual(["127.0.0.1:25"]);
    for (const target of [`${OTHER_ADDR}:25`, "127.0.0.1:465", "127.0.0.1:587"]) {
      const r = smtpSend(target);
      expect(r.status, target).not.toBe(0);
      expect(r.stdout + r.stderr, target).toMatch(/Connection refused/);
    }
  });

  it("signs a message submitted over SMTP with d=<domain> s=<active selector> and delivers it", async () => {
    const before = sunk().length;
    const r = smtpSend("127.0.0.1:25");
    expect(r.stdout + r.stderr).toMatch(/250 2\.0\.0 Ok: queued/);
    await waitFor(() => sunk().length > before, "delivery to the sink");
    const msg = readFileSync(join(sinkDir, sunk().sort().pop() as string), "utf8");
    const sig = /^DKIM-Signature:([^\n]*(?:\n[ \t][^\n]*)*)/m.exec(msg)?.[1] ?? "";
    expect(sig).toMatch(/\bd=example\.com;/);
    expect(sig).toMatch(/\bs=mail202611;/);
    expect(sig).toMatch(/\bc=relaxed\/simple;/);
    expect(msg).toMatch(/^From: noreply@example\.com/m);
  });

  it("signs a message submitted with sendmail too (non_smtpd_milters through the relative socket path)", async () => {
    const before = sunk().length;
    const r = inNs(tool("sendmail") as string, ["-C", etc, "-f", "noreply@example.com", "-i", "someone@example.org"], "From: noreply@example.com\nTo: someone@example.org\nSubject: via sendmail\n\nhello\n");
    expect(r.status, r.stderr).toBe(0);
    await waitFor(() => sunk().length > before, "sendmail delivery to the sink");
    const files = sunk().sort();
    const msgs = files.map((f) => readFileSync(join(sinkDir, f), "utf8")).filter((m) => m.includes("Subject: via sendmail"));
    expect(msgs).toHaveLength(1);
    expect(msgs[0]).toMatch(/^DKIM-Signature:.*d=example\.com;/m);
  });

  it("smarthost mode never sends without TLS: a smarthost that offers no STARTTLS gets nothing", async () => {
    const sasl = join(etc, "sasl_passwd");
    writeFileSync(sasl, `[127.0.0.1]:2626 ${smarthost.host.smarthost?.username}:test-password\n`, { mode: 0o600 });
    expect(run(tool("postmap") as string, [`hash:${sasl}`]).status).toBe(0);
    writePostfixConfig(smarthost.host, ["relayhost=[127.0.0.1]:2626", `smtp_sasl_password_maps=hash:${sasl}`]);
    expect(inNs(tool("postfix") as string, ["-c", etc, "reload"]).status).toBe(0);
    await sleep(1000);
    const before = sunk().length;
    const r = smtpSend("127.0.0.1:25");
    expect(r.stdout + r.stderr).toMatch(/250 2\.0\.0 Ok: queued/);
    await waitFor(() => /TLS is required, but was not offered/.test(maillog()), "the smtp client's TLS refusal");
    expect(sunk().length).toBe(before);
    // back to direct mode for the next test
    writePostfixConfig(direct.host, [`relayhost=[127.0.0.1]:2626`]);
    expect(inNs(tool("postfix") as string, ["-c", etc, "reload"]).status).toBe(0);
    await sleep(1000);
  });

  it("when OpenDKIM is down, mail is deferred with a 4xx (milter_default_action = tempfail), never sent unsigned", async () => {
    opendkim?.kill("SIGTERM");
    await waitFor(() => opendkim?.exitCode !== null || opendkim?.signalCode !== null, "OpenDKIM to stop");
    const before = sunk().length;
    const r = smtpSend("127.0.0.1:25");
    const out = r.stdout + r.stderr;
    expect(out).toMatch(/<\*\* 4\d\d /);
    expect(out).not.toMatch(/Ok: queued/);
    await sleep(2000);
    expect(sunk().length).toBe(before);
  });
});
