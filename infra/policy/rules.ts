/**
 * The rule library: pure functions over resource properties and the rendered config files the program
 * pushes. No @pulumi import here, so every rule runs the same under CrossGuard, under the program's mocks
 * and over hand-made fixtures.
 *
 * Unknown values: during `pulumi preview` a value that depends on an unknown output reaches the rules as
 * `undefined` (policies.ts turns the engine's unknown sentinels into `undefined` but keeps the key). A
 * rule never reports on an `undefined` value; it checks only what is known. A key that is missing from
 * the props altogether is a known absence (the value was never set) and is judged like any other value.
 *
 * The parsers here (main.cf, master.cf, TXT chunks, DKIM/DMARC tags, SPF) are written independently of
 * the renderers in cloud-init/ and infra/records.ts on purpose: a checker that shares the code it checks
 * would share its bugs.
 */
import { createPrivateKey, createPublicKey } from "node:crypto";
import { BlockList, isIP } from "node:net";
import { posix as posixPath } from "node:path";
import { gunzipSync } from "node:zlib";

// ---------------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------------

/** One resource as the rules see it: its inputs (or state), unknowns as `undefined`, secrets in plain. */
export interface ResourceView {
  readonly type: string;
  readonly name: string;
  readonly urn?: string;
  /** The provider ID when known (mocks record it; bridged providers also carry `id` in props). */
  readonly id?: string;
  readonly props: Record<string, unknown>;
  /** URNs each property depends on (CrossGuard's propertyDependencies), when the engine supplies them. */
  readonly propertyDependencies?: Readonly<Record<string, readonly string[]>>;
}

export interface Violation {
  readonly rule: string;
  /** Names the offending resource (type + name) and value. Never contains a secret value. */
  readonly message: string;
  readonly urn?: string;
}

interface RuleBase {
  /** Policy name: kebab-case, unique. */
  readonly name: string;
  /** One line: the failure, incident or RFC the rule prevents. */
  readonly reason: string;
}

export interface ResourceRule extends RuleBase {
  readonly scope: "resource";
  check(resource: ResourceView): Violation[];
}

export interface StackRule extends RuleBase {
  readonly scope: "stack";
  check(resources: readonly ResourceView[]): Violation[];
}

export type Rule = ResourceRule | StackRule;

/** The resource types the rules read. */
export const TYPES = {
  sshKey: "hcloud:index/sshKey:SshKey",
  firewall: "hcloud:index/firewall:Firewall",
  server: "hcloud:index/server:Server",
  primaryIp: "hcloud:index/primaryIp:PrimaryIp",
  rdns: "hcloud:index/rdns:Rdns",
  dnsRecord: "cloudflare:index/dnsRecord:DnsRecord",
  tunnel: "cloudflare:index/zeroTrustTunnelCloudflared:ZeroTrustTunnelCloudflared",
  tunnelConfig: "cloudflare:index/zeroTrustTunnelCloudflaredConfig:ZeroTrustTunnelCloudflaredConfig",
  serviceToken: "cloudflare:index/zeroTrustAccessServiceToken:ZeroTrustAccessServiceToken",
  accessPolicy: "cloudflare:index/zeroTrustAccessPolicy:ZeroTrustAccessPolicy",
  accessApp: "cloudflare:index/zeroTrustAccessApplication:ZeroTrustAccessApplication",
  randomPassword: "random:index/randomPassword:RandomPassword",
  randomBytes: "random:index/randomBytes:RandomBytes",
  privateKey: "tls:index/privateKey:PrivateKey",
  command: "command:remote:Command",
} as const;

/** Ports a mail submission/relay listener uses (SMTP, SMTPS, submission) and OpenDKIM's usual milter port. */
export const SMTP_PORTS = [25, 465, 587] as const;
export const TUNNEL_FORBIDDEN_PORTS = [25, 465, 587, 8891] as const;
/**
 * The only services the tunnel may reach: the relay's two loopback listeners, its HTTP API (http://) and its SMTP
 * ingress (tcp://). Written here, not imported from relay/host-contract.ts, like every fact this pack checks; a test
 * ties the two.
 */
export const RELAY_TUNNEL_SERVICES = { http: 2525, tcp: 2587 } as const;

// ---------------------------------------------------------------------------------------------------
// Small typed accessors
// ---------------------------------------------------------------------------------------------------

const isStr = (v: unknown): v is string => typeof v === "string";
const asArray = (v: unknown): unknown[] | undefined => (Array.isArray(v) ? v : undefined);
const asObj = (v: unknown): Record<string, unknown> | undefined =>
  v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
/** The key was set (possibly to an unknown value). */
const has = (o: Record<string, unknown>, key: string): boolean => Object.prototype.hasOwnProperty.call(o, key);

export function describe(r: Pick<ResourceView, "type" | "name">): string {
  return `${r.type} "${r.name}"`;
}

/** DNS names compare case-insensitively and without the root dot. */
export function normName(n: string): string {
  return n.trim().toLowerCase().replace(/\.$/, "");
}

// ---------------------------------------------------------------------------------------------------
// IP / CIDR helpers (node's BlockList does the containment arithmetic)
// ---------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------
// Firewall ports
// ---------------------------------------------------------------------------------------------------

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

/**
 * Protocols that cannot carry a TCP connection to a port of this host. Anything else might (tcp, gre, esp, unknown
 * names).
 */
const NON_TCP_PROTOCOLS = new Set(["udp", "icmp", "icmpv6", "ipv6-icmp"]);
/** Protocols with ports: the rule's port field applies. Tunnelling protocols (gre, esp) carry any port. */
const PORTED_PROTOCOLS = new Set(["tcp", "udp"]);

interface FirewallRuleView {
  readonly index: number;
  readonly direction: unknown;
  readonly protocol: unknown;
  readonly ports: PortRange | undefined;
  readonly portText: string;
  readonly sources: unknown;
}

function firewallRules(r: ResourceView): FirewallRuleView[] | undefined {
  const rules = asArray(r.props.rules);
  if (!rules) return undefined;
  return rules.flatMap((raw, index) => {
    const o = asObj(raw);
    if (!o) return [];
    const proto = isStr(o.protocol) ? o.protocol.toLowerCase() : o.protocol;
    const ported = isStr(proto) && PORTED_PROTOCOLS.has(proto);
    const ports = ported ? parsePortRange(o.port, has(o, "port")) : isStr(proto) ? ALL_PORTS : undefined;
    const portText = has(o, "port") ? String(o.port) : "(not set: all ports)";
    return [{ index, direction: o.direction, protocol: proto, ports, portText, sources: o.sourceIps }];
  });
}

// ---------------------------------------------------------------------------------------------------
// Postfix main.cf / master.cf
// ---------------------------------------------------------------------------------------------------

/**
 * Postfix's logical lines: a line starting with whitespace continues the previous one; blank lines and
 * lines whose first non-whitespace character is `#` are ignored (also between continuation lines).
 */
export function postfixLogicalLines(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    if (/^\s*(#|$)/.test(raw)) continue;
    if (/^\s/.test(raw) && out.length > 0) out[out.length - 1] += ` ${raw.trim()}`;
    else out.push(raw.trim());
  }
  return out;
}

/** main.cf: `key = value`; a later definition of a key replaces an earlier one, as in Postfix. */
export function parseMainCf(text: string): Map<string, string> {
  const params = new Map<string, string>();
  for (const line of postfixLogicalLines(text)) {
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    params.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  return params;
}

/** Expand `$name`, `${name}`, `$(name)`, `${name?text}` and `${name:text}` the way Postfix does (bounded depth). */
export function expandPostfix(value: string, params: ReadonlyMap<string, string>, depth = 0): string {
  if (depth > 10) return value;
  return value.replace(
    /\$(?:\{([A-Za-z0-9_]+)(?:([?:])([^}]*))?\}|\(([A-Za-z0-9_]+)(?:([?:])([^)]*))?\)|([A-Za-z0-9_]+))/g,
    (_m, n1, op1, t1, n2, op2, t2, n3) => {
      const name = (n1 ?? n2 ?? n3) as string;
      const op = (op1 ?? op2) as string | undefined;
      const text = (t1 ?? t2 ?? "") as string;
      const v = expandPostfix(params.get(name) ?? "", params, depth + 1);
      if (op === "?") return v !== "" ? expandPostfix(text, params, depth + 1) : "";
      if (op === ":") return v === "" ? expandPostfix(text, params, depth + 1) : "";
      return v;
    },
  );
}

