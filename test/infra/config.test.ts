import fc from "fast-check";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import {
  CONFIG_KEYS,
  configWarnings,
  decodeRaw,
  decodingOf,
  nodeHostnames,
  parseConfig,
  SECRET_KEYS,
  type ConfigKey,
} from "../../infra/config";
import { rawSchema } from "../../infra/config/schema";
import { readStackConfig } from "../../infra/offline";
import { CONFIG_CTX, CONFIG_SECRETS, configProblems, minimalConfig } from "../helpers/config";

describe("config: defaults", () => {
  it("a minimal config gets the documented defaults", () => {
    const c = parseConfig(minimalConfig(), CONFIG_SECRETS, CONFIG_CTX);
    expect(c.nodes.map((n) => n.mtaHostname)).toEqual(["mail.example.com"]);
    expect(c.relayHostname).toBe("mail-relay.example.com");
    expect(c.image).toBe("debian-13");
    expect(c.release).toBe("trixie");
    expect(c.untestedImage).toBe(false);
    expect(c.zone).toBe("example.com");
    expect(c.protectPrimaryIps).toBe(true);
    expect(c.relay).toMatchObject({
      rateLimitPerMin: 60,
      bodyLimitBytes: 524288,
      maxRecipients: 50,
      handoff: "smtp",
      port: 2525,
    });
    // Teardown never loses mail by default.
    expect(c.relay).toMatchObject({ teardownDrainSeconds: 300, allowQueueLoss: false });
    expect(c.dmarc).toMatchObject({ policy: "quarantine", adkim: "s", aspf: "s", pct: 100 });
    expect(c.spf.all).toBe("~all");
    expect(c.defaultSender).toBe("noreply@example.com");
    expect(c.tunnel).toBe(true);
    expect(c.callers).toEqual(["app"]);
  });

  it("callers are names or {name, allowedSenders}; only those with a list get one; quotas have defaults", () => {
    const c = parseConfig(
      {
        ...minimalConfig(),
        allowedSenders: ["noreply@example.com", "tickets@example.com"],
        callers: ["app", { name: "billing", allowedSenders: ["Tickets@example.com"] }],
      },
      CONFIG_SECRETS,
      CONFIG_CTX,
    );
    expect(c.callers).toEqual(["app", "billing"]);
    expect(c.callerSenders).toEqual({ billing: ["tickets@example.com"] });
    expect(c.relay.quotas).toEqual({
      recipientsPerMin: 500,
      recipientsPerDay: 10000,
      bytesPerMin: 52428800,
      bytesPerDay: 1073741824,
    });
  });

  it("node1 keeps mail.<domain> at any nodeCount; the others are mail2., mail3., ...; each PTR is distinct", () => {
    expect(nodeHostnames("mail.example.com", 3)).toEqual([
      "mail.example.com",
      "mail2.example.com",
      "mail3.example.com",
    ]);
    expect(
      parseConfig({ ...minimalConfig(), nodeCount: 2 }, CONFIG_SECRETS, CONFIG_CTX).nodes.map((n) => n.key),
    ).toEqual(["node1", "node2"]);
  });

  it("changing nodeCount never renames a node that stays (every count's names are a prefix of a larger count's)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 }), (n, m) => {
        const [small, large] = [
          nodeHostnames("mail.example.com", Math.min(n, m)),
          nodeHostnames("mail.example.com", Math.max(n, m)),
        ];
        expect(large.slice(0, small.length)).toEqual(small);
        expect(new Set(large).size).toBe(large.length);
      }),
    );
  });

  it("mtaHostnames pins the first nodes' names (a stack deployed as mail1./mail2. keeps them); the rest follow the rule", () => {
    const c = parseConfig(
      { ...minimalConfig(), nodeCount: 3, mtaHostnames: ["mail1.example.com", "mail2.example.com"] },
      CONFIG_SECRETS,
      CONFIG_CTX,
    );
    expect(c.nodes.map((n) => n.mtaHostname)).toEqual(["mail1.example.com", "mail2.example.com", "mail3.example.com"]);
    const one = parseConfig(
      { ...minimalConfig(), nodeCount: 1, mtaHostnames: ["mail1.example.com", "mail2.example.com"] },
      CONFIG_SECRETS,
      CONFIG_CTX,
    );
    expect(one.nodes.map((n) => n.mtaHostname)).toEqual(["mail1.example.com"]);
  });

  it.each([
    [
      { nodeCount: 2, mtaHostnames: ["mail2.example.com"] },
      /mail-relay:mtaHostnames gives two nodes the name mail2\.example\.com; .*\["mail\.example\.com","mail2\.example\.com"\]/,
    ],
    [
      { mtaHostnames: ["mail.example.org"] },
      /mail-relay:mtaHostnames\[0\] "mail\.example\.org" must be inside the zone "example\.com"/,
    ],
    [{ mtaHostnames: "mail1.example.com" }, /mail-relay:mtaHostnames must be a list like \["mail1\.example\.com"\]/],
  ])("mtaHostnames %j is refused, naming the key and the fix", (over, message) => {
    expect(() => parseConfig({ ...minimalConfig(), ...over }, CONFIG_SECRETS, CONFIG_CTX)).toThrow(message);
  });
});

