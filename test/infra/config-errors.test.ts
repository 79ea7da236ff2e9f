// Config mistakes are caught before anything is created, and each error names the key, what is wrong, and a fix that
// works as printed. Variants are generated from the schema, so a key added later is covered without a new test.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { closest, CONFIG_KEYS, decodeRaw, namespaceProblems, NS, SECRET_KEYS, setCommands } from "../../infra/config";
import { keyPath, schemaAt } from "../../infra/config/messages";
import { rawSchema } from "../../infra/config/schema";
import { readStackConfig } from "../../infra/offline";
import { planMain } from "../../infra/plan";
import { configProblems, minimalConfig } from "../helpers/config";
import { runStack, useStandInBundleIfUnbuilt } from "../helpers/stack";

useStandInBundleIfUnbuilt();

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "config-errors-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A stack file of our own: prod's values plus `extra` (written as YAML, as `pulumi config set` would). */
function stackFile(name: string, text: string): string {
  const dir = fs.mkdtempSync(path.join(tmp, `${name}-`));
  fs.writeFileSync(path.join(dir, `Pulumi.${name}.yaml`), text);
  return dir;
}
const prodText = () => fs.readFileSync(path.join(__dirname, "../../Pulumi.prod.yaml"), "utf8");
const stagingText = () => fs.readFileSync(path.join(__dirname, "../../Pulumi.staging.yaml"), "utf8");
/** A stack file's text without one of its `secure:` secrets. */
const withoutSecret = (text: string, key: string) =>
  text.replace(new RegExp(`\\n  ${NS}:${key}:\\n    secure: [^\\n]*`), "");
/** The program, imported afresh (the mocks are global; each run re-imports it). */
const load = async () => {
  vi.resetModules();
  return (await import("../../infra/index")) as Record<string, unknown>;
};

/** `npm run plan -- <name>` on a stack file of our own, in-process: its exit code and what it printed. */
async function plan(name: string, text: string): Promise<{ code: number; out: string }> {
  const dir = stackFile(name, text);
  const lines: string[] = [];
  const log = vi.spyOn(console, "log").mockImplementation((...a) => void lines.push(a.join(" ")));
  const err = vi.spyOn(console, "error").mockImplementation((...a) => void lines.push(a.join(" ")));
  try {
    const code = await planMain([name], dir, load);
    return { code, out: lines.join("\n") };
  } finally {
    log.mockRestore();
    err.mockRestore();
  }
}

/** Every string one edit away: a letter dropped, doubled, swapped with its neighbour, or changed. */
function oneEditVariants(key: string): string[] {
  const out = new Set<string>();
  for (let i = 0; i < key.length; i++) {
    out.add(key.slice(0, i) + key.slice(i + 1));
    out.add(key.slice(0, i) + key[i] + key.slice(i));
    if (i + 1 < key.length) out.add(key.slice(0, i) + key[i + 1] + key[i] + key.slice(i + 2));
    out.add(key.slice(0, i) + (key[i] === "x" ? "q" : "x") + key.slice(i + 1));
  }
  out.add(key.toLowerCase());
  out.add(key.toUpperCase());
  return [...out].filter((v) => v !== key);
}

