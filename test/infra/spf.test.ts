import fc from "fast-check";
import { spf as mailauthSpf } from "mailauth/lib/spf";
import { describe, expect, it } from "vitest";
import {
  countSpfLookups,
  directLookups,
  dnsResolver,
  evaluateSpf,
  expandMacros,
  parseSpf,
  SpfSyntaxError,
  type SpfResolver,
} from "../../infra/spf";

/** A DNS world held in memory: what each name answers. */
interface FakeZone {
  readonly [name: string]: {
    txt?: string[];
    a?: string[];
    aaaa?: string[];
    mx?: { exchange: string; priority: number }[];
    ptr?: string[];
    /** Every query for this name fails (SERVFAIL). */
    servfail?: boolean;
  };
}

/** A fake resolver over a FakeZone that records each query, so tests can see what was asked. */
function fakeResolver(zone: FakeZone): SpfResolver & { queries: string[] } {
  const queries: string[] = [];
  const ask =
    <K extends "txt" | "a" | "aaaa" | "mx" | "ptr">(type: K) =>
    async (name: string) => {
      queries.push(`${type} ${name}`);
      const entry = zone[name.toLowerCase()];
      if (entry?.servfail) throw new Error(`SERVFAIL ${name}`);
      return (entry?.[type] ?? []) as NonNullable<FakeZone[string][K]>;
    };
  return { queries, txt: ask("txt"), a: ask("a"), aaaa: ask("aaaa"), mx: ask("mx"), ptr: ask("ptr") };
}

const IP = "192.0.2.10";
const spfAt = (record: string, extra: FakeZone = {}): FakeZone => ({ "example.com": { txt: [record] }, ...extra });

