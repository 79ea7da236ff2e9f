/**
 * Reputation: each node address against the DNS blocklists receivers consult, and the domain against Spamhaus DBL.
 * An answer in 127.0.0.0/8 means listed, except Spamhaus's refusals (127.255.255.x: queried through a public or
 * anonymous resolver, over the free limit, or malformed), which say nothing about the address ("cannot tell").
 */
import { type Lookup, reversedLabels } from "./dns";
import { type Check, fail, pass, warn } from "./report";

export interface Blocklist {
  readonly zone: string;
  readonly name: string;
  /** Where the listed party asks to be removed. */
  readonly delisting: string;
  /** Whether the list answers for IPv6 addresses. */
  readonly ipv6: boolean;
}

/** The address lists the doctor asks, as the issue names them. */
export const IP_BLOCKLISTS: readonly Blocklist[] = [
  { zone: "zen.spamhaus.org", name: "Spamhaus ZEN", delisting: "https://check.spamhaus.org/", ipv6: true },
  {
    zone: "b.barracudacentral.org",
    name: "Barracuda",
    delisting: "https://www.barracudacentral.org/rbl/removal-request",
    ipv6: false,
  },
  { zone: "bl.spamcop.net", name: "SpamCop", delisting: "https://www.spamcop.net/bl.shtml", ipv6: false },
  { zone: "bl.mailspike.net", name: "Mailspike", delisting: "https://mailspike.org/iplookup.html", ipv6: false },
  { zone: "psbl.surriel.com", name: "PSBL", delisting: "https://psbl.org/remove", ipv6: false },
  {
    zone: "dnsbl-1.uceprotect.net",
    name: "UCEPROTECT level 1",
    delisting: "https://www.uceprotect.net/en/rblcheck.php",
    ipv6: false,
  },
];

export const DOMAIN_BLOCKLIST: Blocklist = {
  zone: "dbl.spamhaus.org",
  name: "Spamhaus DBL",
  delisting: "https://check.spamhaus.org/",
  ipv6: false,
};

/** What one blocklist answer means. */
export type Listing = { kind: "listed"; codes: string[] } | { kind: "clean" } | { kind: "cannot tell"; why: string };

/** Reads a blocklist's A answer (already fetched): empty = not listed; 127.255.255.x = Spamhaus refused to answer. */
export function readListing(answers: readonly string[]): Listing {
  if (answers.length === 0) return { kind: "clean" };
  const refused = answers.filter((a) => a.startsWith("127.255.255."));
  if (refused.length > 0)
    return {
      kind: "cannot tell",
      why:
        `the list refused to answer (${refused.join(", ")}: the query came through a public or shared resolver, ` +
        "or over its free limit)",
    };
  const listed = answers.filter((a) => a.startsWith("127."));
  if (listed.length > 0) return { kind: "listed", codes: listed };
  return { kind: "cannot tell", why: `an answer outside 127.0.0.0/8 (${answers.join(", ")}): the resolver rewrites` };
}

async function ask(name: string, dns: Lookup): Promise<Listing> {
  try {
    return readListing(await dns.a(name));
  } catch (e) {
    return { kind: "cannot tell", why: `no answer (${e instanceof Error ? e.message : String(e)})` };
  }
}

function verdict(subject: string, list: Blocklist, query: string, l: Listing, id: string): Check {
  switch (l.kind) {
    case "clean":
      return pass(id, "reputation", subject, `not listed on ${list.name} (${query}: no such name)`);
    case "listed":
      return fail(
        id,
        "reputation",
        subject,
        `LISTED on ${list.name} (${query} -> ${l.codes.join(", ")})`,
        `find and stop what sent the spam, then request removal at ${list.delisting}`,
      );
    case "cannot tell":
      return warn(
        id,
        "reputation",
        subject,
        `cannot tell for ${list.name}: ${l.why}`,
        "ask through your own recursive resolver (--resolver <an unbound on this machine>), " +
          `or look it up at ${list.delisting}`,
      );
    default: {
      const never: never = l;
      return never;
    }
  }
}

/** One check per (address, list) the list covers. */
export async function checkIpBlocklists(ip: string, node: string, dns: Lookup): Promise<Check[]> {
  const lists = IP_BLOCKLISTS.filter((l) => l.ipv6 || !ip.includes(":"));
  return Promise.all(
    lists.map(async (list) => {
      const q = `${reversedLabels(ip)}.${list.zone}`;
      return verdict(`${ip} (${node}) on ${list.zone}`, list, q, await ask(q, dns), "reputation.dnsbl");
    }),
  );
}

export async function checkDomainBlocklist(domain: string, dns: Lookup): Promise<Check> {
  const q = `${domain}.${DOMAIN_BLOCKLIST.zone}`;
  return verdict(`${domain} on ${DOMAIN_BLOCKLIST.zone}`, DOMAIN_BLOCKLIST, q, await ask(q, dns), "reputation.dbl");
}