describe("unknown keys in the mail-relay: namespace are errors with the closest known key", () => {
  const known = [...Object.keys(CONFIG_KEYS), ...SECRET_KEYS];

  it.each([
    ["protectPrimaryIP", "protectPrimaryIps"],
    ["dnsTTL", "dnsTtl"],
    ["nodecount", "nodeCount"],
  ])("%s: did you mean `%s`?", (typo, key) => {
    expect(namespaceProblems({ [`${NS}:${typo}`]: "x" }, () => false)).toEqual([
      `${NS}:${typo} is not a key of ${NS}; did you mean \`${key}\`? Rename it: \`pulumi config rm ${NS}:${typo}\`, ` +
        `then set the right key (the keys are listed in docs/configuration.md)`,
    ]);
  });

  it.each(known)("every one-edit typo of %s suggests it", (key) => {
    const missed = oneEditVariants(key)
      .filter((v) => !known.includes(v))
      .filter((v) => !closest(v, known).includes(key));
    expect(missed).toEqual([]);
  });

  it("a key nothing like any known one is still an error, without a guess; other namespaces are not ours", () => {
    expect(namespaceProblems({ [`${NS}:colour`]: "x", "hcloud:token": "t", "aws:region": "x" }, () => false)).toEqual([
      expect.stringMatching(/^mail-relay:colour is not a key of mail-relay Rename it/),
    ]);
  });

  it("the program refuses a typo before creating anything (read from the whole namespace)", async () => {
    await expect(runStack("prod", { protectPrimaryIP: false })).rejects.toThrow(
      /mail-relay:protectPrimaryIP is not a key of mail-relay; did you mean `protectPrimaryIps`\?/,
    );
  }, 60_000);

  it("a nested key's typo names the object's keys and the closest one", () => {
    expect(configProblems(minimalConfig({ dmarc: { polcy: "reject" } }))).toEqual([
      "mail-relay:dmarc.polcy is not a key of mail-relay:dmarc; did you mean `policy`? (its keys: policy, pct, rua, adkim, aspf)",
    ]);
  });
});

describe("secret keys in plaintext are errors that say how to set them as secrets", () => {
  it.each(SECRET_KEYS)("%s in plaintext", (key) => {
    expect(namespaceProblems({ [`${NS}:${key}`]: "plain" }, () => false)).toEqual([
      expect.stringMatching(
        new RegExp(
          `^mail-relay:${key} is stored in plaintext in the stack file; it is a secret: remove it with ` +
            `\`pulumi config rm mail-relay:${key}\` and set it encrypted with \`pulumi config set --secret mail-relay:${key}`,
        ),
      ),
    ]);
    expect(namespaceProblems({ [`${NS}:${key}`]: "ciphertext" }, () => true)).toEqual([]);
  });

  it.each(SECRET_KEYS)(
    "the plan refuses %s written in plaintext in the stack file",
    async (key) => {
      const text = `${withoutSecret(stagingText(), key)}  ${NS}:${key}: not-encrypted-value\n`;
      expect(readStackConfig("plain", {}, stackFile("plain", text)).secretKeys).not.toContain(`${NS}:${key}`);
      const { code, out } = await plan("plain", text);
      expect(code).toBe(1);
      expect(out).toContain(`${NS}:${key} is stored in plaintext in the stack file; it is a secret`);
    },
    120_000,
  );

  it("Pulumi's own secret-key test is there (the config check reads it; its typings hide it)", async () => {
    const { isConfigSecret } = await import("../../infra/config");
    expect(typeof isConfigSecret).toBe("function");
  });
});

describe("a stack file that is not valid YAML names the file, line and column", () => {
  it.each([
    ["a tab as indentation", "config:\n\tmail-relay:domain: example.com\n", "line 2, column 1"],
    ["a duplicate key", "config:\n  mail-relay:domain: a.com\n  mail-relay:domain: b.com\n", "line 3, column 3"],
    ["an unclosed list", "config:\n  mail-relay:adminCidrs: [203.0.113.0/24\n", "line 3, column 1"],
  ])("%s", (_what, text, where) => {
    const dir = stackFile("bad", text);
    expect(() => readStackConfig("bad", {}, dir)).toThrow(
      new RegExp(`Pulumi\\.bad\\.yaml is not valid YAML at ${where}: [A-Z]`),
    );
  });
});