describe("config: wide admin ranges", () => {
  it("allowWideAdminCidrs: true accepts a /12 and a /32 and names them for the warning; /8 and /16 stay the hard floor", () => {
    const c = parseConfig(
      { ...minimalConfig(), adminCidrs: ["10.0.0.0/12", "2001:db8::/32", "203.0.113.0/24"], allowWideAdminCidrs: true },
      CONFIG_SECRETS,
      CONFIG_CTX,
    );
    expect(c.wideAdminCidrs).toEqual(["10.0.0.0/12", "2001:db8::/32"]);
    expect(
      configProblems({ ...minimalConfig(), adminCidrs: ["0.0.0.0/4"], allowWideAdminCidrs: true }).join("\n"),
    ).toMatch(/opens SSH/);
    expect(parseConfig(minimalConfig(), CONFIG_SECRETS, CONFIG_CTX).wideAdminCidrs).toEqual([]);
  });
});

describe("config: every bad value gets its own clear error naming the key", () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["missing domain", { domain: undefined }, /mail-relay:domain is required/],
    ["bad domain", { domain: "not a domain" }, /mail-relay:domain must be a DNS name/],
    ["missing adminCidrs", { adminCidrs: undefined }, /mail-relay:adminCidrs is required/],
    ["empty adminCidrs", { adminCidrs: [] }, /mail-relay:adminCidrs must list at least one CIDR/],
    ["0.0.0.0/0 in adminCidrs", { adminCidrs: ["0.0.0.0/0"] }, /mail-relay:adminCidrs\[0\] "0\.0\.0\.0\/0" opens SSH/],
    ["::/0 in adminCidrs", { adminCidrs: ["203.0.113.0/24", "::/0"] }, /mail-relay:adminCidrs\[1\] "::\/0" opens SSH/],
    ["half the Internet in adminCidrs", { adminCidrs: ["0.0.0.0/1"] }, /mail-relay:adminCidrs\[0\].*opens SSH/],
    [
      "an IPv4 range wider than /16 in adminCidrs",
      { adminCidrs: ["10.0.0.0/12"] },
      /mail-relay:adminCidrs "10\.0\.0\.0\/12" is wider than an IPv4 \/16 or an IPv6 \/48.*allowWideAdminCidrs/,
    ],
    [
      "an IPv6 range wider than /48 in adminCidrs",
      { adminCidrs: ["2001:db8::/32"] },
      /mail-relay:adminCidrs "2001:db8::\/32" is wider/,
    ],
    ["not a CIDR", { adminCidrs: ["10.0.0.1"] }, /mail-relay:adminCidrs\[0\] "10\.0\.0\.1" is not a CIDR/],
    ["bad ssh key", { sshPublicKey: "hello" }, /mail-relay:sshPublicKey must be an OpenSSH public key/],
    [
      "sender outside the domain",
      { allowedSenders: ["noreply@other.org"] },
      /mail-relay:allowedSenders\[0\] "noreply@other\.org" must be at example\.com/,
    ],
    [
      "default sender not allowed",
      { defaultSender: "x@example.com" },
      /mail-relay:defaultSender "x@example\.com" must be one of/,
    ],
    [
      "no active selector",
      { dkimSelectors: [{ name: "a1" }] },
      /mail-relay:dkimSelectors must mark exactly one selector "active"/,
    ],
    [
      "two active selectors",
      {
        dkimSelectors: [
          { name: "a1", active: true },
          { name: "a2", active: true },
        ],
      },
      /exactly one selector "active": true \(found 2\)/,
    ],
    ["duplicate selector", { dkimSelectors: [{ name: "a1", active: true }, { name: "a1" }] }, /lists "a1" twice/],
    [
      "bad selector name",
      { dkimSelectors: [{ name: "Bad_Sel", active: true }] },
      /mail-relay:dkimSelectors\[0\]\.name must be a DNS label/,
    ],
    ["no MX", { mx: [] }, /mail-relay:mx must list the domain's existing mailbox provider MX hosts/],
    [
      "MX at the relay",
      { mx: [{ host: "mail.example.com", priority: 10 }] },
      /mail-relay:mx must not point at mail\.example\.com/,
    ],
    [
      "BIMI without enforcing DMARC",
      { bimi: { logoUrl: "https://example.com/logo.svg" }, dmarc: { policy: "none" } },
      /mail-relay:bimi needs mail-relay:dmarc\.policy "quarantine" or "reject" at pct 100/,
    ],
    [
      "BIMI at pct 50",
      { bimi: { logoUrl: "https://example.com/logo.svg" }, dmarc: { policy: "reject", pct: 50 } },
      /mail-relay:bimi needs/,
    ],
    [
      "BIMI logo not https svg",
      { bimi: { logoUrl: "http://example.com/logo.png" } },
      /logoUrl must be an https:\/\/ URL of an SVG/,
    ],
    [
      "SPF +all",
      { spf: { all: "+all" } },
      /^mail-relay:spf\.all is "\+all", which is not allowed; use one of "~all", "-all"$/,
    ],
    ["DMARC bad policy", { dmarc: { policy: "monitor" } }, /mail-relay:dmarc\.policy/],
    ["DMARC pct > 100", { dmarc: { pct: 120 } }, /mail-relay:dmarc\.pct/],
    ["rua not mailto", { dmarc: { rua: ["dmarc@example.com"] } }, /each rua must look like mailto:/],
    ["nodeCount 0", { nodeCount: 0 }, /mail-relay:nodeCount must be at least 1/],
    ["relay body limit too small", { relay: { bodyLimitBytes: 10 } }, /mail-relay:relay\.bodyLimitBytes/],
    [
      "unknown relay key",
      { relay: { ratelimit: 5 } },
      /^mail-relay:relay\.ratelimit is not a key of mail-relay:relay; did you mean `rateLimitPerMin`\? \(its keys: rateLimitPerMin, /,
    ],
    [
      "teardown drain over an hour",
      { relay: { teardownDrainSeconds: 7200 } },
      /mail-relay:relay\.teardownDrainSeconds/,
    ],
    ["allowQueueLoss not a boolean", { relay: { allowQueueLoss: "yes" } }, /mail-relay:relay\.allowQueueLoss/],
    [
      "tunnel without account",
      { cloudflareAccountId: undefined },
      /mail-relay:cloudflareAccountId is required when mail-relay:tunnel is true/,
    ],
    ["bad account id", { cloudflareAccountId: "abc" }, /mail-relay:cloudflareAccountId must be the 32-hex-digit/],
    [
      "tunnel without an Access team name (cloudflared could not check the Access JWT)",
      { accessTeamName: undefined },
      /mail-relay:accessTeamName is required when mail-relay:tunnel is true/,
    ],
    [
      "bad Access team name",
      { accessTeamName: "Not A Label" },
      /mail-relay:accessTeamName must be the Zero Trust team name/,
    ],
    [
      "relay hostname equals MTA hostname",
      { relayHostname: "mail.example.com" },
      /mail-relay:relayHostname must differ from the MTA hostname/,
    ],
    [
      "domain outside zone",
      { zone: "other.org" },
      /mail-relay:zone "other\.org" must be the Cloudflare zone that contains/,
    ],
    ["bad ttl", { dnsTtl: 5 }, /mail-relay:dnsTtl must be 1 \(automatic\) or 60\.\.86400/],
    ["bad caller", { callers: ["Billing Team"] }, /caller names are lowercase words/],
    [
      "a caller's sender outside allowedSenders",
      { callers: ["app", { name: "billing", allowedSenders: ["ceo@example.com"] }] },
      /mail-relay:callers\[1\]\.allowedSenders lists ceo@example\.com, which is not in mail-relay:allowedSenders/,
    ],
    ["a quota below its floor", { relay: { quotas: { bytesPerMin: 10 } } }, /mail-relay:relay\.quotas\.bytesPerMin/],
  ];
  for (const [what, patch, re] of cases) {
    it(`refuses ${what}`, () => {
      const raw = { ...minimalConfig(), ...patch };
      for (const [k, v] of Object.entries(patch)) if (v === undefined) delete raw[k];
      const ps = configProblems(raw);
      expect(
        ps.some((p) => re.test(p)),
        `problems were:\n${ps.join("\n")}`,
      ).toBe(true);
    });
  }

  it("refuses a smarthost without its secret password", () => {
    const ps = configProblems({ ...minimalConfig(), smarthost: { host: "smtp.eu.mailgun.org", username: "u" } });
    expect(ps).toContainEqual(
      "mail-relay:smarthostPassword is missing (required when mail-relay:smarthost is set); set it with `pulumi config set --secret mail-relay:smarthostPassword`",
    );
  });

  it("refuses a missing SSH private key, naming the --secret command", () => {
    const ps = configProblems(minimalConfig(), { sshPrivateKey: false, smarthostPassword: false });
    expect(ps).toContainEqual(
      "mail-relay:sshPrivateKey is missing (required); set it with `pulumi config set --secret mail-relay:sshPrivateKey < ~/.ssh/mail-relay`",
    );
  });

  it("reports all problems together, not one per run", () => {
    const ps = configProblems(
      { ...minimalConfig(), adminCidrs: ["0.0.0.0/0"], dmarc: { pct: 300 }, nodeCount: 0 },
      { sshPrivateKey: false, smarthostPassword: false },
    );
    expect(ps.length).toBeGreaterThanOrEqual(4);
    expect(ps.join("\n")).toMatch(/adminCidrs[\s\S]*nodeCount|nodeCount[\s\S]*adminCidrs/);
  });

  it("names a key whose value is not valid YAML/JSON, once, with the command that sets it", () => {
    const { raw } = decodeRaw((k) => (k === "nodeCount" ? "two" : undefined));
    expect(configProblems({ ...minimalConfig(), ...raw })).toEqual([
      'mail-relay:nodeCount must be a number (got the string "two": `pulumi config set` without --path stores a ' +
        "string); set it with `pulumi config set mail-relay:nodeCount <nodeCount>`",
    ]);
  });
});