/** A Postfix list: items separated by commas and/or whitespace; `{ ... }` groups stay one item (without braces). */
export function postfixList(value: string): string[] {
  const items: string[] = [];
  let cur = "";
  let depth = 0;
  for (const ch of value) {
    if (ch === "{") {
      depth++;
      if (depth === 1) continue;
    } else if (ch === "}") {
      depth--;
      if (depth === 0) {
        items.push(cur.trim());
        cur = "";
        continue;
      }
    }
    if (depth === 0 && (ch === "," || /\s/.test(ch))) {
      if (cur.trim()) items.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  if (cur.trim()) items.push(cur.trim());
  return items;
}

export interface MasterCfService {
  readonly service: string;
  readonly type: string;
  readonly command: string;
  readonly args: string[];
  /** `-o name=value` overrides, in order. */
  readonly overrides: Map<string, string>;
  readonly line: string;
}

/** Split a master.cf command line into words; `{ ... }` groups are one word (Postfix 3.0+ syntax). */
function masterWords(line: string): string[] {
  const words: string[] = [];
  let cur = "";
  let depth = 0;
  for (const ch of line) {
    if (ch === "{") depth++;
    if (ch === "}") depth--;
    if (depth === 0 && /\s/.test(ch)) {
      if (cur) words.push(cur);
      cur = "";
    } else cur += ch;
  }
  if (cur) words.push(cur);
  return words;
}

/** master.cf: service type private unpriv chroot wakeup maxproc command [args], with `-o` overrides parsed. */
export function parseMasterCf(text: string): MasterCfService[] {
  const services: MasterCfService[] = [];
  for (const line of postfixLogicalLines(text)) {
    const w = masterWords(line);
    if (w.length < 8) continue;
    const args = w.slice(8);
    const overrides = new Map<string, string>();
    for (let i = 0; i < args.length; i++) {
      let a = args[i];
      if (a === "-o" && i + 1 < args.length) a = args[++i];
      else if (a.startsWith("-o")) a = a.slice(2);
      else continue;
      const inner = a.startsWith("{") && a.endsWith("}") ? a.slice(1, -1) : a;
      const eq = inner.indexOf("=");
      if (eq > 0) overrides.set(inner.slice(0, eq).trim(), inner.slice(eq + 1).trim());
    }
    services.push({ service: w[0], type: w[1], command: w[7], args, overrides, line });
  }
  return services;
}

/** Postfix service name "host:port" or "port"; host may be bracketed IPv6. */
export function masterServiceEndpoint(service: string): { host?: string; port: string } {
  const m = /^(?:(\[[^\]]+\]|[^:]+):)?([^:]+)$/.exec(service);
  if (!m) return { port: service };
  return m[1] === undefined ? { port: m[2] } : { host: m[1].replace(/^\[|\]$/g, ""), port: m[2] };
}

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

const SUBMISSION_NAMES = new Set(["submission", "submissions", "smtps", "587", "465", "ssmtp", "urd"]);
const SMTP_SERVER_COMMANDS = new Set(["smtpd", "postscreen"]);
const commandName = (c: string) => posixPath.basename(c);

/** Are all `inet_interfaces` entries loopback? */
export function inetInterfacesLoopbackOnly(value: string): boolean {
  const items = postfixList(value.toLowerCase());
  if (items.length === 0) return false;
  if (items.length === 1 && items[0] === "loopback-only") return true;
  return items.every((i) => isLoopbackHost(i));
}

// ---------------------------------------------------------------------------------------------------
// OpenDKIM files
// ---------------------------------------------------------------------------------------------------

/** opendkim.conf: `Key value` lines, `#` comments. Keys are case-insensitive. */
export function parseOpendkimConf(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/#.*$/, "").trim();
    const kv = /^(\S+)\s+(.+)$/.exec(line);
    if (kv) m.set(kv[1].toLowerCase(), kv[2].trim());
  }
  return m;
}

export type MilterEndpoint = { kind: "inet"; port: number; host: string } | { kind: "unix"; path: string };

/** OpenDKIM's `Socket` (inet:8891@localhost, inet6:8891@[::1], local:/path, unix:/path). */
export function opendkimSocketEndpoint(socket: string): MilterEndpoint | undefined {
  const inet = /^inet6?:(\d+)(?:@(.+))?$/.exec(socket.trim());
  if (inet) return { kind: "inet", port: Number(inet[1]), host: (inet[2] ?? "").replace(/^\[|\]$/g, "") };
  const local = /^(?:local|unix):(.+)$/.exec(socket.trim());
  if (local) return { kind: "unix", path: local[1] };
  if (socket.startsWith("/")) return { kind: "unix", path: socket.trim() };
  return undefined;
}

/** A Postfix milter address (inet:host:port, unix:path relative to queue_directory, local:path). */
export function postfixMilterEndpoint(milter: string, queueDirectory: string): MilterEndpoint | undefined {
  const inet = /^inet6?:(.*):(\d+)$/.exec(milter.trim());
  if (inet) return { kind: "inet", port: Number(inet[2]), host: inet[1].replace(/^\[|\]$/g, "") };
  const unix = /^(?:unix|local):(.+)$/.exec(milter.trim());
  if (unix) return { kind: "unix", path: unix[1].startsWith("/") ? unix[1] : posixPath.join(queueDirectory, unix[1]) };
  return undefined;
}

export function sameMilter(a: MilterEndpoint, b: MilterEndpoint): boolean {
  if (a.kind === "inet" && b.kind === "inet") return a.port === b.port;
  if (a.kind === "unix" && b.kind === "unix") return posixPath.normalize(a.path) === posixPath.normalize(b.path);
  return false;
}

/** A milter list item: the address, plus any per-milter `default_action=` from a `{ ... }` group. */
export function parseMilterItem(item: string): { address: string; defaultAction?: string } {
  const parts = item.split(/[\s,]+/).filter(Boolean);
  const address = parts.find((p) => !p.includes("=")) ?? "";
  const da = parts.map((p) => /^default_action\s*=\s*(\S+)$/.exec(p)).find(Boolean);
  return da ? { address, defaultAction: da[1] } : { address };
}

