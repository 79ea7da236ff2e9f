// DANE with the rendered resolver settings, on this machine's release: a zone signed with ldns-signzone (Ed25519 KSK),
// served by an unbound that runs the rendered drop-in (cloud-init/outbound-tls.ts) with the zone's trust anchor, in
// a private network namespace whose resolv.conf is the rendered one (127.0.0.1, trust-ad). Postfix's posttls-finger
// at the dane level then decides as smtp(8) would: the MX's key matches the DNSSEC-validated TLSA -> "Verified";
// another key -> "no matching DANE TLSA records", "Untrusted". The zone is signed by rehearsal/world/dnssec.ts, as
// the rehearsal's world signs its own (where the deployed host's smtp(8) delivers or defers: docs/rehearsal.md).
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderResolvConf, renderUnboundConf } from "../../cloud-init";
import { signZone, spkiSha256 } from "../../rehearsal/world/dnssec";
import { waitFor } from "../../testkit/postfix-instance";
import { missing, removeDir, run, safeScratchDir, tool } from "../../testkit/real-tools";

const skip = missing("DANE: ldns-signzone + unbound + posttls-finger in a network namespace", {
  tools: ["ldns-keygen", "ldns-signzone", "unbound", "unbound-checkconf", "posttls-finger", "openssl", "ip"],
  root: true,
  scratch: true,
});

const NS = `mrdane${process.pid}`;
const REPO = join(__dirname, "..", "..");

describe.skipIf(skip)("DANE: a DNSSEC-signed TLSA record decides, through the rendered unbound and resolv.conf", () => {
  let dir = "";
  let unboundPid = "";
  let mx: ChildProcess | undefined;
  const inNs = (cmd: string, args: string[]) =>
    run(tool("ip") as string, ["netns", "exec", NS, cmd, ...args], { timeout: 30_000 });
  const cert = (name: string) =>
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mx.dane.test",
      "-keyout", join(dir, `${name}.key`), "-out", join(dir, `${name}.crt`),
    ], { stdio: "ignore" }); // prettier-ignore
  const startMx = async (name: string) => {
    mx?.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 300));
    const out = join(dir, "mx");
    mkdirSync(out, { recursive: true });
    mx = spawn(
      tool("ip") as string,
      ["netns", "exec", NS, process.execPath, "--import", "tsx", join(REPO, "rehearsal", "world", "mx.ts"), out,
        "127.0.0.1", "--tls", `${join(dir, `${name}.key`)},${join(dir, `${name}.crt`)}`], // prettier-ignore
      { stdio: "ignore", cwd: REPO },
    );
    await waitFor(() => inNs("ss", ["-Hltn", "sport = :25"]).stdout.trim() !== "", "the MX on :25", 20_000);
  };
  const finger = () => inNs(tool("posttls-finger") as string, ["-t", "5", "-T", "5", "-c", "-l", "dane", "-L",
    "summary,certmatch", "dane.test"]); // prettier-ignore

  beforeAll(async () => {
    dir = safeScratchDir("dane-");
    cert("mx");
    cert("other");
    const signed = signZone(
      dir,
      "dane.test",
      [
        "@ IN NS ns.dane.test.",
        "ns IN A 127.0.0.1",
        "@ IN MX 10 mx.dane.test.",
        "mx IN A 127.0.0.1",
        `_25._tcp.mx IN TLSA 3 1 1 ${spkiSha256(join(dir, "mx.crt"))}`,
      ],
      { keygen: tool("ldns-keygen") as string, signzone: tool("ldns-signzone") as string },
    );
    writeFileSync(join(dir, "mail-relay.conf"), renderUnboundConf());
    writeFileSync(
      join(dir, "unbound.conf"),
      [
        "server:",
        '    chroot: ""',
        '    username: ""',
        `    directory: "${dir}"`,
        `    pidfile: "${join(dir, "unbound.pid")}"`,
        "    do-not-query-localhost: no",
        '    local-zone: "test." nodefault',
        `    trust-anchor-file: "${signed.dsFile}"`,
        `include: "${join(dir, "mail-relay.conf")}"`,
        "auth-zone:",
        '    name: "dane.test"',
        `    zonefile: "${signed.signedFile}"`,
        "    for-downstream: no",
        "    for-upstream: yes",
        "",
      ].join("\n"),
    );
    // ip netns exec bind-mounts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf: the rendered one.
    mkdirSync(`/etc/netns/${NS}`, { recursive: true });
    writeFileSync(`/etc/netns/${NS}/resolv.conf`, renderResolvConf());
    run(tool("ip") as string, ["netns", "add", NS]);
    inNs(tool("ip") as string, ["link", "set", "lo", "up"]);
    const u = inNs(tool("unbound") as string, ["-c", join(dir, "unbound.conf")]);
    if (u.status !== 0) throw new Error(`unbound: ${u.stderr}`);
    await waitFor(() => inNs("ss", ["-Hlun", "sport = :53"]).stdout.trim() !== "", "unbound on :53");
    unboundPid = execFileSync("cat", [join(dir, "unbound.pid")])
      .toString()
      .trim();
  }, 60_000);

  afterAll(() => {
    mx?.kill("SIGTERM");
    if (unboundPid) run("kill", [unboundPid]);
    run(tool("ip") as string, ["netns", "del", NS]);
    rmSync(`/etc/netns/${NS}`, { recursive: true, force: true });
    if (dir) removeDir(dir);
  });

  it("the MX presents the key its TLSA record names: Verified TLS (DANE-EE)", async () => {
    await startMx("mx");
    const r = finger();
    expect(r.stdout + r.stderr).toMatch(/Matched DANE EE certificate at depth 0: 3 1 1/);
    expect(r.stdout + r.stderr).toMatch(/Verified TLS connection established to mx\.dane\.test\[127\.0\.0\.1\]:25/);
  }, 30_000);

  it("the MX presents another key: no matching TLSA, Untrusted (smtp(8) defers: Server certificate not verified)", async () => {
    await startMx("other");
    const r = finger();
    expect(r.stdout + r.stderr).toMatch(/no matching DANE TLSA records/);
    expect(r.stdout + r.stderr).toMatch(/Untrusted TLS connection established/);
    expect(r.stdout + r.stderr).not.toMatch(/Verified TLS/);
  }, 30_000);
});
