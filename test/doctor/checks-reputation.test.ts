import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkDomainBlocklist, checkIpBlocklists, IP_BLOCKLISTS, readListing } from "../../doctor/checks-reputation";
import { fakeDns } from "./fake-dns";

describe("a blocklist answer", () => {
  it.each([
    [[], "clean"],
    [["127.0.0.2"], "listed"],
    [["127.0.0.4", "127.0.0.10"], "listed"],
    [["127.255.255.254"], "cannot tell"],
    [["127.255.255.252"], "cannot tell"],
    [["127.255.255.255"], "cannot tell"],
    [["192.0.2.1"], "cannot tell"],
  ])("%j reads as %s", (answers, kind) => {
    expect(readListing(answers).kind).toBe(kind);
  });
  it("Spamhaus's refusal (127.255.255.x) is never read as listed", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), (x) => {
        expect(readListing([`127.255.255.${x}`]).kind).toBe("cannot tell");
      }),
    );
  });
});

describe("node addresses and the domain against the lists (fake resolver)", () => {
  it("asks every list for an IPv4 address, in the list's real zone with reversed octets", async () => {
    const dns = fakeDns({});
    const checks = await checkIpBlocklists("203.0.113.11", "node1", dns);
    expect(checks.every((c) => c.status === "pass")).toBe(true);
    expect(dns.asked.sort()).toEqual(IP_BLOCKLISTS.map((l) => `A 11.113.0.203.${l.zone}`).sort());
  });
  it("asks only the lists that cover IPv6 for an IPv6 address", async () => {
    const dns = fakeDns({});
    await checkIpBlocklists("2001:db8:1::1", "node1", dns);
    expect(dns.asked).toEqual(["A 1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org"]);
  });
  it.each(IP_BLOCKLISTS.map((l) => [l.zone, l] as const))(
    "a listing on %s fails exactly that list's check, naming the list and its delisting page",
    async (zone, list) => {
      const dns = fakeDns({ a: { [`11.113.0.203.${zone}`]: ["127.0.0.2"] } });
      const bad = (await checkIpBlocklists("203.0.113.11", "node1", dns)).filter((c) => c.status !== "pass");
      expect(bad).toHaveLength(1);
      expect(bad[0].status).toBe("fail");
      expect(bad[0].saw).toContain(list.name);
      expect(bad[0].fix).toContain(list.delisting);
    },
  );
  it("a refusal or a timeout is a warn, not a listing", async () => {
    const dns = fakeDns({
      a: { "11.113.0.203.zen.spamhaus.org": ["127.255.255.254"] },
      failing: ["11.113.0.203.bl.spamcop.net"],
    });
    const bad = (await checkIpBlocklists("203.0.113.11", "node1", dns)).filter((c) => c.status !== "pass");
    expect(bad.map((c) => c.status)).toEqual(["warn", "warn"]);
    expect(bad[0].saw).toMatch(/cannot tell.*refused/);
  });
  it("the domain is asked of Spamhaus DBL", async () => {
    const listed = await checkDomainBlocklist(
      "example.com",
      fakeDns({ a: { "example.com.dbl.spamhaus.org": ["127.0.1.2"] } }),
    );
    expect(listed.status).toBe("fail");
    expect(listed.fix).toContain("https://check.spamhaus.org/");
    expect((await checkDomainBlocklist("example.com", fakeDns({}))).status).toBe("pass");
  });
});
