/**
 * What the stack pushes and publishes, read from its resources: the files deploy steps write to the nodes (a
 * Command's triggers[0] and stdin), the parsed main.cf and master.cf, the DNS records, the active DKIM keys, the
 * sending domains, the MTA and tunnel hostnames, and the nodes' IPs. Rules judge these; nothing here judges.
 */
import { posix as posixPath } from "node:path";
import { asArray, asObj, has, isStr, ofType, ResourceView, TYPES } from "./model";
import { parseCidr } from "./parse/net";
import { expandPostfix, MasterCfService, parseMainCf, parseMasterCf } from "./parse/postfix";
import { normName, txtJoin } from "./parse/dns";
import { parseKeyTable, parseSigningTable } from "./parse/opendkim";

export interface FilePush {
  readonly resource: ResourceView;
  readonly path: string;
  /** undefined while unknown. */
  readonly content: string | undefined;
  /** The node the push goes to (connection.host), when known. */
  readonly host: string | undefined;
}

/** The file a host path names: `.`, `..` and repeated slashes resolved (as the kernel would). */
export function normalizeHostPath(p: string): string {
  return posixPath.normalize(p.replace(/\/+/g, "/")).replace(/(.)\/$/, "$1");
}

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
export function somePushUnknown(rs: readonly ResourceView[]): boolean {
  return ofType(rs, TYPES.command).some((r) => {
    if (!has(r.props, "triggers")) return false;
    const t = asArray(r.props.triggers);
    return t === undefined || (t.length > 0 && t[0] === undefined);
  });
}

export interface MainCf {
  readonly push: FilePush;
  readonly params: Map<string, string>;
  /** A parameter with $variables expanded; undefined when not set. */
  get(key: string): string | undefined;
}

/** Every pushed main.cf whose content is known, parsed. */
export function mainCfs(rs: readonly ResourceView[]): MainCf[] {
  return filePushes(rs)
    .filter((p) => p.path === "/etc/postfix/main.cf" && p.content !== undefined)
    .map((push) => {
      const params = parseMainCf(push.content!);
      return { push, params, get: (k: string) => (params.has(k) ? expandPostfix(params.get(k)!, params) : undefined) };
    });
}

/** Every pushed master.cf whose content is known, parsed. */
export function masterCfs(rs: readonly ResourceView[]): { push: FilePush; services: MasterCfService[] }[] {
  return filePushes(rs)
    .filter((p) => p.path === "/etc/postfix/master.cf" && p.content !== undefined)
    .map((push) => ({ push, services: parseMasterCf(push.content!) }));
}

/** The main.cf that goes to the same node as a master.cf (by connection host), or the only one. */
export function mainCfFor(push: FilePush, mains: readonly MainCf[]): MainCf | undefined {
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

/** Every Cloudflare DNS record, names normalised and TXT chunks joined. */
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

/** What kind of TXT record a DNS record is, by its name and content. */
export const isSpf = (d: DnsRecordView) =>
  d.type === "TXT" && d.content !== undefined && /^v=spf1(\s|$)/i.test(d.content);
export const isDmarc = (d: DnsRecordView) => d.type === "TXT" && d.name !== undefined && d.name.startsWith("_dmarc.");
export const isDkim = (d: DnsRecordView) => d.type === "TXT" && d.name !== undefined && /\._domainkey\./.test(d.name);
export const isBimi = (d: DnsRecordView) =>
  d.type === "TXT" &&
  d.name !== undefined &&
  /\._bimi\./.test(d.name) &&
  d.content !== undefined &&
  /^v=BIMI1/i.test(d.content);

/**
 * The active DKIM keys: SigningTable entries resolved through the KeyTable (or the keyname's own
 * selector._domainkey.domain).
 */
export function activeDkimKeys(
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
