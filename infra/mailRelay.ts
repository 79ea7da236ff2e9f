import * as fs from "node:fs";
import * as path from "node:path";
import * as cloudflare from "@pulumi/cloudflare";
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import {
  DEFAULT_OUTBOUND_TLS,
  HostSettings,
  OUTBOUND_TLS_LABEL,
  QUEUE_ROOT,
  renderRelayEnv,
  renderUserData,
  SMTP_TLS_CERT_FILE,
  SMTP_TLS_KEY_FILE,
} from "../cloud-init";
import { spfIncludes, type ConfigSecrets, type MailRelayConfig } from "./config";
import { credentialExpiryList } from "./credentials";
import { HostDeployment, type HostSecretInputs, sha256, sshFingerprint } from "./deploy";
import { DkimKeys } from "./dkim";
import { MailDns, zoneFile } from "./dns";
import { RelayFirewall } from "./firewall";
import { RelayNode } from "./node";
import { SmtpIngressTls } from "./smtpTls";
import { RelayTokens } from "./tokens";
import { WebhookSecrets } from "./webhookSecrets";
import { RelayTunnel, TunnelRoute } from "./tunnel";

/** The bundle `npm run build` writes; MAIL_RELAY_BUNDLE points at another build (e.g. a release artifact). */
export const RELAY_BUNDLE = process.env.MAIL_RELAY_BUNDLE ?? path.join(__dirname, "..", "relay", "dist", "relay.js");

/** The relay bundle and its release name (content hash). */
export function readRelayBundle(file = RELAY_BUNDLE): { path: string; version: string } {
  if (!fs.existsSync(file))
    throw new Error(`${path.relative(process.cwd(), file)} not found: run \`npm run build\` before \`pulumi up\``);
  return { path: file, version: sha256(fs.readFileSync(file)).slice(0, 16) };
}

/**
 * Names in the clouds, each unique per Hetzner project (per resource type) and Cloudflare account because each
 * carries the stack, so `staging` and `prod` can share both. Pulumi's logical names stay stack-free; the clouds
 * rename in place.
 */
export function cloudNames(stack: string) {
  // Server names must be RFC 1123 hostnames; a Pulumi stack name may hold "_" and ".".
  const base = `mail-relay-${stack.toLowerCase().replace(/[^a-z0-9-]+/g, "-")}`;
  return {
    sshKey: `mail-relay-${stack}`,
    firewall: `${base}-fw`,
    /** A node's server; its primary IPs are `<this>-ipv4` and `-ipv6`. */
    node: (key: string) => `${base}-${key}`,
  };
}

/** The non-secret settings one node's configuration is rendered from. */
export function hostSettings(c: MailRelayConfig, mtaHostname: string): HostSettings {
  return {
    domain: c.domain,
    mtaHostname,
    relayPort: c.relay.port,
    relayBodyLimitBytes: c.relay.bodyLimitBytes,
    dkimSelector: c.activeSelector,
    ...(c.smarthost
      ? { smarthost: { host: c.smarthost.host, port: c.smarthost.port, username: c.smarthost.username } }
      : {}),
    ipv6: c.ipv6,
    tunnel: c.tunnel,
    relayHandoff: c.relay.handoff,
    release: c.release,
    adminCidrs: c.adminCidrs,
    allowedSenders: c.allowedSenders,
    ...(c.smtpIngress ? { smtpIngress: { port: c.smtpIngress.port, hostname: c.smtpIngress.hostname } } : {}),
    outboundTls: c.outboundTls,
  };
}

/**
 * The server labels that carry config facts to the policy pack: the outbound-TLS opt-out (rule 18 reads it). Only
 * the opt-out is labelled, so a stack that keeps the default sees no label change.
 */
export function serverPolicyLabels(c: Pick<MailRelayConfig, "outboundTls">): Record<string, string> {
  return c.outboundTls === DEFAULT_OUTBOUND_TLS ? {} : { [OUTBOUND_TLS_LABEL]: c.outboundTls };
}

/** The SMTP ingress's lines of the relay's env file; undefined when it is off. */
export function smtpIngressEnv(c: MailRelayConfig) {
  return c.smtpIngress
    ? {
        listen: `127.0.0.1:${c.smtpIngress.port}`,
        hostname: c.smtpIngress.hostname,
        tlsKeyFile: SMTP_TLS_KEY_FILE,
        tlsCertFile: SMTP_TLS_CERT_FILE,
      }
    : undefined;
}

