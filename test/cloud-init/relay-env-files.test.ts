import { describe, expect, it } from "vitest";
import { hostConfigFiles, hostSecretFiles, renderRelayEnv, type RelayEnvSettings } from "../../cloud-init";
import {
  SECRET_SMARTHOST_PASSWORD,
  SECRET_TOKEN,
  SECRET_TOKEN_2,
  SECRET_TUNNEL_TOKEN,
  buildConfig,
} from "../../testkit/node-config";
import { parseEnvFile } from "./parsers";
import { createHash } from "node:crypto";
import { callerToken, loadConfig as loadRelayConfig } from "../../relay/config";

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

const base = buildConfig().relayEnv;

describe("relay env file", () => {
  it("renders every variable the relay reads, one KEY=value per line", () => {
    const env = parseEnvFile(
      renderRelayEnv({
        ...base,
        tokens: [
          { name: "app", token: SECRET_TOKEN },
          { name: "billing", token: SECRET_TOKEN_2 },
        ],
      }),
    );
    expect(Object.fromEntries(env)).toEqual({
      RELAY_LISTEN: "127.0.0.1:2525",
      SMTP_RELAY_TOKEN_SHA256: `app=${sha256(SECRET_TOKEN)},billing=${sha256(SECRET_TOKEN_2)}`,
      RELAY_ALLOWED_FROM: "noreply@example.com,support@example.com",
      RELAY_CALLER_FROM: "",
      RELAY_MESSAGE_ID_DOMAIN: "mail.example.com",
      RELAY_RATE_LIMIT_PER_MIN: "60",
      RELAY_BODY_LIMIT_BYTES: "524288",
      RELAY_MAX_RECIPIENTS: "50",
      RELAY_QUOTA_RECIPIENTS_PER_MIN: "500",
      RELAY_QUOTA_RECIPIENTS_PER_DAY: "10000",
      RELAY_QUOTA_BYTES_PER_MIN: "52428800",
      RELAY_QUOTA_BYTES_PER_DAY: "1073741824",
      RELAY_HANDOFF: "smtp://127.0.0.1:25",
      QUEUE_ROOT: "/var/spool/mail-relay",
    });
  });
  it("holds the callers' tokens only as SHA-256 digests: a copy of the file authenticates no one", () => {
    const text = renderRelayEnv({
      ...base,
      tokens: [
        { name: "app", token: SECRET_TOKEN },
        { name: "billing", token: SECRET_TOKEN_2 },
      ],
    });
    expect(text).not.toContain(SECRET_TOKEN);
    expect(text).not.toContain(SECRET_TOKEN_2);
    expect(text).not.toMatch(/^SMTP_RELAY_TOKEN=/m);
    // ...and the relay reads it back to the same callers.
    expect(loadRelayConfig(Object.fromEntries(parseEnvFile(text))).tokens).toEqual([
      callerToken("app", SECRET_TOKEN),
      callerToken("billing", SECRET_TOKEN_2),
    ]);
  });
  it("renders per-caller sender lists the relay reads back", () => {
    const text = renderRelayEnv({ ...base, callerFrom: [{ name: "app", senders: ["support@example.com"] }] });
    expect(parseEnvFile(text).get("RELAY_CALLER_FROM")).toBe("app=support@example.com");
    expect(loadRelayConfig(Object.fromEntries(parseEnvFile(text))).callerFrom.get("app")).toEqual(
      new Set(["support@example.com"]),
    );
    expect(() => renderRelayEnv({ ...base, callerFrom: [{ name: "app", senders: ["ceo@example.com"] }] })).toThrow(
      /not in RELAY_ALLOWED_FROM/,
    );
    expect(() =>
      renderRelayEnv({ ...base, callerFrom: [{ name: "ghost", senders: ["support@example.com"] }] }),
    ).toThrow(/has no token/);
  });
  const bad: [string, Partial<RelayEnvSettings>, RegExp][] = [
    ["a newline in a token", { tokens: [{ name: "app", token: "abc\nQUEUE_ROOT=/tmp" }] }, /SMTP_RELAY_TOKEN/],
    ["a quote in a token", { tokens: [{ name: "app", token: 'abc"def' + "x".repeat(32) }] }, /SMTP_RELAY_TOKEN/],
    ["a $ in a token", { tokens: [{ name: "app", token: "abc$HOME" + "x".repeat(32) }] }, /SMTP_RELAY_TOKEN/],
    ["a backslash in a sender", { allowedFrom: ["a\\b@example.com"] }, /RELAY_ALLOWED_FROM/],
    ["a space in a sender", { allowedFrom: ["a b@example.com"] }, /RELAY_ALLOWED_FROM/],
    ["a comma inside a sender", { allowedFrom: ["a,b@example.com"] }, /RELAY_ALLOWED_FROM/],
    ["a comma in a token", { tokens: [{ name: "app", token: "a,b" + "x".repeat(32) }] }, /SMTP_RELAY_TOKEN/],
    ["a bad caller name", { tokens: [{ name: "a=b", token: SECRET_TOKEN }] }, /caller name/],
    [
      "duplicate caller names",
      {
        tokens: [
          { name: "a", token: SECRET_TOKEN },
          { name: "a", token: SECRET_TOKEN_2 },
        ],
      },
      /used twice/,
    ],
    ["no tokens", { tokens: [] }, /at least one token/],
    ["no senders", { allowedFrom: [] }, /RELAY_ALLOWED_FROM/],
    ["a fractional limit", { rateLimitPerMin: 1.5 }, /RELAY_RATE_LIMIT_PER_MIN/],
    ["a newline in the queue root", { queueRoot: "/var/spool\nX=1" }, /QUEUE_ROOT/],
  ];
  it.each(bad)("refuses %s, naming the variable", (_what, over, err) => {
    expect(() => renderRelayEnv({ ...base, ...over })).toThrow(err);
  });
  it("never puts a token in an error message", () => {
    const token = "SECRET" + "x".repeat(40) + "\n";
    try {
      renderRelayEnv({ ...base, tokens: [{ name: "app", token }] });
      expect.unreachable();
    } catch (e) {
      expect(String(e)).not.toContain("SECRET");
    }
  });
});

