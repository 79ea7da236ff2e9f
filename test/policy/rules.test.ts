/**
 * The rule library's parsers, and the preview rule: a value that is unknown (undefined) is never reported,
 * only what is known is checked.
 */
import { createRequire } from "node:module";
import { unknownCheckingProxy } from "@pulumi/policy";
import { describe, expect, it } from "vitest";
import { knownProps } from "../../infra/policy/policies";
import { dkimKeyBits, parseSpf, parseTags, txtJoin } from "../../infra/policy/parse/dns";
import { cidrWithin, parseCidr, parsePortRange } from "../../infra/policy/parse/net";
import { expandPostfix, parseMainCf, parseMasterCf, postfixList } from "../../infra/policy/parse/postfix";
import { checkAll } from "../../infra/policy/rules";
import {
  inetInterfacesLoopbackOnly,
  mynetworksOutsideLoopback,
  relayRestrictionsProblem,
} from "../../infra/policy/rules/postfix";
import { firedPolicies, runPolicies } from "./crossguard";
import {
  baseline,
  byName,
  DKIM_KEY,
  FixtureResource,
  mutate,
  quotedTxt,
  RELAY_TOKEN,
  setMainCf,
  WEAK_DKIM_KEY,
  listAt,
  objectAt,
  objectsAt,
  tunnelIngresses,
} from "./fixtures";

const base = baseline();
const fired = (rs: FixtureResource[]) => [...new Set(checkAll(rs).map((v) => v.rule))].sort();

describe("Postfix parsers", () => {
  it("main.cf: continuation lines join, comments (also between continuations) are ignored, the last definition wins", () => {
    const p = parseMainCf(
      "# c\nmynetworks = 127.0.0.0/8\n  # inner comment\n  [::1]/128\n\nmyhostname = a.example\nmyhostname = b.example\nrelay_domains =\n",
    );
    expect(p.get("mynetworks")).toBe("127.0.0.0/8 [::1]/128");
    expect(p.get("myhostname")).toBe("b.example");
    expect(p.get("relay_domains")).toBe("");
  });

  it("$name, ${name}, $(name) and ${name?x}/${name:x} expand like Postfix", () => {
    const p = parseMainCf(
      "myhostname = mail.example.com\nmydomain = example.com\nempty =\nd = $myhostname, ${mydomain}, $(mydomain)\n",
    );
    expect(expandPostfix(p.get("d")!, p)).toBe("mail.example.com, example.com, example.com");
    expect(expandPostfix("${mydomain?yes}${empty?no}${empty:dflt}", p)).toBe("yesdflt");
  });

  it("lists split on commas and whitespace, keeping { } groups whole", () => {
    expect(postfixList("a, b  c,{ inet:x:1, default_action=accept }")).toEqual([
      "a",
      "b",
      "c",
      "inet:x:1, default_action=accept",
    ]);
  });

  it("master.cf: fields, continuation lines and -o overrides (both spellings)", () => {
    const s = parseMasterCf(
      "smtp inet n - y - - smtpd\n  -o smtpd_relay_restrictions=permit\n  -o { mynetworks = 10.0.0.0/8 }\n127.0.0.1:2525 inet n - n - - smtpd\npickup unix n - y 60 1 pickup\n",
    );
    expect(s.map((x) => [x.service, x.type, x.command])).toEqual([
      ["smtp", "inet", "smtpd"],
      ["127.0.0.1:2525", "inet", "smtpd"],
      ["pickup", "unix", "pickup"],
    ]);
    expect(s[0].overrides.get("smtpd_relay_restrictions")).toBe("permit");
    expect(s[0].overrides.get("mynetworks")).toBe("10.0.0.0/8");
  });

  it("inet_interfaces: loopback-only or loopback addresses only", () => {
    expect(inetInterfacesLoopbackOnly("loopback-only")).toBe(true);
    expect(inetInterfacesLoopbackOnly("127.0.0.1, [::1]")).toBe(true);
    expect(inetInterfacesLoopbackOnly("all")).toBe(false);
    expect(inetInterfacesLoopbackOnly("127.0.0.1, 10.0.0.1")).toBe(false);
  });

  it("mynetworks outside loopback: private ranges, the Docker gateway, tables, too-wide prefixes", () => {
    expect(mynetworksOutsideLoopback("127.0.0.0/8 [::1]/128")).toEqual([]);
    expect(mynetworksOutsideLoopback("127.0.0.1/32, 172.22.1.1, hash:/etc/postfix/network_table, ::1/127")).toEqual([
      "172.22.1.1",
      "hash:/etc/postfix/network_table",
      "::1/127",
    ]);
  });

  it("relay restrictions must close with reject_unauth_destination and no permit after", () => {
    expect(relayRestrictionsProblem("permit_mynetworks, reject_unauth_destination")).toBeUndefined();
    expect(relayRestrictionsProblem("permit_mynetworks defer_unauth_destination reject")).toBeUndefined();
    expect(relayRestrictionsProblem("permit_mynetworks, reject_unauth_destination, permit_auth_destination")).toMatch(
      /permit_auth_destination/,
    );
    expect(relayRestrictionsProblem("permit_mynetworks")).toMatch(/no reject_unauth_destination/);
  });
});

