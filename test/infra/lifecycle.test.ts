/**
 * Day two: every change an operator makes, previewed from the program's own resource graph (test/helpers/preview.ts,
 * with the one replacement table of test/helpers/replacement.ts). Each test writes out the preview it expects and
 * fails on anything more. docs/day-two.md walks each operation.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { OfflineRun, RecordedResource } from "../../infra/offline";
import { preview, previewChange, summary } from "../helpers/preview";
import { REPLACEMENT_TABLE, sdkPropertyName } from "../helpers/replacement";
import { runStack, T, useStandInBundleIfUnbuilt } from "../helpers/stack";

useStandInBundleIfUnbuilt();

const billing = { name: "billing", allowedSenders: ["tickets@example.com"] };
const hook = { name: "app", webhookUrl: "https://app.example.com/hooks" };
const nodeRes = (r: OfflineRun, key: string) =>
  r.resources
    .filter((x) => !x.type.startsWith("mail-relay:"))
    .filter((x) => x.name.startsWith(`mail-relay-${key}-`) || x.name.endsWith(`-${key}`))
    .map((x) => `${x.name} [${x.type.split(":").at(-1)}]`);

describe("the replacement table", () => {
  it("every resource type the program creates has an entry, and every flagged input is an input of the SDK class", () => {
    for (const [type, e] of Object.entries(REPLACEMENT_TABLE)) {
      const dts = fs.readFileSync(path.join(__dirname, "../../node_modules", `${e.sdk}.d.ts`), "utf8");
      const args = dts.slice(dts.indexOf("Args {"));
      for (const a of e.attributes) expect(args, `${type} ${a}`).toMatch(new RegExp(`\\b${sdkPropertyName(a)}\\??:`));
      expect(e.source.commit).toMatch(/^[0-9a-f]{40}$/);
    }
  });
});

describe("a second stack (staging) beside prod in one Hetzner project and one Cloudflare account", () => {
  let prod: OfflineRun;
  let staging: OfflineRun;
  beforeAll(async () => {
    prod = await runStack("prod", { nodeCount: 2 });
    staging = await runStack("staging", { nodeCount: 2, ipv6: true });
  }, 120_000);

  /** The clouds' uniqueness rules: a key per resource in its scope; two resources with one key collide. */
  function uniquenessKeys(r: RecordedResource): string[] {
    const p = r.props;
    switch (r.type) {
      case T.server:
      case T.firewall:
      case T.primaryIp:
        return [`hetzner ${r.type} name=${p.name}`];
      case T.sshKey:
        // Hetzner refuses a second key with the same name or the same public key in a project.
        return [`hetzner sshKey name=${p.name}`, `hetzner sshKey key=${p.publicKey}`];
      case T.tunnel:
        return [`account ${p.accountId} tunnel name=${p.name}`];
      case T.serviceToken:
        return [`account ${p.accountId} service token name=${p.name}`];
      case T.accessApp:
        return [`account ${p.accountId} access app domain=${p.domain}`];
      case T.dnsRecord:
        // Per zone: one CNAME owns its name; no two identical records.
        return p.type === "CNAME"
          ? [`zone ${p.zoneId} name=${p.name}`]
          : [`zone ${p.zoneId} ${p.type} ${p.name} ${p.content}`, `zone ${p.zoneId} name=${p.name} not-cname`];
      default:
        return [];
    }
  }
  function collisions(...runs: OfflineRun[]): string[] {
    const seen = new Map<string, number>();
    const cname = new Set<string>();
    for (const r of runs)
      for (const x of r.resources)
        for (const k of uniquenessKeys(x)) {
          seen.set(k, (seen.get(k) ?? 0) + 1);
          if (x.type === T.dnsRecord && x.props.type === "CNAME")
            cname.add(`zone ${x.props.zoneId} name=${x.props.name}`);
        }
    const out = [...seen].filter(([k, n]) => n > 1 && !k.endsWith("not-cname")).map(([k]) => k);
    for (const k of seen.keys()) if (k.endsWith(" not-cname") && cname.has(k.replace(/ not-cname$/, ""))) out.push(k);
    return out.sort();
  }

  it("no name collides in either cloud", () => {
    expect(collisions(prod, staging)).toEqual([]);
  });
  it("the model can tell: the same stack twice collides on every named resource", () => {
    const c = collisions(prod, prod);
    expect(c).toEqual(expect.arrayContaining(["hetzner hcloud:index/firewall:Firewall name=mail-relay-prod-fw"]));
    expect(c.some((k) => k.startsWith("hetzner hcloud:index/primaryIp:PrimaryIp"))).toBe(true);
    expect(c.some((k) => k.includes("tunnel name=mail-relay-prod"))).toBe(true);
    expect(c.some((k) => k.startsWith("zone "))).toBe(true);
  });
  it("Hetzner names carry the stack: firewall, servers, primary IPs", () => {
    const names = (r: OfflineRun, t: string) => r.resources.filter((x) => x.type === t).map((x) => x.props.name);
    expect(names(staging, T.firewall)).toEqual(["mail-relay-staging-fw"]);
    expect(names(staging, T.server).sort()).toEqual(["mail-relay-staging-node1", "mail-relay-staging-node2"]);
    expect(names(staging, T.primaryIp).sort()).toEqual([
      "mail-relay-staging-node1-ipv4",
      "mail-relay-staging-node1-ipv6",
      "mail-relay-staging-node2-ipv4",
      "mail-relay-staging-node2-ipv6",
    ]);
  });

  it("an existing stack (names as the previous release gave them) renames in place: nothing is replaced", async () => {
    const after = await runStack("prod", {}, {});
    // The previous release's names: firewall mail-relay-fw, primary IPs mail-relay-node1-ipv4/6, server = hostname.
    const old = (x: RecordedResource): RecordedResource => {
      const rename = (name: string) => ({ ...x, inputs: { ...x.inputs, name }, props: { ...x.props, name } });
      if (x.type === T.firewall) return rename("mail-relay-fw");
      if (x.type === T.primaryIp) return rename(x.name);
      if (x.type === T.server) return rename("mail-example-com");
      return x;
    };
    const before: OfflineRun = { ...after, resources: after.resources.map(old) };
    const p = preview(before, after);
    expect(summary(p)).toEqual([
      "update mail-relay-fw [Firewall]",
      "update mail-relay-node1-ipv4 [PrimaryIp]",
      "update mail-relay-node1-ipv6 [PrimaryIp]",
      "update mail-relay-node1-server [Server]",
    ]);
    for (const c of p.changes.values()) expect(c.changed).toEqual(["name"]);
  }, 60_000);
});

