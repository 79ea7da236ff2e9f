import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkDmarc, checkFcrdns, checkHelo, checkRecord, checkSpf, type SpfVerdict } from "../../doctor/checks-dns";
import { reversedLabels, sameAddress } from "../../doctor/dns";
import { parseZoneFile, type ManagedRecord } from "../../doctor/outputs";
import { zoneFileLine, txtContent } from "../../infra/records";
import { reverseName } from "../../rehearsal/world";
import { fakeDns } from "./fake-dns";

const node = { name: "node1", mtaHostname: "mx1.example.com", ipv4: "203.0.113.11", ipv6: "2001:db8:1::1" };
const spf = "v=spf1 ip4:203.0.113.11 ip6:2001:db8:1::1 ~all";

const records: ManagedRecord[] = [
  { name: "mx1.example.com", type: "A", value: "203.0.113.11", proxied: false },
  { name: "mx1.example.com", type: "AAAA", value: "2001:db8:1::1", proxied: false },
  { name: "example.com", type: "TXT", value: spf, proxied: false },
  { name: "sel._domainkey.example.com", type: "TXT", value: "v=DKIM1; k=rsa; p=AAAA", proxied: false },
  { name: "example.com", type: "MX", value: "route1.mx.cloudflare.net", priority: 10, proxied: false },
  { name: "relay.example.com", type: "CNAME", value: "t.cfargotunnel.com", proxied: true },
  { name: "www.example.com", type: "CNAME", value: "example.org", proxied: false },
];

/** The live answer that matches each record exactly, as a fake zone. */
function healthyZone() {
  return {
    a: { "mx1.example.com": ["203.0.113.11"], "relay.example.com": ["198.51.100.44"] },
    aaaa: { "mx1.example.com": ["2001:db8:1:0:0:0:0:1"] },
    txt: {
      "example.com": ["google-site-verification=x", spf],
      "sel._domainkey.example.com": ["v=DKIM1; k=rsa; p=AAAA"],
    },
    mx: { "example.com": [{ exchange: "route1.mx.cloudflare.net", priority: 10 }] },
    cname: { "www.example.com": ["example.org"] },
  };
}

describe("every managed record is checked against the live answer (fake resolver)", () => {
  it.each(records.map((r) => [r.type, r.name, r] as const))(
    "%s %s passes when the live answer matches",
    async (_t, _n, r) => {
      const c = await checkRecord(r, fakeDns(healthyZone()), "prod");
      expect(c.status, c.saw).toBe("pass");
    },
  );
  it.each(records.filter((r) => !r.proxied).map((r) => [r.type, r.name, r] as const))(
    "%s %s fails with the exact record and `pulumi up` when the live answer is missing",
    async (_t, _n, r) => {
      const c = await checkRecord(r, fakeDns({}), "prod");
      expect(c.status).toBe("fail");
      expect(c.fix).toContain("pulumi up --stack prod");
      expect(c.fix).toContain(r.name);
    },
  );
  it("a TXT with another content fails and shows what it saw", async () => {
    const z = healthyZone();
    const c = await checkRecord(records[2], fakeDns({ ...z, txt: { "example.com": ["v=spf1 -all"] } }), "prod");
    expect(c.status).toBe("fail");
    expect(c.saw).toContain('got "v=spf1 -all"');
    expect(c.fix).toContain(spf);
  });
  it("an MX with another priority fails", async () => {
    const z = { mx: { "example.com": [{ exchange: "route1.mx.cloudflare.net", priority: 20 }] } };
    expect((await checkRecord(records[4], fakeDns(z), "prod")).status).toBe("fail");
  });
  it("a resolver that does not answer is a warn (cannot tell), never a fail", async () => {
    for (const r of records) {
      const c = await checkRecord(r, fakeDns({ failing: [r.name] }), "prod");
      expect(c.status, `${r.type} ${r.name}`).toBe("warn");
      expect(c.saw).toContain("did not answer");
    }
  });
});