export function handoffUrl(c: MailRelayConfig): string {
  return c.relay.handoff === "sendmail" ? "sendmail" : "smtp://127.0.0.1:25";
}

/** Builds the whole deployment for one stack and returns its outputs. */
export function createMailRelay(
  c: MailRelayConfig,
  secrets: ConfigSecrets<pulumi.Output<string>>,
  bundle = readRelayBundle(),
) {
  const labels = { app: "mail-relay", stack: c.stack };
  const name = "mail-relay";
  const cloud = cloudNames(c.stack);

  const sshKey = new hcloud.SshKey(`${name}-ssh`, { name: cloud.sshKey, publicKey: c.sshPublicKey, labels });
  const firewall = new RelayFirewall(name, { cloudName: cloud.firewall, adminCidrs: c.adminCidrs, labels });
  const tokens = new RelayTokens(`${name}-token`, { callers: c.callers, generations: c.rotations.relayTokens });
  const hookSecrets = new WebhookSecrets(`${name}-webhook`, {
    callers: c.webhooks.map((w) => w.caller),
    generations: c.rotations.webhookSecrets,
  });
  const dkim = new DkimKeys(`${name}-dkim`, { selectors: c.dkimSelectors });
  const zoneId = cloudflare.getZoneOutput({ filter: { name: c.zone } }).zoneId;
  const smtpRoute = c.tunnel ? c.smtpIngress : undefined;
  const tunnel = c.tunnel
    ? new RelayTunnel(`${name}-tunnel`, {
        accountId: c.cloudflareAccountId!,
        relayHostname: c.relayHostname,
        callers: c.callers,
        tokenGenerations: c.rotations.accessTokens,
        stack: c.stack,
        teamName: c.accessTeamName!,
        relayPort: c.relay.port,
        ...(smtpRoute ? { smtp: smtpRoute } : {}),
      })
    : undefined;
  const smtpTls = c.smtpIngress
    ? new SmtpIngressTls(`${name}-smtp-tls`, { hostname: c.smtpIngress.hostname })
    : undefined;
  const smtpEnv = smtpIngressEnv(c);

  const relayEnv = pulumi
    .all([
      pulumi.all(c.callers.map((caller) => pulumi.all([tokens.tokens[caller], ...tokens.previous[caller]]))),
      pulumi.all(c.webhooks.map((w) => pulumi.all([hookSecrets.secrets[w.caller], ...hookSecrets.previous[w.caller]]))),
    ])
    .apply(([ts, hs]) =>
      renderRelayEnv({
        listen: `127.0.0.1:${c.relay.port}`,
        tokens: c.callers.map((caller, i) => ({ name: caller, token: ts[i][0], previous: ts[i].slice(1) })),
        allowedFrom: c.allowedSenders,
        messageIdDomain: c.domain,
        rateLimitPerMin: c.relay.rateLimitPerMin,
        bodyLimitBytes: c.relay.bodyLimitBytes,
        maxRecipients: c.relay.maxRecipients,
        callerFrom: c.callers
          .filter((name) => c.callerSenders[name] !== undefined)
          .map((name) => ({ name, senders: c.callerSenders[name] })),
        quotas: c.relay.quotas,
        handoff: handoffUrl(c),
        queueRoot: QUEUE_ROOT,
        ...(smtpEnv ? { smtpIngress: smtpEnv } : {}),
        autoSuppress: c.relay.autoSuppress,
        webhooks: c.webhooks.map((w, i) => ({
          caller: w.caller,
          url: w.url,
          events: w.events,
          secret: hs[i][0],
          previous: hs[i].slice(1),
        })),
      }),
    );
  // One Output per secret value: each secret file is built from its own values only (infra/deploy.ts).
  const hostSecrets: HostSecretInputs = {
    relayEnv: pulumi.secret(relayEnv),
    dkimPrivateKeyPem: pulumi.secret(dkim.activePrivateKeyPem),
    dkimEd25519PrivateKeyPem: pulumi.secret(dkim.activeEd25519PrivateKeyPem),
    ...(secrets.smarthostPassword ? { smarthostPassword: pulumi.secret(secrets.smarthostPassword) } : {}),
    ...(tunnel ? { tunnelToken: pulumi.secret(tunnel.tunnelToken) } : {}),
    ...(smtpTls
      ? { smtpTlsKeyPem: pulumi.secret(smtpTls.privateKeyPem), smtpTlsCertPem: pulumi.secret(smtpTls.certPem) }
      : {}),
  };

  const nodes = c.nodes.map((n) => {
    const node = new RelayNode(`${name}-${n.key}`, {
      cloudName: cloud.node(n.key),
      mtaHostname: n.mtaHostname,
      serverType: c.serverType,
      location: c.location,
      image: c.image,
      ipv6: c.ipv6,
      protectIps: c.protectPrimaryIps,
      sshKeyIds: [sshKey.id],
      firewallId: firewall.firewallId,
      userData: renderUserData({ hostname: n.mtaHostname.split(".")[0], fqdn: n.mtaHostname }),
      labels: { ...labels, ...serverPolicyLabels(c), node: n.key },
    });
    const deployment = new HostDeployment(`${name}-${n.key}`, {
      host: node.ipv4,
      serverId: node.serverId,
      privateKey: secrets.sshPrivateKey,
      settings: hostSettings(c, n.mtaHostname),
      secrets: hostSecrets,
      relayBundlePath: bundle.path,
      relayVersion: bundle.version,
      teardown: { drainSeconds: c.relay.teardownDrainSeconds, allowQueueLoss: c.relay.allowQueueLoss },
      ...(tunnel ? { cloudflaredConfig: tunnel.cloudflaredConfig } : {}),
    });
    return { spec: n, node, deployment };
  });

  const route = tunnel
    ? new TunnelRoute(`${name}-route`, {
        accountId: c.cloudflareAccountId!,
        zoneId,
        tunnelId: tunnel.tunnelId,
        relayHostname: c.relayHostname,
        ...(smtpRoute ? { smtp: smtpRoute } : {}),
        dependsOn: nodes.map((n) => n.deployment.ready),
      })
    : undefined;

  const dns = new MailDns(`${name}-dns`, {
    zoneId,
    domain: c.domain,
    ttl: c.dnsTtl,
    nodes: nodes.map(({ spec, node }) => ({
      key: spec.key,
      mtaHostname: spec.mtaHostname,
      ipv4: node.ipv4,
      ipv6: node.ipv6,
    })),
    spf: {
      includes: spfIncludes(c),
      all: c.spf.all,
    },
    dkimPublicKeys: dkim.publicKeys,
    dmarc: c.dmarc,
    mx: c.mx,
    bimi: c.bimi,
  });

  const secretMap = (m: Record<string, pulumi.Output<string>> | undefined) =>
    m ? pulumi.secret(pulumi.all(m)) : undefined;

  return {
    nodes: nodes.map(({ spec, node, deployment }) => ({
      name: spec.key,
      mtaHostname: spec.mtaHostname,
      ipv4: node.ipv4,
      ipv6: node.ipv6,
      serverId: node.serverId,
      // Public: what every deploy step pins, and what to compare with the first-contact step's output or ssh-keyscan.
      sshHostKey: deployment.hostPublicKey,
      sshHostKeyFingerprint: deployment.hostPublicKey.apply(sshFingerprint),
    })),
    hostRecords: pulumi.all(
      nodes.flatMap(({ spec, node }) => [
        pulumi.output({ hostname: spec.mtaHostname, type: "A", ip: node.ipv4 }),
        ...(node.ipv6 ? [pulumi.output({ hostname: spec.mtaHostname, type: "AAAA", ip: node.ipv6 })] : []),
      ]),
    ),
    relayInternalUrl: `http://127.0.0.1:${c.relay.port}`,
    relayUrl: tunnel ? tunnel.url : undefined,
    relayTokens: secretMap(tokens.tokens)!,
    webhookSecrets: secretMap(hookSecrets.secrets)!,
    accessClientIds: secretMap(tunnel?.accessClientIds),
    accessClientSecrets: secretMap(tunnel?.accessClientSecrets),
    dkimSelector: dkim.activeSelector,
    dnsZoneFile: zoneFile([...dns.lines, ...(route?.lines ?? [])]),
    defaultSender: c.defaultSender,
    relayVersion: bundle.version,
    smtpIngressHostname: smtpRoute?.hostname,
    smtpIngressInternal: c.smtpIngress ? `smtp://127.0.0.1:${c.smtpIngress.port}` : undefined,
    smtpIngressCertificate: smtpTls?.certPem,
    smtpIngressFingerprint: smtpTls?.fingerprint,
    credentialExpiry: credentialExpiryList([
      ...(tunnel?.accessTokenExpiry ?? []),
      ...(smtpTls ? [smtpTls.expiry] : []),
    ]),
  };
}
