// The DANE-first decision for one recipient domain (RFC 8461 section 2: where a domain has DANE, DANE wins over
// MTA-STS). Postfix asks this socketmap before postfix-mta-sts-resolver's; the answers mean:
//   OK dane-only  every MX of the domain has DNSSEC-validated, usable TLSA records: authenticated TLS or nothing;
//   NOTFOUND      no DANE for the whole domain: Postfix asks the MTA-STS socketmap next, then applies `dane`;
//   TEMP          the answer could not be trusted (a bogus, i.e. failed-validation, answer is SERVFAIL; a timeout):
//                 Postfix defers the message instead of falling through to a weaker policy.
import type { DnsAnswer, DnsLookup } from "./dns-client";

export type Decision =
  | { readonly kind: "dane-only"; readonly mxs: readonly string[] }
  | { readonly kind: "notfound"; readonly why: string }
  | { readonly kind: "temp"; readonly why: string };

/** RFC 7672 section 3.1.3: DANE-TA(2) and DANE-EE(3) are the usages SMTP can use; PKIX-TA/EE (0, 1) are not. */
const USABLE_TLSA_USAGES = new Set([2, 3]);
/** More MX hosts than this is no sane mail domain; the lookup would only cost time. */
const MAX_MX_HOSTS = 16;

/** A recipient domain as Postfix hands it: a bare DNS name (no [nexthop], no .parent form, no IP literal). */
export function isLookupDomain(key: string): boolean {
  return (
    key.length <= 253 &&
    /^(?=.*[a-z])[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?)+\.?$/i.test(key)
  );
}

/** Bogus (validation failed) or unreachable: never a reason to fall back to a weaker policy. */
function untrusted(a: DnsAnswer): string | undefined {
  if (a.rcode === "SERVFAIL") return "SERVFAIL (DNSSEC validation failed, or the resolver could not answer)";
  if (a.rcode !== "NOERROR" && a.rcode !== "NXDOMAIN") return a.rcode;
  return undefined;
}

function typed<T extends DnsAnswer["answers"][number]["type"]>(a: DnsAnswer, type: T) {
  return a.answers.filter((r): r is Extract<DnsAnswer["answers"][number], { type: T }> => r.type === type);
}

/** The DANE-first policy of `domain`, from validated MX and TLSA answers only. */
export async function decide(domain: string, lookup: DnsLookup): Promise<Decision> {
  const name = domain.replace(/\.$/, "").toLowerCase();
  let mx: DnsAnswer;
  try {
    mx = await lookup(name, "MX");
  } catch (e) {
    return { kind: "temp", why: `MX ${name}: ${e instanceof Error ? e.message : String(e)}` };
  }
  const bad = untrusted(mx);
  if (bad) return { kind: "temp", why: `MX ${name}: ${bad}` };
  if (!mx.authenticated) return { kind: "notfound", why: `MX ${name}: not DNSSEC-validated (insecure zone)` };
  if (mx.rcode === "NXDOMAIN") return { kind: "notfound", why: `MX ${name}: NXDOMAIN` };
  const exchanges = typed(mx, "MX").map((r) => r.data.exchange.replace(/\.$/, "").toLowerCase());
  // RFC 7505 null MX: the domain accepts no mail; Postfix bounces it, no policy needed.
  if (exchanges.length === 1 && exchanges[0] === "") return { kind: "notfound", why: `MX ${name}: null MX` };
  // No MX: the domain itself is the MX (RFC 5321 section 5.1), and its own TLSA records count (RFC 7672 2.2.1).
  const hosts = [...new Set(exchanges.length === 0 ? [name] : exchanges)].filter((h) => h !== "");
  if (hosts.length > MAX_MX_HOSTS) return { kind: "notfound", why: `MX ${name}: ${hosts.length} MX hosts` };
  const results = await Promise.all(
    hosts.map(async (h) => {
      try {
        return { host: h, answer: await lookup(`_25._tcp.${h}`, "TLSA") };
      } catch (e) {
        return { host: h, error: e instanceof Error ? e.message : String(e) };
      }
    }),
  );
  const missing: string[] = [];
  for (const r of results) {
    if ("error" in r) return { kind: "temp", why: `TLSA _25._tcp.${r.host}: ${r.error}` };
    const why = untrusted(r.answer);
    if (why) return { kind: "temp", why: `TLSA _25._tcp.${r.host}: ${why}` };
    const usable = typed(r.answer, "TLSA").filter((t) => USABLE_TLSA_USAGES.has(t.data.usage));
    if (!r.answer.authenticated || usable.length === 0) missing.push(r.host);
  }
  if (missing.length > 0)
    return {
      kind: "notfound",
      why: `no validated, usable TLSA record for ${missing.join(", ")} (of ${hosts.length} MX host(s))`,
    };
  return { kind: "dane-only", mxs: hosts };
}
