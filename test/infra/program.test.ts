/**
 * The whole program under Pulumi's mocks, for the repo's stack files and the variants other tests use.
 * Each test is a rule the deployment must keep.
 */
import { execFileSync } from "node:child_process";
import { createHash, createPublicKey } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { renderStopRelay } from "../../cloud-init";
import type { OfflineRun } from "../../infra/offline";
import { txtValue } from "../../infra/records";
import { PUBLIC_PATH_REGEX } from "../../infra/tunnel";
import {
  ofType,
  pushedFiles,
  runStack,
  stackVariants,
  zoneLinesOfRecords,
  StackName,
  T,
  useStandInBundleIfUnbuilt,
} from "../helpers/stack";

/** Deploy steps whose inputs carry secrets: they differ between any two offline runs (fresh random keys and tokens). */
const SECRET_BEARING_STEP = /relay-activate|secret-|apply-mail/;

useStandInBundleIfUnbuilt();

const all: { name: string; stack: StackName; overrides: Record<string, unknown> }[] = [
  { name: "prod", stack: "prod", overrides: {} },
  { name: "staging", stack: "staging", overrides: {} },
  ...stackVariants,
];

const runs = new Map<string, OfflineRun>();
beforeAll(async () => {
  for (const v of all) runs.set(v.name, await runStack(v.stack, v.overrides));
}, 240_000);

const smtpPorts = [25, 465, 587];

/** The fields of an hcloud firewall rule these tests read. */
interface FirewallRule {
  direction: string;
  protocol: string;
  port?: string;
  sourceIps?: string[];
}

function portRangeIncludes(port: string | undefined, p: number): boolean {
  if (port === undefined || port === "any") return true;
  const [lo, hi] = port.split("-").map(Number);
  return p >= lo && p <= (hi ?? lo);
}

/** Every secret value a run produced or was given. */
function secretValues(run: OfflineRun): string[] {
  const vals: string[] = [];
  for (const r of run.resources) {
    if (r.type === T.password) vals.push(r.props.result);
    if (r.type === T.privateKey) vals.push(r.props.privateKeyPem, r.props.privateKeyPemPkcs8);
    if (r.type === T.serviceToken) vals.push(r.props.clientSecret);
    if (r.type === T.tunnel) vals.push(r.props.tunnelSecret);
  }
  for (const k of run.config.secretKeys) vals.push(run.config.values[k]);
  for (const k of ["relayTokens", "accessClientSecrets"])
    for (const v of Object.values(run.outputs[k] ?? {})) vals.push(v as string);
  return vals.filter((v): v is string => typeof v === "string" && v.length >= 12);
}