describe("SPF evaluation follows RFC 7208 (fake resolver)", () => {
  const cases: {
    rule: string;
    zone: FakeZone;
    ip?: string;
    result: string;
    mechanism?: string;
    problem?: RegExp;
    lookups?: number;
  }[] = [
    { rule: "ip4 matching the client passes", zone: spfAt("v=spf1 ip4:192.0.2.10 -all"), result: "pass" },
    { rule: "ip4 CIDR covers its network", zone: spfAt("v=spf1 ip4:192.0.2.0/24 -all"), result: "pass" },
    { rule: "ip4 /32 outside the client falls to -all", zone: spfAt("v=spf1 ip4:192.0.2.11 -all"), result: "fail" },
    { rule: "~all is softfail", zone: spfAt("v=spf1 ip4:198.51.100.1 ~all"), result: "softfail" },
    { rule: "?all is neutral", zone: spfAt("v=spf1 ?all"), result: "neutral" },
    { rule: "no match and no all is neutral (4.7)", zone: spfAt("v=spf1 ip4:198.51.100.1"), result: "neutral" },
    { rule: "a qualifier applies to the matching term", zone: spfAt("v=spf1 -ip4:192.0.2.10 +all"), result: "fail" },
    {
      rule: "ip6 with a prefix matches an IPv6 client",
      zone: spfAt("v=spf1 ip6:2001:db8::/32 -all"),
      ip: "2001:db8:5::1",
      result: "pass",
    },
    {
      rule: "ip4 never matches an IPv6 client",
      zone: spfAt("v=spf1 ip4:0.0.0.0/0 -all"),
      ip: "2001:db8::1",
      result: "fail",
    },
    {
      rule: "an IPv4-mapped IPv6 client is evaluated as IPv4",
      zone: spfAt("v=spf1 ip4:192.0.2.10 -all"),
      ip: "::ffff:192.0.2.10",
      result: "pass",
    },
    { rule: "names and mechanisms are case-insensitive", zone: spfAt("V=SPF1 IP4:192.0.2.10 -ALL"), result: "pass" },
    {
      rule: "no SPF record is none",
      zone: { "example.com": { txt: ["google-site-verification=x"] } },
      result: "none",
    },
    { rule: "v=spf10 is not an SPF record", zone: spfAt("v=spf10 +all"), result: "none" },
    {
      rule: "two SPF records are permerror",
      zone: { "example.com": { txt: ["v=spf1 -all", "v=spf1 +all"] } },
      result: "permerror",
      problem: /2 SPF records/,
    },
    {
      rule: "a passing include passes",
      zone: spfAt("v=spf1 include:_spf.example.net -all", { "_spf.example.net": { txt: ["v=spf1 ip4:192.0.2.0/28"] } }),
      result: "pass",
      mechanism: "include:_spf.example.net > ip4:192.0.2.0/28",
    },
    {
      rule: "an include that fails does not match; evaluation goes on",
      zone: spfAt("v=spf1 include:_spf.example.net ip4:192.0.2.10 -all", {
        "_spf.example.net": { txt: ["v=spf1 -all"] },
      }),
      result: "pass",
      mechanism: "ip4:192.0.2.10",
    },
    {
      rule: "the include's own qualifier decides when the included record passes",
      zone: spfAt("v=spf1 -include:_spf.example.net +all", { "_spf.example.net": { txt: ["v=spf1 ip4:192.0.2.10"] } }),
      result: "fail",
    },
    {
      rule: "an included softfail is no match, not a softfail",
      zone: spfAt("v=spf1 include:_spf.example.net -all", { "_spf.example.net": { txt: ["v=spf1 ~ip4:192.0.2.10"] } }),
      result: "fail",
    },
    {
      rule: "an include without an SPF record is permerror",
      zone: spfAt("v=spf1 include:nothing.example.net -all"),
      result: "permerror",
      problem: /include:nothing\.example\.net: nothing\.example\.net publishes no SPF record/,
    },
    {
      rule: "redirect is followed when nothing matched",
      zone: spfAt("v=spf1 ip4:198.51.100.1 redirect=_spf.example.net", {
        "_spf.example.net": { txt: ["v=spf1 -all"] },
      }),
      result: "fail",
      lookups: 1,
    },
    {
      rule: "redirect is ignored when an all mechanism is present",
      zone: spfAt("v=spf1 ?all redirect=_spf.example.net", { "_spf.example.net": { txt: ["v=spf1 +all"] } }),
      result: "neutral",
      lookups: 0,
    },
    {
      rule: "a redirect to a name without SPF is permerror",
      zone: spfAt("v=spf1 redirect=nothing.example.net"),
      result: "permerror",
    },
    {
      rule: "a matches the domain's A records",
      zone: spfAt("v=spf1 a -all", { "example.com": { txt: ["v=spf1 a -all"], a: ["192.0.2.10"] } }),
      result: "pass",
    },
    {
      rule: "a/24 matches the A record's network",
      zone: spfAt("v=spf1 a:mail.example.com/24 -all", { "mail.example.com": { a: ["192.0.2.200"] } }),
      result: "pass",
    },
    {
      rule: "a looks up AAAA for an IPv6 client, with its //prefix",
      zone: spfAt("v=spf1 a:mail.example.com/32//64 -all", {
        "mail.example.com": { a: ["2001:db8::1"], aaaa: ["2001:db8:0:1::1"] },
      }),
      ip: "2001:db8:0:1::99",
      result: "pass",
    },
    {
      rule: "mx matches an MX host's address",
      zone: spfAt("v=spf1 mx -all", {
        "example.com": { txt: ["v=spf1 mx -all"], mx: [{ exchange: "mx1.example.com", priority: 10 }] },
        "mx1.example.com": { a: ["192.0.2.10"] },
      }),
      result: "pass",
    },
    {
      rule: "mx with more than 10 MX hosts is permerror",
      zone: {
        "example.com": {
          txt: ["v=spf1 mx -all"],
          mx: Array.from({ length: 11 }, (_, i) => ({ exchange: `mx${i}.example.com`, priority: i })),
        },
      },
      result: "permerror",
      problem: /11 MX hosts/,
    },
    {
      rule: "exists matches when the name has an A record (always A, even for IPv6)",
      zone: spfAt("v=spf1 exists:ok.example.net -all", { "ok.example.net": { a: ["127.0.0.2"] } }),
      ip: "2001:db8::1",
      result: "pass",
    },
    {
      rule: "ptr matches a validated reverse name",
      zone: spfAt("v=spf1 ptr -all", { "mail.example.com": { a: [IP] }, [IP]: { ptr: ["mail.example.com"] } }),
      result: "pass",
    },
    {
      rule: "ptr does not match a reverse name whose forward lookup disagrees",
      zone: spfAt("v=spf1 ptr -all", {
        "mail.example.com": { a: ["192.0.2.99"] },
        [IP]: { ptr: ["mail.example.com"] },
      }),
      result: "fail",
    },
    {
      rule: "10 DNS-querying terms are allowed",
      zone: spfAt(`v=spf1 ${Array.from({ length: 10 }, (_, i) => `include:s${i}.example.net`).join(" ")} ~all`, {
        ...Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`s${i}.example.net`, { txt: ["v=spf1 -all"] }])),
      }),
      result: "softfail",
      lookups: 10,
    },
    {
      rule: "an 11th DNS-querying term is permerror",
      zone: spfAt(`v=spf1 ${Array.from({ length: 11 }, (_, i) => `include:s${i}.example.net`).join(" ")} ~all`, {
        ...Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`s${i}.example.net`, { txt: ["v=spf1 -all"] }])),
      }),
      result: "permerror",
      problem: /more than 10 DNS lookups \(at include:s10\.example\.net\)/,
    },
    {
      rule: "nested lookups count towards the same limit",
      zone: spfAt("v=spf1 include:a.example.net include:b.example.net -all", {
        "a.example.net": { txt: [`v=spf1 ${Array.from({ length: 5 }, () => "a:x.example.net").join(" ")}`] },
        "b.example.net": { txt: [`v=spf1 ${Array.from({ length: 4 }, () => "a:x.example.net").join(" ")}`] },
        "x.example.net": { a: ["127.0.0.2"] },
      }),
      result: "permerror",
      problem: /more than 10 DNS lookups \(at a:x\.example\.net\)/,
    },
    {
      rule: "two void lookups are allowed",
      zone: spfAt("v=spf1 a:v1.example.net a:v2.example.net -all"),
      result: "fail",
    },
    {
      rule: "a third void lookup is permerror",
      zone: spfAt("v=spf1 a:v1.example.net a:v2.example.net a:v3.example.net -all"),
      result: "permerror",
      problem: /more than 2 void DNS lookups/,
    },
    {
      rule: "a DNS failure is temperror",
      zone: spfAt("v=spf1 a:broken.example.net -all", { "broken.example.net": { servfail: true } }),
      result: "temperror",
      problem: /SERVFAIL/,
    },
    { rule: "an unknown modifier is ignored", zone: spfAt("v=spf1 foo=bar ip4:192.0.2.10 -all"), result: "pass" },
    {
      rule: "macros expand: %{ir}.%{v} reverses the client's address",
      zone: spfAt("v=spf1 exists:%{ir}.%{v}._spf.example.net -all", {
        "10.2.0.192.in-addr._spf.example.net": { a: ["127.0.0.2"] },
      }),
      result: "pass",
    },
  ];

  it.each(cases)("$rule", async ({ zone, ip, result, mechanism, problem, lookups }) => {
    const r = await evaluateSpf("example.com", ip ?? IP, fakeResolver(zone));
    expect(r.result).toBe(result);
    if (mechanism !== undefined) expect(r.mechanism).toBe(mechanism);
    if (problem !== undefined) expect(r.problem).toMatch(problem);
    if (lookups !== undefined) expect(r.lookups).toBe(lookups);
  });

  it("terms after a match are never looked up", async () => {
    const resolver = fakeResolver(spfAt("v=spf1 ip4:192.0.2.10 include:never.example.net -all"));
    expect((await evaluateSpf("example.com", IP, resolver)).result).toBe("pass");
    expect(resolver.queries).toEqual(["txt example.com"]);
  });
});