/** SigningTable lines: `<pattern> <keyname>`. */
export function parseSigningTable(text: string): { pattern: string; keyName: string }[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.replace(/#.*$/, "").trim())
    .filter(Boolean)
    .flatMap((l) => {
      const [pattern, keyName] = l.split(/\s+/);
      return pattern && keyName ? [{ pattern, keyName }] : [];
    });
}

/** KeyTable lines: `<keyname> <domain>:<selector>:<keypath>`. */
export function parseKeyTable(text: string): Map<string, { domain: string; selector: string; keyPath: string }> {
  const m = new Map<string, { domain: string; selector: string; keyPath: string }>();
  for (const raw of text.split(/\r?\n/)) {
    const l = raw.replace(/#.*$/, "").trim();
    const kv = /^(\S+)\s+([^:\s]+):([^:\s]+):(\S+)$/.exec(l);
    if (kv) m.set(kv[1], { domain: normName(kv[2]), selector: kv[3], keyPath: kv[4] });
  }
  return m;
}

// ---------------------------------------------------------------------------------------------------
// DNS record values
// ---------------------------------------------------------------------------------------------------

/**
 * The value a resolver assembles from TXT content written as quoted strings ("a" "b" -> ab; \" \\ and
 * \DDD escapes, RFC 1035 section 5.1). Content without quotes is taken as-is.
 */
export function txtJoin(content: string): string {
  const s = content.trim();
  if (!s.startsWith('"')) return s;
  let out = "";
  let i = 0;
  while (i < s.length) {
    while (i < s.length && /\s/.test(s[i])) i++;
    if (i >= s.length) break;
    if (s[i] !== '"') {
      // Unquoted word between strings: take it literally up to the next whitespace.
      const m = /^\S+/.exec(s.slice(i))!;
      out += m[0];
      i += m[0].length;
      continue;
    }
    i++;
    while (i < s.length && s[i] !== '"') {
      if (s[i] === "\\" && i + 1 < s.length) {
        const dec = /^\d{3}/.exec(s.slice(i + 1));
        if (dec) {
          out += String.fromCharCode(Number(dec[0]));
          i += 4;
        } else {
          out += s[i + 1];
          i += 2;
        }
      } else out += s[i++];
    }
    i++;
  }
  return out;
}

/** `k=v; k=v` tag lists (DKIM RFC 6376 section 3.2, DMARC RFC 7489 section 6.4, BIMI). Tag names lower-cased. */
export function parseTags(value: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of value.split(";")) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    m.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  return m;
}

/** RSA modulus size of a DKIM p= value (base64 SubjectPublicKeyInfo DER); undefined if it is not a key. */
export function dkimKeyBits(p: string): number | undefined {
  try {
    const key = createPublicKey({ key: Buffer.from(p.replace(/\s+/g, ""), "base64"), format: "der", type: "spki" });
    return key.asymmetricKeyDetails?.modulusLength;
  } catch {
    return undefined;
  }
}

/** The base64 SPKI of a private key PEM (what its DKIM record's p= must carry); undefined if not a key. */
export function spkiOfPrivateKey(pem: string): string | undefined {
  try {
    return createPublicKey(createPrivateKey(pem)).export({ type: "spki", format: "der" }).toString("base64");
  } catch {
    return undefined;
  }
}

export interface SpfTerm {
  readonly qualifier: "+" | "-" | "~" | "?";
  readonly mechanism: string;
  readonly value?: string;
  readonly raw: string;
}

/** SPF terms after `v=spf1` (RFC 7208 section 4.6.1); modifiers (name=value) come back with mechanism "name=". */
export function parseSpf(value: string): SpfTerm[] | undefined {
  const words = value.trim().split(/\s+/);
  if (words[0]?.toLowerCase() !== "v=spf1") return undefined;
  return words.slice(1).map((raw) => {
    const mod = /^([a-z][a-z0-9_.-]*)=(.*)$/i.exec(raw);
    if (mod) return { qualifier: "+", mechanism: `${mod[1].toLowerCase()}=`, value: mod[2], raw };
    const q = /^[+\-~?]/.test(raw) ? (raw[0] as SpfTerm["qualifier"]) : "+";
    const body = /^[+\-~?]/.test(raw) ? raw.slice(1) : raw;
    const m = /^([a-z0-9]+)(?::(.*))?$/i.exec(body.replace(/^(ip[46]|a|mx|include|exists|ptr)\//i, "$1:/"));
    return m
      ? { qualifier: q, mechanism: m[1].toLowerCase(), value: m[2], raw }
      : { qualifier: q, mechanism: body.toLowerCase(), raw };
  });
}

// ---------------------------------------------------------------------------------------------------
// Stack facts shared by the rules
// ---------------------------------------------------------------------------------------------------

export interface FilePush {
  readonly resource: ResourceView;
  readonly path: string;
  /** undefined while unknown. */
  readonly content: string | undefined;
  /** The node the push goes to (connection.host), when known. */
  readonly host: string | undefined;
}

const ofType = (rs: readonly ResourceView[], type: string) => rs.filter((r) => r.type === type);

/** The file a host path names: `.`, `..` and repeated slashes resolved (as the kernel would). */
export function normalizeHostPath(p: string): string {
  return posixPath.normalize(p.replace(/\/+/g, "/")).replace(/(.)\/$/, "$1");
}

/** The only files the deploy step may write under /etc/postfix/: anything else could be a map or a second config. */
export const POSTFIX_FILES = new Set([
  "/etc/postfix/main.cf",
  "/etc/postfix/master.cf",
  "/etc/postfix/sasl_passwd",
  "/etc/postfix/sender_access",
]);

/** A Command whose triggers[0] is an absolute host path is the push of that file; stdin is its content. */
export function filePushes(rs: readonly ResourceView[]): FilePush[] {
  return ofType(rs, TYPES.command).flatMap((r) => {
    const t0 = asArray(r.props.triggers)?.[0];
    if (!isStr(t0) || !t0.startsWith("/")) return [];
    const host = asObj(r.props.connection)?.host;
    // "/etc/postfix/./main.cf", "//etc/postfix//main.cf" and ".." spellings are the same file to the host.
    return [
      {
        resource: r,
        path: normalizeHostPath(t0),
        content: isStr(r.props.stdin) ? r.props.stdin : undefined,
        host: isStr(host) ? host : undefined,
      },
    ];
  });
}

/** Could a Command be a file push we can't see yet (its triggers unknown)? Then absence proves nothing. */
function somePushUnknown(rs: readonly ResourceView[]): boolean {
  return ofType(rs, TYPES.command).some((r) => {
    if (!has(r.props, "triggers")) return false;
    const t = asArray(r.props.triggers);
    return t === undefined || (t.length > 0 && t[0] === undefined);
  });
}

interface MainCf {
  readonly push: FilePush;
  readonly params: Map<string, string>;
  /** A parameter with $variables expanded; undefined when not set. */
  get(key: string): string | undefined;
}

function mainCfs(rs: readonly ResourceView[]): MainCf[] {
  return filePushes(rs)
    .filter((p) => p.path === "/etc/postfix/main.cf" && p.content !== undefined)
    .map((push) => {
      const params = parseMainCf(push.content!);
      return { push, params, get: (k: string) => (params.has(k) ? expandPostfix(params.get(k)!, params) : undefined) };
    });
}

function masterCfs(rs: readonly ResourceView[]): { push: FilePush; services: MasterCfService[] }[] {
  return filePushes(rs)
    .filter((p) => p.path === "/etc/postfix/master.cf" && p.content !== undefined)
    .map((push) => ({ push, services: parseMasterCf(push.content!) }));
}

/** smtpd(8) services of a master.cf (the ones whose -o overrides can change relay policy). */
const smtpdServices = (services: readonly MasterCfService[]) =>
  services.filter((s) => commandName(s.command) === "smtpd");

/** The main.cf that goes to the same node as a master.cf (by connection host), or the only one. */
function mainCfFor(push: FilePush, mains: readonly MainCf[]): MainCf | undefined {
  return (
    mains.find((m) => m.push.host !== undefined && m.push.host === push.host) ??
    (mains.length === 1 ? mains[0] : undefined)
  );
}

export interface DnsRecordView {
  readonly resource: ResourceView;
  readonly name: string | undefined;
  readonly type: string | undefined;
  /** For TXT: the joined value. */
  readonly content: string | undefined;
  /** false when not set (Cloudflare's default); undefined while unknown. */
  readonly proxied: boolean | undefined;
}

export function dnsRecords(rs: readonly ResourceView[]): DnsRecordView[] {
  return ofType(rs, TYPES.dnsRecord).map((r) => {
    const type = isStr(r.props.type) ? r.props.type.toUpperCase() : undefined;
    const raw = isStr(r.props.content) ? r.props.content : undefined;
    const proxied = has(r.props, "proxied")
      ? typeof r.props.proxied === "boolean"
        ? r.props.proxied
        : r.props.proxied === null
          ? false
          : undefined
      : false;
    return {
      resource: r,
      name: isStr(r.props.name) ? normName(r.props.name) : undefined,
      type,
      content: raw !== undefined && type === "TXT" ? txtJoin(raw) : raw,
      proxied,
    };
  });
}

const isSpf = (d: DnsRecordView) => d.type === "TXT" && d.content !== undefined && /^v=spf1(\s|$)/i.test(d.content);
const isDmarc = (d: DnsRecordView) => d.type === "TXT" && d.name !== undefined && d.name.startsWith("_dmarc.");
const isDkim = (d: DnsRecordView) => d.type === "TXT" && d.name !== undefined && /\._domainkey\./.test(d.name);
const isBimi = (d: DnsRecordView) =>
  d.type === "TXT" &&
  d.name !== undefined &&
  /\._bimi\./.test(d.name) &&
  d.content !== undefined &&
  /^v=BIMI1/i.test(d.content);

/**
 * The active DKIM keys: SigningTable entries resolved through the KeyTable (or the keyname's own
 * selector._domainkey.domain).
 */
function activeDkimKeys(
  rs: readonly ResourceView[],
): { domain: string; selector: string; keyPath?: string; push: FilePush }[] {
  const pushes = filePushes(rs);
  const keyTables = pushes
    .filter((p) => p.path === "/etc/opendkim/KeyTable" && p.content !== undefined)
    .map((p) => ({ push: p, table: parseKeyTable(p.content!) }));
  return pushes
    .filter((p) => p.path === "/etc/opendkim/SigningTable" && p.content !== undefined)
    .flatMap((push) =>
      parseSigningTable(push.content!).flatMap(({ keyName }) => {
        const kt = keyTables.find((k) => k.push.host !== undefined && k.push.host === push.host) ?? keyTables[0];
        const entry = kt?.table.get(keyName);
        if (entry) return [{ domain: entry.domain, selector: entry.selector, keyPath: entry.keyPath, push }];
        const m = /^([^.]+)\._domainkey\.(.+)$/.exec(keyName);
        return m ? [{ domain: normName(m[2]), selector: m[1], push }] : [];
      }),
    );
}

/** Sending domains: the SigningTable's domains, the names of SPF records, the domains of DKIM records. */
export function sendingDomains(rs: readonly ResourceView[]): Set<string> {
  const out = new Set<string>();
  for (const k of activeDkimKeys(rs)) out.add(k.domain);
  for (const d of dnsRecords(rs)) {
    if (isSpf(d) && d.name) out.add(d.name);
    if (isDkim(d) && d.name) out.add(d.name.replace(/^.*?\._domainkey\./, ""));
  }
  return out;
}

/** MTA hostnames: PTR targets and every main.cf myhostname. */
export function mtaHostnames(rs: readonly ResourceView[]): Set<string> {
  const out = new Set<string>();
  for (const r of ofType(rs, TYPES.rdns)) if (isStr(r.props.dnsPtr)) out.add(normName(r.props.dnsPtr));
  for (const m of mainCfs(rs)) {
    const h = m.get("myhostname");
    if (h) out.add(normName(h));
  }
  return out;
}

/** Every address a node sends from: Rdns.ipAddress, Server ipv4Address/ipv6Address, IPv4 primary IPs. */
export function serverIps(rs: readonly ResourceView[]): { ip: string; source: ResourceView }[] {
  const out: { ip: string; source: ResourceView }[] = [];
  for (const r of ofType(rs, TYPES.rdns)) if (isStr(r.props.ipAddress)) out.push({ ip: r.props.ipAddress, source: r });
  for (const r of ofType(rs, TYPES.server)) {
    for (const k of ["ipv4Address", "ipv6Address"]) {
      const v = r.props[k];
      if (isStr(v) && v !== "" && parseCidr(v)) out.push({ ip: v, source: r });
    }
  }
  for (const r of ofType(rs, TYPES.primaryIp)) {
    const v = r.props.ipAddress;
    // An IPv6 primary IP is a /64 network; the node sends from its host address, which Rdns/Server carry.
    if (isStr(v) && !v.includes("/") && parseCidr(v)) out.push({ ip: v, source: r });
  }
  return out.filter((x) => parseCidr(x.ip) !== undefined);
}

/** Hostnames that lead into the tunnel: non-catch-all ingress hostnames and CNAMEs to *.cfargotunnel.com. */
export function tunnelHostnames(rs: readonly ResourceView[]): Set<string> {
  const out = new Set<string>();
  for (const r of ofType(rs, TYPES.tunnelConfig)) {
    for (const ing of asArray(asObj(r.props.config)?.ingresses) ?? []) {
      const h = asObj(ing)?.hostname;
      if (isStr(h) && h !== "") out.add(normName(h));
    }
  }
  for (const d of dnsRecords(rs))
    if (d.type === "CNAME" && d.name && d.content && /\.cfargotunnel\.com\.?$/i.test(d.content)) out.add(d.name);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// The rules
// ---------------------------------------------------------------------------------------------------

const v = (rule: string, r: ResourceView, message: string): Violation => ({
  rule,
  message: `${describe(r)}: ${message}`,
  ...(r.urn ? { urn: r.urn } : {}),
});

/** 1. No firewall inbound rule that can carry TCP opens 25/465/587, to any source. */
export const noPublicSmtpPorts: ResourceRule = {
  name: "no-public-smtp-ports",
  scope: "resource",
  reason:
    "An SMTP port reachable from outside is how a trusted-source mistake becomes an open relay (incident 000: FRP reverse tunnel to :25; incident 001: Docker NAT to :25); this relay only sends.",
  check(r) {
    if (r.type !== TYPES.firewall) return [];
    const out: Violation[] = [];
    for (const fr of firewallRules(r) ?? []) {
      if (fr.direction !== "in") continue;
      // Ports and protocol decide safety and come from config, never from the cloud: unknown fails closed.
      if (
        fr.protocol === undefined ||
        (isStr(fr.protocol) && !NON_TCP_PROTOCOLS.has(fr.protocol) && fr.ports === undefined)
      ) {
        out.push(
          v(
            this.name,
            r,
            `rule #${fr.index} has an unknown ${fr.protocol === undefined ? "protocol" : "port"}; a rule that might open 25/465/587 is refused until it is known`,
          ),
        );
        continue;
      }
      if (!isStr(fr.protocol) || NON_TCP_PROTOCOLS.has(fr.protocol) || fr.ports === undefined) continue;
      const sources = asArray(fr.sources);
      if (sources !== undefined && sources.length === 0) continue; // opens to nobody
      const hit = SMTP_PORTS.filter((p) => portInRange(p, fr.ports!));
      if (hit.length === 0) continue;
      const src = sources ? sources.map((s) => (s === undefined ? "(unknown)" : String(s))).join(", ") : "(any)";
      out.push(
        v(
          this.name,
          r,
          `rule #${fr.index} (in, ${fr.protocol}, port ${fr.portText}) opens ${hit.join("/")} to ${src}; a mail port must never be reachable from outside`,
        ),
      );
    }
    return out;
  },
};

/** 2. Every server has a firewall attached through firewallIds. */
export const firewallBeforeFirstBoot: ResourceRule = {
  name: "firewall-before-first-boot",
  scope: "resource",
  reason:
    "A firewall attached after creation leaves the first boot unprotected; firewallIds applies it before the server ever starts.",
  check(r) {
    if (r.type !== TYPES.server) return [];
    if (!has(r.props, "firewallIds"))
      return [v(this.name, r, "has no firewallIds; attach the relay firewall at creation")];
    const ids = r.props.firewallIds;
    if (ids === undefined) return [];
    const list = asArray(ids);
    if (list === undefined || list.length === 0 || list.every((x) => x === null || x === "" || x === 0)) {
      return [v(this.name, r, `firewallIds is ${JSON.stringify(ids)}; attach the relay firewall at creation`)];
    }
    return [];
  },
};

/** 3. Port 22 is never open to the whole Internet. */
export const sshRestricted: ResourceRule = {
  name: "ssh-restricted",
  scope: "resource",
  reason:
    "SSH is the deploy path and holds the keys to every secret on the host; it is open only to the admin ranges, never 0.0.0.0/0 or ::/0.",
  check(r) {
    if (r.type !== TYPES.firewall) return [];
    const out: Violation[] = [];
    for (const fr of firewallRules(r) ?? []) {
      if (
        fr.direction !== "in" ||
        !isStr(fr.protocol) ||
        NON_TCP_PROTOCOLS.has(fr.protocol) ||
        fr.ports === undefined ||
        !portInRange(22, fr.ports)
      )
        continue;
      const sources = asArray(fr.sources);
      const rawRule = asObj(asArray(r.props.rules)?.[fr.index]) ?? {};
      // Not set at all: Hetzner would treat it as no restriction. Unknown (key present, value undefined): fails closed.
      const wide =
        sources === undefined
          ? has(rawRule, "sourceIps")
            ? ["(unknown: fails closed)"]
            : ["(not set: any)"]
          : sources.filter((s) => !isStr(s)).length > 0
            ? ["(an unknown source: fails closed)"]
            : sources.filter(isStr).filter((s) => {
                const c = parseCidr(s);
                return c === undefined || isNearlyWholeInternet(c);
              });
      if (wide.length > 0)
        out.push(
          v(
            this.name,
            r,
            `rule #${fr.index} (in, ${fr.protocol}, port ${fr.portText}) opens SSH to ${wide.join(", ")}; list the admin CIDRs instead`,
          ),
        );
    }
    return out;
  },
};

/** 4. Postfix listens on loopback only and master.cf has no public smtpd listener. */
export const postfixLoopbackOnly: StackRule = {
  name: "postfix-loopback-only",
  scope: "stack",
  reason:
    "Postfix must not accept connections from anywhere but this host: a public or forwarded listener turned both incident hosts into open relays (000 FRP, 001 Docker NAT).",
  check(rs) {
    const out: Violation[] = [];
    const mains = mainCfs(rs);
    for (const m of mains) {
      const ii = m.get("inet_interfaces");
      if (ii === undefined)
        out.push(
          v(
            this.name,
            m.push.resource,
            "main.cf does not set inet_interfaces (Postfix's default is all); set inet_interfaces = loopback-only",
          ),
        );
      else if (!inetInterfacesLoopbackOnly(ii))
        out.push(
          v(
            this.name,
            m.push.resource,
            `main.cf inet_interfaces = ${ii}; must be loopback-only (or only 127.0.0.1/::1)`,
          ),
        );
    }
    for (const p of filePushes(rs)) {
      // main.cf and master.cf are rendered from config alone, so they are always known at preview: unknown fails
      // closed.
      if ((p.path === "/etc/postfix/main.cf" || p.path === "/etc/postfix/master.cf") && p.content === undefined) {
        out.push(
          v(
            this.name,
            p.resource,
            `the content of ${p.path} is unknown; inet_interfaces, mynetworks and the listeners can't be proven, so it is refused`,
          ),
        );
      }
      if (p.path.startsWith("/etc/postfix/") && !POSTFIX_FILES.has(p.path)) {
        out.push(
          v(
            this.name,
            p.resource,
            `pushes ${p.path}; only ${[...POSTFIX_FILES].join(", ")} may be written under /etc/postfix/`,
          ),
        );
      }
    }
    for (const { push, services } of masterCfs(rs)) {
      for (const s of services) {
        // smtpd behind a unix socket, fifo or pass service is a listener too: whatever connects to it is a local
        // client.
        if (s.type !== "inet" && SMTP_SERVER_COMMANDS.has(commandName(s.command))) {
          out.push(
            v(
              this.name,
              push.resource,
              `master.cf runs ${commandName(s.command)} on a ${s.type} service "${s.service}"; the only SMTP server is smtp inet on loopback`,
            ),
          );
          continue;
        }
        if (s.type !== "inet") continue;
        const { host, port } = masterServiceEndpoint(s.service);
        const submission = SUBMISSION_NAMES.has(port.toLowerCase());
        const smtpServer = SMTP_SERVER_COMMANDS.has(commandName(s.command));
        if (!submission && !smtpServer) continue;
        const publicHost = host !== undefined && !isLoopbackHost(host);
        if (publicHost || (host === undefined && submission)) {
          out.push(
            v(
              this.name,
              push.resource,
              `master.cf defines a public listener "${s.service} ${s.type} ... ${s.command}"; no submission, smtps or other smtpd listener may exist`,
            ),
          );
        }
      }
    }
    const servers = ofType(rs, TYPES.server);
    if (servers.length > 0 && !filePushes(rs).some((p) => p.path === "/etc/postfix/main.cf") && !somePushUnknown(rs)) {
      out.push(
        v(
          this.name,
          servers[0],
          "no /etc/postfix/main.cf is pushed to the relay nodes, so loopback-only listening can't be proven",
        ),
      );
    }
    return out;
  },
};

/** Are all mynetworks entries inside 127.0.0.0/8 or ::1/128? Returns the offending entries. */
export function mynetworksOutsideLoopback(value: string): string[] {
  return postfixList(value).filter((item) => {
    if (item.startsWith("!")) return false; // an exclusion only narrows the list
    const c = parseCidr(item);
    return c === undefined || !cidrWithinAny(c, LOOPBACK);
  });
}

/** 5. mynetworks is loopback only. */
export const trustedNetworksLoopbackOnly: StackRule = {
  name: "trusted-networks-loopback-only",
  scope: "stack",
  reason:
    "Postfix relays anything from mynetworks: a Docker NAT gateway (incident 001) or a private range in it made an open relay; only 127.0.0.0/8 and ::1 are trusted.",
  check(rs) {
    const out: Violation[] = [];
    const mains = mainCfs(rs);
    for (const m of mains) {
      const mn = m.get("mynetworks");
      if (mn === undefined) {
        out.push(
          v(
            this.name,
            m.push.resource,
            "main.cf does not set mynetworks (Postfix then derives it from mynetworks_style); set mynetworks = 127.0.0.0/8 [::1]/128",
          ),
        );
        continue;
      }
      const bad = mynetworksOutsideLoopback(mn);
      if (bad.length > 0)
        out.push(
          v(
            this.name,
            m.push.resource,
            `main.cf mynetworks = ${mn}; ${bad.join(", ")} is not inside 127.0.0.0/8 or ::1/128`,
          ),
        );
    }
    for (const { push, services } of masterCfs(rs)) {
      const main = mainCfFor(push, mains);
      for (const s of smtpdServices(services)) {
        const o = s.overrides.get("mynetworks");
        if (o === undefined) continue;
        const val = main ? expandPostfix(o, main.params) : o;
        const bad = mynetworksOutsideLoopback(val);
        if (bad.length > 0)
          out.push(
            v(
              this.name,
              push.resource,
              `master.cf service "${s.service}" overrides mynetworks=${val}; ${bad.join(", ")} is not loopback`,
            ),
          );
      }
    }
    return out;
  },
};

/**
 * The only tokens a relay, recipient or client restriction list may hold. Everything else is refused, because a
 * lookup (`check_client_access static:OK`), a restriction class defined as `permit`, or any other permit_* can say OK
 * to a stranger before reject_unauth_destination is reached.
 */
export const RESTRICTION_TOKENS: ReadonlySet<string> = new Set([
  "permit_mynetworks",
  "reject_unauth_destination",
  "defer_unauth_destination",
  "reject",
  "defer",
]);
/** Restriction lists whose tokens are allow-listed. */
export const RESTRICTION_LISTS = [
  "smtpd_client_restrictions",
  "smtpd_relay_restrictions",
  "smtpd_recipient_restrictions",
] as const;

/** Tokens of a restriction list that are not allow-listed (maps and their arguments included). */
export function restrictionTokensNotAllowed(value: string): string[] {
  return postfixList(value).filter((i) => !RESTRICTION_TOKENS.has(i.toLowerCase()));
}

/** Why a relay restriction list is not closed, or undefined when it is. */
export function relayRestrictionsProblem(value: string): string | undefined {
  const items = postfixList(value).map((i) => i.toLowerCase());
  const idx = items.findIndex((i) => i === "reject_unauth_destination" || i === "defer_unauth_destination");
  if (idx < 0) return "has no reject_unauth_destination (or defer_unauth_destination)";
  const bad = restrictionTokensNotAllowed(value);
  if (bad.length > 0) return `holds ${bad.join(", ")}; only ${[...RESTRICTION_TOKENS].join(", ")} may appear`;
  return undefined;
}

/** 6. Relay restrictions end in reject_unauth_destination with no permit after it. */
export const relayRestrictionsClosed: StackRule = {
  name: "relay-restrictions-closed",
  scope: "stack",
  reason:
    "smtpd_relay_restrictions is what stops an open relay when a client is not trusted; it must end in reject_unauth_destination with no permit after it.",
  check(rs) {
    const out: Violation[] = [];
    const mains = mainCfs(rs);
    for (const m of mains) {
      const rr = m.get("smtpd_relay_restrictions");
      if (rr === undefined) {
        out.push(
          v(
            this.name,
            m.push.resource,
            "main.cf does not set smtpd_relay_restrictions; set it to permit_mynetworks, reject_unauth_destination",
          ),
        );
        continue;
      }
      const p = relayRestrictionsProblem(rr);
      if (p) out.push(v(this.name, m.push.resource, `main.cf smtpd_relay_restrictions = ${rr} ${p}`));
      for (const key of RESTRICTION_LISTS.filter((k) => k !== "smtpd_relay_restrictions")) {
        const val = m.get(key);
        const bad = val === undefined ? [] : restrictionTokensNotAllowed(val);
        if (bad.length > 0)
          out.push(
            v(
              this.name,
              m.push.resource,
              `main.cf ${key} = ${val} holds ${bad.join(", ")}; only ${[...RESTRICTION_TOKENS].join(", ")} may appear`,
            ),
          );
      }
    }
    for (const { push, services } of masterCfs(rs)) {
      const main = mainCfFor(push, mains);
      for (const s of smtpdServices(services)) {
        for (const key of RESTRICTION_LISTS) {
          const o = s.overrides.get(key);
          if (o === undefined) continue;
          const val = main ? expandPostfix(o, main.params) : o;
          const p =
            key === "smtpd_relay_restrictions"
              ? relayRestrictionsProblem(val)
              : restrictionTokensNotAllowed(val).length > 0
                ? `holds ${restrictionTokensNotAllowed(val).join(", ")}`
                : undefined;
          if (p)
            out.push(
              v(this.name, push.resource, `master.cf service "${s.service}" overrides ${key}=${val}, which ${p}`),
            );
        }
      }
    }
    return out;
  },
};

/** 7. mydestination lists neither the sending domain nor an MTA hostname. */
export const sendOnlyMydestination: StackRule = {
  name: "send-only-mydestination",
  scope: "stack",
  reason:
    "A send-only host that lists its domain or hostname in mydestination delivers that mail locally instead of to the domain's MX (swallowed replies, bounces, DMARC reports).",
  check(rs) {
    const out: Violation[] = [];
    const forbidden = new Set([...sendingDomains(rs), ...mtaHostnames(rs)]);
    for (const d of dnsRecords(rs)) if (isDmarc(d) && d.name) forbidden.add(d.name.replace(/^_dmarc\./, ""));
    for (const m of mainCfs(rs)) {
      const md = m.get("mydestination");
      if (md === undefined) {
        out.push(
          v(
            this.name,
            m.push.resource,
            "main.cf does not set mydestination (Postfix's default includes $myhostname); set mydestination = localhost",
          ),
        );
        continue;
      }
      const hits = postfixList(md)
        .map(normName)
        .filter((x) => forbidden.has(x));
      if (hits.length > 0)
        out.push(
          v(
            this.name,
            m.push.resource,
            `main.cf mydestination = ${md} lists ${hits.join(", ")}; a send-only host must not receive for its domain or hostname`,
          ),
        );
    }
    return out;
  },
};

/** 8. milter_default_action = tempfail, and the DKIM milter is in smtpd_milters and non_smtpd_milters. */
export const neverSendUnsigned: StackRule = {
  name: "never-send-unsigned",
  scope: "stack",
  reason:
    "Unsigned mail fails DMARC and is rejected under Gmail/Yahoo sender rules (RFC 6376, RFC 7489); if OpenDKIM is down, mail must wait (tempfail), not leave unsigned.",
  check(rs) {
    const out: Violation[] = [];
    const pushes = filePushes(rs);
    const mains = mainCfs(rs);
    const dkimSockets = pushes
      .filter((p) => p.path === "/etc/opendkim.conf" && p.content !== undefined)
      .flatMap((p) => {
        const s = parseOpendkimConf(p.content!).get("socket");
        const e = s ? opendkimSocketEndpoint(s) : undefined;
        return e ? [{ host: p.host, endpoint: e }] : [];
      });
    for (const m of mains) {
      const r = m.push.resource;
      const queueDir = m.get("queue_directory") ?? "/var/spool/postfix";
      const action = m.get("milter_default_action");
      if (action?.trim().toLowerCase() !== "tempfail")
        out.push(v(this.name, r, `main.cf milter_default_action = ${action ?? "(not set: accept)"}; must be tempfail`));
      const ro = m.get("receive_override_options");
      if (ro && postfixList(ro).includes("no_milters"))
        out.push(v(this.name, r, `main.cf receive_override_options = ${ro} disables the milters`));
      const sockets = dkimSockets
        .filter((s) => s.host === undefined || m.push.host === undefined || s.host === m.push.host)
        .map((s) => s.endpoint);
      for (const key of ["smtpd_milters", "non_smtpd_milters"]) {
        const val = m.get(key);
        const items = postfixList(val ?? "").map(parseMilterItem);
        if (items.length === 0) {
          out.push(
            v(
              this.name,
              r,
              `main.cf ${key} is ${val === undefined ? "not set" : "empty"}; the DKIM milter must sign every message`,
            ),
          );
          continue;
        }
        for (const it of items) {
          if (it.defaultAction !== undefined && it.defaultAction.toLowerCase() !== "tempfail")
            out.push(
              v(
                this.name,
                r,
                `main.cf ${key} sets default_action=${it.defaultAction} for ${it.address}; must be tempfail`,
              ),
            );
        }
        if (sockets.length > 0) {
          const endpoints = items
            .map((i) => postfixMilterEndpoint(i.address, queueDir))
            .filter((e): e is MilterEndpoint => e !== undefined);
          if (!endpoints.some((e) => sockets.some((s) => sameMilter(e, s))))
            out.push(
              v(this.name, r, `main.cf ${key} = ${val} does not include the OpenDKIM socket from /etc/opendkim.conf`),
            );
        }
      }
      if (sockets.length === 0) {
        const a = new Set(postfixList(m.get("smtpd_milters") ?? "").map((i) => parseMilterItem(i).address));
        const b = postfixList(m.get("non_smtpd_milters") ?? "").map((i) => parseMilterItem(i).address);
        if (a.size > 0 && b.length > 0 && !b.some((x) => a.has(x)))
          out.push(
            v(
              this.name,
              r,
              "main.cf smtpd_milters and non_smtpd_milters share no milter; both paths must go through the DKIM milter",
            ),
          );
      }
    }
    for (const { push, services } of masterCfs(rs)) {
      for (const s of services) {
        const act = s.overrides.get("milter_default_action");
        if (act !== undefined && act.toLowerCase() !== "tempfail")
          out.push(
            v(this.name, push.resource, `master.cf service "${s.service}" overrides milter_default_action=${act}`),
          );
        const ro = s.overrides.get("receive_override_options");
        if (ro !== undefined && postfixList(ro).includes("no_milters"))
          out.push(
            v(
              this.name,
              push.resource,
              `master.cf service "${s.service}" overrides receive_override_options=${ro}, which disables DKIM signing`,
            ),
          );
        for (const key of ["smtpd_milters", "non_smtpd_milters"]) {
          const o = s.overrides.get(key);
          if (o !== undefined && postfixList(o).length === 0)
            out.push(
              v(
                this.name,
                push.resource,
                `master.cf service "${s.service}" overrides ${key} to empty, so its mail leaves unsigned`,
              ),
            );
        }
      }
    }
    return out;
  },
};

/**
 * Why a tunnel ingress list lets the tunnel reach something other than the relay's two listeners, or [] when it
 * doesn't.
 */
export function tunnelIngressProblems(ingresses: readonly unknown[]): string[] {
  const problems: string[] = [];
  const mailPort = new RegExp(`:(${TUNNEL_FORBIDDEN_PORTS.join("|")})(?![0-9])`);
  ingresses.forEach((raw, i) => {
    const ing = asObj(raw);
    if (!ing) return;
    const last = i === ingresses.length - 1;
    const text = JSON.stringify(ing);
    if (/smtps?:\/\//i.test(text)) problems.push(`ingress #${i} uses smtp:// (${String(ing.service)})`);
    else if (mailPort.test(text)) problems.push(`ingress #${i} names a mail port (${String(ing.service)})`);
    const service = ing.service;
    // Where the tunnel sends traffic decides safety and never comes from the cloud: unknown fails closed.
    if (service === undefined) {
      problems.push(
        `ingress #${i} has an unknown service; a route that might reach an SMTP port is refused until it is known`,
      );
      return;
    }
    if (last) {
      if (
        service !== "http_status:404" ||
        (isStr(ing.hostname) && ing.hostname !== "") ||
        (isStr(ing.path) && ing.path !== "")
      ) {
        problems.push(
          `the last ingress must be a catch-all http_status:404, not ${JSON.stringify({ hostname: ing.hostname, path: ing.path, service })}`,
        );
      }
      return;
    }
    const m = isStr(service) ? /^(http|tcp):\/\/(127\.0\.0\.1|localhost|\[::1\]):(\d{1,5})\/?$/.exec(service) : null;
    if (!m || Number(m[3]) !== RELAY_TUNNEL_SERVICES[m[1] as "http" | "tcp"]) {
      const { http, tcp } = RELAY_TUNNEL_SERVICES;
      problems.push(
        `ingress #${i} service ${JSON.stringify(service)} is neither http://127.0.0.1:${http} (the relay's HTTP API) nor tcp://127.0.0.1:${tcp} (its SMTP ingress)`,
      );
    } else if (m[1] === "tcp" && !(isStr(ing.hostname) && ing.hostname !== "")) {
      problems.push(`ingress #${i} sends every hostname to ${service}; a tcp:// route must name its hostname`);
    }
  });
  if (ingresses.length === 0) problems.push("has no ingress rules (needs a catch-all http_status:404)");
  return problems;
}

/** 9. The tunnel reaches only the relay's two loopback listeners: its HTTP API and its SMTP ingress. */
export const tunnelCannotReachMailPorts: ResourceRule = {
  name: "tunnel-cannot-reach-mail-ports",
  scope: "resource",
  reason:
    "Through a tunnel every caller arrives from localhost, which Postfix trusts: a tunnel to an SMTP port is exactly incident 000 (FRP to :25).",
  check(r) {
    if (r.type !== TYPES.tunnelConfig) return [];
    const cfg = asObj(r.props.config);
    if (cfg === undefined)
      return [v(this.name, r, "tunnel config is unknown or not set; its routes can't be proven, so it is refused")];
    const ing = asArray(cfg.ingresses);
    if (ing === undefined)
      return [
        v(
          this.name,
          r,
          has(cfg, "ingresses")
            ? "tunnel config ingresses are unknown; refused until known"
            : "config has no ingresses (needs the relay route and a catch-all http_status:404)",
        ),
      ];
    const problems = tunnelIngressProblems(ing);
    const rest = JSON.stringify({ ...cfg, ingresses: undefined });
    if (/smtps?:\/\/|tcp:\/\//i.test(rest)) problems.push("config names smtp:// or tcp:// outside the ingress list");
    return problems.map((p) => v(this.name, r, `tunnel config ${p}`));
  },
};

/** cloudflared's locally managed ingress file (the tunnel is config_src "local"). */
export const CLOUDFLARED_CONFIG_PATH = "/etc/cloudflared/mail-relay.yml";

/**
 * Why a pushed cloudflared config file is unsafe: ingress problems, and any route without cloudflared's own Access
 * check.
 */
export function cloudflaredConfigProblems(text: string, auds: readonly string[]): string[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return ["is not the JSON the renderer writes, so its routes can't be checked"];
  }
  const ingress = asArray(asObj(doc)?.ingress);
  if (ingress === undefined) return ["has no ingress list"];
  const problems = tunnelIngressProblems(ingress);
  ingress.slice(0, -1).forEach((raw, i) => {
    const access = asObj(asObj(asObj(raw)?.originRequest)?.access);
    if (!access || access.required !== true) {
      problems.push(
        `ingress #${i} does not set originRequest.access.required: true (cloudflared must check the Access JWT itself)`,
      );
      return;
    }
    if (!isStr(access.teamName) || access.teamName === "")
      problems.push(`ingress #${i} originRequest.access has no teamName`);
    const tags = asArray(access.audTag);
    if (!tags || tags.length === 0 || !tags.every(isStr))
      problems.push(`ingress #${i} originRequest.access has no audTag`);
    else if (auds.length > 0 && !tags.every((t) => auds.includes(t as string)))
      problems.push(`ingress #${i} audTag ${JSON.stringify(tags)} is not this stack's Access application`);
  });
  return problems;
}

/** 17. The tunnel's ingress is locally managed, pushed to every node, and cloudflared checks the Access JWT. */
export const tunnelIngressLocal: StackRule = {
  name: "tunnel-ingress-local",
  scope: "stack",
  reason:
    "A remotely managed tunnel takes its routes from the Cloudflare dashboard, where one edit can send the hostname to an SMTP port; the routes must live in a file on the host, and cloudflared must refuse a request Access did not sign.",
  check(rs) {
    const tunnels = ofType(rs, TYPES.tunnel);
    if (tunnels.length === 0) return [];
    const out: Violation[] = [];
    for (const t of tunnels) {
      // configSrc is plain configuration, never cloud-assigned: unknown counts as wrong (fail closed).
      if (t.props.configSrc !== "local")
        out.push(
          v(
            this.name,
            t,
            `configSrc is ${t.props.configSrc === undefined ? "unknown or not set" : JSON.stringify(t.props.configSrc)}; must be "local" so the dashboard can't change the routes`,
          ),
        );
    }
    const auds = ofType(rs, TYPES.accessApp)
      .map((a) => a.props.aud)
      .filter(isStr);
    const pushes = filePushes(rs).filter((p) => p.path === CLOUDFLARED_CONFIG_PATH);
    for (const p of pushes) {
      // Unknown only while the Access application's AUD tag is (first preview); checked again after the update.
      if (p.content === undefined) continue;
      for (const problem of cloudflaredConfigProblems(p.content, auds))
        out.push(v(this.name, p.resource, `${CLOUDFLARED_CONFIG_PATH} ${problem}`));
    }
    const servers = ofType(rs, TYPES.server);
    const hosts = new Set(pushes.map((p) => p.host));
    const nodeHosts = new Set(
      filePushes(rs)
        .filter((p) => p.path === "/etc/postfix/main.cf")
        .map((p) => p.host),
    );
    if (servers.length > 0 && !somePushUnknown(rs)) {
      if (pushes.length === 0)
        out.push(
          v(this.name, tunnels[0], `no ${CLOUDFLARED_CONFIG_PATH} is pushed: cloudflared would have no local ingress`),
        );
      else
        for (const h of nodeHosts)
          if (h !== undefined && !hosts.has(h))
            out.push(v(this.name, tunnels[0], `node ${h} gets no ${CLOUDFLARED_CONFIG_PATH}`));
    }
    return out;
  },
};

/** Does an Access application's domain/destinations cover a hostname (exactly or by a *. wildcard)? */
function appCovers(app: ResourceView, host: string): boolean | undefined {
  const names: unknown[] = [
    app.props.domain,
    ...(asArray(app.props.selfHostedDomains) ?? []),
    ...(asArray(app.props.destinations) ?? []).map((d) => asObj(d)?.uri),
  ];
  let unknown = false;
  for (const n of names) {
    if (n === undefined) {
      unknown = true;
      continue;
    }
    if (!isStr(n)) continue;
    const d = normName(n.replace(/^https?:\/\//, ""));
    if (d.includes("/")) continue; // a path-scoped app leaves the rest of the hostname open
    if (d === host || (d.startsWith("*.") && host.endsWith(d.slice(1)))) return true;
  }
  return unknown ? undefined : false;
}

const SERVICE_TOKEN_INCLUDES = ["serviceToken", "anyValidServiceToken"];

/** 10. When a tunnel exists, a service-token Access application covers each relay hostname. */
export const accessInFrontOfTunnel: StackRule = {
  name: "access-in-front-of-tunnel",
  scope: "stack",
  reason:
    "The tunnel makes the relay's HTTP API public; Cloudflare Access with a service-token (non_identity) policy keeps every caller without a token at the edge.",
  check(rs) {
    if (ofType(rs, TYPES.tunnel).length === 0) return [];
    const out: Violation[] = [];
    const apps = ofType(rs, TYPES.accessApp);
    const policies = ofType(rs, TYPES.accessPolicy);
    const idOf = (p: ResourceView) => p.id ?? (isStr(p.props.id) ? p.props.id : undefined);
    const idsUnknown = policies.some((p) => idOf(p) === undefined);
    const ownTokens = new Set(
      ofType(rs, TYPES.serviceToken)
        .map((t) => idOf(t))
        .filter(isStr),
    );
    // A token whose ID the cloud has not assigned yet can't be matched: then a serviceToken include is not judged.
    const tokenIdsUnknown = ofType(rs, TYPES.serviceToken).some((t) => idOf(t) === undefined);
    for (const host of tunnelHostnames(rs)) {
      const covering = apps.filter((a) => appCovers(a, host) !== false);
      if (covering.length === 0) {
        const anchor = ofType(rs, TYPES.tunnel)[0];
        out.push(v(this.name, anchor, `relay hostname ${host} has no Access application in front of it`));
        continue;
      }
      for (const app of covering.filter((a) => appCovers(a, host) === true)) {
        const refs = asArray(app.props.policies);
        if (refs === undefined) {
          if (!has(app.props, "policies"))
            out.push(v(this.name, app, `covers ${host} but has no policies; add a non_identity service-token policy`));
          continue;
        }
        let tokenPolicy = false;
        let unknown = false;
        // The app's policies: inline ones, ones found by ID, else the AccessPolicies its `policies` property depends
        // on.
        const resolved: Record<string, unknown>[] = [];
        const deps = (app.propertyDependencies?.policies ?? []).flatMap((u) => policies.filter((p) => p.urn === u));
        for (const ref of refs.map(asObj)) {
          if (!ref) {
            unknown = true;
            continue;
          }
          if (ref.decision !== undefined || ref.includes !== undefined) resolved.push(ref);
          else if (isStr(ref.id) && policies.some((p) => idOf(p) === ref.id))
            resolved.push(policies.find((p) => idOf(p) === ref.id)!.props);
          else if (deps.length > 0) resolved.push(...deps.map((d) => d.props));
          else if (ref.id === undefined || idsUnknown) unknown = true;
          else
            out.push(
              v(
                this.name,
                app,
                `covers ${host} with policy ${String(ref.id)}, which this stack does not manage, so its decision can't be checked`,
              ),
            );
        }
        for (const pol of resolved) {
          const includes = (asArray(pol.includes) ?? []).map(asObj);
          if (pol.decision === "bypass")
            out.push(
              v(
                this.name,
                app,
                `covers ${host} with a bypass policy; nobody may reach the relay without a service token`,
              ),
            );
          if (includes.some((inc) => inc && has(inc, "everyone")) && pol.decision !== "deny")
            out.push(v(this.name, app, `covers ${host} with a policy that includes everyone`));
          if (
            pol.decision === "non_identity" &&
            includes.some((inc) => inc && SERVICE_TOKEN_INCLUDES.some((k) => has(inc, k)))
          )
            tokenPolicy = true;
          if (pol.decision === undefined) unknown = true;
          if (pol.decision === "deny") continue;
          // Includes are OR-ed: one {ip: 0.0.0.0/0} or anyValidServiceToken beside the tokens lets anyone (or any
          // token of the account) in. Every include must be one of this stack's own service tokens.
          includes.forEach((inc, i) => {
            const tokenId = asObj(inc?.serviceToken)?.tokenId;
            const keys = inc ? Object.keys(inc) : [];
            if (inc && keys.length === 1 && keys[0] === "serviceToken" && (tokenId === undefined || tokenIdsUnknown))
              return; // ids not assigned yet
            if (!inc || keys.length !== 1 || keys[0] !== "serviceToken" || !isStr(tokenId) || !ownTokens.has(tokenId)) {
              out.push(
                v(
                  this.name,
                  app,
                  `covers ${host} with a policy whose include #${i} ${JSON.stringify(inc ?? null)} is not one of this stack's service tokens`,
                ),
              );
            }
          });
        }
        if (!tokenPolicy && !unknown)
          out.push(v(this.name, app, `covers ${host} but no policy is non_identity with a service token`));
      }
    }
    return out;
  },
};

/** 11. FCrDNS: every PTR has a matching non-proxied A/AAAA; mail host records are never proxied. */
export const forwardConfirmedRdns: StackRule = {
  name: "forward-confirmed-rdns",
  scope: "stack",
  reason:
    "Receivers (Gmail/Yahoo sender guidelines) require forward-confirmed reverse DNS: the PTR name must resolve back to the same IP, which a Cloudflare-proxied record never does.",
  check(rs) {
    const out: Violation[] = [];
    const recs = dnsRecords(rs).filter((d) => d.type === "A" || d.type === "AAAA");
    for (const r of ofType(rs, TYPES.rdns)) {
      const ip = r.props.ipAddress;
      const ptr = r.props.dnsPtr;
      if (!isStr(ip) || !isStr(ptr)) continue;
      const name = normName(ptr);
      const same = recs.filter((d) => d.name === name || d.name === undefined);
      if (same.some((d) => d.content === undefined || d.name === undefined)) continue; // can't decide yet
      const match = same.find((d) => d.content !== undefined && sameIp(d.content, ip));
      if (!match) out.push(v(this.name, r, `PTR ${ip} -> ${name} has no A/AAAA record ${name} -> ${ip}`));
    }
    const mailHosts = mtaHostnames(rs);
    for (const d of dnsRecords(rs)) {
      if (
        (d.type === "A" || d.type === "AAAA" || d.type === "CNAME") &&
        d.name &&
        mailHosts.has(d.name) &&
        d.proxied === true
      ) {
        out.push(
          v(
            this.name,
            d.resource,
            `${d.type} ${d.name} is proxied; a mail host's record must resolve to the node itself (proxied: false)`,
          ),
        );
      }
    }
    return out;
  },
};

/** 12. One SPF record per domain, covering every node IP, ending in ~all or -all. */
export const spfCoversEveryNode: StackRule = {
  name: "spf-covers-every-node",
  scope: "stack",
  reason:
    "RFC 7208: two SPF records are a permerror, an uncovered node IP fails SPF, and +all/?all/no all authorizes the whole Internet to send as the domain.",
  check(rs) {
    const out: Violation[] = [];
    const recs = dnsRecords(rs);
    const spfs = recs.filter(isSpf);
    const byName = new Map<string, DnsRecordView[]>();
    for (const s of spfs) if (s.name) byName.set(s.name, [...(byName.get(s.name) ?? []), s]);
    for (const [name, list] of byName) {
      if (list.length > 1)
        out.push(
          v(
            this.name,
            list[1].resource,
            `${name} has ${list.length} SPF records (${list.map((l) => l.resource.name).join(", ")}); RFC 7208 allows one`,
          ),
        );
    }
    const ips = serverIps(rs);
    for (const s of spfs) {
      const terms = parseSpf(s.content!) ?? [];
      const last = terms.filter((t) => !t.mechanism.endsWith("="));
      const allTerm = last[last.length - 1];
      if (!allTerm || allTerm.mechanism !== "all" || (allTerm.qualifier !== "~" && allTerm.qualifier !== "-")) {
        out.push(
          v(this.name, s.resource, `SPF "${s.content}" must end in ~all or -all (found ${allTerm?.raw ?? "nothing"})`),
        );
      }
      const badAll = terms.filter((t) => t.mechanism === "all" && t !== allTerm);
      if (badAll.length > 0)
        out.push(
          v(this.name, s.resource, `SPF "${s.content}" has ${badAll.map((t) => t.raw).join(", ")} before its end`),
        );
      if (terms.some((t) => t.mechanism === "redirect="))
        out.push(v(this.name, s.resource, `SPF "${s.content}" uses redirect=; end it in ~all or -all instead`));
      const lookups = terms.filter((t) =>
        ["include", "a", "mx", "ptr", "exists", "redirect="].includes(t.mechanism),
      ).length;
      if (lookups > 10)
        out.push(
          v(this.name, s.resource, `SPF "${s.content}" needs ${lookups} DNS lookups; RFC 7208 section 4.6.4 allows 10`),
        );
      const nets = terms
        .filter((t) => (t.mechanism === "ip4" || t.mechanism === "ip6") && t.qualifier === "+" && t.value)
        .map((t) => parseCidr(t.value!))
        .filter((c): c is Cidr => c !== undefined);
      const uncovered = [...new Set(ips.filter((x) => !cidrWithinAny(parseCidr(x.ip)!, nets)).map((x) => x.ip))];
      if (uncovered.length > 0)
        out.push(v(this.name, s.resource, `SPF "${s.content}" does not cover node IP(s) ${uncovered.join(", ")}`));
    }
    if (ofType(rs, TYPES.server).length > 0) {
      for (const d of sendingDomains(rs)) {
        const txtUnknown = recs.some(
          (r) => r.name === undefined || r.type === undefined || (r.type === "TXT" && r.content === undefined),
        );
        if (!byName.has(d) && !txtUnknown) {
          out.push(v(this.name, ofType(rs, TYPES.server)[0], `sending domain ${d} has no SPF record`));
        }
      }
    }
    return out;
  },
};

/** A DMARC record's problems for BIMI (BIMI spec: p=quarantine/reject, pct=100, sp not none). */
export function dmarcBimiProblem(tags: ReadonlyMap<string, string>): string | undefined {
  const p = tags.get("p")?.toLowerCase();
  if (p !== "quarantine" && p !== "reject") return `p=${p ?? "(none)"}`;
  const pct = tags.get("pct");
  if (pct !== undefined && Number(pct) !== 100) return `pct=${pct}`;
  const sp = tags.get("sp")?.toLowerCase();
  if (sp === "none") return "sp=none";
  return undefined;
}

/**
 * 13. DKIM record for the active selector (>= 2048-bit, matching the pushed key); DMARC exists; BIMI needs enforcing
 * DMARC.
 */
export const dkimDmarcBimi: StackRule = {
  name: "dkim-dmarc-bimi",
  scope: "stack",
  reason:
    "RFC 6376/8301: receivers ignore keys under 1024 bits and Gmail/Yahoo expect 2048; without the active selector's record every signature fails; DMARC is required (RFC 7489) and BIMI only works at p=quarantine/reject, pct=100.",
  check(rs) {
    const out: Violation[] = [];
    const recs = dnsRecords(rs);
    const namesUnknown = recs.some(
      (r) =>
        r.name === undefined ||
        (r.type === "TXT" && r.content === undefined && r.name !== undefined && (isDkim(r) || isDmarc(r))),
    );
    const pushes = filePushes(rs);
    // Every published DKIM key: a valid RSA key of >= 2048 bits (or an empty p=, a revoked key).
    for (const d of recs.filter(isDkim)) {
      if (d.content === undefined) continue;
      const tags = parseTags(d.content);
      const p = tags.get("p");
      if (p === undefined) {
        out.push(v(this.name, d.resource, `DKIM record ${d.name} has no p= tag`));
        continue;
      }
      if (p === "") continue;
      const k = (tags.get("k") ?? "rsa").toLowerCase();
      if (k !== "rsa") continue;
      const bits = dkimKeyBits(p);
      if (bits === undefined)
        out.push(v(this.name, d.resource, `DKIM record ${d.name} p= is not a valid RSA public key`));
      else if (bits < 2048)
        out.push(v(this.name, d.resource, `DKIM record ${d.name} has a ${bits}-bit key; at least 2048 bits`));
    }
    // The active selector of each node has a record, and it carries the public half of the pushed private key.
    const active = activeDkimKeys(rs);
    for (const a of active) {
      const name = `${a.selector}._domainkey.${a.domain}`;
      const rec = recs.find((d) => d.type === "TXT" && d.name === name);
      if (!rec) {
        if (!namesUnknown)
          out.push(
            v(
              this.name,
              a.push.resource,
              `active DKIM selector ${a.selector} for ${a.domain} has no TXT record ${name}`,
            ),
          );
        continue;
      }
      if (rec.content === undefined) continue;
      const p = parseTags(rec.content).get("p");
      if (p === "" || p === undefined) {
        out.push(v(this.name, rec.resource, `DKIM record ${name} for the active selector has no key`));
        continue;
      }
      const keyPush = pushes.find(
        (x) => x.path === a.keyPath && (x.host === undefined || a.push.host === undefined || x.host === a.push.host),
      );
      if (keyPush?.content !== undefined) {
        const spki = spkiOfPrivateKey(keyPush.content);
        if (spki !== undefined && spki !== p.replace(/\s+/g, ""))
          out.push(
            v(this.name, rec.resource, `DKIM record ${name} does not match the private key pushed to ${a.keyPath}`),
          );
      }
    }
    if (
      ofType(rs, TYPES.server).length > 0 &&
      active.length === 0 &&
      !pushes.some((p) => p.path === "/etc/opendkim/SigningTable") &&
      !somePushUnknown(rs)
    ) {
      out.push(
        v(
          this.name,
          ofType(rs, TYPES.server)[0],
          "no /etc/opendkim/SigningTable is pushed, so no DKIM selector is active",
        ),
      );
    }
    // DMARC: each sending domain has exactly one valid record; BIMI needs it enforcing.
    const dmarcs = recs.filter(isDmarc);
    const bimis = recs.filter(isBimi);
    const domains = new Set([...sendingDomains(rs), ...bimis.map((b) => b.name!.replace(/^.*?\._bimi\./, ""))]);
    for (const domain of domains) {
      const mine = dmarcs.filter((d) => d.name === `_dmarc.${domain}`);
      if (mine.length === 0) {
        if (!namesUnknown) {
          const anchor =
            recs.find((r) => r.name === domain || r.name?.endsWith(`.${domain}`))?.resource ??
            ofType(rs, TYPES.server)[0] ??
            rs[0];
          if (anchor) out.push(v(this.name, anchor, `sending domain ${domain} has no DMARC record _dmarc.${domain}`));
        }
        continue;
      }
      if (mine.length > 1)
        out.push(
          v(this.name, mine[1].resource, `_dmarc.${domain} has ${mine.length} records; RFC 7489 requires exactly one`),
        );
      const rec = mine[0];
      if (rec.content === undefined) continue;
      const tags = parseTags(rec.content);
      if (!/^v\s*=\s*DMARC1\s*(;|$)/.test(rec.content))
        out.push(v(this.name, rec.resource, `_dmarc.${domain} "${rec.content}" must start with v=DMARC1`));
      const p = tags.get("p")?.toLowerCase();
      if (p !== "none" && p !== "quarantine" && p !== "reject")
        out.push(
          v(this.name, rec.resource, `_dmarc.${domain} has p=${p ?? "(missing)"}; must be none, quarantine or reject`),
        );
      const bimi = bimis.find((b) => b.name!.endsWith(`._bimi.${domain}`));
      const problem = dmarcBimiProblem(tags);
      if (bimi && problem)
        out.push(
          v(
            this.name,
            bimi.resource,
            `BIMI for ${domain} needs DMARC p=quarantine/reject at pct=100, but _dmarc.${domain} has ${problem}`,
          ),
        );
    }
    return out;
  },
};

/** The decoded forms of base64 (and gzip+base64) blobs inside a text: write_files content may be encoded. */
export function decodedBlobs(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/[A-Za-z0-9+/]{24,}={0,2}/g)) {
    try {
      const buf = Buffer.from(m[0], "base64");
      out.push(buf[0] === 0x1f && buf[1] === 0x8b ? gunzipSync(buf).toString("utf8") : buf.toString("utf8"));
    } catch {
      // not base64 or not gzip: nothing hidden there
    }
  }
  return out;
}

export interface SecretValue {
  /** Where it comes from (resource + field): reported instead of the value itself. */
  readonly source: string;
  readonly value: string;
}

/** Env keys that name a secret; other keys of a secret file (paths, domains, limits) are configuration. */
const SECRET_KEY_NAME = /TOKEN|SECRET|PASSWORD|PASSWD|PASS\b|_KEY\b|^KEY|CREDENTIAL|AUTH/i;
/** A value shaped like generated key material: long, no path or domain punctuation, letters and digits mixed. */
const looksRandom = (x: string) =>
  x.length >= 20 && /^[A-Za-z0-9+/=_-]+$/.test(x) && !x.includes("/") && /[0-9]/.test(x) && /[A-Za-z]/.test(x);

const SECRET_FILE =
  /^(\/etc\/opendkim\/keys\/|\/etc\/mail-relay\.env$|\/etc\/postfix\/sasl_passwd$|\/etc\/cloudflared\/)/;

/** Every secret value the stack holds: generated secrets, private keys, tokens, secret file contents. */
export function stackSecrets(rs: readonly ResourceView[]): SecretValue[] {
  const out: SecretValue[] = [];
  const add = (r: ResourceView, field: string, value: unknown, min = 8) => {
    if (isStr(value) && value.trim().length >= min)
      out.push({ source: `${describe(r)} ${field}`, value: value.trim() });
  };
  for (const r of rs) {
    switch (r.type) {
      case TYPES.randomPassword:
        add(r, "result", r.props.result);
        break;
      case TYPES.randomBytes:
        add(r, "base64", r.props.base64);
        add(r, "hex", r.props.hex);
        break;
      case TYPES.privateKey:
        for (const f of ["privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"]) {
          add(r, f, r.props[f]);
          // A key body pasted without its BEGIN/END lines is just as leaked.
          if (isStr(r.props[f]))
            for (const line of r.props[f].split(/\r?\n/))
              if (/^[A-Za-z0-9+/=]{40,}$/.test(line)) add(r, `${f} (body)`, line);
        }
        break;
      case TYPES.serviceToken:
        add(r, "clientSecret", r.props.clientSecret);
        break;
      case TYPES.tunnel:
        add(r, "tunnelSecret", r.props.tunnelSecret);
        break;
      case TYPES.command: {
        const pk = asObj(r.props.connection)?.privateKey;
        add(r, "connection.privateKey", pk);
        if (isStr(pk))
          for (const line of pk.split(/\r?\n/))
            if (/^[A-Za-z0-9+/=]{40,}$/.test(line)) add(r, "connection.privateKey (body)", line);
        add(r, "connection.password", asObj(r.props.connection)?.password);
        break;
      }
      default:
        break;
    }
  }
  for (const p of filePushes(rs)) {
    if (!SECRET_FILE.test(p.path) || p.content === undefined) continue;
    add(p.resource, `content of ${p.path}`, p.content, 12);
    for (const line of p.content.split(/\r?\n/)) {
      const kv = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
      if (kv) {
        const value = kv[2].replace(/^(["'])(.*)\1$/, "$2");
        // Each part of a list value ("app=<token>,billing=<token>") counts on its own.
        for (const part of value.split(/[,;\s]+/).map((x) => x.replace(/^[A-Za-z0-9_.-]{1,32}=/, ""))) {
          if (SECRET_KEY_NAME.test(kv[1]) || looksRandom(part)) add(p.resource, `${kv[1]} in ${p.path}`, part, 12);
        }
      }
      const sasl = /^\s*\S+\s+[^:\s]+:(\S+)\s*$/.exec(line);
      if (p.path.endsWith("sasl_passwd") && sasl) add(p.resource, `password in ${p.path}`, sasl[1]);
      if (/^[A-Za-z0-9+/=]{40,}$/.test(line.trim())) add(p.resource, `key body line in ${p.path}`, line.trim());
    }
  }
  return out;
}

/** 14. User-data holds no secret value of the stack and no PRIVATE KEY. */
export const noSecretsInUserData: StackRule = {
  name: "no-secrets-in-user-data",
  scope: "stack",
  reason:
    "User-data is readable from the metadata service by every process on the host and kept by Hetzner; secrets go over SSH into root-only files instead.",
  check(rs) {
    const out: Violation[] = [];
    const secrets = stackSecrets(rs);
    for (const r of ofType(rs, TYPES.server)) {
      const ud = r.props.userData;
      if (!isStr(ud)) continue;
      const texts = [ud, ...decodedBlobs(ud)];
      if (texts.some((t) => /PRIVATE KEY/.test(t))) out.push(v(this.name, r, "userData contains a PRIVATE KEY block"));
      const leaked = [...new Set(secrets.filter((s) => texts.some((t) => t.includes(s.value))).map((s) => s.source))];
      // Name the secret's source, never its value.
      for (const src of leaked) out.push(v(this.name, r, `userData contains the secret value of ${src}`));
    }
    return out;
  },
};

/** 15. MX never points at a relay node. */
export const mxNeverPointsAtRelay: StackRule = {
  name: "mx-never-points-at-relay",
  scope: "stack",
  reason:
    "The relay receives no mail: an MX at a node (or its tunnel hostname) loses replies, bounces and DMARC reports, and invites inbound SMTP to a send-only host.",
  check(rs) {
    const out: Violation[] = [];
    const recs = dnsRecords(rs);
    const hosts = new Set([...mtaHostnames(rs), ...tunnelHostnames(rs)]);
    const ips = serverIps(rs).map((x) => x.ip);
    for (const mx of recs.filter((d) => d.type === "MX")) {
      if (mx.content === undefined) continue;
      const target = normName(mx.content.replace(/^\d+\s+/, ""));
      if (hosts.has(target)) {
        out.push(v(this.name, mx.resource, `MX ${mx.name ?? "?"} -> ${target}, a relay node/entry hostname`));
        continue;
      }
      if (parseCidr(target) && ips.some((ip) => sameIp(ip, target))) {
        out.push(v(this.name, mx.resource, `MX ${mx.name ?? "?"} -> ${target}, a relay node IP`));
        continue;
      }
      const addr = recs.find(
        (d) =>
          (d.type === "A" || d.type === "AAAA") &&
          d.name === target &&
          d.content !== undefined &&
          ips.some((ip) => sameIp(ip, d.content!)),
      );
      if (addr)
        out.push(
          v(
            this.name,
            mx.resource,
            `MX ${mx.name ?? "?"} -> ${target}, which resolves to relay node IP ${addr.content}`,
          ),
        );
    }
    return out;
  },
};

/** 16. Primary IPs survive their server; protected ones can't be deleted. */
export const primaryIpsKept: ResourceRule = {
  name: "primary-ips-kept",
  scope: "resource",
  reason:
    "A sending IP's reputation takes weeks to build: autoDelete would drop it with its server, and deletion protection keeps a protected IP from going by mistake.",
  check(r) {
    if (r.type !== TYPES.primaryIp) return [];
    const out: Violation[] = [];
    if (!has(r.props, "autoDelete"))
      out.push(v(this.name, r, "autoDelete is not set; set autoDelete: false so the IP outlives its server"));
    else if (r.props.autoDelete !== undefined && r.props.autoDelete !== false)
      out.push(v(this.name, r, `autoDelete is ${String(r.props.autoDelete)}; must be false`));
    const labels = asObj(r.props.labels);
    if (labels?.["mail-relay-protect-ip"] === "true") {
      const dp = r.props.deleteProtection;
      if (!has(r.props, "deleteProtection") || (dp !== undefined && dp !== true)) {
        out.push(
          v(
            this.name,
            r,
            `labels say mail-relay-protect-ip=true but deleteProtection is ${has(r.props, "deleteProtection") ? String(dp) : "not set"}`,
          ),
        );
      }
    }
    return out;
  },
};

/** Every rule, in the order. */
export const rules: readonly Rule[] = [
  noPublicSmtpPorts,
  firewallBeforeFirstBoot,
  sshRestricted,
  postfixLoopbackOnly,
  trustedNetworksLoopbackOnly,
  relayRestrictionsClosed,
  sendOnlyMydestination,
  neverSendUnsigned,
  tunnelCannotReachMailPorts,
  accessInFrontOfTunnel,
  forwardConfirmedRdns,
  spfCoversEveryNode,
  dkimDmarcBimi,
  noSecretsInUserData,
  mxNeverPointsAtRelay,
  primaryIpsKept,
  tunnelIngressLocal,
];

/** Run every rule over a stack: resource rules on each resource, stack rules on the whole list. */
export function checkAll(resources: readonly ResourceView[], only: readonly Rule[] = rules): Violation[] {
  return only.flatMap((rule) =>
    rule.scope === "resource" ? resources.flatMap((r) => rule.check(r)) : rule.check(resources),
  );
}