describe("config: the key list and each key's decoding come from the schema", () => {
  it("a string key is taken as written, every other key is parsed as YAML/JSON", () => {
    const given: Record<string, string> = { domain: "123", nodeCount: "2", tunnel: "false", spf: '{"all":"-all"}' };
    expect(decodeRaw((k) => given[k])).toEqual({
      raw: { domain: "123", nodeCount: 2, tunnel: false, spf: { all: "-all" } },
      problems: [],
    });
  });
  it.each(Object.entries(CONFIG_KEYS))("%s (%s) is decoded the way its schema reads it", (key, decoding) => {
    // A string key must accept a string as its type; a JSON key must refuse one (else it was meant as a string).
    const typeIssues = rawSchema.shape[key as ConfigKey]
      .safeParse("x")
      .error?.issues.filter((i) => i.code === "invalid_type");
    expect(typeIssues ?? [], key).toHaveLength(decoding === "string" ? 0 : 1);
  });
  it("an unwrapped string is a string, an unwrapped number is JSON", () => {
    expect(decodingOf(z.string().trim().optional().default("a"))).toBe("string");
    expect(decodingOf(z.enum(["a", "b"]).optional())).toBe("string");
    expect(
      decodingOf(
        z
          .number()
          .refine((n) => n > 0)
          .default(1),
      ),
    ).toBe("json");
    expect(decodingOf(z.array(z.string()))).toBe("json");
  });
});