describe("SPF syntax errors are permerror and name the term", () => {
  const bad: [string, RegExp][] = [
    ["v=spf1 foo -all", /unknown mechanism "foo"/],
    ["v=spf1 ip4:192.0.2.300 -all", /ip4:192\.0\.2\.300/],
    ["v=spf1 ip4:192.0.2.0/33 -all", /prefix length "33" must be 0\.\.32/],
    ["v=spf1 ip6:2001:db8::/129 -all", /must be 0\.\.128/],
    ["v=spf1 a/024 -all", /prefix length "024"/],
    ["v=spf1 include -all", /include needs a domain/],
    ["v=spf1 include:localhost -all", /not a domain name/],
    ["v=spf1 include:example.123 -all", /not a domain name/],
    ["v=spf1 all:x", /all takes no argument/],
    ["v=spf1 redirect=a.example.net redirect=b.example.net", /redirect= may appear only once/],
    ["v=spf1 exists:%{x}.example.net -all", /"%" that starts no macro/],
    ["v=spf1 exists:%{c}.example.net -all", /allowed only in exp=/],
    ["v=spf1 exists:%{d0}.example.net -all", /keeps 0 labels/],
    ["spf1 -all", /starts with "v=spf1"/],
  ];
  it.each(bad)("%s", async (record, message) => {
    expect(() => parseSpf(record)).toThrow(SpfSyntaxError);
    expect(() => parseSpf(record)).toThrow(message);
    if (record.startsWith("v=spf1")) {
      const r = await evaluateSpf("example.com", IP, fakeResolver(spfAt(record)));
      expect(r.result).toBe("permerror");
      expect(r.problem).toMatch(message);
    }
  });

  it("a valid record parses into its mechanisms, prefixes and modifiers", () => {
    expect(parseSpf("v=spf1 -mx:example.net/24//64 ip4:192.0.2.0/24 redirect=_spf.example.net")).toEqual({
      mechanisms: [
        { kind: "mx", qualifier: "-", text: "-mx:example.net/24//64", domainSpec: "example.net", cidr4: 24, cidr6: 64 },
        { kind: "ip4", qualifier: "+", text: "ip4:192.0.2.0/24", network: "192.0.2.0", cidr4: 24 },
      ],
      modifiers: [{ name: "redirect", value: "_spf.example.net" }],
      redirect: "_spf.example.net",
    });
  });
});

