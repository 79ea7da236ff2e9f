import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";

/** The relay's only public paths. /metrics and /ready stay host-local. */
export const PUBLIC_PATH_REGEX = "^/(send|health|messages|messages/[A-Za-z0-9_-]+|suppressions|suppressions/[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+)$";

export interface IngressRule {
  readonly hostname?: string;
  readonly path?: string;
  readonly service: string;
}

/**
 * Tunnel ingress: the relay hostname's public paths go to the relay on loopback over plain HTTP, and
 * everything else is a 404. Never an SMTP port: through the tunnel every caller looks like localhost.
 */
export function tunnelIngress(relayHostname: string, relayPort: number): IngressRule[] {
  return [
    { hostname: relayHostname, path: PUBLIC_PATH_REGEX, service: `http://127.0.0.1:${relayPort}` },
    { service: "http_status:404" },
  ];
}

export interface RelayTunnelArgs {
  readonly accountId: string;
  readonly relayHostname: string;
  /** Calling services; each gets an Access service token. */
  readonly callers: readonly string[];
  readonly stack: string;
}

/**
 * A remotely managed Cloudflare Tunnel, with Access service tokens and an Access application in front of
 * the relay hostname. The route itself (ingress + CNAME) is `TunnelRoute`, created after the relay is live.
 */
export class RelayTunnel extends pulumi.ComponentResource {
  readonly tunnelId: pulumi.Output<string>;
  /** cloudflared's connector token, secret; pushed to the host over SSH. */
  readonly tunnelToken: pulumi.Output<string>;
  readonly accessClientIds: Record<string, pulumi.Output<string>>;
  readonly accessClientSecrets: Record<string, pulumi.Output<string>>;
  readonly url: string;

  constructor(name: string, args: RelayTunnelArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mail-relay:cloudflare:RelayTunnel", name, {}, opts);
    const secret = new random.RandomBytes(`${name}-secret`, { length: 32 }, { parent: this, additionalSecretOutputs: ["base64", "hex"] });
    const tunnel = new cloudflare.ZeroTrustTunnelCloudflared(
      `${name}-tunnel`,
      { accountId: args.accountId, name: `mail-relay-${args.stack}`, configSrc: "cloudflare", tunnelSecret: pulumi.secret(secret.base64) },
      { parent: this },
    );
    this.tunnelId = tunnel.id;

    this.accessClientIds = {};
    this.accessClientSecrets = {};
    const tokens = args.callers.map((caller) => {
      const t = new cloudflare.ZeroTrustAccessServiceToken(
        `${name}-access-${caller}`,
        { accountId: args.accountId, name: `mail-relay-${args.stack}-${caller}`, duration: "8760h" },
        { parent: this, additionalSecretOutputs: ["clientSecret"] },
      );
      this.accessClientIds[caller] = pulumi.secret(t.clientId);
      this.accessClientSecrets[caller] = pulumi.secret(t.clientSecret);
      return t;
    });
    const policy = new cloudflare.ZeroTrustAccessPolicy(
      `${name}-access-policy`,
      { accountId: args.accountId, name: `mail-relay-${args.stack} callers`, decision: "non_identity", includes: tokens.map((t) => ({ serviceToken: { tokenId: t.id } })) },
      { parent: this },
    );
    new cloudflare.ZeroTrustAccessApplication(
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

    this.tunnelToken = pulumi.secret(cloudflare.getZeroTrustTunnelCloudflaredTokenOutput({ accountId: args.accountId, tunnelId: tunnel.id }, { parent: this }).token);
    this.url = `https://${args.relayHostname}`;
    this.registerOutputs({ tunnelId: this.tunnelId, url: this.url });
  }
}

export interface TunnelRouteArgs {
  readonly accountId: string;
  readonly zoneId: pulumi.Input<string>;
  readonly tunnelId: pulumi.Input<string>;
  readonly relayHostname: string;
  readonly relayPort: number;
  /**
   * The route waits for these (each node's relay activation): it goes live only once the relay is healthy,
   * and on teardown it is removed before the relay is stopped.
   */
  readonly dependsOn: pulumi.Input<pulumi.Resource>[];
}

/** The public route into the tunnel: the ingress rules and the proxied CNAME for the relay hostname. */
export class TunnelRoute extends pulumi.ComponentResource {
  constructor(name: string, args: TunnelRouteArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mail-relay:cloudflare:TunnelRoute", name, {}, opts);
    new cloudflare.ZeroTrustTunnelCloudflaredConfig(
      `${name}-ingress`,
      { accountId: args.accountId, tunnelId: args.tunnelId, config: { ingresses: tunnelIngress(args.relayHostname, args.relayPort) } },
      { parent: this, dependsOn: args.dependsOn },
    );
    new cloudflare.DnsRecord(
      `${name}-cname`,
      { zoneId: args.zoneId, name: args.relayHostname, type: "CNAME", content: pulumi.interpolate`${args.tunnelId}.cfargotunnel.com`, proxied: true, ttl: 1, comment: "mail-relay: relay entry (tunnel)" },
      { parent: this, dependsOn: args.dependsOn },
    );
    this.registerOutputs({});
  }
}