describe("the doctor reads back every record the stack's zone file holds", () => {
  const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){1,3}$/);
  const txt = fc.stringMatching(/^[A-Za-z0-9=;:+/ .-]{1,600}$/).filter((s) => s.trim() === s && s.length > 0);
  it("for any A, AAAA, TXT (long values split into strings), MX and CNAME, proxied or not", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ type: fc.constant("A"), name, value: fc.ipV4(), proxied: fc.constant(false) }),
            fc.record({ type: fc.constant("AAAA"), name, value: fc.ipV6(), proxied: fc.constant(false) }),
            fc.record({ type: fc.constant("TXT"), name, value: txt, proxied: fc.constant(false) }),
            fc.record({
              type: fc.constant("MX"),
              name,
              value: name,
              priority: fc.integer({ min: 0, max: 65535 }),
              proxied: fc.constant(false),
            }),
            fc.record({ type: fc.constant("CNAME"), name, value: name, proxied: fc.boolean() }),
          ),
          { minLength: 1, maxLength: 8 },
        ),
        fc.constantFrom(1, 300, 3600),
        (rs, ttl) => {
          const text = rs
            .map((r) => zoneFileLine({ ...r, ttl, content: r.type === "TXT" ? txtContent(r.value) : r.value }))
            .join("\n");
          expect(parseZoneFile(text)).toEqual(rs.map((r) => ({ ...r })));
        },
      ),
    );
  });
  it("a line it cannot read is an error naming the line", () => {
    expect(() => parseZoneFile("example.com TXT hello")).toThrow(/cannot read the line "example.com TXT hello"/);
  });
});

describe("SPF: pass within 10 lookups for every node address (fake evaluator)", () => {
  const spfRecord = records[2];
  const run = (v: Omit<SpfVerdict, "countProblems">, countProblems: string[] = []) =>
    checkSpf("example.com", "203.0.113.11", "node1", async () => ({ ...v, countProblems }), spfRecord, "prod");
  it.each([
    ["pass", 2, "pass"],
    ["softfail", 2, "fail"],
    ["fail", 1, "fail"],
    ["neutral", 1, "fail"],
    ["permerror", 0, "fail"],
    ["pass", 11, "fail"],
  ] as const)("result %s after %i lookups is %s", async (result, lookups, status) => {
    const c = await run({ result, lookups });
    expect(c.status).toBe(status);
    if (status === "fail") expect(c.fix).toMatch(lookups > 10 ? /includes/ : /ip4:203\.0\.113\.11/);
  });
  it("a pass whose include could not be fetched (lookups not all counted) is a warn", async () => {
    const c = await run({ result: "pass", lookups: 1 }, ["example.com include:_spf.x.net: ETIMEOUT"]);
    expect(c.status).toBe("warn");
    expect(c.saw).toContain("_spf.x.net");
  });
  it("an evaluator that cannot reach DNS is a warn", async () => {
    const c = await checkSpf(
      "example.com",
      "2001:db8:1::1",
      "n",
      () => Promise.reject(new Error("ETIMEOUT")),
      spfRecord,
      "p",
    );
    expect(c.status).toBe("warn");
  });
});

describe("DMARC: present and aligned with the relay's d= (fake resolver)", () => {
  const dmarc = (txt: string[]) => fakeDns({ txt: { "_dmarc.example.com": txt } });
  it.each([
    [["v=DMARC1; p=quarantine; adkim=s; aspf=s"], "example.com", "pass"],
    [["v=DMARC1; p=reject; adkim=s"], "mail.example.com", "fail"],
    [["v=DMARC1; p=reject; adkim=r"], "mail.example.com", "pass"],
    [["v=DMARC1; p=reject"], "example.org", "fail"],
    [[], "example.com", "fail"],
    [["v=DMARC1; p=none", "v=DMARC1; p=reject"], "example.com", "fail"],
    [["v=DMARC1; rua=mailto:x@example.com"], "example.com", "fail"],
  ] as const)("%j with d=%s is %s", async (txt, d, status) => {
    const c = await checkDmarc("example.com", d, dmarc([...txt]), "prod");
    expect(c.status, c.saw).toBe(status);
    if (status === "fail") expect(c.fix).toMatch(/pulumi up --stack prod/);
  });
});

