/**
 * One SPF evaluator (RFC 7208), pure: no Pulumi, no network of its own. The config checks count the lookups of the
 * record the stack will publish; a doctor script hands it a resolver on live DNS (`dnsResolver()`).
 *
 * Hand-written rather than mailauth's: mailauth verifies a message (sender, HELO, a resolver with node's error codes)
 * and reports lookups only as a total; the config check needs the record parsed and the lookup chain by term.
 */
import { promises as dnsPromises } from "node:dns";
import * as net from "node:net";

/** RFC 7208 4.6.4: at most 10 terms that cause DNS lookups, and (SHOULD) at most 2 void lookups. */
export const SPF_LOOKUP_LIMIT = 10;
export const SPF_VOID_LOOKUP_LIMIT = 2;
/** RFC 7208 4.6.4: one mx or ptr term looks up at most 10 address records. */
const ADDRESS_LOOKUPS_PER_TERM = 10;

export type SpfQualifier = "+" | "-" | "~" | "?";
export type SpfMechanismKind = "all" | "include" | "a" | "mx" | "ptr" | "ip4" | "ip6" | "exists";
export type SpfResult = "pass" | "fail" | "softfail" | "neutral" | "none" | "permerror" | "temperror";

export interface SpfMechanism {
  readonly kind: SpfMechanismKind;
  readonly qualifier: SpfQualifier;
  /** The term as written, e.g. "~all" or "include:_spf.mx.cloudflare.net". */
  readonly text: string;
  /** include, exists (required); a, mx, ptr (optional: the current domain). May hold macros. */
  readonly domainSpec?: string;
  /** ip4/ip6: the network address. */
  readonly network?: string;
  /** ip4 and a/mx: the IPv4 prefix length (default 32). */
  readonly cidr4?: number;
  /** ip6 and a/mx: the IPv6 prefix length (default 128). */
  readonly cidr6?: number;
}

export interface SpfModifier {
  readonly name: string;
  readonly value: string;
}

export interface SpfRecord {
  readonly mechanisms: readonly SpfMechanism[];
  readonly redirect?: string;
  readonly exp?: string;
  /** Every modifier, known or not (unknown ones are ignored, as RFC 7208 6 requires). */
  readonly modifiers: readonly SpfModifier[];
}

/**
 * The DNS an evaluation needs. An empty list means "no such name" or "no records of that type" (a void lookup);
 * a rejected promise is a temporary failure (SERVFAIL, timeout) and makes the result temperror.
 */
export interface SpfResolver {
  /** Each TXT record's strings joined into one value. */
  txt(name: string): Promise<string[]>;
  a(name: string): Promise<string[]>;
  aaaa(name: string): Promise<string[]>;
  mx(name: string): Promise<{ exchange: string; priority: number }[]>;
  /** Reverse names of an IP; without it a `ptr` mechanism never matches (RFC 7208 says not to use ptr anyway). */
  ptr?(ip: string): Promise<string[]>;
}

export class SpfSyntaxError extends Error {
  constructor(
    readonly term: string,
    detail: string,
  ) {
    super(`SPF term "${term}": ${detail}`);
    this.name = "SpfSyntaxError";
  }
}

/** "v=spf1" alone or followed by a space, case-insensitive (RFC 7208 4.5). */
export function isSpfRecord(txt: string): boolean {
  return /^v=spf1( |$)/i.test(txt);
}

const MECHANISMS: readonly SpfMechanismKind[] = ["all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"];
const QUALIFIER_RESULT: Record<SpfQualifier, SpfResult> = { "+": "pass", "-": "fail", "~": "softfail", "?": "neutral" };

/** Terms that make a DNS query and count against the limit of 10. */
export function countsAsLookup(kind: SpfMechanismKind): boolean {
  switch (kind) {
    case "include":
    case "a":
    case "mx":
    case "ptr":
    case "exists":
      return true;
    case "all":
    case "ip4":
    case "ip6":
      return false;
    default: {
      const never: never = kind;
      return never;
    }
  }
}

/** RFC 7208 7.1: %{letter digits r delimiters}, %%, %_, %-. `expOnly` letters (c, r, t) only in exp. */
const MACRO_RE = /%(?:\{([slodiphcrtv])(\d*)(r?)([.\-+,/_=]*)\}|([%_-]))/gi;

