/** Rule 18, outbound TLS: direct delivery is never weaker than DANE plus MTA-STS, unless the stack accepts the risk. */
import { ofType, StackRule, TYPES, violation, Violation, asObj } from "../model";
import { mainCfs } from "../facts";
import { postfixList } from "../parse/postfix";

/** The server label that accepts the risk: a man in the middle can strip STARTTLS or present any certificate. */
export const DOWNGRADE_RISK_LABEL = "mail-relay-outbound-tls-downgrade-risk";

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
  const maps = postfixList(get("smtp_tls_policy_maps") ?? "");
  if (!maps.some((m) => m.toLowerCase().startsWith("socketmap:")))
    out.push(
      `smtp_tls_policy_maps = ${maps.join(", ") || "(not set)"}; must ask the MTA-STS resolver ` +
        "(socketmap:inet:127.0.0.1:8461:postfix), or enforce policies are ignored",
    );
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
    const accepted = ofType(rs, TYPES.server).some((s) => asObj(s.props.labels)?.[DOWNGRADE_RISK_LABEL] === "accepted");
    if (accepted) return [];
    const out: Violation[] = [];
    for (const m of mainCfs(rs)) {
      if ((m.get("relayhost") ?? "").trim() !== "") continue;
      for (const p of outboundTlsProblems((k) => m.get(k)))
        out.push(
          violation(
            this.name,
            m.push.resource,
            `direct delivery: main.cf ${p}; or accept the risk with the server label ${DOWNGRADE_RISK_LABEL}=accepted`,
          ),
        );
    }
    return out;
  },
};