describe("host files", () => {
  it("config files are non-secret, root-owned 0644, in push order, cloudflared unit only with a tunnel", () => {
    const withTunnel = hostConfigFiles(buildConfig({ tunnel: true }).host);
    expect(withTunnel.map((f) => f.path)).toEqual([
      "/etc/postfix/main.cf",
      "/etc/postfix/master.cf",
      "/etc/postfix/sender_access",
      "/etc/opendkim.conf",
      "/etc/opendkim/KeyTable",
      "/etc/opendkim/SigningTable",
      "/etc/opendkim-ed25519.conf",
      "/etc/opendkim/KeyTable.ed25519",
      "/etc/opendkim/SigningTable.ed25519",
      "/etc/systemd/system/opendkim-ed25519.service",
      "/etc/opendkim/TrustedHosts",
      "/etc/unbound/unbound.conf.d/mail-relay.conf",
      "/etc/mta-sts-daemon.yml",
      "/etc/systemd/system/postfix-mta-sts-resolver.service.d/mail-relay.conf",
      "/etc/systemd/system/mail-relay.service",
      "/etc/nftables.conf",
      "/etc/systemd/system/mail-relay-webhooks.service",
      "/etc/logrotate.d/mail-relay-postfix",
      "/etc/resolv.conf",
      "/etc/systemd/system/cloudflared-mail-relay.service",
      "/etc/systemd/system/mail-relay-tls-policy.service",
    ]);
    for (const f of withTunnel)
      expect({ path: f.path, secret: f.secret, mode: f.mode, owner: f.owner }).toEqual({
        path: f.path,
        secret: false,
        mode: "0644",
        owner: "root",
      });
    expect(hostConfigFiles(buildConfig({ tunnel: false }).host).map((f) => f.path)).not.toContain(
      "/etc/systemd/system/cloudflared-mail-relay.service",
    );
  });
  it("no config file contains a secret", () => {
    const cfg = buildConfig({ smarthost: true, tunnel: true });
    const all = hostConfigFiles(cfg.host)
      .map((f) => f.content)
      .join("\n");
    for (const s of [SECRET_TOKEN, SECRET_SMARTHOST_PASSWORD, SECRET_TUNNEL_TOKEN]) expect(all).not.toContain(s);
    expect(all).not.toMatch(/PRIVATE KEY/);
  });
  it("secret files: right owner and mode, all marked secret; sasl_passwd only with a smarthost, tunnel env only with a tunnel", () => {
    const cfg = buildConfig({ smarthost: true, tunnel: true });
    const files = hostSecretFiles(cfg.host, cfg.secrets);
    expect(files.map((f) => [f.path, f.owner, f.group, f.mode, f.secret])).toEqual([
      ["/etc/opendkim/keys/example.com/mail202611.private", "opendkim", "opendkim", "0600", true],
      ["/etc/opendkim/keys/example.com/mail202611-ed25519.private", "opendkim", "opendkim", "0600", true],
      ["/etc/mail-relay.env", "root", "mailrelay", "0640", true],
      ["/etc/postfix/sasl_passwd", "root", "root", "0600", true],
      ["/etc/cloudflared/mail-relay.env", "root", "root", "0600", true],
    ]);
    const content = (path: string) => files.find((f) => f.path === path)?.content;
    expect(content("/etc/postfix/sasl_passwd")).toBe(
      `[smtp.eu.mailgun.org]:587 postmaster@mg.example.com:${SECRET_SMARTHOST_PASSWORD}\n`,
    );
    expect(content("/etc/cloudflared/mail-relay.env")).toBe(`TUNNEL_TOKEN=${SECRET_TUNNEL_TOKEN}\n`);
    const plain = buildConfig({ smarthost: false, tunnel: false });
    expect(hostSecretFiles(plain.host, plain.secrets).map((f) => f.path)).toEqual([
      "/etc/opendkim/keys/example.com/mail202611.private",
      "/etc/opendkim/keys/example.com/mail202611-ed25519.private",
      "/etc/mail-relay.env",
    ]);
  });
  it("the sasl_passwd key matches relayhost exactly", async () => {
    const cfg = buildConfig({ smarthost: true });
    const { parseMainCf } = await import("./parsers");
    const relayhost = parseMainCf(hostConfigFiles(cfg.host)[0]?.content ?? "").get("relayhost");
    const sasl = hostSecretFiles(cfg.host, cfg.secrets).find((f) => f.path === "/etc/postfix/sasl_passwd");
    expect(sasl?.content.split(" ")[0]).toBe(relayhost);
  });
  it("refuses missing or malformed secrets without echoing them", () => {
    const cfg = buildConfig({ smarthost: true, tunnel: true });
    expect(() => hostSecretFiles(cfg.host, { ...cfg.secrets, smarthostPassword: undefined })).toThrow(
      /smarthostPassword is required/,
    );
    expect(() => hostSecretFiles(cfg.host, { ...cfg.secrets, smarthostPassword: "pw\n[evil]:25 x:y" })).toThrow(
      /smarthostPassword/,
    );
    expect(() => hostSecretFiles(cfg.host, { ...cfg.secrets, tunnelToken: undefined })).toThrow(/tunnelToken/);
    expect(() => hostSecretFiles(cfg.host, { ...cfg.secrets, dkimPrivateKeyPem: "not a key SECRETVALUE" })).toThrow(
      /dkimPrivateKeyPem/,
    );
    try {
      hostSecretFiles(cfg.host, { ...cfg.secrets, dkimPrivateKeyPem: "not a key SECRETVALUE" });
    } catch (e) {
      expect(String(e)).not.toContain("SECRETVALUE");
    }
  });
});