function checkMacroString(term: string, s: string, allowExpLetters: boolean): void {
  if (/[^\x21-\x7e]/.test(s)) throw new SpfSyntaxError(term, "only visible ASCII characters are allowed");
  const rest = s.replace(MACRO_RE, (m, letter: string | undefined, digits: string) => {
    if (letter && !allowExpLetters && /[crt]/i.test(letter))
      throw new SpfSyntaxError(term, `macro ${m} is allowed only in exp= text`);
    if (digits !== undefined && digits !== "" && Number(digits) === 0)
      throw new SpfSyntaxError(term, `macro ${m} keeps 0 labels`);
    return "";
  });
  if (rest.includes("%")) throw new SpfSyntaxError(term, `a "%" that starts no macro (write %% for a percent sign)`);
}

/** toplabel (RFC 7208 7.1): alphanumeric with at least one letter, or with an inner hyphen; never all digits. */
const TOPLABEL_RE = /^(?=.*[a-z])[a-z0-9]+$|^[a-z0-9]+-[a-z0-9-]*[a-z0-9]$/i;

function checkDomainSpec(term: string, spec: string): void {
  if (spec === "") throw new SpfSyntaxError(term, "a domain is required after the colon");
  checkMacroString(term, spec, false);
  if (/%\{[^}]*\}\.?$/.test(spec)) return; // domain-end may be a macro
  const labels = spec.replace(/\.$/, "").split(".");
  if (labels.length < 2 || !TOPLABEL_RE.test(labels[labels.length - 1]))
    throw new SpfSyntaxError(term, `"${spec}" is not a domain name (it needs a dot and a top-level label)`);
}

/** ip4-cidr-length: /0../32 without leading zeros; ip6-cidr-length: //0..//128. */
function cidr(term: string, text: string | undefined, max: number, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^(0|[1-9]\d*)$/.test(text) || Number(text) > max)
    throw new SpfSyntaxError(term, `prefix length "${text}" must be 0..${max}`);
  return Number(text);
}

function parseMechanism(term: string): SpfMechanism {
  const q = /^[+\-~?]/.test(term) ? (term[0] as SpfQualifier) : "+";
  const body = q === "+" && term[0] !== "+" ? term : term.slice(1);
  const name = /^[^:/]*/.exec(body)![0].toLowerCase();
  const rest = body.slice(name.length);
  const kind = MECHANISMS.find((m) => m === name);
  if (kind === undefined)
    throw new SpfSyntaxError(term, `unknown mechanism "${name}" (known: ${MECHANISMS.join(", ")}; modifiers have "=")`);
  const base = { kind, qualifier: q, text: term };
  switch (kind) {
    case "all":
      if (rest !== "") throw new SpfSyntaxError(term, "all takes no argument");
      return base;
    case "include":
    case "exists": {
      if (!rest.startsWith(":")) throw new SpfSyntaxError(term, `${kind} needs a domain: ${kind}:example.com`);
      checkDomainSpec(term, rest.slice(1));
      return { ...base, domainSpec: rest.slice(1) };
    }
    case "ptr": {
      if (rest !== "" && !rest.startsWith(":")) throw new SpfSyntaxError(term, "ptr takes no prefix length");
      if (rest !== "") checkDomainSpec(term, rest.slice(1));
      return rest === "" ? base : { ...base, domainSpec: rest.slice(1) };
    }
    case "a":
    case "mx": {
      const m = /^(?::([^/]*))?(?:\/([^/]*))?(?:\/\/(.*))?$/.exec(rest);
      if (!m)
        throw new SpfSyntaxError(term, `write ${kind}, ${kind}:example.com, ${kind}/24 or ${kind}:example.com/24//64`);
      if (m[1] !== undefined) checkDomainSpec(term, m[1]);
      return {
        ...base,
        ...(m[1] !== undefined ? { domainSpec: m[1] } : {}),
        cidr4: cidr(term, m[2], 32, 32),
        cidr6: cidr(term, m[3], 128, 128),
      };
    }
    case "ip4": {
      const m = /^:([^/]+)(?:\/(.*))?$/.exec(rest);
      if (!m || !net.isIPv4(m[1])) throw new SpfSyntaxError(term, "write ip4:192.0.2.1 or ip4:192.0.2.0/24");
      return { ...base, network: m[1], cidr4: cidr(term, m[2], 32, 32) };
    }
    case "ip6": {
      const m = /^:([^/]+)(?:\/(.*))?$/.exec(rest);
      if (!m || !net.isIPv6(m[1])) throw new SpfSyntaxError(term, "write ip6:2001:db8::1 or ip6:2001:db8::/32");
      return { ...base, network: m[1], cidr6: cidr(term, m[2], 128, 128) };
    }
    default: {
      const never: never = kind;
      return never;
    }
  }
}

