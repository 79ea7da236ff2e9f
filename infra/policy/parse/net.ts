/**
 * IP, CIDR and port arithmetic: node's BlockList does the containment. Like every parser under parse/, written
 * independently of the renderers in cloud-init/ and infra/ on purpose: a checker that shares the code it checks would
 * share its bugs.
 */
import { BlockList, isIP } from "node:net";

export interface Cidr {
  readonly family: 4 | 6;
  readonly address: string;
  readonly prefix: number;
}

/** "203.0.113.0/24", "2001:db8::/32", "[::1]/128", "127.0.0.1" (host), "[::1]" -> Cidr; anything else undefined. */
export function parseCidr(text: string): Cidr | undefined {
  const m = /^\[?([^\]/]+)\]?(?:\/(\d{1,3}))?$/.exec(text.trim());
  if (!m) return undefined;
  const family = isIP(m[1]);
  if (family !== 4 && family !== 6) return undefined;
  const max = family === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) return undefined;
  return { family, address: m[1], prefix };
}

const familyName = (f: 4 | 6) => (f === 4 ? "ipv4" : "ipv6");

/** Is every address of `inner` inside `outer`? */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  if (inner.family !== outer.family || inner.prefix < outer.prefix) return false;
  const bl = new BlockList();
  bl.addSubnet(outer.address, outer.prefix, familyName(outer.family));
  return bl.check(inner.address, familyName(inner.family));
}

/** Does any of `outers` contain `inner`? */
export function cidrWithinAny(inner: Cidr, outers: readonly Cidr[]): boolean {
  return outers.some((o) => cidrWithin(inner, o));
}

export function sameIp(a: string, b: string): boolean {
  const ca = parseCidr(a);
  const cb = parseCidr(b);
  if (!ca || !cb) return false;
  return cidrWithin(ca, cb) && cidrWithin(cb, ca);
}

export const LOOPBACK: readonly Cidr[] = [parseCidr("127.0.0.0/8")!, parseCidr("::1/128")!];

/** A source as wide as (nearly) the whole Internet: shorter than /8 (IPv4) or /16 (IPv6), like config.ts refuses. */
export function isNearlyWholeInternet(c: Cidr): boolean {
  return c.family === 4 ? c.prefix < 8 : c.prefix < 16;
}

/** A Hetzner firewall rule's port field, as an inclusive range. */
export interface PortRange {
  readonly from: number;
  readonly to: number;
}

export const ALL_PORTS: PortRange = { from: 1, to: 65535 };

/**
 * Hetzner firewall port syntax: "25", "20-30", "any". Not set (`present` false) means every port.
 * Returns undefined only when the value is unknown. A malformed value counts as every port: the check
 * must not be dodged by a spelling Hetzner might still accept.
 */
export function parsePortRange(port: unknown, present: boolean): PortRange | undefined {
  if (!present) return ALL_PORTS;
  if (port === undefined) return undefined;
  if (port === null) return ALL_PORTS;
  const s = String(port).trim().toLowerCase();
  if (s === "any" || s === "") return ALL_PORTS;
  const single = /^(\d{1,5})$/.exec(s);
  if (single) return { from: Number(single[1]), to: Number(single[1]) };
  const range = /^(\d{1,5})\s*-\s*(\d{1,5})$/.exec(s);
  if (range) return { from: Number(range[1]), to: Number(range[2]) };
  return ALL_PORTS;
}

export const portInRange = (p: number, r: PortRange): boolean => p >= r.from && p <= r.to;

/** A listen address that is loopback: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, "");
  if (h === "localhost" || h === "localhost.localdomain" || h === "ip6-localhost") return true;
  const c = parseCidr(h);
  return c !== undefined && c.prefix === (c.family === 4 ? 32 : 128) && cidrWithinAny(c, LOOPBACK);
}
