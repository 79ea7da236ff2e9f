// The rehearsal's world as the doctor sees it: its DNS holds every blocklist zone the doctor asks (empty, so a healthy
// host reads "not listed" rather than "cannot tell"), and it answers NXDOMAIN for names it does not hold in the zones
// it serves (a PTR pointing elsewhere must read as "does not resolve", not as a resolver failure).
import { describe, expect, it } from "vitest";
import { DOMAIN_BLOCKLIST, IP_BLOCKLISTS } from "../../doctor/checks-reputation";
import { renderDnsmasqConf, WORLD } from "../../rehearsal/world";

const world = {
  records: [
    { name: "mail.example.com", type: "A", content: "203.0.113.11", proxied: false },
    { name: "example.com", type: "TXT", content: '"v=spf1 ip4:203.0.113.11 ~all"', proxied: false },
  ],
  ptrs: [{ ip: "203.0.113.11", name: "mail.example.com" }],
};

describe("the world's DNS for the doctor", () => {
  it("every blocklist zone the doctor asks is served locally, empty", () => {
    const conf = renderDnsmasqConf(world).split("\n");
    for (const l of [...IP_BLOCKLISTS, DOMAIN_BLOCKLIST]) expect(conf).toContain(`local=/${l.zone}/`);
    expect(conf.filter((l) => /spamhaus|barracuda|spamcop|mailspike|surriel|uceprotect/.test(l))).toEqual(
      [...IP_BLOCKLISTS, DOMAIN_BLOCKLIST].map((l) => `local=/${l.zone}/`),
    );
  });
  it("the stack's zone and the recipients' are authoritative (NXDOMAIN for the rest)", () => {
    const conf = renderDnsmasqConf(world).split("\n");
    expect(conf).toContain("local=/example.com/");
    expect(conf).toContain(`local=/${WORLD.recipientDomain}/`);
  });
  it("a fault's extra lines (a listing) come after the records", () => {
    const conf = renderDnsmasqConf(world, ["host-record=11.113.0.203.zen.spamhaus.org,127.0.0.2"]).trim().split("\n");
    expect(conf[conf.length - 1]).toBe("host-record=11.113.0.203.zen.spamhaus.org,127.0.0.2");
  });
});

describe("SPF includes in the world", () => {
  it("every include target outside the stack gets a record authorising nothing, so the chain resolves", () => {
    const conf = renderDnsmasqConf({
      ...world,
      records: [
        {
          name: "example.com",
          type: "TXT",
          content: '"v=spf1 ip4:203.0.113.11 include:_spf.mx.cloudflare.net ~all"',
          proxied: false,
        },
      ],
    });
    expect(conf.split("\n")).toContain('txt-record=_spf.mx.cloudflare.net,"v=spf1 -all"');
  });
});
