// DANE with the rendered resolver settings, on this machine's release: a zone signed with ldns-signzone (Ed25519 KSK),
// served by an unbound that runs the rendered drop-in (cloud-init/outbound-tls.ts) with the zone's trust anchor, in
// a private network namespace whose resolv.conf is the rendered one (127.0.0.1, trust-ad) (dnssec-world.ts). Postfix's
// posttls-finger at the dane level then decides as smtp(8) would: the MX's key matches the DNSSEC-validated TLSA ->
// "Verified"; another key -> "no matching DANE TLSA records", "Untrusted". The zones are signed by
// rehearsal/world/dnssec.ts, as the rehearsal's world signs its own (where the deployed host's smtp(8) delivers or
// defers: docs/rehearsal.md).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../testkit/postfix-instance";
import { missing, tool } from "../../testkit/real-tools";
import { DNSSEC_WORLD_TOOLS, selfSignedCert, spkiSha256, startDnssecWorld, type DnssecWorld } from "./dnssec-world";

const skip = missing("DANE: ldns-signzone + unbound + posttls-finger in a network namespace", {
  tools: [...DNSSEC_WORLD_TOOLS, "posttls-finger"],
  root: true,
  scratch: true,
});

const NS = `mrdane${process.pid}`;
const REPO = join(__dirname, "..", "..");

describe.skipIf(skip)("DANE: a DNSSEC-signed TLSA record decides, through the rendered unbound and resolv.conf", () => {
  let world: DnssecWorld | undefined;
  let mx: ChildProcess | undefined;
  const inNs = (cmd: string, args: string[]) => world!.inNs(cmd, args);
  const startMx = async (name: string) => {
    mx?.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 300));
    const certs = world!.dir;
    const out = join(certs, "mx");
    mkdirSync(out, { recursive: true });
    mx = spawn(
      tool("ip") as string,
      ["netns", "exec", NS, process.execPath, "--import", "tsx", join(REPO, "rehearsal", "world", "mx.ts"), out,
        "127.0.0.1", "--tls", `${join(certs, `${name}.key`)},${join(certs, `${name}.crt`)}`], // prettier-ignore
      { stdio: "ignore", cwd: REPO },
    );
    await waitFor(() => inNs("ss", ["-Hltn", "sport = :25"]).stdout.trim() !== "", "the MX on :25", 20_000);
  };
  const finger = () => inNs(tool("posttls-finger") as string, ["-t", "5", "-T", "5", "-c", "-l", "dane", "-L",
    "summary,certmatch", "dane.test"]); // prettier-ignore

  beforeAll(async () => {
    world = await startDnssecWorld(NS, "dane-", (dir) => {
      // The zone's TLSA record names the "mx" certificate's key; "other" is the impostor.
      selfSignedCert(dir, "mx", "mx.dane.test");
      selfSignedCert(dir, "other", "mx.dane.test");
      return [
        {
          name: "dane.test",
          dnssec: "signed",
          records: [
            "@ IN MX 10 mx.dane.test.",
            "mx IN A 127.0.0.1",
            `_25._tcp.mx IN TLSA 3 1 1 ${spkiSha256(join(dir, "mx.crt"))}`,
          ],
        },
      ];
    });
  }, 60_000);

  afterAll(() => {
    mx?.kill("SIGTERM");
    world?.close();
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