describe("CIDR, ports, DNS values", () => {
  it("CIDR containment for IPv4 and IPv6 (node BlockList)", () => {
    expect(cidrWithin(parseCidr("127.0.0.1")!, parseCidr("127.0.0.0/8")!)).toBe(true);
    expect(cidrWithin(parseCidr("127.0.0.0/7")!, parseCidr("127.0.0.0/8")!)).toBe(false);
    expect(cidrWithin(parseCidr("[::1]/128")!, parseCidr("::1/128")!)).toBe(true);
    expect(cidrWithin(parseCidr("2001:db8:5::1")!, parseCidr("2001:db8:5::/64")!)).toBe(true);
    expect(cidrWithin(parseCidr("2001:db8:6::1")!, parseCidr("2001:db8:5::/64")!)).toBe(false);
    expect(cidrWithin(parseCidr("::ffff:127.0.0.1")!, parseCidr("127.0.0.0/8")!)).toBe(false);
    expect(parseCidr("10.0.0.0/33")).toBeUndefined();
    expect(parseCidr("hash:/etc/x")).toBeUndefined();
  });

  it("Hetzner port syntax: single, range, any, not set = all; unknown stays unknown", () => {
    expect(parsePortRange("25", true)).toEqual({ from: 25, to: 25 });
    expect(parsePortRange("20-30", true)).toEqual({ from: 20, to: 30 });
    expect(parsePortRange("any", true)).toEqual({ from: 1, to: 65535 });
    expect(parsePortRange(undefined, false)).toEqual({ from: 1, to: 65535 });
    expect(parsePortRange(undefined, true)).toBeUndefined();
  });

  it("TXT chunks join the way a resolver assembles them (with escapes)", () => {
    expect(txtJoin('"v=DKIM1; p=AAA" "BBB"')).toBe("v=DKIM1; p=AAABBB");
    expect(txtJoin('"a\\"b" "c\\\\d\\059"')).toBe('a"bc\\d;');
    expect(txtJoin("v=spf1 -all")).toBe("v=spf1 -all");
  });

  it("DKIM/DMARC tags and key size from the p= SPKI", () => {
    const t = parseTags("v=DMARC1; p=quarantine; pct=100; RUA=mailto:a@example.com");
    expect(t.get("p")).toBe("quarantine");
    expect(t.get("rua")).toBe("mailto:a@example.com");
    expect(dkimKeyBits(DKIM_KEY.spki)).toBe(2048);
    expect(dkimKeyBits(WEAK_DKIM_KEY.spki)).toBe(1024);
    expect(dkimKeyBits("bm90IGEga2V5")).toBeUndefined();
  });

  it("SPF terms with qualifiers", () => {
    expect(
      parseSpf("v=spf1 ip4:1.2.3.4 -ip6:2001:db8::/32 include:x.example ~all")!.map(
        (t) => `${t.qualifier}${t.mechanism}:${t.value ?? ""}`,
      ),
    ).toEqual(["+ip4:1.2.3.4", "-ip6:2001:db8::/32", "+include:x.example", "~all:"]);
    expect(parseSpf("v=DMARC1")).toBeUndefined();
  });
});