describe("config: Pulumi.yaml documents every key the program reads, and only those", () => {
  const project = parseYaml(fs.readFileSync(path.join(__dirname, "../../Pulumi.yaml"), "utf8")) as {
    name: string;
    config: Record<string, { description?: string }>;
  };
  it("declares the project as mail-relay", () => expect(project.name).toBe("mail-relay"));
  const read = [...Object.keys(CONFIG_KEYS), ...SECRET_KEYS].sort();
  it("every key read by infra/config.ts has a description in Pulumi.yaml", () => {
    expect(Object.keys(project.config).sort()).toEqual(read);
    for (const k of read) expect(project.config[k].description?.length ?? 0, k).toBeGreaterThan(20);
  });
  it("secret keys are declared secret", () => {
    for (const k of SECRET_KEYS) expect((project.config[k] as { secret?: boolean }).secret, k).toBe(true);
  });
});

describe("config: the repo's stack files are complete, valid examples", () => {
  for (const stack of ["prod", "staging"]) {
    it(`Pulumi.${stack}.yaml passes validation`, () => {
      const { values } = readStackConfig(stack);
      const { raw, problems: ps } = decodeRaw((k) => values[`mail-relay:${k}`]);
      expect(ps).toEqual([]);
      const c = parseConfig(raw, { sshPrivateKey: true, smarthostPassword: true }, { project: "mail-relay", stack });
      expect(c.domain).toMatch(/example\.com$/);
    });
  }
});