describe("SPF macros (RFC 7208 7.4 examples)", () => {
  const ctx = { sender: "strong-bad@email.example.com", domain: "email.example.com", ip: "192.0.2.3", helo: "h" };
  it.each([
    ["%{s}", "strong-bad@email.example.com"],
    ["%{o}", "email.example.com"],
    ["%{d}", "email.example.com"],
    ["%{d4}", "email.example.com"],
    ["%{d3}", "email.example.com"],
    ["%{d2}", "example.com"],
    ["%{d1}", "com"],
    ["%{dr}", "com.example.email"],
    ["%{d2r}", "example.email"],
    ["%{l}", "strong-bad"],
    ["%{l-}", "strong.bad"],
    ["%{lr}", "strong-bad"],
    ["%{lr-}", "bad.strong"],
    ["%{l1r-}", "strong"],
    ["%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"],
    ["%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"],
  ])("%s expands to %s", (spec, want) => {
    expect(expandMacros(spec, ctx)).toBe(want);
  });
  it("%{i} of an IPv6 client is its 32 nibbles", () => {
    expect(expandMacros("%{ir}.%{v}", { ...ctx, ip: "2001:db8::cb01" })).toBe(
      "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6",
    );
  });
});

describe("SPF lookup counting (for the config check and the doctor)", () => {
  it("counts every DNS-querying term through the include tree, with the path to each", async () => {
    const r = await countSpfLookups(
      "example.com",
      fakeResolver(
        spfAt("v=spf1 ip4:192.0.2.1 include:_spf.example.net mx ~all include:after-all.example.net", {
          "_spf.example.net": { txt: ["v=spf1 a include:_n.example.net -all"] },
          "_n.example.net": { txt: ["v=spf1 ip4:198.51.100.0/24 -all"] },
        }),
      ),
    );
    expect(r.chain).toEqual([
      "example.com include:_spf.example.net",
      "example.com include:_spf.example.net > a",
      "example.com include:_spf.example.net > include:_n.example.net",
      "example.com mx",
    ]);
    expect(r.lookups).toBe(4);
    expect(r.problems).toEqual([]);
  });

  it("names the limit and the count when a tree needs more than 10", async () => {
    const zone = spfAt(`v=spf1 ${Array.from({ length: 6 }, (_, i) => `include:s${i}.example.net`).join(" ")} -all`, {
      ...Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`s${i}.example.net`, { txt: ["v=spf1 a -all"] }])),
    });
    const r = await countSpfLookups("example.com", fakeResolver(zone));
    expect(r.lookups).toBe(12);
    expect(r.problems[0]).toBe(
      "example.com's SPF record needs 12 DNS lookups; receivers stop at 10 and answer permerror (RFC 7208 4.6.4)",
    );
  });

  it("reports loops, missing records and sender-dependent targets instead of hanging or guessing", async () => {
    const r = await countSpfLookups(
      "example.com",
      fakeResolver(
        spfAt("v=spf1 include:loop.example.net include:gone.example.net exists:%{i}.x.example.net -all", {
          "loop.example.net": { txt: ["v=spf1 include:example.com -all"] },
        }),
      ),
    );
    expect(r.problems).toEqual([
      "example.com include:loop.example.net > include:example.com: loops back to example.com",
      "example.com include:gone.example.net: gone.example.net publishes no SPF record (receivers answer permerror)",
    ]);
    expect(r.lookups).toBe(4);
  });

  it("directLookups counts one record's own terms, up to all, plus redirect", () => {
    expect(directLookups(parseSpf("v=spf1 ip4:192.0.2.1 include:a.example.net a mx:b.example.net -all ptr"))).toEqual({
      lookups: 3,
      terms: ["include:a.example.net", "a", "mx:b.example.net"],
    });
    expect(directLookups(parseSpf("v=spf1 exists:x.example.net redirect=r.example.net")).lookups).toBe(2);
  });
});

