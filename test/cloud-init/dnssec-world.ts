/**
 * A private DNSSEC world for the real-software DANE tests (dane.real, tls-policy.real): zones written here, signed with
 * ldns-signzone (Ed25519), served by an unbound that runs the rendered drop-in (cloud-init/outbound-tls.ts) with the
 * zones' trust anchors, inside a network namespace whose resolv.conf is the rendered one (127.0.0.1, trust-ad).
 */
import { execFileSync, type SpawnSyncReturns } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderResolvConf, renderUnboundConf } from "../../cloud-init";
import { waitFor } from "../../testkit/postfix-instance";
import { removeDir, run, safeScratchDir, tool } from "../../testkit/real-tools";
import { signZone, spkiSha256 } from "../../rehearsal/world/dnssec";

/** The tools a DNSSEC world needs (for `missing(...)`). */
export const DNSSEC_WORLD_TOOLS = ["ldns-keygen", "ldns-signzone", "unbound", "unbound-checkconf", "openssl", "ip"];

export interface Zone {
  /** e.g. "dane.test" */
  readonly name: string;
  /** Records after the SOA and NS the world adds (relative names, e.g. "@ IN MX 10 mx.dane.test."). */
  readonly records: readonly string[];
  /**
   * signed: validates (its DS is a trust anchor); unsigned: insecure (no anchor covers it); bogus: signed, but the
   * anchor is another key's, so validation fails and unbound answers SERVFAIL.
   */
  readonly dnssec: "signed" | "unsigned" | "bogus";
}

export interface DnssecWorld {
  /** Scratch directory (certificates and the like may go here too). */
  readonly dir: string;
  /** Runs a command inside the namespace (its resolv.conf is the rendered one). */
  inNs(cmd: string, args: string[], timeout?: number): SpawnSyncReturns<string>;
  close(): void;
}

/** The SPKI SHA-256 of a certificate (TLSA 3 1 1), and the zone signing: one source with the rehearsal's world. */
export { spkiSha256 };

/** A self-signed certificate and key, <dir>/<name>.crt and .key. */
export function selfSignedCert(dir: string, name: string, cn: string): void {
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", `/CN=${cn}`,
    "-keyout", join(dir, `${name}.key`), "-out", join(dir, `${name}.crt`),
  ], { stdio: "ignore" }); // prettier-ignore
}

/**
 * Starts the world in namespace `ns`; `zones` gets the scratch directory first (for certificates a TLSA record names).
 * close() stops unbound and removes the namespace and the scratch directory.
 */
export async function startDnssecWorld(
  ns: string,
  prefix: string,
  zonesIn: (dir: string) => readonly Zone[],
): Promise<DnssecWorld> {
  const dir = safeScratchDir(prefix);
  let unboundPid = "";
  const inNs = (cmd: string, args: string[], timeout = 30_000) =>
    run(tool("ip") as string, ["netns", "exec", ns, cmd, ...args], { timeout });
  const close = () => {
    if (unboundPid) run("kill", [unboundPid]);
    run(tool("ip") as string, ["netns", "del", ns]);
    rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
    removeDir(dir);
  };
  try {
    const zones = zonesIn(dir);
    const anchors: string[] = [];
    const authZones: string[] = [];
    for (const z of zones) {
      const zoneDir = join(dir, z.name);
      mkdirSync(zoneDir);
      const records = [`@ IN NS ns.${z.name}.`, "ns IN A 127.0.0.1", ...z.records];
      let served: string;
      if (z.dnssec === "unsigned") {
        served = join(zoneDir, `${z.name}.zone`);
        writeFileSync(
          served,
          [
            `$ORIGIN ${z.name}.`,
            "$TTL 300",
            `@ IN SOA ns.${z.name}. hostmaster.${z.name}. 1 3600 600 86400 300`,
            ...records,
            "",
          ].join("\n"),
        );
      } else {
        const tools = { keygen: tool("ldns-keygen") as string, signzone: tool("ldns-signzone") as string };
        const signed = signZone(zoneDir, z.name, records, tools);
        served = signed.signedFile;
        // bogus: the anchor is a second key's DS, so the zone's signatures chain to nothing the resolver trusts.
        let dsFile = signed.dsFile;
        if (z.dnssec === "bogus") {
          const other = execFileSync(tools.keygen, ["-a", "ED25519", "-k", z.name], { cwd: zoneDir }).toString().trim();
          dsFile = join(zoneDir, `${other}.ds`);
        }
        anchors.push(`    trust-anchor-file: "${dsFile}"`);
      }
      authZones.push(
        "auth-zone:",
        `    name: "${z.name}"`,
        `    zonefile: "${served}"`,
        "    for-downstream: no",
        "    for-upstream: yes",
      );
    }
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
        ...anchors,
        `include: "${join(dir, "mail-relay.conf")}"`,
        ...authZones,
        "",
      ].join("\n"),
    );
    // ip netns exec bind-mounts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf: the rendered one.
    mkdirSync(`/etc/netns/${ns}`, { recursive: true });
    writeFileSync(`/etc/netns/${ns}/resolv.conf`, renderResolvConf());
    run(tool("ip") as string, ["netns", "add", ns]);
    inNs(tool("ip") as string, ["link", "set", "lo", "up"]);
    const u = inNs(tool("unbound") as string, ["-c", join(dir, "unbound.conf")]);
    if (u.status !== 0) throw new Error(`unbound: ${u.stderr}`);
    await waitFor(() => inNs("ss", ["-Hlun", "sport = :53"]).stdout.trim() !== "", "unbound on :53");
    unboundPid = execFileSync("cat", [join(dir, "unbound.pid")])
      .toString()
      .trim();
  } catch (e) {
    close();
    throw e;
  }
  return { dir, inNs, close };
}
