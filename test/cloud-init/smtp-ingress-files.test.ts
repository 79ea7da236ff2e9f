// The SMTP ingress on the host: its env lines (read back by the relay's own config loader), its TLS files, and the
// settings check. Off, every rendered file is what it was.
import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  checkHostSettings,
  hostConfigFiles,
  hostSecretFiles,
  renderRelayEnv,
  renderRelayUnit,
  RELAY_SMTP_ENV_NAMES,
  SMTP_TLS_CERT_FILE,
  SMTP_TLS_KEY_FILE,
  type HostSettings,
  type RelayEnvSettings,
} from "../../cloud-init";
import { loadConfig } from "../../relay/config";
import { RELAY_SMTP_PORT } from "../../relay/host-contract";
import { buildConfig } from "../../testkit/node-config";
import { parseEnvFile, parseUnit, unitValue } from "./parsers";

const base = buildConfig();
const smtpEnv: RelayEnvSettings["smtpIngress"] = {
  listen: `127.0.0.1:${RELAY_SMTP_PORT}`,
  hostname: "smtp-relay.example.com",
  tlsKeyFile: SMTP_TLS_KEY_FILE,
  tlsCertFile: SMTP_TLS_CERT_FILE,
};
const smtpHost: HostSettings = {
  ...base.host,
  smtpIngress: { port: RELAY_SMTP_PORT, hostname: "smtp-relay.example.com" },
};
// Shaped like what the program pushes (PKCS#8 key); the certificate's body is not parsed here.
const KEY = generateKeyPairSync("ec", { namedCurve: "P-256" })
  .privateKey.export({ type: "pkcs8", format: "pem" })
  .toString();
const CERT =
  "-----BEGIN CERTIFICATE-----\nMIIBfake0certificate0body0for0shape0only0AAAAAAAAAAAAAAAAAAAAAAA\n-----END CERTIFICATE-----\n";

describe("relay env file: the SMTP ingress", () => {
  it("adds exactly the RELAY_SMTP_* lines when on, and nothing when off", () => {
    const off = renderRelayEnv(base.relayEnv);
    const on = renderRelayEnv({ ...base.relayEnv, smtpIngress: smtpEnv });
    expect(on.startsWith(off)).toBe(true);
    expect(Object.fromEntries(parseEnvFile(on.slice(off.length)))).toEqual({
      RELAY_SMTP_LISTEN: "127.0.0.1:2587",
      RELAY_SMTP_HOSTNAME: "smtp-relay.example.com",
      RELAY_SMTP_TLS_KEY: "/etc/mail-relay/smtp-ingress.key",
      RELAY_SMTP_TLS_CERT: "/etc/mail-relay/smtp-ingress.crt",
    });
    expect([...parseEnvFile(on).keys()].filter((k) => k.startsWith("RELAY_SMTP_"))).toEqual([...RELAY_SMTP_ENV_NAMES]);
  });

  it("the relay's own config loader reads the rendered file into the listener it will open", () => {
    const env = Object.fromEntries(parseEnvFile(renderRelayEnv({ ...base.relayEnv, smtpIngress: smtpEnv })));
    expect(loadConfig(env).smtpIngress).toEqual({
      listen: { host: "127.0.0.1", port: 2587 },
      hostname: "smtp-relay.example.com",
      tlsKeyFile: SMTP_TLS_KEY_FILE,
      tlsCertFile: SMTP_TLS_CERT_FILE,
    });
    expect(loadConfig(Object.fromEntries(parseEnvFile(renderRelayEnv(base.relayEnv)))).smtpIngress).toBeUndefined();
  });

  it("refuses a value systemd's EnvironmentFile would change, naming the variable", () => {
    expect(() => renderRelayEnv({ ...base.relayEnv, smtpIngress: { ...smtpEnv!, hostname: "smtp relay" } })).toThrow(
      /RELAY_SMTP_HOSTNAME/,
    );
    expect(() => renderRelayEnv({ ...base.relayEnv, smtpIngress: { ...smtpEnv!, tlsKeyFile: "/etc/$x" } })).toThrow(
      /RELAY_SMTP_TLS_KEY/,
    );
  });
});

describe("host files: the SMTP ingress", () => {
  it("the key is root:mailrelay 0640 (the relay reads it), the certificate 0644; both only when on", () => {
    const files = hostSecretFiles(smtpHost, { ...base.secrets, smtpTlsKeyPem: KEY, smtpTlsCertPem: CERT });
    expect(files.slice(-2).map((f) => [f.path, f.owner, f.group, f.mode, f.secret])).toEqual([
      ["/etc/mail-relay/smtp-ingress.key", "root", "mailrelay", "0640", true],
      ["/etc/mail-relay/smtp-ingress.crt", "root", "root", "0644", true],
    ]);
    expect(files.at(-2)!.content).toBe(KEY);
    expect(
      hostSecretFiles(base.host, { ...base.secrets, smtpTlsKeyPem: KEY, smtpTlsCertPem: CERT }).map((f) => f.path),
    ).not.toContain(SMTP_TLS_KEY_FILE);
  });

  it("refuses a missing or malformed key or certificate without echoing it", () => {
    expect(() => hostSecretFiles(smtpHost, { ...base.secrets, smtpTlsCertPem: CERT })).toThrow(
      /smtpTlsKeyPem is required/,
    );
    expect(() => hostSecretFiles(smtpHost, { ...base.secrets, smtpTlsKeyPem: KEY })).toThrow(
      /smtpTlsCertPem is required/,
    );
    try {
      hostSecretFiles(smtpHost, { ...base.secrets, smtpTlsKeyPem: "SECRETVALUE", smtpTlsCertPem: CERT });
      expect.unreachable();
    } catch (e) {
      expect(String(e)).not.toContain("SECRETVALUE");
    }
  });

  it("the settings check keeps the listener off Postfix's ports and the HTTP port", () => {
    for (const port of [25, 465, 587, 2525, 0, 70000]) {
      expect(
        () => checkHostSettings({ ...smtpHost, smtpIngress: { port, hostname: "smtp-relay.example.com" } }),
        String(port),
      ).toThrow(/smtpIngress\.port/);
    }
    expect(() => checkHostSettings({ ...smtpHost, smtpIngress: { port: 2587, hostname: "not a name" } })).toThrow(
      /smtpIngress\.hostname/,
    );
  });

  it("the relay unit names the SMTP listener and the host firewall lets cloudflared reach it, only when on; every other config file is unchanged", () => {
    const unit = (s: HostSettings) => unitValue(parseUnit(renderRelayUnit(s)), "Unit", "Description");
    expect(unit(smtpHost)).toBe("mail-relay HTTP relay on 127.0.0.1:2525 and SMTP ingress on 127.0.0.1:2587");
    expect(unit(base.host)).toBe("mail-relay HTTP relay on 127.0.0.1:2525");
    const nft = (s: HostSettings) => hostConfigFiles(s).find((f) => f.path === "/etc/nftables.conf")?.content ?? "";
    const cloudflaredChain = (s: HostSettings) =>
      /chain cloudflared_loopback \{\s*(tcp dport [^\n]*accept)/.exec(nft(s))?.[1];
    expect(cloudflaredChain(smtpHost)).toBe("tcp dport { 2525, 2587 } accept");
    expect(cloudflaredChain(base.host)).toBe("tcp dport { 2525 } accept");
    const others = (s: HostSettings) =>
      hostConfigFiles(s).filter((f) => !f.path.endsWith("mail-relay.service") && f.path !== "/etc/nftables.conf");
    expect(others(smtpHost)).toEqual(others(base.host));
  });
});