/** Parse one SPF record (RFC 7208 4.6, 12). Throws SpfSyntaxError naming the term that is wrong. */
export function parseSpf(record: string): SpfRecord {
  if (!isSpfRecord(record)) throw new SpfSyntaxError(record.split(" ")[0] ?? "", 'an SPF record starts with "v=spf1"');
  const terms = record
    .slice("v=spf1".length)
    .split(" ")
    .filter((t) => t !== "");
  const mechanisms: SpfMechanism[] = [];
  const modifiers: SpfModifier[] = [];
  for (const term of terms) {
    const mod = /^([a-z][a-z0-9_.-]*)=(.*)$/i.exec(term);
    if (mod) {
      const name = mod[1].toLowerCase();
      if ((name === "redirect" || name === "exp") && modifiers.some((m) => m.name === name))
        throw new SpfSyntaxError(term, `${name}= may appear only once`);
      if (name === "redirect" || name === "exp") checkDomainSpec(term, mod[2]);
      else checkMacroString(term, mod[2], true);
      modifiers.push({ name, value: mod[2] });
    } else {
      mechanisms.push(parseMechanism(term));
    }
  }
  const redirect = modifiers.find((m) => m.name === "redirect")?.value;
  const exp = modifiers.find((m) => m.name === "exp")?.value;
  return {
    mechanisms,
    modifiers,
    ...(redirect !== undefined ? { redirect } : {}),
    ...(exp !== undefined ? { exp } : {}),
  };
}

/** RFC 7208 4.3: a multi-label name, labels 1..63 octets, at most 253 in all. */
function isValidDomain(d: string): boolean {
  const name = d.replace(/\.$/, "");
  const labels = name.split(".");
  return name.length <= 253 && labels.length >= 2 && labels.every((l) => l.length >= 1 && l.length <= 63);
}

/** ::ffff:192.0.2.1 is evaluated as 192.0.2.1 (RFC 7208 5). */
function canonicalIp(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return mapped ? mapped[1] : ip;
}

function inNetwork(ip: string, network: string, prefix: number): boolean {
  const family = net.isIPv4(network) ? "ipv4" : "ipv6";
  if ((net.isIPv4(ip) ? "ipv4" : "ipv6") !== family) return false;
  const list = new net.BlockList();
  list.addSubnet(network, prefix, family);
  return list.check(ip, family);
}

/** The i macro of an IPv6 address: 32 nibbles, dot-separated (RFC 7208 7.3). */
function ipv6Nibbles(ip: string): string {
  const [head, tail = ""] = ip.split("::");
  const part = (s: string) => (s === "" ? [] : s.split(":"));
  const h = part(head);
  const t = part(tail);
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  return groups
    .map((g) => g.padStart(4, "0"))
    .join("")
    .split("")
    .join(".");
}

interface MacroContext {
  readonly sender: string;
  readonly domain: string;
  readonly ip: string;
  readonly helo: string;
}

/** RFC 7208 7.3: expand macros; the p macro (validated PTR name) is "unknown", which the RFC allows. */
export function expandMacros(spec: string, ctx: MacroContext): string {
  const at = ctx.sender.lastIndexOf("@");
  const local = at > 0 ? ctx.sender.slice(0, at) : "postmaster";
  const senderDomain = at >= 0 ? ctx.sender.slice(at + 1) : ctx.sender;
  const v4 = net.isIPv4(ctx.ip);
  const value = (letter: string): string => {
    switch (letter) {
      case "s":
        return ctx.sender;
      case "l":
        return local;
      case "o":
        return senderDomain;
      case "d":
        return ctx.domain;
      case "i":
      case "c":
        return v4 || letter === "c" ? ctx.ip : ipv6Nibbles(ctx.ip);
      case "p":
        return "unknown";
      case "v":
        return v4 ? "in-addr" : "ip6";
      case "h":
        return ctx.helo;
      case "r":
        return "unknown";
      case "t":
        return String(Math.floor(Date.now() / 1000));
      default:
        throw new Error(`unknown macro letter ${letter}`);
    }
  };
  return spec.replace(MACRO_RE, (_m, letter: string | undefined, digits: string, rev: string, delims: string, esc) => {
    if (letter === undefined) return esc === "%" ? "%" : esc === "_" ? " " : "%20";
    let parts = value(letter.toLowerCase()).split(new RegExp(`[${(delims || ".").replace(/[-\\\]]/g, "\\$&")}]`));
    if (rev) parts = parts.reverse();
    if (digits) parts = parts.slice(-Number(digits));
    const out = parts.join(".");
    return letter === letter.toUpperCase() ? encodeURIComponent(out) : out;
  });
}

