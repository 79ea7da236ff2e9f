// The DANE-first TLS policy socketmap as it ships (relay/dist/relay.js tls-policy) against a real validating unbound
// (dnssec-world.ts: the rendered drop-in and resolv.conf, zones signed with ldns-signzone), asked through Postfix's
// own socketmap client with the map main.cf names: a signed domain whose MX has a TLSA record -> dane-only; an
// unsigned one -> not found (Postfix asks the MTA-STS resolver next); a bogus one (signatures that do not chain to
// the anchor) -> a lookup error, so Postfix defers instead of falling back to a weaker policy.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DANE_POLICY_MAP, renderPostfixMainCf } from "../../cloud-init";
import { TLS_POLICY_LISTEN } from "../../relay/tls-policy/contract";
import { buildConfig } from "../../testkit/node-config";
import { waitFor } from "../../testkit/postfix-instance";
import { missing, tool } from "../../testkit/real-tools";
import { DNSSEC_WORLD_TOOLS, startDnssecWorld, type DnssecWorld } from "./dnssec-world";

const skip = missing("DANE-first socketmap: unbound validating ldns-signzone zones, asked with postmap", {
  tools: [...DNSSEC_WORLD_TOOLS, "postmap"],
  root: true,
  scratch: true,
});

const NS = `mrtlsp${process.pid}`;
const REPO = join(__dirname, "..", "..");
const BUNDLE = join(REPO, "relay", "dist", "relay.js");
const TLSA = "3 1 1 " + "ab".repeat(32);

describe.skipIf(skip)("the DANE-first socketmap answers Postfix from DNSSEC-validated answers", () => {
  let world: DnssecWorld | undefined;
  let socketmap: ChildProcess | undefined;
  let logs = "";
  const postmap = (domain: string) => world!.inNs(tool("postmap") as string, ["-q", domain, DANE_POLICY_MAP]);

  beforeAll(async () => {
    // What ships: the bundle (npm run build makes it; CI builds before the tests).
    if (!existsSync(BUNDLE)) execFileSync(process.execPath, [join(REPO, "relay", "build.mjs")], { cwd: REPO });
    if (!readFileSync(BUNDLE, "utf8").includes("tls-policy socketmap listening"))
      throw new Error(`${BUNDLE} predates the tls-policy subcommand: run npm run build`);
    const mxZone = (name: string) => [`@ IN MX 10 mx.${name}.`, "mx IN A 127.0.0.1", `_25._tcp.mx IN TLSA ${TLSA}`];
    world = await startDnssecWorld(NS, "tlsp-", () => [
      { name: "signed.test", dnssec: "signed", records: mxZone("signed.test") },
      { name: "plain.test", dnssec: "unsigned", records: mxZone("plain.test") },
      { name: "bogus.test", dnssec: "bogus", records: mxZone("bogus.test") },
    ]);
    socketmap = spawn(tool("ip") as string, ["netns", "exec", NS, process.execPath, BUNDLE, "tls-policy"], {
      // No MTA-STS resolver in this namespace: its testing check fails and is logged, the answers do not change.
      env: { PATH: process.env.PATH, TLS_POLICY_LISTEN: `127.0.0.1:${TLS_POLICY_LISTEN.port}` },
      stdio: ["ignore", "pipe", "pipe"],
    });
    socketmap.stdout?.on("data", (c: Buffer) => (logs += c.toString()));
    socketmap.stderr?.on("data", (c: Buffer) => (logs += c.toString()));
    await waitFor(
      () => world!.inNs("ss", ["-Hltn", `sport = :${TLS_POLICY_LISTEN.port}`]).stdout.trim() !== "",
      `the socketmap on :${TLS_POLICY_LISTEN.port}`,
      20_000,
    );
  }, 90_000);

  afterAll(() => {
    socketmap?.kill("SIGTERM");
    world?.close();
  });

  it("main.cf names this map first", () => {
    const line = renderPostfixMainCf(buildConfig().host)
      .split("\n")
      .find((l) => l.startsWith("smtp_tls_policy_maps ="));
    expect(line).toMatch(new RegExp(`^smtp_tls_policy_maps = ${DANE_POLICY_MAP.replace(/\./g, "\\.")},`));
  });

  // postmap runs synchronously: the socketmap's log lines arrive once the event loop turns again.
  const logged = (re: RegExp) => waitFor(() => re.test(logs), `the log line ${re}`, 5_000).then(() => logs);

  it("a signed domain whose MX has a validated TLSA record: dane-only", async () => {
    const r = postmap("signed.test");
    console.log(`postmap -q signed.test ${DANE_POLICY_MAP}: exit ${r.status}; ${r.stdout.trim()}`);
    expect(r.stdout.trim(), r.stderr + logs).toBe("dane-only");
    expect(r.status).toBe(0);
    expect(await logged(/DANE for signed\.test: dane-only \(MX mx\.signed\.test\)/)).toBeTruthy();
  });

  it("an unsigned domain with the same records: not found (postmap exits 1), so the MTA-STS map is asked next", () => {
    const r = postmap("plain.test");
    console.log(`postmap -q plain.test ${DANE_POLICY_MAP}: exit ${r.status}; ${r.stdout.trim() || "(nothing)"}`);
    expect(r.status, r.stderr + logs).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).not.toMatch(/fatal|error/i);
  });

  it("a bogus domain (signatures that fail validation): a lookup error, never 'not found'", async () => {
    const r = postmap("bogus.test");
    console.log(`postmap -q bogus.test ${DANE_POLICY_MAP}: exit ${r.status}; ${r.stderr.trim()}`);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/socketmap server temporary error: MX bogus\.test: SERVFAIL/);
    expect(await logged(/DANE lookup for bogus\.test failed: MX bogus\.test: SERVFAIL/)).toBeTruthy();
  });
});
