/**
 * The DNS checks, against what a resolver the user chose answers now: every record the stack manages, SPF evaluated
 * for every node address, DMARC and its alignment with the DKIM signature, forward-confirmed reverse DNS, and the
 * HELO name. Each takes a `Lookup`, so tests run them on a fake resolver.
 */
import { type Lookup, DnsFailure, sameAddress } from "./dns";
import type { ExpectedNode, ManagedRecord } from "./outputs";
import { type Check, fail, pass, warn } from "./report";

/** How a check names a managed record: `TXT example.com (SPF)`. */
export function recordLabel(r: ManagedRecord): string {
  const role =
    r.type !== "TXT"
      ? ""
      : r.value.startsWith("v=spf1")
        ? " (SPF)"
        : r.value.startsWith("v=DKIM1")
          ? " (DKIM)"
          : r.value.startsWith("v=DMARC1")
            ? " (DMARC)"
            : r.value.startsWith("v=BIMI1")
              ? " (BIMI)"
              : "";
  return `${r.type} ${r.name}${role}`;
}

/** Long values keep their head and tail: two DKIM keys differ after a long common prefix. */
const short = (s: string, n = 90) => (s.length > n ? `${s.slice(0, n - 31)}…${s.slice(-30)}` : s);

/** The fix for a record that is missing or different: the exact record, and the command that puts it back. */
function recordFix(r: ManagedRecord, stack: string): string {
  const data = r.type === "MX" ? `${r.priority} ${r.value}` : r.type === "TXT" ? `"${r.value}"` : r.value;
  return (
    `the stack manages it: \`pulumi up --stack ${stack}\` puts it back (or set ${r.name} ${r.type} ${data}` +
    `${r.proxied ? ", proxied" : r.type === "A" || r.type === "AAAA" ? ", DNS only" : ""} in Cloudflare); ` +
    "then wait out the old record's TTL"
  );
}

function failure(e: unknown): string {
  return e instanceof DnsFailure ? `the resolver did not answer (${e.message})` : String(e);
}

/** Every record the stack manages exists with the content it published. */
export async function checkRecord(r: ManagedRecord, dns: Lookup, stack: string): Promise<Check> {
  const id = "dns.record";
  const label = recordLabel(r);
  try {
    switch (r.type) {
      case "A":
      case "AAAA": {
        const got = r.type === "A" ? await dns.a(r.name) : await dns.aaaa(r.name);
        return got.some((x) => sameAddress(x, r.value))
          ? pass(id, "dns", label, `${got.join(", ")} (as published)`)
          : fail(id, "dns", label, `expected ${r.value}, got ${got.join(", ") || "nothing"}`, recordFix(r, stack));
      }
      case "TXT": {
        const got = await dns.txt(r.name);
        if (got.includes(r.value)) return pass(id, "dns", label, `"${short(r.value)}" (as published)`);
        const prefix = r.value.split(/[ ;]/)[0];
        const same = got.filter((t) => t.startsWith(prefix));
        const seen = same.length > 0 ? same : got;
        return fail(
          id,
          "dns",
          label,
          `expected "${short(r.value)}", got ${seen.map((t) => `"${short(t)}"`).join(", ") || "no TXT record"}`,
          recordFix(r, stack),
        );
      }
      case "MX": {
        const got = await dns.mx(r.name);
        return got.some((m) => m.exchange === r.value && m.priority === r.priority)
          ? pass(id, "dns", `${label} ${r.value}`, `${r.priority} ${r.value} (as published)`)
          : fail(
              id,
              "dns",
              `${label} ${r.value}`,
              `expected ${r.priority} ${r.value}, got ` +
                (got.map((m) => `${m.priority} ${m.exchange}`).join(", ") || "no MX"),
              recordFix(r, stack),
            );
      }
      case "CNAME": {
        if (r.proxied) {
          // Cloudflare answers a proxied name with its own edge addresses, never the CNAME.
          const got = [...(await dns.a(r.name)), ...(await dns.aaaa(r.name))];
          return got.length > 0
            ? pass(id, "dns", label, `proxied: answers ${got.join(", ")} (Cloudflare's edge)`)
            : fail(id, "dns", label, "no address (a proxied name answers with Cloudflare's edge)", recordFix(r, stack));
        }
        const got = await dns.cname(r.name);
        return got.includes(r.value)
          ? pass(id, "dns", label, `${r.value} (as published)`)
          : fail(id, "dns", label, `expected ${r.value}, got ${got.join(", ") || "nothing"}`, recordFix(r, stack));
      }
      default:
        return warn(id, "dns", label, `the doctor cannot check ${r.type} records`, "check it by hand (dig)");
    }
  } catch (e) {
    return warn(id, "dns", label, failure(e), "retry, or choose another resolver with --resolver 1.1.1.1");
  }
}