describe("nodeCount", () => {
  it("1 -> 2: node1 untouched (hostname, PTR, user-data, IPs, steps); node2's resources created; SPF gains its IPs", async () => {
    const { before, after, preview: p } = await previewChange("prod", {}, { nodeCount: 2 });
    expect(summary(p)).toEqual(
      [...nodeRes(after, "node2").map((n) => `create ${n}`), "update mail-relay-dns-spf [DnsRecord]"].sort(),
    );
    expect(nodeRes(after, "node2").length).toBeGreaterThan(30);
    const node1 = (r: OfflineRun) =>
      r.resources.filter((x) => x.name.startsWith("mail-relay-node1-")).map((x) => x.inputs);
    expect(node1(after)).toEqual(node1(before));
  }, 60_000);
  it("2 -> 1: only node2's resources are deleted, its relay guard (drain) runs before its server goes; node1 untouched", async () => {
    const { before, preview: p } = await previewChange("prod", { nodeCount: 2 }, { nodeCount: 1 });
    expect(summary(p)).toEqual(
      [...nodeRes(before, "node2").map((n) => `delete ${n}`), "update mail-relay-dns-spf [DnsRecord]"].sort(),
    );
    const at = (s: string) => p.steps.indexOf(s);
    expect(at("delete mail-relay-node2-relay-guard")).toBeGreaterThanOrEqual(0);
    expect(at("delete mail-relay-node2-relay-guard")).toBeLessThan(at("delete mail-relay-node2-server"));
    expect(at("delete mail-relay-node2-cloudflared-guard")).toBeLessThan(at("delete mail-relay-node2-relay-guard"));
  }, 60_000);
});

/** What every change to the relay's env file runs: the file push and the relay's restart. */
const relayEnv = [
  "replace mail-relay-node1-secret-etc-mail-relay-env [Command]",
  "replace mail-relay-node1-relay-activate [Command]",
];
describe("callers", () => {
  it("adding a caller: its token, its Access token, the policy, the env file and the relay restart", async () => {
    const { preview: p } = await previewChange("prod", {}, { callers: ["app", billing, "crm"] });
    expect(summary(p)).toEqual(
      [
        "create mail-relay-token-crm [RandomPassword]",
        "create mail-relay-tunnel-access-crm [ZeroTrustAccessServiceToken]",
        "update mail-relay-tunnel-access-policy [ZeroTrustAccessPolicy]",
        ...relayEnv,
      ].sort(),
    );
  }, 60_000);
  it("removing a caller: its token and Access token deleted, the policy updated, the env file and the relay restart", async () => {
    const { preview: p } = await previewChange("prod", { callers: ["app", billing, "crm"] }, {});
    expect(summary(p)).toEqual(
      [
        "delete mail-relay-token-crm [RandomPassword]",
        "delete mail-relay-tunnel-access-crm [ZeroTrustAccessServiceToken]",
        "update mail-relay-tunnel-access-policy [ZeroTrustAccessPolicy]",
        ...relayEnv,
      ].sort(),
    );
  }, 60_000);
});