describe("forward-confirmed reverse DNS and the HELO name (fake resolver)", () => {
  it.each([
    [{ "203.0.113.11": ["mx1.example.com"] }, { "mx1.example.com": ["203.0.113.11"] }, "pass"],
    [{}, {}, "fail"],
    [{ "203.0.113.11": ["elsewhere.example.net"] }, { "mx1.example.com": ["203.0.113.11"] }, "fail"],
    [{ "203.0.113.11": ["mx1.example.com"] }, { "mx1.example.com": ["203.0.113.99"] }, "fail"],
    [{ "203.0.113.11": ["static.hetzner.example"] }, { "static.hetzner.example": ["203.0.113.11"] }, "warn"],
  ])("PTR %j, A %j: %s", async (ptr, a, status) => {
    const c = await checkFcrdns("203.0.113.11", node, fakeDns({ ptr, a }), "prod");
    expect(c.status, c.saw).toBe(status);
    if (status !== "pass") expect(c.fix).toContain("mx1.example.com");
  });
  it("an IPv6 address is confirmed through AAAA, in any spelling", async () => {
    const dns = fakeDns({
      ptr: { "2001:db8:1::1": ["mx1.example.com"] },
      aaaa: { "mx1.example.com": ["2001:0db8:0001::0001"] },
    });
    expect((await checkFcrdns("2001:db8:1::1", node, dns, "prod")).status).toBe("pass");
  });
  it("the HELO name must resolve to both of the node's addresses", async () => {
    const ok = fakeDns({ a: { "mx1.example.com": ["203.0.113.11"] }, aaaa: { "mx1.example.com": ["2001:db8:1::1"] } });
    expect((await checkHelo("mx1.example.com", "postconf", node, ok, "prod")).status).toBe("pass");
    const no6 = fakeDns({ a: { "mx1.example.com": ["203.0.113.11"] } });
    const c = await checkHelo("mx1.example.com", "postconf", node, no6, "prod");
    expect(c.status).toBe("fail");
    expect(c.saw).toContain("not to 2001:db8:1::1");
  });
});

describe("addresses as DNS names", () => {
  it("reversed labels are the reverse zone's labels, for any IPv4 and IPv6 (the rehearsal's PTR names agree)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (ip) => {
        fc.pre(!(ip.includes(":") && ip.includes("."))); // IPv6 with an embedded IPv4 is out of scope
        const zone = ip.includes(":") ? "ip6.arpa" : "in-addr.arpa";
        expect(`${reversedLabels(ip)}.${zone}`).toBe(reverseName(ip));
      }),
    );
  });
  it("two spellings of one IPv6 address are the same address, and v4 is never a v6", () => {
    expect(sameAddress("2001:db8::1", "2001:0db8:0:0:0:0:0:0001")).toBe(true);
    expect(sameAddress("2001:db8::1", "2001:db8::2")).toBe(false);
    expect(sameAddress("203.0.113.11", "2001:db8::1")).toBe(false);
  });
});

describe("the doctor's SPF check runs infra/spf.ts's evaluator on the doctor's resolver (fake resolver)", () => {
  const zone = (record: string, extra: Record<string, string[]> = {}) =>
    fakeDns({ txt: { "example.com": [record], ...extra } });
  const check = async (record: string, ip: string, extra?: Record<string, string[]>) => {
    const { spfEvaluator } = await import("../../doctor/spf");
    return checkSpf("example.com", ip, "node1", spfEvaluator(zone(record, extra)), undefined, "prod");
  };
  it("the published record passes for both node addresses", async () => {
    for (const ip of ["203.0.113.11", "2001:db8:1::1"]) {
      const c = await check(spf, ip);
      expect(c.status, c.saw).toBe("pass");
      expect(c.saw).toContain("0 of 10");
    }
  });
  it("a record without the node's IPv4 fails for the IPv4 only", async () => {
    const without = "v=spf1 ip6:2001:db8:1::1 ~all";
    expect((await check(without, "203.0.113.11")).saw).toMatch(/^softfail/);
    expect((await check(without, "2001:db8:1::1")).status).toBe("pass");
  });
  it("a record whose includes need more than 10 lookups fails even where the address matches first", async () => {
    const includes = Array.from({ length: 11 }, (_, i) => `include:s${i}.example.org`).join(" ");
    const extra = Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`s${i}.example.org`, ["v=spf1 -all"]]));
    const c = await check(`v=spf1 ip4:203.0.113.11 ${includes} ~all`, "203.0.113.11", extra);
    expect(c.status).toBe("fail");
    expect(c.saw).toContain("11 of 10");
  });
});
