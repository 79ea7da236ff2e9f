// The rehearsal's outbound TLS world as the host's resolver and Postfix see it: every name the world serves resolves
// as insecure (no signed root) except the signed zones, which the host validates from their own trust anchors; each
// MTA-STS domain publishes its TXT record and policy host; the signed zones are delegated, never served unsigned.
import { describe, expect, it } from "vitest";
import { renderDnsmasqConf } from "../../rehearsal/world";
import { renderRehearsalUnboundConf, servedTlds } from "../../rehearsal/world/resolver";
import {
  renderAuthUnboundConf,
  stsPolicy,
  TLS_WORLD,
  tlsWorldDnsmasqLines,
  type TlsDomain,
} from "../../rehearsal/world/tls-world";

const world = {
  records: [
    { name: "mail.example.com", type: "A", content: "203.0.113.11", proxied: false },
    { name: "example.com", type: "TXT", content: '"v=spf1 include:_spf.mx.cloudflare.net -all"', proxied: false },
  ],
  ptrs: [{ ip: "203.0.113.11", name: "mail.example.com" }],
  smarthost: { host: "smtp.provider.org", port: 587, username: "u", password: "p" },
};
const domains = Object.values(TLS_WORLD.domains) as TlsDomain[];
const signed = domains.filter((d) => d.signed);
const anchors = signed.map((d) => ({ zone: d.domain, ds: [`${d.domain}. 3600 IN DS 1 15 2 AB`], server: "192.0.2.1" }));

/** unbound `key: value` pairs of a rendered config, in order. */
const pairs = (conf: string) =>
  conf
    .split("\n")
    .map((l) => /^\s*([a-z-]+):\s*(.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => [m[1], m[2].replace(/^"|"$/g, "")] as const);

describe("the host's resolver in the rehearsal's world", () => {
  it("every name the world's DNS serves is under a top-level domain marked insecure", () => {
    const conf = renderDnsmasqConf(world as never);
    const tlds = servedTlds(conf);
    const insecure = pairs(renderRehearsalUnboundConf(tlds, anchors))
      .filter(([k]) => k === "domain-insecure")
      .map(([, v]) => v);
    const names = [...conf.matchAll(/^(?:host-record|txt-record|mx-host|ptr-record)=([^,]+)/gm)].map((m) => m[1]);
    expect(names.length).toBeGreaterThan(5);
    for (const n of names) expect(insecure, n).toContain(n.split(".").pop());
    expect(insecure).toEqual(expect.arrayContaining(["arpa", "com", "net", "org", "example"]));
  });

  it("validates: the validator is on, the root is never declared insecure", () => {
    const p = pairs(renderRehearsalUnboundConf(["com"], anchors));
    expect(p).toContainEqual(["module-config", "validator iterator"]);
    expect(p.filter(([k, v]) => k === "domain-insecure" && (v === "." || v === ""))).toEqual([]);
  });

  it("each signed zone has its DS as a trust anchor and a stub-zone to its server", () => {
    const conf = renderRehearsalUnboundConf(["example"], anchors);
    for (const a of anchors) {
      expect(conf).toContain(`trust-anchor: "${a.ds[0]}"`);
      expect(conf).toMatch(new RegExp(`stub-zone:\\n\\s+name: "${a.zone}"\\n\\s+stub-addr: ${a.server}`));
    }
  });
});

describe("the world's outbound TLS recipients", () => {
  const lines = tlsWorldDnsmasqLines();

  it("signed zones are delegated to their authoritative server, never served unsigned by dnsmasq", () => {
    for (const d of signed) {
      expect(lines).toContain(`server=/${d.domain}/${TLS_WORLD.authDns}`);
      expect(lines.filter((l) => l.includes(d.domain) && !l.startsWith("server="))).toEqual([]);
    }
  });

  it("each unsigned MTA-STS domain publishes _mta-sts TXT and its policy host; the others publish none", () => {
    for (const d of domains.filter((x) => !x.signed)) {
      const txt = lines.filter((l) => l.startsWith(`txt-record=_mta-sts.${d.domain},`));
      const host = lines.filter((l) => l === `host-record=mta-sts.${d.domain},${TLS_WORLD.policyServer}`);
      expect(txt.length, d.domain).toBe(d.sts ? 1 : 0);
      expect(host.length, d.domain).toBe(d.sts ? 1 : 0);
      if (d.sts) expect(txt[0]).toMatch(/"v=STSv1; id=[A-Za-z0-9]{1,32}"$/);
      expect(lines).toContain(`mx-host=${d.domain},${d.mx},10`);
    }
  });

  it("a policy names its mode and its MX (RFC 8461 section 3.2)", () => {
    for (const d of domains.filter((x) => x.sts)) {
      const p = stsPolicy(d);
      expect(p.split("\r\n")).toEqual(["version: STSv1", `mode: ${d.sts}`, `mx: ${d.mx}`, "max_age: 86400", ""]);
    }
  });

  it("the authoritative server serves each signed zone file to clients only (for-downstream)", () => {
    const zones = signed.map((d) => ({ zone: d.domain, signedFile: `/z/${d.domain}.zone.signed`, ds: [], dsFile: "" }));
    const p = pairs(renderAuthUnboundConf("/z", zones));
    for (const z of zones) {
      const i = p.findIndex(([k, v]) => k === "name" && v === z.zone);
      expect(p.slice(i, i + 5)).toEqual([
        ["name", z.zone],
        ["zonefile", z.signedFile],
        ["for-downstream", "yes"],
        ["for-upstream", "no"],
        ["fallback-enabled", "no"],
      ]);
    }
    expect(p).toContainEqual(["interface", TLS_WORLD.authDns]);
  });
});
