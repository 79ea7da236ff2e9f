/**
 * The outbound TLS recipients of the rehearsal's mail world (issue 22's proof): one recipient domain per policy the
 * host's Postfix must honour, each with its own MX (rehearsal/world/mx.ts on its own address, restarted with another
 * certificate, or without STARTTLS, to break or fix it):
 *
 * - `plain.example`: no MTA-STS, no DANE, its MX offers no STARTTLS: opportunistic, delivered in clear text;
 * - `sts.example`: MTA-STS `enforce` (policy over HTTPS from the world CA's certificate), mx: mx.sts.example;
 * - `ststest.example`: MTA-STS `testing`, its MX presents a certificate for another name;
 * - `dane.example`: a zone signed with ldns-signzone, served by an authoritative unbound (auth-zone, for-downstream)
 *   that the host's unbound reaches through a stub-zone and validates with the zone's DS as trust anchor
 *   (rehearsal/world/resolver.ts); TLSA 3 1 1 for its MX;
 * - `both.example`: signed with a TLSA 3 1 1 AND an MTA-STS `enforce` policy; its MX presents a self-signed
 *   certificate that the TLSA pins (DANE accepts it, MTA-STS cannot).
 *
 * The unsigned domains are served by the world's dnsmasq (tlsWorldDnsmasqLines), which delegates the signed ones.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Processes } from "../proc";
import { issueCert, waitTcp, type Names, type WorldCa } from "./common";
import { signZone, spkiSha256, type SignedZone } from "./dnssec";

export interface TlsDomain {
  readonly domain: string;
  readonly mx: string;
  readonly ip: string;
  /** Its MTA-STS policy's mode, if it publishes one. */
  readonly sts?: "enforce" | "testing";
  /** Its zone is DNSSEC-signed and publishes TLSA 3 1 1 for its MX. */
  readonly signed?: boolean;
}

export const TLS_WORLD = {
  /** The authoritative server of the signed zones (unbound, auth-zone). */
  authDns: "198.51.100.54",
  /** The HTTPS server of every `mta-sts.<domain>` (one certificate naming them all). */
  policyServer: "198.51.100.35",
  domains: {
    opportunistic: { domain: "plain.example", mx: "mx.plain.example", ip: "198.51.100.30" },
    stsEnforce: { domain: "sts.example", mx: "mx.sts.example", ip: "198.51.100.31", sts: "enforce" },
    stsTesting: { domain: "ststest.example", mx: "mx.ststest.example", ip: "198.51.100.32", sts: "testing" },
    dane: { domain: "dane.example", mx: "mx.dane.example", ip: "198.51.100.33", signed: true },
    daneAndSts: { domain: "both.example", mx: "mx.both.example", ip: "198.51.100.34", sts: "enforce", signed: true },
  },
} as const satisfies { authDns: string; policyServer: string; domains: Record<string, TlsDomain> };

export type TlsDomainKey = keyof typeof TLS_WORLD.domains;
const DOMAINS = TLS_WORLD.domains as Record<TlsDomainKey, TlsDomain>;
const KEYS = Object.keys(DOMAINS) as TlsDomainKey[];

/** Every address the TLS world listens on (added to the world's loopback). */
export const TLS_WORLD_ADDRESSES: readonly string[] = [
  TLS_WORLD.authDns,
  TLS_WORLD.policyServer,
  ...KEYS.map((k) => DOMAINS[k].ip),
];

/** The policy's id in `_mta-sts` TXT (RFC 8461 section 3.1): constant, the policy never changes during a run. */
const STS_ID = "20261205T000000";

export function stsPolicy(d: TlsDomain): string {
  return ["version: STSv1", `mode: ${d.sts}`, `mx: ${d.mx}`, "max_age: 86400", ""].join("\r\n");
}

/** dnsmasq lines: the unsigned domains' records; the signed zones delegated to their authoritative server. */
export function tlsWorldDnsmasqLines(): string[] {
  const lines: string[] = [];
  for (const k of KEYS) {
    const d = DOMAINS[k];
    if (d.signed) {
      lines.push(`server=/${d.domain}/${TLS_WORLD.authDns}`);
      continue;
    }
    lines.push(`mx-host=${d.domain},${d.mx},10`, `host-record=${d.mx},${d.ip}`, `local=/${d.domain}/`);
    if (d.sts)
      lines.push(
        `txt-record=_mta-sts.${d.domain},"v=STSv1; id=${STS_ID}"`,
        `host-record=mta-sts.${d.domain},${TLS_WORLD.policyServer}`,
      );
  }
  return lines;
}

