// The list of files the deploy step pushes, with owner and mode. Non-secret configs first, secrets separately
// (the caller wraps secret contents in pulumi.secret and pushes them over SSH on stdin).
import { renderHostNftablesConf } from "./host-hardening";
import { enforcesOutboundTls, renderMtaStsConf, renderResolvConf, renderUnboundConf } from "./outbound-tls";
import {
  dkimSelectorFor,
  DKIM_ALGORITHMS,
  OPENDKIM_INSTANCE,
  renderOpendkimConf,
  renderOpendkimKeyTable,
  renderOpendkimSigningTable,
  renderOpendkimTrustedHosts,
} from "./opendkim";
import {
  CLOUDFLARED_ENV_FILE,
  CLOUDFLARED_UNIT_PATH,
  MTA_STS_CONF,
  MTA_STS_DROPIN,
  NFTABLES_CONF,
  OPENDKIM_ED25519_CONF,
  OPENDKIM_ED25519_UNIT_PATH,
  RESOLV_CONF,
  UNBOUND_DROPIN,
  OPENDKIM_CONF,
  OPENDKIM_KEY_TABLE,
  OPENDKIM_SIGNING_TABLE,
  OPENDKIM_TRUSTED_HOSTS,
  POSTFIX_DIR,
  POSTFIX_LOGROTATE,
  RELAY_ENV_FILE,
  RELAY_UNIT_PATH,
  RELAY_USER,
  SASL_PASSWD_FILE,
  SENDER_ACCESS_FILE,
  SMTP_TLS_CERT_FILE,
  SMTP_TLS_KEY_FILE,
  TLS_POLICY_UNIT_PATH,
  WEBHOOK_UNIT_PATH,
  dkimKeyPath,
} from "./paths";
import { renderPostfixLogrotate } from "./postfix-log";
import { checkHostSettings, renderPostfixMainCf, renderPostfixSenderAccess, smarthostNexthop } from "./postfix";
import { renderPostfixMasterCf } from "./postfix-master";
import {
  renderCloudflaredUnit,
  renderMtaStsDropin,
  renderOpendkimEd25519Unit,
  renderRelayUnit,
  renderTlsPolicyUnit,
  renderWebhookUnit,
} from "./systemd";
import type { HostFile, HostSecrets, HostSettings } from "./types";
import { assertSingleLine } from "./validate";

function plain(path: string, content: string): HostFile {
  return { path, content, mode: "0644", owner: "root", group: "root", secret: false };
}

/** Non-secret files, in the order they should be pushed. */
export function hostConfigFiles(s: HostSettings): HostFile[] {
  checkHostSettings(s);
  const files = [
    plain(`${POSTFIX_DIR}/main.cf`, renderPostfixMainCf(s)),
    plain(`${POSTFIX_DIR}/master.cf`, renderPostfixMasterCf(s)),
    plain(SENDER_ACCESS_FILE, renderPostfixSenderAccess(s)),
    plain(OPENDKIM_CONF, renderOpendkimConf(s, "rsa")),
    plain(OPENDKIM_KEY_TABLE, renderOpendkimKeyTable(s, "rsa")),
    plain(OPENDKIM_SIGNING_TABLE, renderOpendkimSigningTable(s, "rsa")),
    plain(OPENDKIM_ED25519_CONF, renderOpendkimConf(s, "ed25519")),
    plain(OPENDKIM_INSTANCE.ed25519.keyTable, renderOpendkimKeyTable(s, "ed25519")),
    plain(OPENDKIM_INSTANCE.ed25519.signingTable, renderOpendkimSigningTable(s, "ed25519")),
    plain(OPENDKIM_ED25519_UNIT_PATH, renderOpendkimEd25519Unit()),
    plain(OPENDKIM_TRUSTED_HOSTS, renderOpendkimTrustedHosts()),
    plain(UNBOUND_DROPIN, renderUnboundConf()),
    plain(MTA_STS_CONF, renderMtaStsConf()),
    plain(MTA_STS_DROPIN, renderMtaStsDropin()),
    plain(RELAY_UNIT_PATH, renderRelayUnit(s)),
    plain(
      NFTABLES_CONF,
      renderHostNftablesConf({
        adminCidrs: s.adminCidrs,
        relayPort: s.relayPort,
        ...(s.smtpIngress ? { smtpIngressPort: s.smtpIngress.port } : {}),
        ...(s.smarthost ? { smarthostPort: s.smarthost.port } : {}),
      }),
    ),
    plain(WEBHOOK_UNIT_PATH, renderWebhookUnit()),
    plain(POSTFIX_LOGROTATE, renderPostfixLogrotate()),
    // Last: once every resolver setting is in place, the host resolves through the local validating unbound.
    plain(RESOLV_CONF, renderResolvConf()),
  ];
  if (s.tunnel) files.push(plain(CLOUDFLARED_UNIT_PATH, renderCloudflaredUnit()));
  // Started (and rolled back) with the relay release it runs; absent with a smarthost or the opt-out.
  if (enforcesOutboundTls(s)) files.push(plain(TLS_POLICY_UNIT_PATH, renderTlsPolicyUnit()));
  return files;
}

