import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { type CloudflaredIngress, cloudflaredIngress, renderCloudflaredConfig } from "../cloud-init";
import { accessTokenRenewal, type CredentialExpiry, generationName, splitGenerations } from "./credentials";
import { managedRecord } from "./dns";
import type { ZoneLine } from "./records";

/** How long a service token is valid: Cloudflare's default, a year. Renewal: docs/day-two.md. */
export const ACCESS_TOKEN_DURATION = "8760h";

/**
 * The relay's only public paths. /metrics and /ready stay host-local. cloudflared matches it against the decoded path
 * (proxy.go: `FindMatchingRule(req.Host, req.URL.Path)`), so an address arrives with its "@"; the "%40" spelling is
 * accepted too, for a matcher that sees the raw path. A path segment never holds "/", so no ".." reaches the relay.
 */
export const PUBLIC_PATH_REGEX =
  "^/(send|health|messages|messages/[A-Za-z0-9_-]+|suppressions|suppressions/[^/]+(@|%40)[^/]+)$";

/** The relay's SMTP ingress behind the tunnel: its hostname and the relay's loopback SMTP port. */
export interface SmtpIngressRoute {
  readonly hostname: string;
  readonly port: number;
}

/**
 * Tunnel ingress, as cloudflared's local config file holds it: the relay hostname's public paths go to the relay on
 * loopback over plain HTTP, the SMTP ingress hostname (when on) to the relay's own SMTP listener as raw TCP, each
 * with cloudflared checking the Access JWT of its own application, and everything else is a 404. Never Postfix's
 * port: through the tunnel every caller looks like localhost.
 */
export function tunnelIngress(
  relayHostname: string,
  relayPort: number,
  teamName: string,
  audTag: string,
  smtp?: SmtpIngressRoute & { audTag: string },
): CloudflaredIngress[] {
  return cloudflaredIngress({
    relayHostname,
    pathRegex: PUBLIC_PATH_REGEX,
    relayPort,
    teamName,
    audTag,
    ...(smtp ? { smtp } : {}),
  });
}

export interface RelayTunnelArgs {
  readonly accountId: string;
  readonly relayHostname: string;
  /** Calling services; each gets an Access service token. */
  readonly callers: readonly string[];
  /**
   * The service tokens' generations (oldest first; default [1]): every caller has one token per generation, and the
   * Access policy admits all of them, so a renewal creates the new tokens beside the old ones.
   */
  readonly tokenGenerations?: readonly number[];
  readonly stack: string;
  /** Zero Trust team name: cloudflared checks the Access JWT against <team>.cloudflareaccess.com. */
  readonly teamName: string;
  readonly relayPort: number;
  /** The SMTP ingress route: a second ingress rule and a second Access application for the same callers. */
  readonly smtp?: SmtpIngressRoute;
}

/**
 * A locally managed Cloudflare Tunnel (its ingress is the config file the deploy step pushes, `cloudflaredConfig`),
 * with Access service tokens and an Access application in front of the relay hostname. The public CNAME is
 * `TunnelRoute`, created after the relay is live.
 */
export class RelayTunnel extends pulumi.ComponentResource {
  readonly tunnelId: pulumi.Output<string>;
  /** cloudflared's connector token, secret; pushed to the host over SSH. */
  readonly tunnelToken: pulumi.Output<string>;
  readonly accessClientIds: Record<string, pulumi.Output<string>>;
  readonly accessClientSecrets: Record<string, pulumi.Output<string>>;
  /** Each service token's expiry, as Cloudflare reports it (`expiresAt`), with how to renew it. */
  readonly accessTokenExpiry: pulumi.Output<CredentialExpiry>[];
  readonly url: string;
  /** The Access application's AUD tag: cloudflared refuses a request whose Access JWT is not for this application. */
  readonly accessAud: pulumi.Output<string>;
  /** /etc/cloudflared/mail-relay.yml: the ingress rules, with the Access JWT check. */
  readonly cloudflaredConfig: pulumi.Output<string>;