/** SPF's verdict for one address, from the shared evaluator (infra/spf.ts). */
export interface SpfVerdict {
  readonly result: string;
  /** The lookups the record costs a receiver in the worst case (every include followed), whatever the address. */
  readonly lookups: number;
  /** The term that decided, e.g. `ip4:203.0.113.11`. */
  readonly mechanism?: string;
  /** Why the result is permerror, temperror or none. */
  readonly problem?: string;
  /** What kept the count from being complete or made it too high (an include that does not resolve, a loop). */
  readonly countProblems: readonly string[];
}

export type SpfEvaluate = (domain: string, ip: string) => Promise<SpfVerdict>;

/** SPF evaluated for every node address gives pass, within 10 DNS lookups. */
export async function checkSpf(
  domain: string,
  ip: string,
  node: string,
  evaluate: SpfEvaluate,
  spfRecord: ManagedRecord | undefined,
  stack: string,
): Promise<Check> {
  const id = "dns.spf";
  const subject = `SPF for ${ip} (${node}) sending as ${domain}`;
  const mech = ip.includes(":") ? `ip6:${ip}` : `ip4:${ip}`;
  const fix =
    `the SPF record of ${domain} must authorise ${ip} (${mech}): \`pulumi up --stack ${stack}\` publishes ` +
    (spfRecord ? `"${spfRecord.value}"` : "it");
  let v: SpfVerdict;
  try {
    v = await evaluate(domain, ip);
  } catch (e) {
    return warn(id, "dns", subject, `could not evaluate: ${failure(e)}`, "retry, or choose another --resolver");
  }
  const by = v.mechanism ? ` by ${v.mechanism}` : "";
  const why = v.problem ? `: ${v.problem}` : "";
  const count = `the record needs ${v.lookups} of 10 DNS lookups`;
  if (v.lookups > 10)
    return fail(
      id,
      "dns",
      subject,
      `${v.result}${by}, but ${count}: over the limit, receivers answer permerror`,
      "remove includes (mail-relay:spf.includes) or replace them with their ip4:/ip6: ranges, then " +
        `\`pulumi up --stack ${stack}\``,
    );
  if (v.result !== "pass") return fail(id, "dns", subject, `${v.result}${by}${why}; ${count}`, fix);
  if (v.countProblems.length > 0)
    return warn(
      id,
      "dns",
      subject,
      `pass${by}, but the lookups could not all be counted: ${v.countProblems.join("; ")}`,
      "check the includes with `dig TXT <include>`; an include that does not resolve is permerror at receivers",
    );
  return pass(id, "dns", subject, `pass${by}; ${count}`);
}

/** DMARC tags as a map (`p`, `adkim`, ...), or undefined when the text is not a DMARC record. */
export function parseDmarc(txt: string): Map<string, string> | undefined {
  const tags = new Map(
    txt
      .split(";")
      .map((t) => t.trim())
      .filter(Boolean)
      .map((t) => {
        const i = t.indexOf("=");
        return [t.slice(0, i).trim().toLowerCase(), t.slice(i + 1).trim()] as [string, string];
      }),
  );
  return tags.get("v") === "DMARC1" ? tags : undefined;
}

/** Relaxed alignment without a public-suffix list: one domain is the other or a subdomain of it. */
function relaxedAligned(a: string, b: string): boolean {
  return a === b || a.endsWith(`.${b}`) || b.endsWith(`.${a}`);
}

/**
 * DMARC is published for the From domain and the relay's signature (d=) aligns with it under the record's `adkim`
 * (the relay also uses the From address as the envelope sender, so SPF aligns under `aspf` by construction).
 */