/** mailauth's resolver shape: node's dns.resolve(name, type), with ENOTFOUND for an empty answer. */
function mailauthResolverOver(zone: FakeZone) {
  return async (name: string, type: string): Promise<unknown[]> => {
    const entry = zone[name.toLowerCase()];
    const answer =
      type === "TXT"
        ? (entry?.txt ?? []).map((t) => [t])
        : type === "A"
          ? (entry?.a ?? [])
          : type === "AAAA"
            ? (entry?.aaaa ?? [])
            : type === "MX"
              ? (entry?.mx ?? [])
              : [];
    if (answer.length === 0) throw Object.assign(new Error(`${name} ${type}: no data`), { code: "ENODATA" });
    return answer;
  };
}

/**
 * Every name that an a mechanism can target has both A and AAAA: mailauth deliberately counts an `a` whose other
 * family has records as not void, where RFC 7208 4.6.4 counts the empty answer of the family queried (as we do).
 */
describe("the evaluator agrees with mailauth's SPF (an independent implementation) on generated DNS worlds", () => {
  const names = ["example.com", "a.example.net", "b.example.net", "c.example.net"];
  const ips = ["192.0.2.10", "192.0.2.200", "198.51.100.7", "2001:db8::10", "2001:db8:1::1"];
  const term = fc.oneof(
    fc.constantFrom(
      "ip4:192.0.2.0/24",
      "ip4:192.0.2.10",
      "-ip4:198.51.100.0/24",
      "ip6:2001:db8::/48",
      "~ip6:2001:db8::10",
    ),
    fc.constantFrom(...names.slice(1)).map((n) => `include:${n}`),
    fc.constantFrom("a", "a/24", "a:c.example.net", "a:c.example.net//32", "mx", "mx/16"),
    fc.constantFrom("exists:c.example.net"),
  );
  const record = fc
    .tuple(fc.array(term, { maxLength: 4 }), fc.constantFrom("-all", "~all", "?all", "", "redirect=c.example.net"))
    .map(([ts, end]) => ["v=spf1", ...ts, end].filter(Boolean).join(" "));
  const world = fc.tuple(record, record, record, record).map(([r0, r1, r2, r3]): FakeZone => ({
    "example.com": {
      txt: [r0],
      a: ["192.0.2.10"],
      aaaa: ["2001:db8:2::1"],
      mx: [{ exchange: "mx.example.com", priority: 10 }],
    },
    "mx.example.com": { a: ["198.51.100.7"], aaaa: ["2001:db8:1::1"] },
    "a.example.net": { txt: [r1], a: ["192.0.2.200"], aaaa: ["2001:db8:3::1"] },
    "b.example.net": { txt: [r2], a: ["203.0.113.5"], aaaa: ["2001:db8::10"] },
    "c.example.net": { txt: [r3], a: ["198.51.100.7"], aaaa: ["2001:db8:1::1"], mx: [] },
  }));

  it("same result for every generated record set and client", async () => {
    await fc.assert(
      fc.asyncProperty(world, fc.constantFrom(...ips), async (zone, ip) => {
        const ours = await evaluateSpf("example.com", ip, fakeResolver(zone));
        const theirs = await mailauthSpf({
          sender: "postmaster@example.com",
          ip,
          helo: "example.com",
          mta: "test",
          resolver: mailauthResolverOver(zone),
        } as Parameters<typeof mailauthSpf>[0]);
        expect(ours.result, `${JSON.stringify(zone)} ${ip}: ${ours.problem ?? ""}`).toBe(theirs.status.result);
      }),
      { numRuns: Number(process.env.SPF_ORACLE_RUNS ?? 300) },
    );
  });
});