/** How an MX presents itself: a certificate of the world's (by name), or no STARTTLS at all. */
export type MxMode = "no-starttls" | CertName;
type CertName =
  | "sts-good" /** world CA, mx.sts.example */
  | "wrong-name" /** world CA, another name */
  | "dane-pinned" /** self-signed, the key dane.example's TLSA names */
  | "dane-other" /** self-signed, another key */
  | "both-pinned" /** self-signed, the key both.example's TLSA names */
  | "both-ca"; /** world CA, mx.both.example, the same pinned key: both policies accept it */

/** What each MX presents when the world starts. */
const INITIAL: Record<TlsDomainKey, MxMode> = {
  opportunistic: "no-starttls",
  stsEnforce: "sts-good",
  stsTesting: "wrong-name",
  dane: "dane-pinned",
  daneAndSts: "both-pinned",
};

export class TlsWorld {
  private readonly modes = { ...INITIAL };

  constructor(
    private readonly n: Names,
    private readonly dir: string,
    private readonly procs: Processes,
    private readonly certs: Record<CertName, { key: string; cert: string }>,
    /** The signed zones: the host's resolver takes their DS records as trust anchors. */
    readonly zones: readonly SignedZone[],
  ) {}

  static domain(k: TlsDomainKey): TlsDomain {
    return DOMAINS[k];
  }

  /** Where `k`'s MX writes what it accepted (one .eml + .json per copy, as the main MX). */
  mxDir(k: TlsDomainKey): string {
    return path.join(this.dir, "tls-mx", k);
  }

  mode(k: TlsDomainKey): MxMode {
    return this.modes[k];
  }

  /** (Re)starts `k`'s MX presenting `mode`; returns when it answers. */
  async setMx(k: TlsDomainKey, mode: MxMode): Promise<void> {
    const d = DOMAINS[k];
    const name = `TLS MX ${d.mx}`;
    await this.procs.stop(name);
    const out = fs.openSync(path.join(this.dir, "tls-mx.log"), "a");
    const tls =
      mode === "no-starttls" ? ["--no-starttls"] : ["--tls", `${this.certs[mode].key},${this.certs[mode].cert}`];
    this.procs.start(
      name,
      "ip",
      [
        "netns", "exec", this.n.world, process.execPath, "--import", "tsx", path.join(__dirname, "mx.ts"),
        this.mxDir(k), d.ip, "--name", d.mx, ...tls,
      ], // prettier-ignore
      { stdio: ["ignore", out, out] },
    );
    this.modes[k] = mode;
    await waitTcp(this.n.world, d.ip, 25, 20_000);
  }
}

/** unbound, authoritative only, for the signed zones (pre-signed files, served as they are). */
export function renderAuthUnboundConf(dir: string, zones: readonly SignedZone[]): string {
  return [
    "# mail-relay rehearsal (rehearsal/world/tls-world.ts): the signed zones' authoritative server.",
    "server:",
    '    chroot: ""',
    '    username: ""',
    `    directory: "${dir}"`,
    `    pidfile: "${path.join(dir, "unbound.pid")}"`,
    "    do-daemonize: no",
    "    use-syslog: no",
    '    logfile: ""',
    `    interface: ${TLS_WORLD.authDns}`,
    "    port: 53",
    "    access-control: 0.0.0.0/0 allow",
    "    access-control: ::/0 allow",
    '    module-config: "iterator"',
    ...zones.flatMap((z) => [
      "auth-zone:",
      `    name: "${z.zone}"`,
      `    zonefile: "${z.signedFile}"`,
      "    for-downstream: yes",
      "    for-upstream: no",
      "    fallback-enabled: no",
    ]),
    "",
  ].join("\n");
}

