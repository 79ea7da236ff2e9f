/**
 * DNS as the doctor asks it: one small interface (the checks take it, so tests hand them a fake), and its
 * implementation on Node's resolver, pointed at the system's servers or at one the user chooses (`--resolver`).
 * "No such name" and "no such record" are empty answers; anything else (timeout, SERVFAIL, REFUSED) is thrown,
 * because a check must not read "the resolver failed" as "the record is absent".
 */
import { promises as dns } from "node:dns";

export interface MxAnswer {
  readonly exchange: string;
  readonly priority: number;
}

export interface Lookup {
  /** Each TXT record with its strings joined, as SPF, DKIM and DMARC read it. */
  txt(name: string): Promise<string[]>;
  a(name: string): Promise<string[]>;
  aaaa(name: string): Promise<string[]>;
  mx(name: string): Promise<MxAnswer[]>;
  cname(name: string): Promise<string[]>;
  /** PTR names for an address (IPv4 or IPv6). */
  ptr(ip: string): Promise<string[]>;
}

/** A DNS failure that is not an answer (timeout, SERVFAIL, REFUSED). */
export class DnsFailure extends Error {
  constructor(
    readonly code: string,
    readonly query: string,
  ) {
    super(`${query}: ${code}`);
  }
}

const EMPTY = new Set(["ENOTFOUND", "ENODATA", "NXDOMAIN", "NODATA"]);

/** Node's resolver; `server` undefined uses the system's (/etc/resolv.conf). */
export function nodeLookup(server: string | undefined, timeoutMs = 2500): Lookup {
  const r = new dns.Resolver({ timeout: timeoutMs, tries: 2 });
  if (server) r.setServers([server]);
  const ask = async <T>(query: string, f: () => Promise<T[]>): Promise<T[]> => {
    try {
      return await f();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? String(e);
      if (EMPTY.has(code)) return [];
      throw new DnsFailure(code, query);
    }
  };
  const lower = (xs: string[]) => xs.map((x) => x.toLowerCase().replace(/\.$/, ""));
  return {
    txt: (n) => ask(`TXT ${n}`, async () => (await r.resolveTxt(n)).map((parts) => parts.join(""))),
    a: (n) => ask(`A ${n}`, () => r.resolve4(n)),
    aaaa: (n) => ask(`AAAA ${n}`, () => r.resolve6(n)),
    mx: (n) =>
      ask(`MX ${n}`, async () =>
        (await r.resolveMx(n)).map((m) => ({ exchange: lower([m.exchange])[0], priority: m.priority })),
      ),
    cname: (n) => ask(`CNAME ${n}`, async () => lower(await r.resolveCname(n))),
    ptr: (ip) => ask(`PTR ${ip}`, async () => lower(await r.reverse(ip))),
  };
}

/** The full 32-nibble form of an IPv6 address ("2001:db8::1" -> "20010db8000…0001"). */
export function ipv6Nibbles(addr: string): string {
  const [head, tail = ""] = addr.toLowerCase().split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const fill = addr.includes("::") ? 8 - h.length - t.length : 0;
  const groups = [...h, ...Array<string>(fill).fill("0"), ...t];
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-f]{1,4}$/.test(g)))
    throw new Error(`not an IPv6 address: ${addr}`);
  return groups.map((g) => g.padStart(4, "0")).join("");
}

/** How DNS blocklists name an address: reversed octets (IPv4) or reversed nibbles (IPv6), without a zone. */
export function reversedLabels(ip: string): string {
  if (ip.includes(":")) return ipv6Nibbles(ip).split("").reverse().join(".");
  const o = ip.split(".");
  if (o.length !== 4 || o.some((x) => !/^\d{1,3}$/.test(x) || Number(x) > 255))
    throw new Error(`not an IPv4 address: ${ip}`);
  return o.reverse().join(".");
}

/** Two spellings of one address compare equal ("2001:db8:1::1" and "2001:0db8:0001:0:0:0:0:1"). */
export function sameAddress(a: string, b: string): boolean {
  if (a.includes(":") !== b.includes(":")) return false;
  return a.includes(":") ? ipv6Nibbles(a) === ipv6Nibbles(b) : a === b;
}