/** For each rule: a fixture that trips it, and the same fixture with the offending value unknown (undefined). */
const unknownCases: {
  rule: string;
  violate: (s: FixtureResource[]) => void;
  unknown: (s: FixtureResource[]) => void;
}[] = [
  {
    rule: "no-public-smtp-ports",
    violate: (s) =>
      listAt(byName(s, "fw").props, "rules").push({
        direction: "in",
        protocol: "tcp",
        port: "25",
        sourceIps: ["203.0.113.0/24"],
      }),
    unknown: (s) => (objectsAt(byName(s, "fw").props, "rules").at(-1)!.port = undefined),
  },
  {
    rule: "no-public-smtp-ports",
    violate: (s) =>
      listAt(byName(s, "fw").props, "rules").push({
        direction: "in",
        protocol: "tcp",
        port: "25",
        sourceIps: ["203.0.113.0/24"],
      }),
    unknown: (s) => (byName(s, "fw").props.rules = undefined),
  },
  {
    rule: "firewall-before-first-boot",
    violate: (s) => (byName(s, "server").props.firewallIds = []),
    unknown: (s) => (byName(s, "server").props.firewallIds = undefined),
  },
  {
    rule: "ssh-restricted",
    violate: (s) => (objectsAt(byName(s, "fw").props, "rules")[0].sourceIps = ["0.0.0.0/0"]),
    unknown: (s) => (objectsAt(byName(s, "fw").props, "rules")[0].sourceIps = [undefined]),
  },
  {
    rule: "postfix-loopback-only",
    violate: (s) => setMainCf(s, "inet_interfaces", "all"),
    unknown: (s) => (byName(s, "file-main-cf").props.stdin = undefined),
  },
  {
    rule: "trusted-networks-loopback-only",
    violate: (s) => setMainCf(s, "mynetworks", "172.22.1.1/32"),
    unknown: (s) => (byName(s, "file-main-cf").props.stdin = undefined),
  },
  {
    rule: "relay-restrictions-closed",
    violate: (s) => setMainCf(s, "smtpd_relay_restrictions", "permit"),
    unknown: (s) => (byName(s, "file-main-cf").props.stdin = undefined),
  },
  {
    rule: "send-only-mydestination",
    violate: (s) => setMainCf(s, "mydestination", "$myhostname"),
    unknown: (s) => (byName(s, "file-main-cf").props.stdin = undefined),
  },
  {
    rule: "never-send-unsigned",
    violate: (s) => setMainCf(s, "milter_default_action", "accept"),
    unknown: (s) => (byName(s, "file-main-cf").props.stdin = undefined),
  },
  {
    rule: "tunnel-cannot-reach-mail-ports",
    violate: (s) => (tunnelIngresses(s)[0].service = "tcp://127.0.0.1:25"),
    unknown: (s) => (tunnelIngresses(s)[0].service = undefined),
  },
  {
    rule: "tunnel-cannot-reach-mail-ports",
    violate: (s) => (tunnelIngresses(s)[0].service = "tcp://127.0.0.1:25"),
    unknown: (s) => (byName(s, "ingress").props.config = undefined),
  },
  {
    rule: "access-in-front-of-tunnel",
    violate: (s) => (byName(s, "access-policy").props.decision = "bypass"),
    unknown: (s) => (byName(s, "access-app").props.policies = [{ id: undefined, precedence: 1 }]),
  },
  {
    rule: "forward-confirmed-rdns",
    violate: (s) => (byName(s, "a-node1").props.content = "198.51.100.99"),
    unknown: (s) => (byName(s, "a-node1").props.content = undefined),
  },
  {
    rule: "forward-confirmed-rdns",
    violate: (s) => (byName(s, "a-node1").props.content = "198.51.100.99"),
    unknown: (s) => (byName(s, "ptr-ipv4").props.ipAddress = undefined),
  },
  {
    rule: "spf-covers-every-node",
    violate: (s) => (byName(s, "spf").props.content = quotedTxt("v=spf1 ip6:2001:db8:5::1 ~all")),
    unknown: (s) => (byName(s, "spf").props.content = undefined),
  },
  {
    rule: "dkim-dmarc-bimi",
    violate: (s) => (byName(s, "dmarc").props.content = quotedTxt("v=DMARC1; p=none")),
    unknown: (s) => (byName(s, "dmarc").props.content = undefined),
  },
  {
    rule: "dkim-dmarc-bimi",
    violate: (s) => (byName(s, "dkim-mail202611").props.content = quotedTxt(`v=DKIM1; k=rsa; p=${WEAK_DKIM_KEY.spki}`)),
    unknown: (s) => (byName(s, "dkim-mail202611").props.content = undefined),
  },
  {
    rule: "no-secrets-in-user-data",
    violate: (s) => (byName(s, "server").props.userData += `token: ${RELAY_TOKEN}\n`),
    unknown: (s) => (byName(s, "server").props.userData = undefined),
  },
  {
    rule: "mx-never-points-at-relay",
    violate: (s) =>
      s.push({
        ...byName(s, "mx-route1"),
        name: "mx-bad",
        urn: "urn:pulumi:fixture::x::mx-bad",
        props: { name: "example.com", type: "MX", content: "mail.example.com" },
      }),
    unknown: (s) => (byName(s, "mx-bad").props.content = undefined),
  },
  {
    rule: "primary-ips-kept",
    violate: (s) => (byName(s, "ipv4").props.autoDelete = true),
    unknown: (s) => (byName(s, "ipv4").props.autoDelete = undefined),
  },
  {
    rule: "primary-ips-kept",
    violate: (s) => (byName(s, "ipv4").props.deleteProtection = false),
    unknown: (s) => (byName(s, "ipv4").props.deleteProtection = undefined),
  },
];