/** The records of a signed zone `d` (its MX pinned by TLSA 3 1 1 to `pinned`'s key; its MTA-STS if it has one). */
function signedRecords(d: TlsDomain, pinnedCert: string): string[] {
  const host = d.mx.slice(0, -(d.domain.length + 1));
  return [
    `@ IN NS ns.${d.domain}.`,
    `ns IN A ${TLS_WORLD.authDns}`,
    `@ IN MX 10 ${d.mx}.`,
    `${host} IN A ${d.ip}`,
    `_25._tcp.${host} IN TLSA 3 1 1 ${spkiSha256(pinnedCert)}`,
    ...(d.sts ? [`_mta-sts IN TXT "v=STSv1; id=${STS_ID}"`, `mta-sts IN A ${TLS_WORLD.policyServer}`] : []),
  ];
}

/**
 * Makes the certificates and signed zones, starts the authoritative server, the MTA-STS policy server and every
 * MX; returns when each answers.
 */
export async function startTlsWorld(ca: WorldCa, n: Names, dir: string, procs: Processes): Promise<TlsWorld> {
  const d = DOMAINS;
  const certs = {
    "sts-good": await issueCert(ca, "mx-sts-good", [d.stsEnforce.mx]),
    "wrong-name": await issueCert(ca, "mx-wrong-name", ["mx.elsewhere.example"]),
    "dane-pinned": await issueCert(ca, "mx-dane-pinned", [d.dane.mx], { selfSigned: true }),
    "dane-other": await issueCert(ca, "mx-dane-other", [d.dane.mx], { selfSigned: true }),
    "both-pinned": await issueCert(ca, "mx-both-pinned", [d.daneAndSts.mx], { selfSigned: true }),
  } as Record<CertName, { key: string; cert: string }>;
  certs["both-ca"] = await issueCert(ca, "mx-both-ca", [d.daneAndSts.mx], { key: certs["both-pinned"].key });
  const policyNames = KEYS.filter((k) => d[k].sts).map((k) => `mta-sts.${d[k].domain}`);
  const policyCert = await issueCert(ca, "mta-sts", policyNames);

  const zoneDir = path.join(dir, "signed-zones");
  fs.rmSync(zoneDir, { recursive: true, force: true });
  fs.mkdirSync(zoneDir, { recursive: true });
  const pinned: Partial<Record<TlsDomainKey, CertName>> = { dane: "dane-pinned", daneAndSts: "both-pinned" };
  const zones = KEYS.filter((k) => d[k].signed).map((k) =>
    signZone(zoneDir, d[k].domain, signedRecords(d[k], certs[pinned[k]!].cert)),
  );
  fs.writeFileSync(path.join(zoneDir, "unbound.conf"), renderAuthUnboundConf(zoneDir, zones));
  const inWorld = (name: string, logFile: string, args: string[]) => {
    const out = fs.openSync(path.join(dir, logFile), "a");
    procs.start(name, "ip", ["netns", "exec", n.world, ...args], { stdio: ["ignore", out, out] });
  };
  inWorld("authoritative DNS (signed zones)", "auth-dns.log", [
    "unbound",
    "-d",
    "-c",
    path.join(zoneDir, "unbound.conf"),
  ]);

  const policies = Object.fromEntries(
    KEYS.filter((k) => d[k].sts).map((k) => [`mta-sts.${d[k].domain}`, stsPolicy(d[k])]),
  );
  fs.writeFileSync(path.join(dir, "mta-sts-policies.json"), JSON.stringify(policies));
  inWorld("MTA-STS policy server", "mta-sts-https.log", [
    ...[process.execPath, "--import", "tsx", path.join(__dirname, "mta-sts-https.ts")],
    ...[TLS_WORLD.policyServer, policyCert.key, policyCert.cert, path.join(dir, "mta-sts-policies.json")],
  ]);

  const world = new TlsWorld(n, dir, procs, certs, zones);
  for (const k of KEYS) fs.rmSync(world.mxDir(k), { recursive: true, force: true });
  await Promise.all(KEYS.map((k) => world.setMx(k, INITIAL[k])));
  await waitTcp(n.world, TLS_WORLD.authDns, 53, 20_000);
  await waitTcp(n.world, TLS_WORLD.policyServer, 443, 20_000);
  return world;
}