for (const v of all) {
  describe(`program under mocks: ${v.name}`, () => {
    const run = () => runs.get(v.name)!;

    it("every server has the cloud firewall attached through firewallIds (active before first boot)", () => {
      const fw = ofType(run().resources, T.firewall);
      expect(fw).toHaveLength(1);
      const servers = ofType(run().resources, T.server);
      expect(servers.length).toBeGreaterThan(0);
      for (const s of servers) expect(s.props.firewallIds).toEqual([Number(fw[0].id)]);
    });

    it("no firewall rule opens 25/465/587 to anyone, and SSH is open only to adminCidrs", () => {
      const rules = ofType(run().resources, T.firewall).flatMap((f) => f.props.rules as FirewallRule[]);
      for (const r of rules) {
        if (r.direction !== "in" || r.protocol === "icmp") continue;
        for (const p of smtpPorts) expect(portRangeIncludes(r.port, p), `${JSON.stringify(r)} opens ${p}`).toBe(false);
      }
      const ssh = rules.filter((r) => r.protocol === "tcp" && r.port === "22");
      expect(ssh).toHaveLength(1);
      expect(ssh[0].sourceIps).toEqual(
        run().config.values["mail-relay:adminCidrs"] ? JSON.parse(run().config.values["mail-relay:adminCidrs"]) : [],
      );
      expect(rules.every((r) => r.protocol === "icmp" || r.port === "22")).toBe(true);
    });

    it("every node IP has a PTR equal to its MTA hostname, and an unproxied A/AAAA with the same IP (FCrDNS)", () => {
      const ptrs = ofType(run().resources, T.rdns);
      const nodes = run().outputs.nodes as { mtaHostname: string; ipv4: string; ipv6?: string }[];
      const ipv6 = JSON.parse(run().config.values["mail-relay:ipv6"] ?? "false");
      expect(ptrs).toHaveLength(nodes.length * (ipv6 ? 2 : 1));
      for (const n of nodes) {
        for (const ip of [n.ipv4, ...(ipv6 ? [n.ipv6!] : [])]) {
          expect(ptrs.filter((p) => p.props.ipAddress === ip).map((p) => p.props.dnsPtr)).toEqual([n.mtaHostname]);
          const recs = ofType(run().resources, T.dnsRecord).filter(
            (r) => r.props.name === n.mtaHostname && r.props.content === ip,
          );
          expect(recs).toHaveLength(1);
          expect(recs[0].props.type).toBe(ip.includes(":") ? "AAAA" : "A");
          expect(recs[0].props.proxied).toBe(false);
        }
      }
    });

    it("primary IPs outlive the server (autoDelete false) and are protected as configured", () => {
      const protect = JSON.parse(run().config.values["mail-relay:protectPrimaryIps"] ?? "true");
      const ips = ofType(run().resources, T.primaryIp);
      expect(ips.length).toBeGreaterThan(0);
      for (const ip of ips) {
        expect(ip.props.autoDelete).toBe(false);
        expect(ip.props.deleteProtection).toBe(protect);
      }
    });

    it("user-data carries no secret value and no private key", () => {
      const secrets = secretValues(run());
      expect(secrets.length).toBeGreaterThan(2);
      for (const s of ofType(run().resources, T.server)) {
        const ud = String(s.props.userData);
        expect(ud.startsWith("#cloud-config")).toBe(true);
        expect(ud).not.toMatch(/PRIVATE KEY/);
        for (const secret of secrets) expect(ud.includes(secret), "user-data contains a secret").toBe(false);
      }
    });

    it("no secret appears in a remote command line (argv is visible in ps); secrets travel on stdin", () => {
      const secrets = secretValues(run());
      for (const c of [...ofType(run().resources, T.command)]) {
        for (const field of ["create", "update", "delete"]) {
          const text = String(c.props[field] ?? "");
          for (const secret of secrets)
            expect(text.includes(secret), `${c.name}.${field} contains a secret`).toBe(false);
        }
      }
      const envPush = pushedFiles(run().resources).filter((f) => f.path === "/etc/mail-relay.env");
      expect(envPush.length).toBe((run().outputs.nodes as unknown[]).length);
      // The host gets each token's SHA-256, never the token.
      for (const [caller, token] of Object.entries(run().outputs.relayTokens as Record<string, string>)) {
        expect(envPush[0].content).not.toContain(token);
        expect(envPush[0].content).toContain(`${caller}=${createHash("sha256").update(token).digest("hex")}`);
      }
    });

    it("token and key outputs are secret", () => {
      expect(run().secretOutputs).toContain("relayTokens");
      const tunnel = JSON.parse(run().config.values["mail-relay:tunnel"] ?? "true");
      if (tunnel)
        expect(run().secretOutputs).toEqual(expect.arrayContaining(["accessClientIds", "accessClientSecrets"]));
      else expect(run().outputs.accessClientIds).toBeUndefined();
      const callers = (
        JSON.parse(run().config.values["mail-relay:callers"] ?? '["app"]') as (string | { name: string })[]
      ).map((c) => (typeof c === "string" ? c : c.name));
      expect(Object.keys(run().outputs.relayTokens).sort()).toEqual([...callers].sort());
      for (const t of Object.values(run().outputs.relayTokens as Record<string, string>))
        expect(t.length).toBeGreaterThanOrEqual(32);
    });

    it("exactly one SPF record, authorizing every node IP, ending in ~all or -all", () => {
      const domain = run().config.values["mail-relay:domain"];
      const spf = ofType(run().resources, T.dnsRecord).filter(
        (r) => r.props.type === "TXT" && txtValue(r.props.content).startsWith("v=spf1"),
      );
      expect(spf).toHaveLength(1);
      expect(spf[0].props.name).toBe(domain);
      const value = txtValue(spf[0].props.content);
      for (const n of run().outputs.nodes as { ipv4: string; ipv6?: string }[]) {
        expect(value.split(" ")).toContain(`ip4:${n.ipv4}`);
        if (n.ipv6) expect(value.split(" ")).toContain(`ip6:${n.ipv6}`);
      }
      expect(value).toMatch(/ [~-]all$/);
      const smarthost = run().config.values["mail-relay:smarthost"];
      if (smarthost) expect(value).toContain(`include:${JSON.parse(smarthost).spfInclude}`);
    });

    it("every listed DKIM selector is published with a >=2048-bit key; the active one is in SigningTable", () => {
      const domain = run().config.values["mail-relay:domain"];
      const selectors = JSON.parse(run().config.values["mail-relay:dkimSelectors"]) as {
        name: string;
        active?: boolean;
      }[];
      const txt = ofType(run().resources, T.dnsRecord).filter((r) => r.props.type === "TXT");
      for (const s of selectors) {
        const rec = txt.filter((r) => r.props.name === `${s.name}._domainkey.${domain}`);
        expect(rec).toHaveLength(1);
        for (const chunk of rec[0].props.content.match(/"[^"]*"/g)) expect(chunk.length - 2).toBeLessThanOrEqual(255);
        const p = /p=([A-Za-z0-9+/=]+)/.exec(txtValue(rec[0].props.content))![1];
        expect(
          createPublicKey({ key: Buffer.from(p, "base64"), format: "der", type: "spki" }).asymmetricKeyDetails!
            .modulusLength,
        ).toBeGreaterThanOrEqual(2048);
      }
      const active = selectors.find((s) => s.active)!.name;
      expect(run().outputs.dkimSelector).toBe(active);
      const signing = pushedFiles(run().resources).filter((f) => f.path.endsWith("SigningTable"));
      expect(signing.length).toBeGreaterThan(0);
      for (const f of signing) expect(f.content).toContain(`${active}._domainkey.${domain}`);
    });

    it("DMARC is published; BIMI only with DMARC quarantine/reject at pct=100; MX never points at a relay node", () => {
      const domain = run().config.values["mail-relay:domain"];
      const recs = ofType(run().resources, T.dnsRecord);
      const dmarc = recs.filter((r) => r.props.name === `_dmarc.${domain}`);
      expect(dmarc).toHaveLength(1);
      const bimi = recs.filter((r) => r.props.name === `default._bimi.${domain}`);
      const hasBimi = run().config.values["mail-relay:bimi"] !== undefined;
      expect(bimi).toHaveLength(hasBimi ? 1 : 0);
      if (hasBimi) expect(txtValue(dmarc[0].props.content)).toMatch(/p=(quarantine|reject); pct=100/);
      const mx = recs.filter((r) => r.props.type === "MX");
      expect(mx.length).toBeGreaterThan(0);
      const relayNames = new Set((run().outputs.nodes as { mtaHostname: string }[]).map((n) => n.mtaHostname));
      for (const m of mx) expect(relayNames.has(m.props.content)).toBe(false);
    });

    it("the tunnel reaches only the relay's public paths on 127.0.0.1:2525 over http (and, with smtpIngress, its SMTP listener over tcp), with a 404 catch-all, each behind its own Access app", () => {
      const tunnelOn = JSON.parse(run().config.values["mail-relay:tunnel"] ?? "true");
      const cfg = ofType(run().resources, T.tunnelConfig);
      const apps = ofType(run().resources, T.accessApp);
      if (!tunnelOn) {
        expect(cfg).toHaveLength(0);
        expect(ofType(run().resources, T.tunnel)).toHaveLength(0);
        expect(run().outputs.relayUrl).toBeUndefined();
        return;
      }
      // Locally managed: no ingress in Cloudflare, the routes are the file every node gets.
      expect(cfg).toHaveLength(0);
      expect(ofType(run().resources, T.tunnel).map((t) => t.props.configSrc)).toEqual(["local"]);
      const files = pushedFiles(run().resources).filter((f) => f.path === "/etc/cloudflared/mail-relay.yml");
      expect(files.map((f) => f.node).sort()).toEqual(
        (run().outputs.nodes as { name: string }[]).map((n) => n.name).sort(),
      );
      // Which paths PUBLIC_PATH_REGEX lets through is tied to the relay's routes in test/infra/public-routes.test.ts.
      const relayHost = (run().outputs.relayUrl as string).replace("https://", "");
      const smtpHost = run().outputs.smtpIngressHostname as string | undefined;
      const appFor = (host: string) => apps.find((a) => a.props.domain === host);
      expect(apps.map((a) => a.props.domain).sort()).toEqual([relayHost, ...(smtpHost ? [smtpHost] : [])].sort());
      for (const f of files) {
        const ingresses = JSON.parse(f.content).ingress as {
          hostname?: string;
          path?: string;
          service: string;
          originRequest: { access?: unknown };
        }[];
        expect(ingresses[ingresses.length - 1]).toEqual({ service: "http_status:404" });
        for (const i of ingresses.slice(0, -1)) {
          if (smtpHost !== undefined && i.hostname === smtpHost) {
            expect(i.service).toBe("tcp://127.0.0.1:2587");
            expect(i.path).toBeUndefined();
          } else {
            expect(i.hostname).toBe(relayHost);
            expect(i.service).toBe("http://127.0.0.1:2525");
            expect(i.path).toBe(PUBLIC_PATH_REGEX);
          }
          // cloudflared checks the Access JWT itself, for the application of that hostname.
          expect(i.originRequest.access).toEqual({
            required: true,
            teamName: run().config.values["mail-relay:accessTeamName"],
            audTag: [appFor(i.hostname as string)?.props.aud],
          });
        }
        expect(ingresses.filter((i) => smtpHost !== undefined && i.hostname === smtpHost)).toHaveLength(
          smtpHost ? 1 : 0,
        );
      }
      const policies = ofType(run().resources, T.accessPolicy);
      expect(policies).toHaveLength(1);
      expect(policies[0].props.decision).toBe("non_identity");
      for (const app of apps) {
        expect(app.props).toMatchObject({ type: "self_hosted" });
        expect(app.props.policies).toEqual([{ id: policies[0].id, precedence: 1 }]);
      }
      const tokens = ofType(run().resources, T.serviceToken);
      expect(
        policies[0].props.includes.map((i: { serviceToken: { tokenId: string } }) => i.serviceToken.tokenId).sort(),
      ).toEqual(tokens.map((t) => t.id).sort());
      const cname = ofType(run().resources, T.dnsRecord).filter((r) => r.props.type === "CNAME");
      expect(cname.map((c) => c.props.name).sort()).toEqual([relayHost, ...(smtpHost ? [smtpHost] : [])].sort());
      for (const c of cname)
        expect(c.props).toMatchObject({
          proxied: true,
          content: `${ofType(run().resources, T.tunnel)[0].id}.cfargotunnel.com`,
        });
    });

    it("every SSH step pins the node's generated host key, except the one bootstrap step, which carries only that key", () => {
      const keys = new Map(
        ofType(run().resources, T.privateKey)
          .filter((k) => k.props.algorithm === "ED25519" && /-ssh-host-key$/.test(k.name))
          .map((k) => [/mail-relay-(node\d+)-ssh-host-key/.exec(k.name)?.[1], k.props]),
      );
      const nodes = (run().outputs.nodes as { name: string }[]).map((n) => n.name);
      expect([...keys.keys()].sort()).toEqual([...nodes].sort());
      const ssh = [...ofType(run().resources, T.command), ...ofType(run().resources, T.copy)];
      expect(ssh.length).toBeGreaterThan(10);
      for (const r of ssh) {
        const node = /mail-relay-(node\d+)-/.exec(r.name)![1];
        const key = keys.get(node)!;
        expect(key.publicKeyOpenssh, r.name).toMatch(/^ssh-ed25519 AAAA[A-Za-z0-9+/=]+\s*$/);
        if (r.name === `mail-relay-${node}-host-key`) {
          // Trust on first use: no hostKey, and the host key's private half is all it sends.
          expect(r.props.connection.hostKey, r.name).toBeUndefined();
          expect(r.props.stdin).toBe(key.privateKeyOpenssh);
          expect(r.secretProps).toContain("stdin");
          continue;
        }
        // A plain field of the connection (authorized_keys style), so a replay can use it as it is.
        expect(r.props.connection.hostKey, r.name).toBe(key.publicKeyOpenssh.trim());
        expect(r.props.connection.host, r.name).toBe(
          ofType(run().resources, T.command).find((c) => c.name === `mail-relay-${node}-host-key`)!.props.connection
            .host,
        );
      }
      expect(
        ssh.filter((r) => r.props.connection.hostKey === undefined).map((r) => r.name.replace(/node\d+/, "nodeN")),
      ).toEqual(nodes.map(() => "mail-relay-nodeN-host-key"));
    });

    it("the zone-file output lists every DNS record the program creates (tunnel CNAMEs included), and only those", () => {
      expect(String(run().outputs.dnsZoneFile).split("\n").sort()).toEqual(zoneLinesOfRecords(run().resources));
    });
  });
}

describe("user-data is bootstrap only", () => {
  it("is byte-identical when secrets, Postfix/relay settings, DKIM selectors, callers and relay code change", async () => {
    const base = runs.get("prod")!;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bundle-"));
    const otherBundle = path.join(dir, "relay.js");
    fs.writeFileSync(otherBundle, "console.log('a different relay build');\n");
    const bundleBefore = process.env.MAIL_RELAY_BUNDLE;
    process.env.MAIL_RELAY_BUNDLE = otherBundle;
    let changed: OfflineRun;
    try {
      changed = await runStack("prod", {
        relay: { rateLimitPerMin: 5, bodyLimitBytes: 1048576, maxRecipients: 3, handoff: "sendmail" },
        smarthost: { host: "smtp.example.net", port: 2525, username: "u" },
        smarthostPassword: "another-smarthost-password",
        sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nother\n-----END OPENSSH PRIVATE KEY-----",
        dkimSelectors: [{ name: "mail202701", active: true }, { name: "mail202611" }],
        callers: ["app", "billing", "alerts"],
        adminCidrs: ["198.51.100.0/24"],
        allowedSenders: ["alerts@example.com"],
        defaultSender: "alerts@example.com",
      });
    } finally {
      if (bundleBefore === undefined) delete process.env.MAIL_RELAY_BUNDLE;
      else process.env.MAIL_RELAY_BUNDLE = bundleBefore;
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(changed.outputs.relayVersion).not.toBe(base.outputs.relayVersion);
    const ud = (r: OfflineRun) => ofType(r.resources, T.server).map((s) => s.props.userData);
    expect(ud(changed)).toEqual(ud(base));
    // ...while the things that did change reached the host through the deploy step.
    const mainCf = (r: OfflineRun) => pushedFiles(r.resources).find((f) => f.path === "/etc/postfix/main.cf")!.content;
    expect(mainCf(changed)).not.toBe(mainCf(base));
    // adminCidrs reach the host ruleset over SSH (a CIDR change never replaces the server).
    const nft = (r: OfflineRun) => pushedFiles(r.resources).find((f) => f.path === "/etc/nftables.conf")!.content;
    expect(nft(changed)).toMatch(/ip saddr \{ 198\.51\.100\.0\/24 \} tcp dport 22 ct state new accept/);
    expect(nft(changed)).not.toMatch(/ip6 saddr .* tcp dport 22/);
    expect(nft(base)).toMatch(/ip6 saddr \{ 2001:db8:1234::\/48 \} tcp dport 22/);
  });
});

describe("deploy steps re-run only what changed", () => {
  it("an unchanged input keeps its trigger; a changed Postfix setting changes only the Postfix steps", async () => {
    const base = await runStack("prod", {});
    const bigger = await runStack("prod", { relay: { bodyLimitBytes: 1048576 } });
    const triggers = (r: OfflineRun) =>
      new Map(ofType(r.resources, T.command).map((c) => [c.name, JSON.stringify(c.props.triggers)]));
    const a = triggers(base);
    const b = triggers(bigger);
    expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
    const changed = [...a.keys()].filter((k) => a.get(k) !== b.get(k) && !SECRET_BEARING_STEP.test(k));
    // The body limit reaches main.cf (message_size_limit) and the relay's env file; no other file changes.
    expect(changed.sort()).toEqual(["mail-relay-node1-file-etc-postfix-main-cf"]);
    expect(a.get("mail-relay-node1-file-etc-postfix-master-cf")).toBe(
      b.get("mail-relay-node1-file-etc-postfix-master-cf"),
    );
    expect(a.get("mail-relay-node1-wait-cloud-init")).toBe(b.get("mail-relay-node1-wait-cloud-init"));
  });

  it("a replaced server (new disk, same primary IP) gets every step again: each step's triggers hold the server's id", async () => {
    const run = runs.get("prod")!;
    const serverId = ofType(run.resources, T.server)[0].id;
    const steps = [...ofType(run.resources, T.command), ...ofType(run.resources, T.copy)];
    expect(steps.length).toBeGreaterThan(10);
    for (const s of steps) expect((s.props.triggers as unknown[]).map(String), s.name).toContain(String(serverId));
  });

  it("the nodes output names the host key every step pins, with the fingerprint ssh-keygen prints for it", async () => {
    const run = runs.get("prod")!;
    const node = (run.outputs.nodes as { sshHostKey: string; sshHostKeyFingerprint: string }[])[0];
    const pinned = ofType(run.resources, T.command).find((c) => c.name.endsWith("-wait-cloud-init"))!.props.connection
      .hostKey;
    expect(node.sshHostKey).toBe(pinned);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hostkey-"));
    try {
      fs.writeFileSync(path.join(dir, "k.pub"), `${node.sshHostKey}\n`);
      const printed = execFileSync("ssh-keygen", ["-l", "-f", path.join(dir, "k.pub")], { encoding: "utf8" });
      expect(printed.split(" ")[1]).toBe(node.sshHostKeyFingerprint);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the relay is activated behind a health check and the tunnel route waits for it; teardown stops cloudflared, then the relay", async () => {
    const run = runs.get("prod")!;
    const cmds = new Map(ofType(run.resources, T.command).map((c) => [c.name, c]));
    expect(cmds.get("mail-relay-node1-relay-activate")!.props.create).toMatch(/health/);
    expect(cmds.get("mail-relay-node1-relay-guard")!.props.delete).toBeTruthy();
    expect(cmds.get("mail-relay-node1-cloudflared-guard")!.props.delete).toBeTruthy();
    expect(cmds.get("mail-relay-node1-relay-guard")!.props.delete).toBe(
      renderStopRelay({ drainSeconds: 300, allowQueueLoss: false }),
    );
    expect(ofType(run.resources, T.copy).map((c) => c.props.remotePath)).toEqual([
      `/var/lib/mail-relay-upload/mail-relay-${run.outputs.relayVersion}.js`,
    ]);
  });
});

describe("DNS changes are in-place updates, never replacements", () => {
  it("changing the DMARC policy and adding an SPF include keeps every resource name and count; only those records' content changes", async () => {
    const a = await runStack("prod", {});
    const b = await runStack("prod", {
      dmarc: { policy: "reject", pct: 100, rua: ["mailto:dmarc@example.com"] },
      spf: { includes: ["_spf.mx.cloudflare.net", "_spf.google.com"], all: "-all" },
    });
    const names = (r: OfflineRun) => r.resources.map((x) => `${x.type}::${x.name}`).sort();
    expect(names(b)).toEqual(names(a));
    const recs = (r: OfflineRun) => new Map(ofType(r.resources, T.dnsRecord).map((x) => [x.name, x.props]));
    const ra = recs(a);
    const rb = recs(b);
    const contentChanged: string[] = [];
    for (const [name, pa] of ra) {
      const pb = rb.get(name)!;
      // name, type and zone are what force a Cloudflare record to be replaced.
      expect({ name: pb.name, type: pb.type, zoneId: pb.zoneId }).toEqual({
        name: pa.name,
        type: pa.type,
        zoneId: pa.zoneId,
      });
      if (pa.content !== pb.content && !/dkim/.test(name)) contentChanged.push(name);
    }
    expect(contentChanged.sort()).toEqual(["mail-relay-dns-dmarc", "mail-relay-dns-spf"]);
  });

  it("adding a DKIM selector adds its RSA and Ed25519 keys and records and renames nothing", async () => {
    const a = await runStack("prod", {});
    const b = await runStack("prod", { dkimSelectors: [{ name: "mail202611", active: true }, { name: "mail202705" }] });
    const names = (r: OfflineRun) => new Set(r.resources.map((x) => `${x.type}::${x.name}`));
    const na = names(a);
    const added = [...names(b)].filter((n) => !na.has(n));
    expect(added.sort()).toEqual(
      [
        `${T.dnsRecord}::mail-relay-dns-dkim-mail202705`,
        `${T.privateKey}::mail-relay-dkim-mail202705`,
        `${T.dnsRecord}::mail-relay-dns-dkim-mail202705-ed25519`,
        `${T.privateKey}::mail-relay-dkim-mail202705-ed25519`,
      ].sort(),
    );
    expect([...na].filter((n) => !names(b).has(n))).toEqual([]);
  });
});

describe("teardown keeps queued mail unless told otherwise", () => {
  it("relay.teardownDrainSeconds and relay.allowQueueLoss reach the relay guard's delete step, and nothing else changes", async () => {
    const base = await runStack("prod", {});
    const lossy = await runStack("prod", { relay: { teardownDrainSeconds: 60, allowQueueLoss: true } });
    const cmds = (r: OfflineRun) => new Map(ofType(r.resources, T.command).map((c) => [c.name, c.props]));
    const a = cmds(base);
    const b = cmds(lossy);
    expect(b.get("mail-relay-node1-relay-guard")!.delete).toBe(
      renderStopRelay({ drainSeconds: 60, allowQueueLoss: true }),
    );
    const changed = [...a.keys()].filter(
      (k) => JSON.stringify(a.get(k)) !== JSON.stringify(b.get(k)) && !SECRET_BEARING_STEP.test(k),
    );
    expect(changed).toEqual(["mail-relay-node1-relay-guard"]);
    expect(JSON.stringify(b.get("mail-relay-node1-relay-guard")!.triggers)).toBe(
      JSON.stringify(a.get("mail-relay-node1-relay-guard")!.triggers),
    ); // not replaced
  });
});