const PEM_PKCS8 = /^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+\n-----END PRIVATE KEY-----\n?$/;
const PEM_KEY = /^-----BEGIN (RSA )?PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+\n-----END (RSA )?PRIVATE KEY-----\n?$/;

const PEM_TLS_KEY =
  /^-----BEGIN (EC |RSA )?PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+\n-----END (EC |RSA )?PRIVATE KEY-----\n?$/;
const PEM_CERT = /^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+\n-----END CERTIFICATE-----\n?$/;

/** The SMTP ingress's STARTTLS key (the relay's group may read it) and certificate; the error never quotes the key. */
function smtpTlsFiles(secrets: HostSecrets): HostFile[] {
  const key = (secrets.smtpTlsKeyPem ?? "").replace(/\r\n/g, "\n").trim() + "\n";
  const cert = (secrets.smtpTlsCertPem ?? "").replace(/\r\n/g, "\n").trim() + "\n";
  if (!PEM_TLS_KEY.test(key))
    throw new Error("smtpTlsKeyPem is required with smtpIngress and must be an unencrypted PEM private key");
  if (!PEM_CERT.test(cert))
    throw new Error("smtpTlsCertPem is required with smtpIngress and must be one PEM certificate");
  return [
    { path: SMTP_TLS_KEY_FILE, content: key, mode: "0640", owner: "root", group: RELAY_USER, secret: true },
    // Not secret, but it comes from the same Output as the key, so it travels the secret files' path.
    { path: SMTP_TLS_CERT_FILE, content: cert, mode: "0644", owner: "root", group: "root", secret: true },
  ];
}

/** Secret files (DKIM key, env file, sasl_passwd, tunnel env, SMTP ingress TLS); each has secret: true. */
export function hostSecretFiles(s: HostSettings, secrets: HostSecrets): HostFile[] {
  checkHostSettings(s);
  const pems = {
    rsa: secrets.dkimPrivateKeyPem.replace(/\r\n/g, "\n").trim() + "\n",
    ed25519: (secrets.dkimEd25519PrivateKeyPem ?? "").replace(/\r\n/g, "\n").trim() + "\n",
  };
  // The error never quotes the key.
  if (!PEM_KEY.test(pems.rsa))
    throw new Error(
      "dkimPrivateKeyPem must be an unencrypted PEM private key (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY)",
    );
  if (!PEM_PKCS8.test(pems.ed25519))
    throw new Error("dkimEd25519PrivateKeyPem must be an unencrypted PKCS#8 PEM private key (BEGIN PRIVATE KEY)");
  if (secrets.relayEnv === "" || !secrets.relayEnv.endsWith("\n"))
    throw new Error("relayEnv must be the output of renderRelayEnv");

  const files: HostFile[] = [
    ...DKIM_ALGORITHMS.map((alg): HostFile => ({
      path: dkimKeyPath(s.domain, dkimSelectorFor(s, alg)),
      content: pems[alg],
      mode: "0600",
      owner: "opendkim",
      group: "opendkim",
      secret: true,
    })),
    { path: RELAY_ENV_FILE, content: secrets.relayEnv, mode: "0640", owner: "root", group: RELAY_USER, secret: true },
  ];
  if (s.smarthost) {
    const password = secrets.smarthostPassword;
    if (password === undefined || password === "")
      throw new Error("smarthostPassword is required when smarthost is set");
    assertSingleLine("smarthostPassword", password);
    if (password.trim() !== password)
      throw new Error("smarthostPassword must not start or end with whitespace (Postfix tables trim it)");
    files.push({
      path: SASL_PASSWD_FILE,
      content: `${smarthostNexthop(s.smarthost)} ${s.smarthost.username}:${password}\n`,
      mode: "0600",
      owner: "root",
      group: "root",
      secret: true,
    });
  }
  // Without a smarthost a password that happens to be configured is simply not pushed.
  if (s.tunnel) {
    const token = secrets.tunnelToken;
    if (token === undefined || !/^[A-Za-z0-9+/=_-]+$/.test(token)) {
      throw new Error("tunnelToken is required when tunnel is set and must be the base64 token Cloudflare gives");
    }
    files.push({
      path: CLOUDFLARED_ENV_FILE,
      content: `TUNNEL_TOKEN=${token}\n`,
      mode: "0600",
      owner: "root",
      group: "root",
      secret: true,
    });
  }
  if (s.smtpIngress) files.push(...smtpTlsFiles(secrets));
  return files;
}
