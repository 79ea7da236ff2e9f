/** Rule 18, outbound TLS: direct delivery is never weaker than DANE plus MTA-STS, unless the stack accepts the risk. */
import { ofType, StackRule, TYPES, violation, Violation, asObj } from "../model";
import { mainCfs } from "../facts";
import { postfixList } from "../parse/postfix";

/**
 * The opt-out, as the program labels every server when mail-relay:outboundTls names the risk: a man in the middle can
 * strip STARTTLS or present any certificate. The pack keeps its own copy of the label and the maps below (it ships
 * alone); test/policy/outbound-tls.test.ts ties them to cloud-init/outbound-tls.ts.
 */
export const OUTBOUND_TLS_LABEL = "mail-relay-outbound-tls";
export const DOWNGRADE_ACCEPTED = "opportunistic-accepting-downgrade";
/** The DANE-first socketmap (relay.js tls-policy) and the MTA-STS resolver's, in the order Postfix must ask them. */
export const DANE_POLICY_MAP = "socketmap:inet:127.0.0.1:8462:dane";
export const MTA_STS_POLICY_MAP = "socketmap:inet:127.0.0.1:8461:postfix";

/** Levels at least as strong as dane for a direct-delivery default (dane-only refuses non-DANE MXs outright). */
const DANE_LEVELS = new Set(["dane", "dane-only"]);

/** What is missing from a direct-delivery main.cf, one line each; empty when it has DANE and MTA-STS. */
export function outboundTlsProblems(get: (key: string) => string | undefined): string[] {
  const out: string[] = [];
  const level = (get("smtp_tls_security_level") ?? "").trim().toLowerCase();
  if (!DANE_LEVELS.has(level))
    out.push(
      `smtp_tls_security_level = ${level || "(not set: none)"}; must be dane ` +
        "(authenticated TLS to MXs with DNSSEC-signed TLSA records)",
    );
  const dns = (get("smtp_dns_support_level") ?? "").trim().toLowerCase();
  if (dns !== "dnssec")
    out.push(`smtp_dns_support_level = ${dns || "(not set)"}; must be dnssec, or DANE never sees a validated TLSA`);
  const maps = postfixList(get("smtp_tls_policy_maps") ?? "").map((m) => m.toLowerCase());
  const shown = maps.join(", ") || "(not set)";
  const wrong = [
    ...(maps[0] !== DANE_POLICY_MAP
      ? [`start with the DANE-first socketmap ${DANE_POLICY_MAP} (or an MTA-STS policy overrides a domain's DANE)`]
      : []),
    ...(!maps.includes(MTA_STS_POLICY_MAP)
      ? [`ask the MTA-STS resolver ${MTA_STS_POLICY_MAP} (or enforce policies are ignored)`]
      : []),
  ];
  if (wrong.length > 0) out.push(`smtp_tls_policy_maps = ${shown}; must ${wrong.join(" and ")}`);
  return out;
}

/** 18. Direct delivery uses DANE and MTA-STS; a smarthost (relayhost) is checked by its own secure level instead. */
export const outboundTlsNotDowngradable: StackRule = {
  name: "outbound-tls-not-downgradable",
  scope: "stack",
  reason:
    "Opportunistic TLS (may) lets a man in the middle strip STARTTLS or present any certificate and read the mail; " +
    "recipients publish MTA-STS (RFC 8461) and DANE (RFC 7672) to forbid that.",
  check(rs) {
    const accepted = ofType(rs, TYPES.server).some(
      (s) => asObj(s.props.labels)?.[OUTBOUND_TLS_LABEL] === DOWNGRADE_ACCEPTED,
    );
    if (accepted) return [];
    const out: Violation[] = [];
    for (const m of mainCfs(rs)) {
      if ((m.get("relayhost") ?? "").trim() !== "") continue;
      for (const p of outboundTlsProblems((k) => m.get(k)))
        out.push(
          violation(
            this.name,
            m.push.resource,
            `direct delivery: main.cf ${p}; or accept the risk: ` +
              `pulumi config set mail-relay:outboundTls ${DOWNGRADE_ACCEPTED}`,
          ),
        );
    }
    return out;
  },
};
