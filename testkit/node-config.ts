// A small builder of complete, realistic configurations: what infra/ would hand the renderers for one node (for the
// renderer tests and the benches).
import { generateKeyPairSync } from "node:crypto";
import type { BootstrapSettings, DebianRelease, HostSecrets, HostSettings, RelayEnvSettings } from "../cloud-init";
import { DEFAULT_RELEASE, renderRelayEnv } from "../cloud-init";

export interface FullConfig {
  readonly bootstrap: BootstrapSettings;
  readonly host: HostSettings;
  readonly relayEnv: RelayEnvSettings;
  readonly secrets: HostSecrets;
}

let cachedKey: string | undefined;
/** One real RSA key per test process (generation is slow); PKCS#1 like @pulumi/tls's privateKeyPem. */
let cachedEd25519Key: string | undefined;
/** The test's own Ed25519 DKIM key (PKCS#8 PEM, as @pulumi/tls gives it). */
export function dkimEd25519KeyPem(): string {
  cachedEd25519Key ??= generateKeyPairSync("ed25519", {
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  }).privateKey;
  return cachedEd25519Key;
}

export function dkimKeyPem(): string {
  cachedKey ??= generateKeyPairSync("rsa", {
    modulusLength: 2048,
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  }).privateKey;
  return cachedKey;
}

export const SECRET_TOKEN = "tok_9f1c2a7be04d4c6f8a3e5b7d9c1e2f30";
export const SECRET_TOKEN_2 = "tok_55aa55aa55aa55aa55aa55aa55aa55aa";
export const SECRET_SMARTHOST_PASSWORD = "sm4rth0st-P4ss-w0rd-!#%";
export const SECRET_TUNNEL_TOKEN = "eyJhIjoiMTIzNDU2Nzg5MCIsInQiOiJhYmNkZWYiLCJzIjoiWm1GclpRPT0ifQ==";

export function buildConfig(
  over: {
    domain?: string;
    hostname?: string;
    smarthost?: boolean;
    ipv6?: boolean;
    tunnel?: boolean;
    bodyLimit?: number;
    selector?: string;
    tokens?: { name: string; token: string }[];
    release?: DebianRelease;
  } = {},
): FullConfig {
  const domain = over.domain ?? "example.com";
  const hostname = over.hostname ?? "mail";
  const mtaHostname = `${hostname}.${domain}`;
  const bodyLimit = over.bodyLimit ?? 524_288;
  const host: HostSettings = {
    domain,
    mtaHostname,
    relayPort: 2525,
    relayBodyLimitBytes: bodyLimit,
    dkimSelector: over.selector ?? "mail202611",
    ...(over.smarthost
      ? { smarthost: { host: "smtp.eu.mailgun.org", port: 587, username: `postmaster@mg.${domain}` } }
      : {}),
    ipv6: over.ipv6 ?? false,
    tunnel: over.tunnel ?? true,
    release: over.release ?? DEFAULT_RELEASE,
    adminCidrs: ["203.0.113.0/24", "2001:db8:1234::/48"],
    allowedSenders: [`noreply@${domain}`, `support@${domain}`],
  };
  const relayEnv: RelayEnvSettings = {
    listen: "127.0.0.1:2525",
    tokens: over.tokens ?? [{ name: "app", token: SECRET_TOKEN }],
    allowedFrom: [`noreply@${domain}`, `support@${domain}`],
    messageIdDomain: mtaHostname,
    rateLimitPerMin: 60,
    bodyLimitBytes: bodyLimit,
    maxRecipients: 50,
    callerFrom: [],
    quotas: {
      recipientsPerMin: 500,
      recipientsPerDay: 10_000,
      bytesPerMin: 50 * 1024 * 1024,
      bytesPerDay: 1024 * 1024 * 1024,
    },
    handoff: "smtp://127.0.0.1:25",
    queueRoot: "/var/spool/mail-relay",
  };
  const secrets: HostSecrets = {
    dkimPrivateKeyPem: dkimKeyPem(),
    dkimEd25519PrivateKeyPem: dkimEd25519KeyPem(),
    relayEnv: renderRelayEnv(relayEnv),
    ...(over.smarthost ? { smarthostPassword: SECRET_SMARTHOST_PASSWORD } : {}),
    ...((over.tunnel ?? true) ? { tunnelToken: SECRET_TUNNEL_TOKEN } : {}),
  };
  return { bootstrap: { hostname, fqdn: mtaHostname }, host, relayEnv, secrets };
}