const envOf = (r: OfflineRun) =>
  r.resources.find((x) => x.name === "mail-relay-node1-secret-etc-mail-relay-env")!.props.stdin as string;

describe("rotating a caller's relay token", () => {
  it("step 1 (generations [1, 2]): the new token is created; the relay accepts both (name=<new>|<old>); the output hands out the new one", async () => {
    const {
      before,
      after,
      preview: p,
    } = await previewChange("prod", {}, { rotations: { relayTokens: { app: [1, 2] } } });
    expect(summary(p)).toEqual(["create mail-relay-token-app-g2 [RandomPassword]", ...relayEnv].sort());
    const line = /^SMTP_RELAY_TOKEN_SHA256=(.*)$/m.exec(envOf(after))![1];
    const app = line.split(",").find((e) => e.startsWith("app="))!;
    expect(app.slice(4).split("|")).toHaveLength(2);
    const sha = (t: string) => createHash("sha256").update(t).digest("hex");
    const newToken = (after.outputs.relayTokens as Record<string, string>).app;
    const oldToken = (before.outputs.relayTokens as Record<string, string>).app;
    expect(newToken).not.toBe(oldToken);
    expect(app).toBe(`app=${sha(newToken)}|${sha(oldToken)}`);
  }, 60_000);
  it("step 2 (generations [2]): the old token is deleted and the relay stops accepting it", async () => {
    const { after, preview: p } = await previewChange("prod", [{}, { rotations: { relayTokens: { app: [1, 2] } } }], {
      rotations: { relayTokens: { app: [2] } },
    });
    expect(summary(p)).toEqual(["delete mail-relay-token-app [RandomPassword]", ...relayEnv].sort());
    expect(/^SMTP_RELAY_TOKEN_SHA256=app=[0-9a-f]{64},/m.test(envOf(after))).toBe(true);
  }, 60_000);
});

describe("rotating a webhook secret", () => {
  it("generations [1, 2]: a second secret is created and the relay signs with both (caller=<new>|<old>)", async () => {
    const cfg = { callers: [hook, billing] };
    const {
      before,
      after,
      preview: p,
    } = await previewChange("prod", cfg, { ...cfg, rotations: { webhookSecrets: { app: [1, 2] } } });
    expect(summary(p)).toEqual(["create mail-relay-webhook-app-g2 [RandomPassword]", ...relayEnv].sort());
    const secrets = /^RELAY_WEBHOOK_SECRETS=app=(.*)$/m.exec(envOf(after))![1].split("|");
    expect(secrets).toEqual([
      (after.outputs.webhookSecrets as Record<string, string>).app,
      (before.outputs.webhookSecrets as Record<string, string>).app,
    ]);
  }, 60_000);
});

describe("renewing the Access service tokens", () => {
  it("step 1 (accessTokens [1, 2]): new tokens beside the old, the policy admits both, nothing on the hosts changes", async () => {
    const { after, preview: p } = await previewChange("prod", {}, { rotations: { accessTokens: [1, 2] } });
    expect(summary(p)).toEqual([
      "create mail-relay-tunnel-access-app-g2 [ZeroTrustAccessServiceToken]",
      "create mail-relay-tunnel-access-billing-g2 [ZeroTrustAccessServiceToken]",
      "update mail-relay-tunnel-access-policy [ZeroTrustAccessPolicy]",
    ]);
    const expiry = after.outputs.credentialExpiry as { credential: string; renew: string }[];
    expect(expiry.map((e) => e.credential).sort()).toEqual([
      "SMTP ingress certificate smtp-relay.example.com",
      "mail-relay-prod-app",
      "mail-relay-prod-app-g2",
      "mail-relay-prod-billing",
      "mail-relay-prod-billing-g2",
    ]);
    expect(expiry.find((e) => e.credential === "mail-relay-prod-app")!.renew).toMatch(
      /^retire it once every caller uses generation 2/,
    );
  }, 60_000);
  it("step 2 (accessTokens [2]): the old tokens are deleted and the policy updated", async () => {
    const { preview: p } = await previewChange("prod", [{}, { rotations: { accessTokens: [1, 2] } }], {
      rotations: { accessTokens: [2] },
    });
    expect(summary(p)).toEqual([
      "delete mail-relay-tunnel-access-app [ZeroTrustAccessServiceToken]",
      "delete mail-relay-tunnel-access-billing [ZeroTrustAccessServiceToken]",
      "update mail-relay-tunnel-access-policy [ZeroTrustAccessPolicy]",
    ]);
  }, 60_000);
});