  constructor(name: string, args: RelayTunnelArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mail-relay:cloudflare:RelayTunnel", name, {}, opts);
    const secret = new random.RandomBytes(
      `${name}-secret`,
      { length: 32 },
      { parent: this, additionalSecretOutputs: ["base64", "hex"] },
    );
    const tunnel = new cloudflare.ZeroTrustTunnelCloudflared(
      `${name}-tunnel`,
      {
        accountId: args.accountId,
        name: `mail-relay-${args.stack}`,
        configSrc: "local",
        tunnelSecret: pulumi.secret(secret.base64),
      },
      { parent: this },
    );
    this.tunnelId = tunnel.id;

    this.accessClientIds = {};
    this.accessClientSecrets = {};
    const generations = args.tokenGenerations ?? [1];
    const { current } = splitGenerations(generations);
    this.accessTokenExpiry = [];
    const tokens = args.callers.flatMap((caller) =>
      generations.map((g) => {
        const t = new cloudflare.ZeroTrustAccessServiceToken(
          generationName(`${name}-access-${caller}`, g),
          {
            accountId: args.accountId,
            name: generationName(`mail-relay-${args.stack}-${caller}`, g),
            duration: ACCESS_TOKEN_DURATION,
          },
          { parent: this, additionalSecretOutputs: ["clientSecret"] },
        );
        if (g === current) {
          this.accessClientIds[caller] = pulumi.secret(t.clientId);
          this.accessClientSecrets[caller] = pulumi.secret(t.clientSecret);
        }
        this.accessTokenExpiry.push(
          pulumi.all([t.name, t.expiresAt]).apply(([credential, expiresAt]) => ({
            credential,
            kind: "cloudflare-access-service-token" as const,
            expiresAt,
            renew: accessTokenRenewal(generations, g),
          })),
        );
        return t;
      }),
    );
    // One reusable policy (the callers' service tokens) for every application in front of this tunnel.
    const policy = new cloudflare.ZeroTrustAccessPolicy(
      `${name}-access-policy`,
      {
        accountId: args.accountId,
        name: `mail-relay-${args.stack} callers`,
        decision: "non_identity",
        includes: tokens.map((t) => ({ serviceToken: { tokenId: t.id } })),
      },
      { parent: this },
    );
    const app = new cloudflare.ZeroTrustAccessApplication(
      `${name}-access-app`,
      {
        accountId: args.accountId,
        name: `mail-relay-${args.stack}`,
        type: "self_hosted",
        domain: args.relayHostname,
        destinations: [{ type: "public", uri: args.relayHostname }],
        policies: [{ id: policy.id, precedence: 1 }],
        appLauncherVisible: false,
        sessionDuration: "24h",
      },
      { parent: this },
    );
    const smtp = args.smtp;
    const smtpApp =
      smtp === undefined
        ? undefined
        : new cloudflare.ZeroTrustAccessApplication(
            `${name}-smtp-access-app`,
            {
              accountId: args.accountId,
              name: `mail-relay-${args.stack} SMTP ingress`,
              type: "self_hosted",
              domain: smtp.hostname,
              destinations: [{ type: "public", uri: smtp.hostname }],
              policies: [{ id: policy.id, precedence: 1 }],
              appLauncherVisible: false,
              sessionDuration: "24h",
            },
            { parent: this },
          );

    this.accessAud = app.aud;
    this.cloudflaredConfig = pulumi.all([app.aud, smtpApp ? smtpApp.aud : pulumi.output("")]).apply(([aud, smtpAud]) =>
      renderCloudflaredConfig({
        relayHostname: args.relayHostname,
        pathRegex: PUBLIC_PATH_REGEX,
        relayPort: args.relayPort,
        teamName: args.teamName,
        audTag: aud,
        ...(smtp ? { smtp: { ...smtp, audTag: smtpAud } } : {}),
      }),
    );
    this.tunnelToken = pulumi.secret(
      cloudflare.getZeroTrustTunnelCloudflaredTokenOutput(
        { accountId: args.accountId, tunnelId: tunnel.id },
        { parent: this },
      ).token,
    );
    this.url = `https://${args.relayHostname}`;
    this.registerOutputs({ tunnelId: this.tunnelId, url: this.url });
  }
}

export interface TunnelRouteArgs {
  readonly accountId: string;
  readonly zoneId: pulumi.Input<string>;
  readonly tunnelId: pulumi.Input<string>;
  readonly relayHostname: string;
  /** The SMTP ingress's CNAME, when it is on. */
  readonly smtp?: SmtpIngressRoute;
  /**
   * The route waits for these (each node's relay activation): it goes live only once the relay is healthy,
   * and on teardown it is removed before the relay is stopped.
   */
  readonly dependsOn: pulumi.Input<pulumi.Resource>[];
}

/**
 * The public route into the tunnel: the proxied CNAME for the relay hostname. The ingress rules are not a Cloudflare
 * resource: the tunnel is locally managed and cloudflared reads them from the file the deploy step pushes.
 */
export class TunnelRoute extends pulumi.ComponentResource {
  /** The CNAMEs' zone-file lines (part of the dnsZoneFile output). */
  readonly lines: pulumi.Output<ZoneLine>[] = [];

  constructor(name: string, args: TunnelRouteArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mail-relay:cloudflare:TunnelRoute", name, {}, opts);
    const target = pulumi.interpolate`${args.tunnelId}.cfargotunnel.com`;
    const cname = (resourceName: string, hostname: string, comment: string) =>
      this.lines.push(
        managedRecord(
          resourceName,
          { zoneId: args.zoneId, name: hostname, type: "CNAME", content: target, proxied: true, ttl: 1, comment },
          { parent: this, dependsOn: args.dependsOn },
        ).line,
      );
    cname(`${name}-cname`, args.relayHostname, "mail-relay: relay entry (tunnel)");
    if (args.smtp)
      cname(
        `${name}-smtp-cname`,
        args.smtp.hostname,
        "mail-relay: SMTP ingress entry (tunnel, cloudflared access tcp)",
      );
    this.registerOutputs({});
  }
}