describe("dnsResolver: node:dns answers as an SpfResolver", () => {
  const err = (code: string) => Object.assign(new Error(code), { code });
  /** A fake of node's dns.promises: example.com has TXT in two strings; void names reject as node does. */
  const fakeNodeDns = {
    resolveTxt: async (n: string) =>
      n === "example.com" ? [["v=spf1 ip4:192.0.2.10", " -all"]] : Promise.reject(err("ENOTFOUND")),
    resolve4: async () => Promise.reject(err("ENODATA")),
    resolve6: async () => Promise.reject(err("ESERVFAIL")),
    resolveMx: async () => [{ exchange: "mx.example.com", priority: 10 }],
    reverse: async () => ["mail.example.com"],
  } as unknown as Parameters<typeof dnsResolver>[0];

  it("joins a TXT record's strings, turns no-such-name and no-data into [] and keeps real failures", async () => {
    const r = dnsResolver(fakeNodeDns);
    expect(await r.txt("example.com")).toEqual(["v=spf1 ip4:192.0.2.10 -all"]);
    expect(await r.txt("nothing.example.com")).toEqual([]);
    expect(await r.a("example.com")).toEqual([]);
    await expect(r.aaaa("example.com")).rejects.toThrow("ESERVFAIL");
    expect((await evaluateSpf("example.com", IP, r)).result).toBe("pass");
  });
});