describe("fix hints are commands that work as printed", () => {
  /** Every key path in the schema: top-level keys, object fields, list items (index 0). */
  function leafPaths(s: z.ZodTypeAny, at: (string | number)[]): (string | number)[][] {
    const u = schemaAt([], s)!;
    if (u instanceof z.ZodObject)
      return Object.entries(u.shape as Record<string, z.ZodTypeAny>).flatMap(([k, v]) => [
        [...at, k],
        ...leafPaths(v, [...at, k]),
      ]);
    if (u instanceof z.ZodArray) return [[...at, 0], ...leafPaths(u.element, [...at, 0])];
    if (u instanceof z.ZodUnion) return (u.options as z.ZodTypeAny[]).flatMap((o) => leafPaths(o, at));
    return [];
  }
  const paths = leafPaths(rawSchema, []);

  it("the schema walk finds nested keys and list items (so the next test sees them)", () => {
    const printed = paths.map((p) => keyPath(p));
    for (const p of ["mail-relay:smarthost.username", "mail-relay:callers[0].events[0]", "mail-relay:mx[0].priority"])
      expect(printed).toContain(p);
  });

  it.each(paths.map((p) => [keyPath(p), p] as const))(
    "%s: set with --path when nested, never a list as a string",
    (_k, p) => {
      for (const cmd of setCommands(p)) {
        const m = /^pulumi config set (--secret |--path '([^']+)' )?(mail-relay:[A-Za-z0-9]+ )?/.exec(cmd);
        expect(m, cmd).not.toBeNull();
        const target = m![2] ?? m![3]?.trim();
        const targetPath = target!.slice(NS.length + 1);
        // The command sets a scalar (a string, number or boolean), never a list or an object in one string.
        const parsed = targetPath.split(/\.|\[(\d+)\]/).filter((x) => x !== undefined && x !== "");
        const s = schemaAt(parsed.map((x) => (/^\d+$/.test(x) ? Number(x) : x)));
        expect(s instanceof z.ZodArray || s instanceof z.ZodObject, `${cmd} sets a ${s?.constructor.name}`).toBe(false);
        // Nested keys and list items need --path; a top-level scalar doesn't.
        expect(cmd.includes("--path"), cmd).toBe(/[.[]/.test(targetPath));
        // The command starts at the key the problem is about.
        expect(targetPath.startsWith(keyPath(p).slice(NS.length + 1)), cmd).toBe(true);
      }
    },
  );

  it.each([
    [
      { domain: undefined },
      "mail-relay:domain is required; set it with `pulumi config set mail-relay:domain <domain>`",
    ],
    [
      { adminCidrs: undefined },
      "mail-relay:adminCidrs is required; set it with `pulumi config set --path 'mail-relay:adminCidrs[0]' <value>`",
    ],
    [
      { mx: undefined },
      "mail-relay:mx is required; set it with `pulumi config set --path 'mail-relay:mx[0].host' <host>` and " +
        "`pulumi config set --path 'mail-relay:mx[0].priority' <priority>`",
    ],
    [
      { smarthost: { host: "smtp.eu.mailgun.org" } },
      "mail-relay:smarthost.username is required; set it with `pulumi config set --path 'mail-relay:smarthost.username' <username>`",
    ],
  ])("a missing required key: %o", (patch, message) => {
    const raw = minimalConfig(patch);
    for (const [k, v] of Object.entries(patch)) if (v === undefined) delete raw[k];
    expect(configProblems(raw, { sshPrivateKey: true, smarthostPassword: true })).toContainEqual(
      `${message} (its description: docs/configuration.md)`,
    );
  });

  it("a list set as one string (`pulumi config set mail-relay:adminCidrs 203.0.113.0/24`) is one error, told to use --path", () => {
    const { raw, problems } = decodeRaw((k) => (k === "adminCidrs" ? "203.0.113.0/24" : undefined));
    expect(problems).toEqual([]);
    const { adminCidrs, ...rest } = minimalConfig();
    void adminCidrs;
    expect(configProblems({ ...rest, ...raw })).toEqual([
      'mail-relay:adminCidrs must be a list of CIDRs, e.g. ["203.0.113.0/24"] (got the string "203.0.113.0/24": ' +
        "`pulumi config set` without --path " +
        "stores a string); set it with `pulumi config set --path 'mail-relay:adminCidrs[0]' <value>`",
    ]);
  });

  it("a list given as a number says it must be a list and how to set one", () => {
    expect(configProblems(minimalConfig({ allowedSenders: 5 }))).toEqual([
      "mail-relay:allowedSenders must be a list (got number 5); set it with `pulumi config set --path 'mail-relay:allowedSenders[0]' <value>`",
    ]);
  });
});