describe("config: warnings for valid but easily misread settings", () => {
  it("one node: no warning", () => {
    expect(configWarnings(parseConfig(minimalConfig(), CONFIG_SECRETS, CONFIG_CTX))).toEqual([]);
  });
  it("nodeCount > 1 behind the tunnel says what it does not give: status lookups can 404, idempotent retries can send twice, rate limits are per node", () => {
    const w = configWarnings(
      parseConfig({ ...minimalConfig(), nodeCount: 3, relay: { rateLimitPerMin: 100 } }, CONFIG_SECRETS, CONFIG_CTX),
    );
    expect(w).toHaveLength(1);
    expect(w[0]).toMatch(/^mail-relay:nodeCount is 3: /);
    expect(w[0]).toMatch(/GET \/messages\/:id .* 404/);
    expect(w[0]).toMatch(/Idempotency-Key retry .* twice/);
    expect(w[0]).toMatch(/rate limits are per node \(up to 3 x 100\/min per caller\)/);
  });
  it("nodeCount > 1 without the tunnel: independent relays", () => {
    const w = configWarnings(
      parseConfig({ ...minimalConfig(), nodeCount: 2, tunnel: false }, CONFIG_SECRETS, CONFIG_CTX),
    );
    expect(w).toEqual([
      expect.stringMatching(/^mail-relay:nodeCount is 2 with mail-relay:tunnel false: 2 independent relays/),
    ]);
  });
});

describe("config: the image and the Debian release the host files are rendered for", () => {
  it.each([
    ["debian-13", "trixie"],
    ["debian-12", "bookworm"],
  ])("%s is tested: rendered for %s, no warning", (image, release) => {
    const c = parseConfig({ ...minimalConfig(), image }, CONFIG_SECRETS, CONFIG_CTX);
    expect(c).toMatchObject({ image, release, untestedImage: false });
    expect(configWarnings(c)).toEqual([]);
  });
  it("any other image is refused, naming the tested ones and the key that allows it", () => {
    expect(configProblems({ ...minimalConfig(), image: "ubuntu-24.04" })).toEqual([
      'mail-relay:image "ubuntu-24.04" is not a tested image: use debian-13 (the default) or debian-12, or set mail-relay:allowUntestedImage true to deploy it anyway (the host files are then rendered for Debian 13 (trixie))',
    ]);
    expect(configProblems({ ...minimalConfig(), image: "debian-11" })).toHaveLength(1);
  });
  it("allowUntestedImage lets it through, rendered for Debian 13, with a warning on every preview and up", () => {
    const c = parseConfig(
      { ...minimalConfig(), image: "debian-14", allowUntestedImage: true },
      CONFIG_SECRETS,
      CONFIG_CTX,
    );
    expect(c).toMatchObject({ image: "debian-14", release: "trixie", untestedImage: true });
    const w = configWarnings(c);
    expect(w).toHaveLength(1);
    expect(w[0]).toMatch(
      /^mail-relay:image "debian-14" is not tested \(mail-relay:allowUntestedImage is true\): the host files are rendered for Debian 13 \(trixie\)/,
    );
    expect(w[0]).toMatch(/Tested: debian-13 \(the default\) or debian-12$/);
  });
  it("allowUntestedImage changes nothing for a tested image", () => {
    const c = parseConfig(
      { ...minimalConfig(), image: "debian-12", allowUntestedImage: true },
      CONFIG_SECRETS,
      CONFIG_CTX,
    );
    expect(c).toMatchObject({ release: "bookworm", untestedImage: false });
    expect(configWarnings(c)).toEqual([]);
  });
  it("refuses an image name that is not one, and a non-boolean allowUntestedImage", () => {
    expect(configProblems({ ...minimalConfig(), image: "Debian 13" })).toEqual([
      expect.stringMatching(/^mail-relay:image must be a Hetzner image name such as debian-13/),
    ]);
    expect(configProblems({ ...minimalConfig(), allowUntestedImage: "yes" })).toEqual([
      expect.stringMatching(/^mail-relay:allowUntestedImage /),
    ]);
  });
});
