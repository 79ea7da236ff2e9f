/**
 * The host's unbound in the rehearsal. The world has no signed root, so the deployed resolver (validating from the
 * real root's trust anchor, Debian's root-auto-trust-anchor-file drop-in) would find every answer bogus. This
 * drop-in, written into the host's image before it boots, keeps the validator on and:
 *
 * - forwards every name to the world's dnsmasq, and marks each top-level domain the world serves `domain-insecure`
 *   (unbound refuses `domain-insecure: "."` beside Debian's root auto-trust-anchor: "anchor cannot be with and
 *   without autotrust"; below the root it is accepted), so the unsigned world resolves as insecure;
 * - gives each signed zone of the world (rehearsal/world/tls-world.ts) its DS as a `trust-anchor` and a `stub-zone`
 *   to its authoritative server: a trust anchor overrides `domain-insecure` above it, so these answers are
 *   DNSSEC-validated (AD bit) and a TLSA record there is DANE for the host's Postfix, as on the internet.
 *
 * The host still resolves through its own unbound (resolv.conf = 127.0.0.1, trust-ad, as deployed).
 */
import { WORLD } from "./common";

/** Sorts after Debian's and the program's drop-ins (unbound.conf.d is read in name order). */
export const REHEARSAL_UNBOUND_DROPIN = "etc/unbound/unbound.conf.d/zz-rehearsal-world.conf";

export interface WorldSignedZone {
  readonly zone: string;
  /** DS records (presentation format). */
  readonly ds: readonly string[];
  /** Its authoritative server's address. */
  readonly server: string;
}

/** The top-level domains of every name a dnsmasq config serves (records, PTRs, local= and server= zones). */
export function servedTlds(dnsmasqConf: string): string[] {
  const names = [
    ...dnsmasqConf.matchAll(/^(?:host-record|txt-record|mx-host|cname|ptr-record)=([^,\s]+)/gm),
    ...dnsmasqConf.matchAll(/^(?:local|server)=\/([^/]+)\//gm),
  ].map((m) => m[1]!.replace(/\.$/, "").toLowerCase());
  return [...new Set(names.map((n) => n.split(".").pop()!).filter(Boolean))].sort();
}

export function renderRehearsalUnboundConf(
  insecureTlds: readonly string[],
  signed: readonly WorldSignedZone[],
): string {
  const lines = [
    "# mail-relay rehearsal (rehearsal/world/resolver.ts): the world's DNS stands in for the internet's root.",
    "server:",
    '    module-config: "validator iterator"',
    "    # The unsigned world: insecure below each of its top-level domains (the world's root is unsigned).",
    ...insecureTlds.map((t) => `    domain-insecure: "${t}"`),
    "    # The world's signed zones: validated from their own trust anchors (they override domain-insecure).",
    ...signed.flatMap((z) => z.ds.map((ds) => `    trust-anchor: "${ds}"`)),
    // The world's servers sit in documentation ranges; nothing here is a private address to refuse.
    ...signed.flatMap((z) => ["stub-zone:", `    name: "${z.zone}"`, `    stub-addr: ${z.server}`]),
    "forward-zone:",
    '    name: "."',
    `    forward-addr: ${WORLD.dns}`,
    "",
  ];
  return lines.join("\n");
}