describe("union and enum errors name the wrong value and list the allowed ones", () => {
  /** A config using every optional object, so every enum in the schema has a place to go wrong. */
  const full = () =>
    minimalConfig({
      smarthost: { host: "smtp.eu.mailgun.org", username: "u" },
      relay: { handoff: "smtp" },
      spf: { all: "-all" },
      dmarc: { policy: "reject", adkim: "s", aspf: "s" },
      callers: ["app", { name: "billing", webhookUrl: "https://hooks.example.com/mail", events: ["bounced"] }],
    });

  function enumPaths(s: z.ZodTypeAny, at: (string | number)[]): { path: (string | number)[]; options: string[] }[] {
    const u = schemaAt([], s)!;
    if (u instanceof z.ZodEnum) return [{ path: at, options: u.options as string[] }];
    if (u instanceof z.ZodObject)
      return Object.entries(u.shape as Record<string, z.ZodTypeAny>).flatMap(([k, v]) => enumPaths(v, [...at, k]));
    if (u instanceof z.ZodArray) return enumPaths(u.element, [...at, 0]);
    if (u instanceof z.ZodUnion) return (u.options as z.ZodTypeAny[]).flatMap((o) => enumPaths(o, at));
    return [];
  }
  /** The path in `full()`: list items at index 0, except callers (the object is its second entry). */
  const inFull = (p: (string | number)[]) => (p[0] === "callers" ? ["callers", 1, ...p.slice(2)] : p);
  const enums = enumPaths(rawSchema, []);

  it("finds the enums (so the generated cases below are not empty)", () => {
    expect(enums.map((e) => keyPath(e.path))).toEqual(
      expect.arrayContaining(["mail-relay:relay.handoff", "mail-relay:spf.all", "mail-relay:callers[0].events[0]"]),
    );
  });

  it.each(enums.map((e) => [keyPath(e.path), e] as const))("%s with a wrong value", (_k, e) => {
    const raw = structuredClone(full());
    const p = inFull(e.path);
    let o = raw as Record<string | number, unknown>;
    for (const k of p.slice(0, -1)) {
      expect(o[k], `full() has no ${keyPath(p)}: add it`).toBeDefined();
      o = o[k] as Record<string | number, unknown>;
    }
    o[p[p.length - 1]] = "wrong-value";
    expect(configProblems(raw, { sshPrivateKey: true, smarthostPassword: true })).toEqual([
      `${keyPath(p)} is "wrong-value", which is not allowed; use one of ${e.options.map((x) => `"${x}"`).join(", ")}`,
    ]);
  });

  it("a wrong webhook event names the entry, the value, the allowed ones and the closest", () => {
    expect(
      configProblems(
        minimalConfig({
          callers: ["app", { name: "billing", webhookUrl: "https://hooks.example.com/mail", events: ["bounce"] }],
        }),
      ),
    ).toEqual([
      'mail-relay:callers[1].events[0] is "bounce", which is not allowed; use one of "delivered", "deferred", ' +
        '"bounced", "expired", "suppressed" (did you mean `bounced`?)',
    ]);
  });

  it("a caller that is neither a name nor an object says what it may be", () => {
    expect(configProblems(minimalConfig({ callers: ["app", 5] }))).toEqual([
      "mail-relay:callers[1] must be a string or an object (got 5)",
    ]);
  });
});

describe("SPF lookups are counted in the config checks, before any resource exists", () => {
  const includes = (n: number) => Array.from({ length: n }, (_, i) => `_spf${i}.example.net`);

  it("10 includes are the limit; an 11th is refused, naming the count, the limit and a fix", () => {
    expect(configProblems(minimalConfig({ spf: { includes: includes(10) } }))).toEqual([]);
    expect(configProblems(minimalConfig({ spf: { includes: includes(11) } }))).toEqual([
      expect.stringMatching(
        /^mail-relay:spf\.includes: the SPF record would need 11 DNS lookups \(include:_spf0\.example\.net, .*include:_spf10\.example\.net\); receivers stop at 10 and answer permerror.*`pulumi config rm --path 'mail-relay:spf\.includes\[10\]'`$/,
      ),
    ]);
  });

  it("the smarthost's include counts too, and is named", () => {
    expect(
      configProblems(
        minimalConfig({
          spf: { includes: includes(10) },
          smarthost: { host: "smtp.eu.mailgun.org", username: "u", spfInclude: "mailgun.org" },
        }),
        { sshPrivateKey: true, smarthostPassword: true },
      ),
    ).toEqual([
      expect.stringMatching(/would need 11 DNS lookups .*\(include:mailgun\.org is mail-relay:smarthost\.spfInclude\)/),
    ]);
  });

  it("the program refuses it from the config alone (it used to fail inside an output that needs the server IPs)", async () => {
    await expect(runStack("prod", { spf: { includes: includes(11) } })).rejects.toThrow(/would need 11 DNS lookups/);
  }, 60_000);
});