/** After expansion, a name longer than 253 octets loses labels on the left (RFC 7208 7.3). */
function truncateDomain(d: string): string {
  let name = d.replace(/\.$/, "");
  while (name.length > 253 && name.includes(".")) name = name.slice(name.indexOf(".") + 1);
  return name;
}

export interface SpfEvaluation {
  readonly result: SpfResult;
  /** DNS-querying terms evaluated (include, a, mx, ptr, exists, redirect), nested ones included. */
  readonly lookups: number;
  readonly voidLookups: number;
  /** The term that decided, with the includes it came through: "include:_spf.example.net > ip4:192.0.2.0/24". */
  readonly mechanism?: string;
  /** Why the result is permerror, temperror or none. */
  readonly problem?: string;
}

class SpfAbort extends Error {
  constructor(
    readonly result: "permerror" | "temperror",
    message: string,
  ) {
    super(message);
  }
}

interface EvalState {
  lookups: number;
  voids: number;
  readonly ip: string;
  readonly sender: string;
  readonly helo: string;
  readonly resolver: SpfResolver;
}

async function dns<T>(what: string, q: () => Promise<T[]>, st: EvalState, countVoid = true): Promise<T[]> {
  let answer: T[];
  try {
    answer = await q();
  } catch (e) {
    throw new SpfAbort("temperror", `DNS lookup of ${what} failed: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (answer.length === 0 && countVoid && ++st.voids > SPF_VOID_LOOKUP_LIMIT)
    throw new SpfAbort(
      "permerror",
      `more than ${SPF_VOID_LOOKUP_LIMIT} void DNS lookups (${what} has no records) (RFC 7208 4.6.4)`,
    );
  return answer;
}

function countLookup(term: string, st: EvalState): void {
  if (++st.lookups > SPF_LOOKUP_LIMIT)
    throw new SpfAbort(
      "permerror",
      `more than ${SPF_LOOKUP_LIMIT} DNS lookups (at ${term}); receivers stop there (RFC 7208 4.6.4)`,
    );
}

/** The record published at `domain`: none (no record), permerror (two records or a syntax error). */
async function fetchRecord(
  domain: string,
  st: EvalState,
): Promise<{ record: SpfRecord } | { result: "none" | "permerror"; problem: string }> {
  if (!isValidDomain(domain)) return { result: "none", problem: `"${domain}" is not a valid domain name` };
  const txt = await dns(`TXT ${domain}`, () => st.resolver.txt(domain), st, false);
  const spf = txt.filter(isSpfRecord);
  if (spf.length === 0) return { result: "none", problem: `${domain} publishes no SPF record` };
  if (spf.length > 1)
    return { result: "permerror", problem: `${domain} publishes ${spf.length} SPF records; there must be one` };
  try {
    return { record: parseSpf(spf[0]) };
  } catch (e) {
    if (e instanceof SpfSyntaxError) return { result: "permerror", problem: `${domain}: ${e.message}` };
    throw e;
  }
}

type Step = { result: SpfResult; mechanism?: string; problem?: string };

async function addressesOf(name: string, st: EvalState, countVoid: boolean): Promise<string[]> {
  return net.isIPv4(st.ip)
    ? dns(`A ${name}`, () => st.resolver.a(name), st, countVoid)
    : dns(`AAAA ${name}`, () => st.resolver.aaaa(name), st, countVoid);
}

async function matches(m: SpfMechanism, domain: string, st: EvalState): Promise<boolean | Step> {
  const target = () => truncateDomain(expandMacros(m.domainSpec ?? domain, { ...st, domain }));
  const inCidr = (addr: string) => inNetwork(st.ip, addr, net.isIPv4(addr) ? m.cidr4! : m.cidr6!);
  switch (m.kind) {
    case "all":
      return true;
    case "ip4":
      return inNetwork(st.ip, m.network!, m.cidr4!);
    case "ip6":
      return inNetwork(st.ip, m.network!, m.cidr6!);
    case "a":
      return (await addressesOf(target(), st, true)).some(inCidr);
    case "mx": {
      const hosts = await dns(`MX ${target()}`, () => st.resolver.mx(target()), st);
      if (hosts.length > ADDRESS_LOOKUPS_PER_TERM)
        throw new SpfAbort("permerror", `${m.text}: ${hosts.length} MX hosts; at most ${ADDRESS_LOOKUPS_PER_TERM}`);
      for (const h of hosts) if ((await addressesOf(h.exchange, st, false)).some(inCidr)) return true;
      return false;
    }
    case "exists":
      return (await dns(`A ${target()}`, () => st.resolver.a(target()), st)).length > 0;
    case "ptr": {
      if (!st.resolver.ptr) return false;
      let names: string[];
      try {
        names = await st.resolver.ptr(st.ip);
      } catch {
        return false; // RFC 7208 5.5: a DNS error on the PTR lookup is no match
      }
      const want = target().toLowerCase();
      for (const n of names.slice(0, ADDRESS_LOOKUPS_PER_TERM)) {
        const name = n.toLowerCase().replace(/\.$/, "");
        if (name !== want && !name.endsWith(`.${want}`)) continue;
        const addrs = await addressesOf(name, st, false).catch(() => [] as string[]);
        if (addrs.includes(st.ip)) return true;
      }
      return false;
    }
    case "include": {
      const r = await checkHost(target(), st);
      switch (r.result) {
        case "pass":
          return { result: "pass", mechanism: r.mechanism ? `${m.text} > ${r.mechanism}` : m.text };
        case "fail":
        case "softfail":
        case "neutral":
          return false;
        case "none":
          throw new SpfAbort("permerror", `${m.text}: ${r.problem ?? "no SPF record"}`);
        case "permerror":
        case "temperror":
          throw new SpfAbort(r.result, r.problem ?? m.text);
        default: {
          const never: never = r.result;
          return never;
        }
      }
    }
    default: {
      const never: never = m.kind;
      return never;
    }
  }
}

async function checkHost(domain: string, st: EvalState): Promise<Step> {
  const fetched = await fetchRecord(domain, st);
  if (!("record" in fetched)) return fetched;
  const { record } = fetched;
  for (const m of record.mechanisms) {
    if (countsAsLookup(m.kind)) countLookup(m.text, st);
    const hit = await matches(m, domain, st);
    if (hit === false) continue;
    if (hit === true) return { result: QUALIFIER_RESULT[m.qualifier], mechanism: m.text };
    // An include that passed: the include's own qualifier decides.
    return { result: QUALIFIER_RESULT[m.qualifier], mechanism: hit.mechanism };
  }
  if (record.redirect !== undefined) {
    const text = `redirect=${record.redirect}`;
    countLookup(text, st);
    const target = truncateDomain(expandMacros(record.redirect, { ...st, domain }));
    const r = await checkHost(target, st);
    if (r.result === "none") throw new SpfAbort("permerror", `${text}: ${r.problem ?? "no SPF record"}`);
    return { ...r, ...(r.mechanism ? { mechanism: `${text} > ${r.mechanism}` } : {}) };
  }
  return { result: "neutral" };
}

/**
 * check_host() of RFC 7208 for `ip` and `domain`. `sender` (MAIL FROM) and `helo` only feed macros; the sender
 * defaults to postmaster@domain, as for a HELO check.
 */
export async function evaluateSpf(
  domain: string,
  ip: string,
  resolver: SpfResolver,
  opts: { sender?: string; helo?: string } = {},
): Promise<SpfEvaluation> {
  const st: EvalState = {
    lookups: 0,
    voids: 0,
    ip: canonicalIp(ip),
    sender: opts.sender ?? `postmaster@${domain}`,
    helo: opts.helo ?? domain,
    resolver,
  };
  if (!net.isIP(st.ip)) return { result: "permerror", lookups: 0, voidLookups: 0, problem: `"${ip}" is not an IP` };
  try {
    const r = await checkHost(domain.toLowerCase().replace(/\.$/, ""), st);
    return { ...r, lookups: st.lookups, voidLookups: st.voids };
  } catch (e) {
    if (e instanceof SpfAbort)
      return { result: e.result, lookups: st.lookups, voidLookups: st.voids, problem: e.message };
    throw e;
  }
}

export interface SpfLookupCount {
  /** Terms that cost a DNS lookup whatever the IP (the worst case a receiver evaluates), nested ones included. */
  readonly lookups: number;
  /** One line per counted term, with the path to it: "example.com include:mailgun.org > mailgun.org a". */
  readonly chain: readonly string[];
  /** What is wrong: over the limit, a missing or broken record, a loop, a target that needs a sender's macros. */
  readonly problems: readonly string[];
}

/** The lookups the terms of one record cost, without following anything (what a config check can count offline). */
export function directLookups(record: SpfRecord): { lookups: number; terms: string[] } {
  const terms: string[] = [];
  for (const m of record.mechanisms) {
    if (countsAsLookup(m.kind)) terms.push(m.text);
    if (m.kind === "all") return { lookups: terms.length, terms }; // nothing after all is ever evaluated
  }
  if (record.redirect !== undefined) terms.push(`redirect=${record.redirect}`);
  return { lookups: terms.length, terms };
}

/**
 * Count every DNS lookup a receiver may make for `domain`'s SPF record: each include/redirect followed, each
 * a/mx/ptr/exists counted, up to the first `all` (terms after it are never reached).
 */
export async function countSpfLookups(domain: string, resolver: SpfResolver): Promise<SpfLookupCount> {
  const chain: string[] = [];
  const problems: string[] = [];
  const st: EvalState = { lookups: 0, voids: 0, ip: "192.0.2.1", sender: "", helo: domain, resolver };
  const walk = async (name: string, path: string, seen: readonly string[]): Promise<void> => {
    let fetched: Awaited<ReturnType<typeof fetchRecord>>;
    try {
      fetched = await fetchRecord(name, st);
    } catch (e) {
      problems.push(`${path || name}: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    if (!("record" in fetched)) {
      problems.push(`${path || name}: ${fetched.problem} (receivers answer permerror)`);
      return;
    }
    for (const term of directLookups(fetched.record).terms) {
      const at = path ? `${path} > ${term}` : `${name} ${term}`;
      chain.push(at);
      const follow = /^(include:|redirect=)(.*)$/i.exec(term);
      if (!follow) continue;
      if (follow[2].includes("%")) {
        problems.push(`${at}: depends on the sender (macros); its own lookups are not counted`);
        continue;
      }
      const target = follow[2].toLowerCase().replace(/\.$/, "");
      if (seen.includes(target)) {
        problems.push(`${at}: loops back to ${target}`);
        continue;
      }
      await walk(target, at, [...seen, target]);
    }
  };
  const root = domain.toLowerCase().replace(/\.$/, "");
  await walk(root, "", [root]);
  if (chain.length > SPF_LOOKUP_LIMIT)
    problems.unshift(
      `${root}'s SPF record needs ${chain.length} DNS lookups; receivers stop at ${SPF_LOOKUP_LIMIT} and answer ` +
        `permerror (RFC 7208 4.6.4)`,
    );
  return { lookups: chain.length, chain, problems };
}

/** An SpfResolver on live DNS (node:dns): "no such name" and "no data" become empty answers. */
export function dnsResolver(
  resolver: Pick<typeof dnsPromises, "resolveTxt" | "resolve4" | "resolve6" | "resolveMx" | "reverse"> = dnsPromises,
): SpfResolver {
  const empty = async <T>(q: () => Promise<T[]>): Promise<T[]> => {
    try {
      return await q();
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === "ENOTFOUND" || code === "ENODATA") return [];
      throw e;
    }
  };
  return {
    txt: (n) => empty(async () => (await resolver.resolveTxt(n)).map((parts) => parts.join(""))),
    a: (n) => empty(() => resolver.resolve4(n)),
    aaaa: (n) => empty(() => resolver.resolve6(n)),
    mx: (n) => empty(() => resolver.resolveMx(n)),
    ptr: (ip) => empty(() => resolver.reverse(ip)),
  };
}