export async function checkDmarc(
  fromDomain: string,
  signingDomain: string,
  dns: Lookup,
  stack: string,
): Promise<Check> {
  const id = "dns.dmarc";
  const subject = `DMARC for ${fromDomain} (relay signs d=${signingDomain})`;
  let records: string[];
  try {
    records = (await dns.txt(`_dmarc.${fromDomain}`)).filter((t) => /^v=DMARC1/i.test(t));
  } catch (e) {
    return warn(id, "dns", subject, failure(e), "retry, or choose another --resolver");
  }
  const fix = `publish one TXT at _dmarc.${fromDomain} (mail-relay:dmarc): \`pulumi up --stack ${stack}\``;
  if (records.length === 0) return fail(id, "dns", subject, "no DMARC record", fix);
  if (records.length > 1)
    return fail(id, "dns", subject, `${records.length} DMARC records: receivers ignore them all`, fix);
  const tags = parseDmarc(records[0]);
  if (!tags || !tags.get("p"))
    return fail(id, "dns", subject, `"${records[0]}" has no p= tag (receivers ignore it)`, fix);
  const adkim = (tags.get("adkim") ?? "r").toLowerCase();
  const aligned =
    adkim === "s"
      ? signingDomain === fromDomain
      : relaxedAligned(signingDomain.toLowerCase(), fromDomain.toLowerCase());
  if (!aligned)
    return fail(
      id,
      "dns",
      subject,
      `p=${tags.get("p")} adkim=${adkim}: d=${signingDomain} does not align with ${fromDomain}`,
      `sign with the From domain (mail-relay:domain ${fromDomain}) or relax adkim (mail-relay:dmarc.adkim r), then ` +
        `\`pulumi up --stack ${stack}\``,
    );
  return pass(
    id,
    "dns",
    subject,
    `p=${tags.get("p")}, adkim=${adkim}, aspf=${tags.get("aspf") ?? "r"}: the signature d=${signingDomain} aligns`,
  );
}

/** Forward-confirmed reverse DNS: the address's PTR names a host whose A/AAAA gives the same address back. */
export async function checkFcrdns(ip: string, node: ExpectedNode, dns: Lookup, stack: string): Promise<Check> {
  const id = "dns.fcrdns";
  const subject = `reverse DNS of ${ip} (${node.name})`;
  const fix =
    `set the PTR of ${ip} to ${node.mtaHostname}: \`pulumi up --stack ${stack}\` (the stack's hcloud.Rdns), or ` +
    `\`hcloud primary-ip set-rdns --ip ${ip} --hostname ${node.mtaHostname} <primary-ip>\``;
  try {
    const names = await dns.ptr(ip);
    if (names.length === 0) return fail(id, "dns", subject, "no PTR record", fix);
    for (const name of names) {
      const back = ip.includes(":") ? await dns.aaaa(name) : await dns.a(name);
      if (back.some((x) => sameAddress(x, ip))) {
        if (name !== node.mtaHostname.toLowerCase())
          return warn(
            id,
            "dns",
            subject,
            `PTR ${name} -> ${ip} confirms, but it is not the HELO name ${node.mtaHostname}`,
            fix,
          );
        return pass(id, "dns", subject, `PTR ${name} -> ${back.join(", ")} (forward-confirmed)`);
      }
    }
    const forward = await Promise.all(
      names.map(
        async (n) => `${n} -> ${(ip.includes(":") ? await dns.aaaa(n) : await dns.a(n)).join(", ") || "nothing"}`,
      ),
    );
    return fail(id, "dns", subject, `PTR ${forward.join("; ")}: not back to ${ip}`, fix);
  } catch (e) {
    return warn(id, "dns", subject, failure(e), "retry, or choose another --resolver");
  }
}

/** The name the node says in HELO/EHLO resolves to the node's own addresses. */
export async function checkHelo(helo: string, source: string, node: ExpectedNode, dns: Lookup, stack: string) {
  const id = "dns.helo";
  const subject = `HELO name ${helo} (${node.name}, ${source})`;
  try {
    const v4 = await dns.a(helo);
    const v6 = node.ipv6 ? await dns.aaaa(helo) : [];
    const missing = [
      ...(v4.some((x) => sameAddress(x, node.ipv4)) ? [] : [node.ipv4]),
      ...(node.ipv6 && !v6.some((x) => sameAddress(x, node.ipv6!)) ? [node.ipv6] : []),
    ];
    const saw = [...v4, ...v6].join(", ") || "nothing";
    if (missing.length === 0) return pass(id, "dns", subject, `resolves to ${saw}`);
    return fail(
      id,
      "dns",
      subject,
      `resolves to ${saw}, not to ${missing.join(", ")}`,
      helo === node.mtaHostname
        ? `\`pulumi up --stack ${stack}\` publishes ${helo} A ${node.ipv4}${node.ipv6 ? ` and AAAA ${node.ipv6}` : ""}`
        : `Postfix says ${helo} but the stack published ${node.mtaHostname}: ` +
            `redeploy (\`pulumi up --stack ${stack}\`)` +
            ` so smtp_helo_name is ${node.mtaHostname} again`,
    );
  } catch (e) {
    return warn(id, "dns", subject, failure(e), "retry, or choose another --resolver");
  }
}