describe("proxied hostnames more than one level below the zone need a certificate that covers them", () => {
  const deep = { domain: "staging.example.com", zone: "example.com", allowedSenders: ["noreply@staging.example.com"] };

  it("the default relay hostname of a subdomain is refused, saying why and both fixes", () => {
    expect(configProblems(minimalConfig(deep))).toEqual([
      'mail-relay:relayHostname "mail-relay.staging.example.com" is 2 levels below the zone example.com: ' +
        "Cloudflare's free Universal SSL certificate covers example.com and *.example.com (one level), so HTTPS to it " +
        "fails. Use a name one level below the zone (`pulumi config set mail-relay:relayHostname " +
        "mail-relay-staging.example.com`), or, if you have a certificate that covers it (Advanced Certificate Manager " +
        "or an uploaded one), confirm with `pulumi config set mail-relay:certificateCoversDeepHostnames true`",
    ]);
  });

  it("the SMTP ingress hostname too", () => {
    expect(
      configProblems(minimalConfig({ smtpIngress: { enabled: true, hostname: "smtp.relay.example.com" } })),
    ).toEqual([
      expect.stringMatching(
        /^mail-relay:smtpIngress\.hostname "smtp\.relay\.example\.com" is 2 levels below .*--path 'mail-relay:smtpIngress\.hostname' smtp-relay\.example\.com/,
      ),
    ]);
  });

  it.each([
    ["one level below the zone", { ...deep, relayHostname: "mail-relay-staging.example.com" }],
    ["the user confirms a certificate", { ...deep, certificateCoversDeepHostnames: true }],
    ["no tunnel (the name is not proxied)", { ...deep, tunnel: false }],
  ])("accepted when %s", (_what, patch) => {
    expect(configProblems(minimalConfig(patch))).toEqual([]);
  });
});

describe("the offline plan: missing secrets fail, unneeded ones are not mentioned", () => {
  it("prod lists its encrypted SSH key as a placeholder and says nothing of smarthostPassword", async () => {
    const { code, out } = await plan("prodcopy", prodText());
    expect(code).toBe(0);
    expect(out).toContain("(placeholders used): mail-relay:sshPrivateKey\n");
    expect(out).not.toContain("smarthostPassword");
  }, 120_000);

  it("prod without its SSH key: missing, exit 1", async () => {
    const { code, out } = await plan("nokey", withoutSecret(prodText(), "sshPrivateKey"));
    expect(code).toBe(1);
    expect(out).toContain(
      "mail-relay:sshPrivateKey is missing (required); set it with `pulumi config set --secret mail-relay:sshPrivateKey < ~/.ssh/mail-relay`",
    );
  }, 120_000);

  it("a smarthost stack without its password: missing, exit 1", async () => {
    const { code, out } = await plan("nopass", withoutSecret(stagingText(), "smarthostPassword"));
    expect(code).toBe(1);
    expect(out).toContain(
      "mail-relay:smarthostPassword is missing (required when mail-relay:smarthost is set); set it with `pulumi config set --secret mail-relay:smarthostPassword`",
    );
  }, 120_000);

  it("a YAML error: the file, line and column, exit 1, no stack trace", async () => {
    const { code, out } = await plan("broken", `${prodText()}\n\tmail-relay:nodeCount: 2\n`);
    expect(code).toBe(1);
    expect(out).toMatch(/Pulumi\.broken\.yaml is not valid YAML at line \d+, column 1: Tabs are not allowed/);
    expect(out).not.toMatch(/\n\s+at /);
  }, 60_000);
});