describe("rotating the DKIM key: three small diffs", () => {
  const old = { name: "mail202611", active: true };
  const publish = [old, { name: "mail202705" }];
  const sign = [{ name: "mail202611" }, { name: "mail202705", active: true }];
  it("1. publish the new selector: its key and its TXT record, nothing on the hosts", async () => {
    const { preview: p } = await previewChange("prod", {}, { dkimSelectors: publish });
    expect(summary(p)).toEqual([
      "create mail-relay-dkim-mail202705 [PrivateKey]",
      "create mail-relay-dkim-mail202705-ed25519 [PrivateKey]",
      "create mail-relay-dns-dkim-mail202705 [DnsRecord]",
      "create mail-relay-dns-dkim-mail202705-ed25519 [DnsRecord]",
    ]);
  }, 60_000);
  it("2. switch signing: the new private key pushed, the old one removed from the host, OpenDKIM tables and reload", async () => {
    const { preview: p } = await previewChange("prod", [{}, { dkimSelectors: publish }], { dkimSelectors: sign });
    expect(summary(p)).toEqual([
      "create mail-relay-node1-secret-etc-opendkim-keys-example-com-mail202705-ed25519-private [Command]",
      "create mail-relay-node1-secret-etc-opendkim-keys-example-com-mail202705-private [Command]",
      "delete mail-relay-node1-secret-etc-opendkim-keys-example-com-mail202611-ed25519-private [Command]",
      "delete mail-relay-node1-secret-etc-opendkim-keys-example-com-mail202611-private [Command]",
      "replace mail-relay-node1-apply-mail-config [Command]",
      "replace mail-relay-node1-file-etc-opendkim-keytable [Command]",
      "replace mail-relay-node1-file-etc-opendkim-keytable-ed25519 [Command]",
      "replace mail-relay-node1-file-etc-opendkim-signingtable [Command]",
      "replace mail-relay-node1-file-etc-opendkim-signingtable-ed25519 [Command]",
    ]);
  }, 60_000);
  it("3. retire the old selector: its key and its record deleted", async () => {
    const { preview: p } = await previewChange("prod", [{}, { dkimSelectors: publish }, { dkimSelectors: sign }], {
      dkimSelectors: [{ name: "mail202705", active: true }],
    });
    expect(summary(p)).toEqual([
      "delete mail-relay-dkim-mail202611 [PrivateKey]",
      "delete mail-relay-dkim-mail202611-ed25519 [PrivateKey]",
      "delete mail-relay-dns-dkim-mail202611 [DnsRecord]",
      "delete mail-relay-dns-dkim-mail202611-ed25519 [DnsRecord]",
    ]);
  }, 60_000);
});

describe("settings: only the firewall or the pushed files and a reload; no server replaced", () => {
  it.each([
    [
      "adminCidrs",
      { adminCidrs: ["198.51.100.0/24"] },
      [
        "update mail-relay-fw [Firewall]",
        "replace mail-relay-node1-file-etc-nftables-conf [Command]",
        "replace mail-relay-node1-apply-host-firewall [Command]",
      ],
    ],
    ["rate limits and quotas", { relay: { rateLimitPerMin: 120, quotas: { recipientsPerDay: 20000 } } }, relayEnv],
    [
      "allowedSenders",
      { allowedSenders: ["noreply@example.com", "support@example.com", "tickets@example.com", "alerts@example.com"] },
      [
        ...relayEnv,
        "replace mail-relay-node1-file-etc-postfix-sender-access [Command]",
        "replace mail-relay-node1-apply-mail-config [Command]",
      ],
    ],
  ])(
    "%s",
    async (_, change, expected) => {
      const { preview: p } = await previewChange("prod", {}, change);
      expect(summary(p)).toEqual([...expected].sort());
    },
    60_000,
  );
});