/**
 * Fields that decide safety and come from config, never from the cloud (ports, sources, protocol, the Postfix
 * files, the ingress services): unknown fails closed, reported by the rule named here.
 */
const FAIL_CLOSED: Record<number, string> = {
  0: "no-public-smtp-ports", // an unknown port
  3: "ssh-restricted", // an unknown SSH source
  4: "postfix-loopback-only", // main.cf unknown: every main.cf rule is blind, postfix-loopback-only reports it
  5: "postfix-loopback-only",
  6: "postfix-loopback-only",
  7: "postfix-loopback-only",
  8: "postfix-loopback-only",
  9: "tunnel-cannot-reach-mail-ports", // an unknown ingress service
  10: "tunnel-cannot-reach-mail-ports", // an unknown tunnel config
};

describe("unknown values during preview: silent for what the cloud assigns, fail closed for what decides safety", () => {
  it.each(unknownCases.map((c, i) => ({ ...c, i })))(
    "$rule (#$i): fires when known; unknown is silent or fails closed",
    async (c) => {
      const violating = mutate(base, c.violate);
      expect(fired(violating)).toEqual([c.rule]);
      const unknown = mutate(violating, c.unknown);
      const expected = FAIL_CLOSED[c.i] ? [FAIL_CLOSED[c.i]] : [];
      expect(fired(unknown)).toEqual(expected);
      expect(await firedPolicies(unknown)).toEqual(expected);
    },
  );

  it("a first preview (every IP, ID and rendered file unknown) reports nothing", async () => {
    const preview = mutate(base, (s) => {
      for (const r of s) {
        if (r.type.startsWith("hcloud:index/rdns")) r.props.ipAddress = undefined;
        if (r.type === "hcloud:index/primaryIp:PrimaryIp") r.props.ipAddress = undefined;
        if (r.type === "hcloud:index/server:Server") r.props.firewallIds = [undefined];
        if (
          r.type === "cloudflare:index/dnsRecord:DnsRecord" &&
          ["A", "AAAA", "TXT", "CNAME"].includes(String(r.props.type))
        )
          r.props.content = undefined;
        if (r.type === "command:remote:Command") {
          objectAt(r.props, "connection").host = undefined;
          const trigger = listAt(r.props, "triggers")[0];
          // main.cf and master.cf are rendered from config alone: known at the first preview too.
          if (trigger !== 21) {
            if (!["/etc/postfix/main.cf", "/etc/postfix/master.cf"].includes(String(trigger)))
              r.props.stdin = undefined;
          } else r.props.triggers = [undefined];
        }
        if (r.type.includes("zeroTrustAccessApplication")) r.props.policies = [{ id: undefined, precedence: 1 }];
      }
    });
    expect(await runPolicies(preview)).toEqual([]);
  });

  it("through the engine's own unknown-checking proxy: unknown fields are skipped, known violations still reported", async () => {
    // The analyzer hands props wrapped in unknownCheckingProxy, with unknowns as its sentinel strings.
    const sentinel = (createRequire(require.resolve("@pulumi/policy")) as NodeRequire)("./proxy")
      .unknownStringValue as string;
    expect(typeof sentinel).toBe("string");
    const fwRes = byName(base, "fw");
    const rawProps = {
      ...fwRes.props,
      rules: [
        { direction: "in", protocol: "tcp", port: "25", sourceIps: ["203.0.113.0/24"], description: sentinel },
        { direction: "in", protocol: "tcp", port: sentinel, sourceIps: ["0.0.0.0/0"] },
      ],
    };
    const proxied = unknownCheckingProxy(rawProps);
    expect(() => proxied.rules[1].port).toThrow(/can't be known during preview/);
    expect(knownProps(proxied)).toEqual({
      ...rawProps,
      rules: [
        { ...rawProps.rules[0], description: undefined },
        { ...rawProps.rules[1], port: undefined },
      ],
    });
    const reported = await runPolicies([{ ...fwRes, props: proxied }]);
    expect([...new Set(reported.map((r) => r.policy))]).toEqual(["no-public-smtp-ports"]);
    expect(reported[0].message).toMatch(/rule #0 .*port 25/);
    // The unknown port of rule #1 fails closed.
    expect(reported[1].message).toMatch(/rule #1 has an unknown port/);
  });
});

describe("Access linking without IDs in the state", () => {
  const noIds = { idsInProps: false };
  const withDeps = (s: FixtureResource[]) => {
    const app = byName(s, "access-app");
    s[s.indexOf(app)] = {
      ...app,
      propertyDependencies: { policies: [byName(s, "access-policy").urn!] },
    } as FixtureResource;
  };

  it("the app's policies are found through propertyDependencies", async () => {
    expect(await firedPolicies(mutate(base, withDeps), noIds)).toEqual([]);
    const bypass = mutate(base, (s) => {
      withDeps(s);
      byName(s, "access-policy").props.decision = "bypass";
    });
    expect(await firedPolicies(bypass, noIds)).toEqual(["access-in-front-of-tunnel"]);
  });

  it("with neither IDs nor dependencies known, the policy link is unknown and nothing is reported", async () => {
    const bypass = mutate(base, (s) => (byName(s, "access-policy").props.decision = "bypass"));
    expect(await firedPolicies(bypass, noIds)).toEqual([]);
  });
});
