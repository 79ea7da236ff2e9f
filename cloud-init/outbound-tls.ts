// Outbound TLS that cannot be downgraded in direct-delivery mode: a local DNSSEC-validating resolver (unbound on
// loopback) for DANE, and postfix-mta-sts-resolver (Debian's package and unit) for MTA-STS. Postfix asks the
// resolver's socketmap for the recipient domain's MTA-STS policy first (smtp_tls_policy_maps); a domain without an
// enforced policy falls back to smtp_tls_security_level = dane: DANE where the MX publishes DNSSEC-signed TLSA
// records, opportunistic TLS everywhere else.
import { MTA_STS_LISTEN } from "./paths";

/** main.cf's smtp_tls_policy_maps: the resolver's socketmap on loopback ("postfix" is its default zone's name). */
export const MTA_STS_POLICY_MAP = `socketmap:inet:${MTA_STS_LISTEN.host}:${MTA_STS_LISTEN.port}:postfix`;

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
 * the resolver answers "no policy" and Postfix applies its default level, as RFC 8461 section 5 asks.
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
    "",
  ].join("\n");
}
