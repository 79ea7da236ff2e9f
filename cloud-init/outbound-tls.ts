// Outbound TLS that cannot be downgraded in direct-delivery mode: a local DNSSEC-validating resolver (unbound on
// loopback) for DANE, and postfix-mta-sts-resolver (Debian's package and unit) for MTA-STS. Postfix asks two
// socketmaps in order (smtp_tls_policy_maps): the relay's DANE-first one (relay/tls-policy: dane-only where every MX
// has DNSSEC-validated TLSA records, so DANE wins over MTA-STS as RFC 8461 section 2 asks), then the MTA-STS
// resolver's; a domain with neither falls back to smtp_tls_security_level = dane: DANE where the MX publishes
// DNSSEC-signed TLSA records, opportunistic TLS everywhere else.
import {
  MTA_STS_ENFORCE_ZONE,
  MTA_STS_TESTING_ZONE,
  TLS_POLICY_LISTEN,
  TLS_POLICY_MAP_NAME,
} from "../relay/tls-policy/contract";
import { MTA_STS_LISTEN } from "./paths";

/**
 * mail-relay:outboundTls, direct delivery's outbound TLS. The default enforces DANE and MTA-STS; the other value is
 * the opt-out, named for the risk it accepts: a man in the middle can strip STARTTLS or present any certificate.
 */
export const OUTBOUND_TLS_MODES = ["dane-and-mta-sts", "opportunistic-accepting-downgrade"] as const;
export type OutboundTlsMode = (typeof OUTBOUND_TLS_MODES)[number];
export const DEFAULT_OUTBOUND_TLS: OutboundTlsMode = "dane-and-mta-sts";
/**
 * The server label that carries the opt-out to the policy pack (rule 18), set from mail-relay:outboundTls only; the
 * pack keeps its own copy of the name, tied to this one by test/policy/outbound-tls.test.ts.
 */
export const OUTBOUND_TLS_LABEL = "mail-relay-outbound-tls";

/**
 * Direct delivery with DANE and MTA-STS enforced: the DANE-first socketmap's unit runs, and main.cf names both maps.
 * False with a smarthost (always verified TLS to it) and with the opt-out.
 */
export function enforcesOutboundTls(s: {
  readonly smarthost?: object;
  readonly outboundTls?: OutboundTlsMode;
}): boolean {
  return !s.smarthost && (s.outboundTls ?? DEFAULT_OUTBOUND_TLS) === "dane-and-mta-sts";
}

const socketmap = (at: { readonly host: string; readonly port: number }, name: string) =>
  `socketmap:inet:${at.host}:${at.port}:${name}`;
/** The MTA-STS resolver's socketmap on loopback ("postfix" is its default zone's name). */
export const MTA_STS_POLICY_MAP = socketmap(MTA_STS_LISTEN, MTA_STS_ENFORCE_ZONE);
/** The DANE-first socketmap (relay.js tls-policy, mail-relay-tls-policy.service) on loopback. */
export const DANE_POLICY_MAP = socketmap(TLS_POLICY_LISTEN, TLS_POLICY_MAP_NAME);
/** main.cf's smtp_tls_policy_maps: Postfix takes the first map that answers, so DANE comes first. */
export const TLS_POLICY_MAPS = [DANE_POLICY_MAP, MTA_STS_POLICY_MAP] as const;

/**
 * /etc/unbound/unbound.conf.d/mail-relay.conf: loopback only, validating (Debian's own drop-in keeps the root trust
 * anchor up to date), hardened against answers that strip DNSSEC. Debian's unbound.conf includes this directory.
 */
export function renderUnboundConf(): string {
  const rows: [string, string, string?][] = [
    ["interface", "127.0.0.1", "Loopback only: the host's own resolver, never an open one."],
    ["interface", "::1"],
    ["access-control", "127.0.0.0/8 allow"],
    ["access-control", "::1/128 allow"],
    [
      "harden-dnssec-stripped",
      "yes",
      "A signed zone answered without signatures is bogus, not insecure: a man in the middle cannot strip DANE.",
    ],
    ["harden-below-nxdomain", "yes"],
    ["harden-referral-path", "yes"],
    ["qname-minimisation", "yes"],
    ["hide-identity", "yes"],
    ["hide-version", "yes"],
    ["val-log-level", "1", "A validation failure is logged with its reason (journalctl -u unbound)."],
    ["prefetch", "yes"],
  ];
  const lines = [
    "# /etc/unbound/unbound.conf.d/mail-relay.conf: rendered by cloud-init/outbound-tls.ts.",
    "# The host's DNSSEC-validating resolver: Postfix's DANE lookups (smtp_dns_support_level = dnssec) and every",
    "# other name the host resolves (resolv.conf points here) get validated answers.",
    "server:",
  ];
  for (const [k, v, why] of rows) {
    if (why) lines.push(`    # ${why}`);
    lines.push(`    ${k}: ${v}`);
  }
  return lines.join("\n") + "\n";
}

/**
 * /etc/resolv.conf: the local unbound only. trust-ad: glibc (2.31+) passes the resolver's AD bit to applications only
 * with it, and Postfix needs that bit to believe a TLSA record is DNSSEC-validated.
 */
export function renderResolvConf(): string {
  return [
    "# Rendered by cloud-init/outbound-tls.ts (mail-relay): every lookup goes through the local validating unbound.",
    "nameserver 127.0.0.1",
    "options trust-ad edns0",
    "",
  ].join("\n");
}

/**
 * /etc/mta-sts-daemon.yml: the socketmap on loopback; `testing` policies are not enforced (strict_testing: false):
 * the resolver answers "no policy" and Postfix applies its default level, as RFC 8461 section 5 asks. A second zone,
 * `testing`, does return them: Postfix never asks it; the DANE-first socketmap asks it to log them.
 */
export function renderMtaStsConf(): string {
  return [
    "# /etc/mta-sts-daemon.yml: rendered by cloud-init/outbound-tls.ts (mail-relay).",
    "# Loopback only: Postfix's smtp_tls_policy_maps asks here for each recipient domain's MTA-STS policy.",
    `host: ${MTA_STS_LISTEN.host}`,
    `port: ${MTA_STS_LISTEN.port}`,
    "reuse_port: true",
    "shutdown_timeout: 20",
    "# In memory: a restart refetches policies (HTTPS + DNS) instead of keeping a database to look after.",
    "cache:",
    "  type: internal",
    "  options:",
    "    cache_size: 10000",
    "default_zone:",
    "  # testing policies are reported by the resolver but never enforced (RFC 8461 section 5).",
    "  strict_testing: false",
    "  timeout: 4",
    "  # The MX must present the policy's name in SNI-selected certificates too.",
    "  require_sni: true",
    "zones:",
    "  # Never in main.cf: relay.js tls-policy asks this zone only to log testing policies, not to enforce them.",
    `  ${MTA_STS_TESTING_ZONE}:`,
    "    strict_testing: true",
    "    timeout: 4",
    "    require_sni: true",
    "",
  ].join("\n");
}
