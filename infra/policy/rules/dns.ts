/** Rules 11-13 and 15, the published DNS: FCrDNS, SPF, DKIM/DMARC/BIMI, and no MX at the relay. */
import { isStr, ofType, StackRule, TYPES, violation, Violation } from "../model";
import {
  activeDkimKeys,
  DnsRecordView,
  dnsRecords,
  filePushes,
  isBimi,
  isDkim,
  isDmarc,
  isSpf,
  mtaHostnames,
  sendingDomains,
  serverIps,
  somePushUnknown,
  tunnelHostnames,
} from "../facts";
import { Cidr, cidrWithinAny, parseCidr, sameIp } from "../parse/net";
import { dkimKeyBits, normName, parseSpf, parseTags, spkiOfPrivateKey } from "../parse/dns";

/** 11. FCrDNS: every PTR has a matching non-proxied A/AAAA; mail host records are never proxied. */
export const forwardConfirmedRdns: StackRule = {
  name: "forward-confirmed-rdns",
  scope: "stack",
  reason:
    "Receivers (Gmail/Yahoo sender guidelines) require forward-confirmed reverse DNS: " +
    "the PTR name must resolve back to the same IP, which a Cloudflare-proxied record never does.",
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
      if (!match) out.push(violation(this.name, r, `PTR ${ip} -> ${name} has no A/AAAA record ${name} -> ${ip}`));
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
          violation(
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
    "RFC 7208: two SPF records are a permerror, an uncovered node IP fails SPF, " +
    "and +all/?all/no all authorizes the whole Internet to send as the domain.",
  check(rs) {
    const out: Violation[] = [];
    const recs = dnsRecords(rs);
    const spfs = recs.filter(isSpf);
    const byName = new Map<string, DnsRecordView[]>();
    for (const s of spfs) if (s.name) byName.set(s.name, [...(byName.get(s.name) ?? []), s]);
    for (const [name, list] of byName) {
      if (list.length > 1)
        out.push(
          violation(
            this.name,
            list[1].resource,
            `${name} has ${list.length} SPF records (${list.map((l) => l.resource.name).join(", ")}); ` +
              `RFC 7208 allows one`,
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
          violation(
            this.name,
            s.resource,
            `SPF "${s.content}" must end in ~all or -all (found ${allTerm?.raw ?? "nothing"})`,
          ),
        );
      }
      const badAll = terms.filter((t) => t.mechanism === "all" && t !== allTerm);
      if (badAll.length > 0)
        out.push(
          violation(
            this.name,
            s.resource,
            `SPF "${s.content}" has ${badAll.map((t) => t.raw).join(", ")} before its end`,
          ),
        );
      if (terms.some((t) => t.mechanism === "redirect="))
        out.push(violation(this.name, s.resource, `SPF "${s.content}" uses redirect=; end it in ~all or -all instead`));
      const lookups = terms.filter((t) =>
        ["include", "a", "mx", "ptr", "exists", "redirect="].includes(t.mechanism),
      ).length;
      if (lookups > 10)
        out.push(
          violation(
            this.name,
            s.resource,
            `SPF "${s.content}" needs ${lookups} DNS lookups; RFC 7208 section 4.6.4 allows 10`,
          ),
        );
      const nets = terms
        .filter((t) => (t.mechanism === "ip4" || t.mechanism === "ip6") && t.qualifier === "+" && t.value)
        .map((t) => parseCidr(t.value!))
        .filter((c): c is Cidr => c !== undefined);
      const uncovered = [...new Set(ips.filter((x) => !cidrWithinAny(parseCidr(x.ip)!, nets)).map((x) => x.ip))];
      if (uncovered.length > 0)
        out.push(
          violation(this.name, s.resource, `SPF "${s.content}" does not cover node IP(s) ${uncovered.join(", ")}`),
        );
    }
    if (ofType(rs, TYPES.server).length > 0) {
      for (const d of sendingDomains(rs)) {
        const txtUnknown = recs.some(
          (r) => r.name === undefined || r.type === undefined || (r.type === "TXT" && r.content === undefined),
        );
        if (!byName.has(d) && !txtUnknown) {
          out.push(violation(this.name, ofType(rs, TYPES.server)[0], `sending domain ${d} has no SPF record`));
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
    "RFC 6376/8301: receivers ignore keys under 1024 bits and Gmail/Yahoo expect 2048; " +
    "without the active selector's record every signature fails; DMARC is required (RFC 7489) " +
    "and BIMI only works at p=quarantine/reject, pct=100.",
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
        out.push(violation(this.name, d.resource, `DKIM record ${d.name} has no p= tag`));
        continue;
      }
      if (p === "") continue;
      const k = (tags.get("k") ?? "rsa").toLowerCase();
      // RFC 8463: an Ed25519 record carries the raw 32-byte key, not a SubjectPublicKeyInfo (44 bytes).
      if (k === "ed25519") {
        const raw = Buffer.from(p.replace(/\s+/g, ""), "base64");
        if (raw.length !== 32)
          out.push(
            violation(
              this.name,
              d.resource,
              `DKIM record ${d.name} k=ed25519 p= is ${raw.length} bytes; it must be the raw 32-byte public key ` +
                "(RFC 8463), not the SubjectPublicKeyInfo",
            ),
          );
        continue;
      }
      if (k !== "rsa") continue;
      const bits = dkimKeyBits(p);
      if (bits === undefined)
        out.push(violation(this.name, d.resource, `DKIM record ${d.name} p= is not a valid RSA public key`));
      else if (bits < 2048)
        out.push(violation(this.name, d.resource, `DKIM record ${d.name} has a ${bits}-bit key; at least 2048 bits`));
    }
    // The active selector of each node has a record, and it carries the public half of the pushed private key.
    const active = activeDkimKeys(rs);
    for (const a of active) {
      const name = `${a.selector}._domainkey.${a.domain}`;
      const rec = recs.find((d) => d.type === "TXT" && d.name === name);
      if (!rec) {
        if (!namesUnknown)
          out.push(
            violation(
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
        out.push(violation(this.name, rec.resource, `DKIM record ${name} for the active selector has no key`));
        continue;
      }
      const keyPush = pushes.find(
        (x) => x.path === a.keyPath && (x.host === undefined || a.push.host === undefined || x.host === a.push.host),
      );
      if (keyPush?.content !== undefined) {
        const spki = spkiOfPrivateKey(keyPush.content);
        if (spki !== undefined && spki !== p.replace(/\s+/g, ""))
          out.push(
            violation(
              this.name,
              rec.resource,
              `DKIM record ${name} does not match the private key pushed to ${a.keyPath}`,
            ),
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
        violation(
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
          if (anchor)
            out.push(violation(this.name, anchor, `sending domain ${domain} has no DMARC record _dmarc.${domain}`));
        }
        continue;
      }
      if (mine.length > 1)
        out.push(
          violation(
            this.name,
            mine[1].resource,
            `_dmarc.${domain} has ${mine.length} records; RFC 7489 requires exactly one`,
          ),
        );
      const rec = mine[0];
      if (rec.content === undefined) continue;
      const tags = parseTags(rec.content);
      if (!/^v\s*=\s*DMARC1\s*(;|$)/.test(rec.content))
        out.push(violation(this.name, rec.resource, `_dmarc.${domain} "${rec.content}" must start with v=DMARC1`));
      const p = tags.get("p")?.toLowerCase();
      if (p !== "none" && p !== "quarantine" && p !== "reject")
        out.push(
          violation(
            this.name,
            rec.resource,
            `_dmarc.${domain} has p=${p ?? "(missing)"}; must be none, quarantine or reject`,
          ),
        );
      const bimi = bimis.find((b) => b.name!.endsWith(`._bimi.${domain}`));
      const problem = dmarcBimiProblem(tags);
      if (bimi && problem)
        out.push(
          violation(
            this.name,
            bimi.resource,
            `BIMI for ${domain} needs DMARC p=quarantine/reject at pct=100, but _dmarc.${domain} has ${problem}`,
          ),
        );
    }
    return out;
  },
};

/** 15. MX never points at a relay node. */
export const mxNeverPointsAtRelay: StackRule = {
  name: "mx-never-points-at-relay",
  scope: "stack",
  reason:
    "The relay receives no mail: an MX at a node (or its tunnel hostname) loses replies, " +
    "bounces and DMARC reports, and invites inbound SMTP to a send-only host.",
  check(rs) {
    const out: Violation[] = [];
    const recs = dnsRecords(rs);
    const hosts = new Set([...mtaHostnames(rs), ...tunnelHostnames(rs)]);
    const ips = serverIps(rs).map((x) => x.ip);
    for (const mx of recs.filter((d) => d.type === "MX")) {
      if (mx.content === undefined) continue;
      const target = normName(mx.content.replace(/^\d+\s+/, ""));
      if (hosts.has(target)) {
        out.push(violation(this.name, mx.resource, `MX ${mx.name ?? "?"} -> ${target}, a relay node/entry hostname`));
        continue;
      }
      if (parseCidr(target) && ips.some((ip) => sameIp(ip, target))) {
        out.push(violation(this.name, mx.resource, `MX ${mx.name ?? "?"} -> ${target}, a relay node IP`));
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
          violation(
            this.name,
            mx.resource,
            `MX ${mx.name ?? "?"} -> ${target}, which resolves to relay node IP ${addr.content}`,
          ),
        );
    }
    return out;
  },
};
