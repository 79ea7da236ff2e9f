// cloudflared's own config file: the tunnel's ingress is locally managed (the tunnel is config_src "local"), so the
// routes live in a file the deploy step pushes, and nothing in the Cloudflare dashboard or API can send the hostname
// anywhere else. Rendered as JSON (valid YAML), so the policy pack reads it back with JSON.parse.
import { assertDomainName, assertPort, assertSingleLine } from "./validate";

/** cloudflared checks the Access JWT itself: a request that reached the tunnel without passing Access is refused. */
export interface OriginAccess {
  readonly required: true;
  /** The Zero Trust team name (<team>.cloudflareaccess.com). */
  readonly teamName: string;
  /** The Access application's AUD tag(s). */
  readonly audTag: readonly string[];
}

export interface CloudflaredIngress {
  readonly hostname?: string;
  readonly path?: string;
  readonly service: string;
  readonly originRequest?: { readonly access: OriginAccess };
}

export interface CloudflaredSettings {
  readonly relayHostname: string;
  /** The relay's public paths, as a regular expression cloudflared matches the request path against. */
  readonly pathRegex: string;
  readonly relayPort: number;
  readonly teamName: string;
  readonly audTag: string;
  /** The relay's SMTP ingress: its hostname, the relay's loopback SMTP port, and its own Access application's AUD. */
  readonly smtp?: { readonly hostname: string; readonly port: number; readonly audTag: string };
}

/**
 * The relay hostname's public paths go to the relay on loopback (and the SMTP ingress hostname to its listener), with
 * Access enforced; everything else is a 404.
 */
export function cloudflaredIngress(c: CloudflaredSettings): CloudflaredIngress[] {
  assertDomainName("relayHostname", c.relayHostname);
  assertPort("relayPort", c.relayPort);
  assertSingleLine("pathRegex", c.pathRegex);
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(c.teamName))
    throw new Error(`accessTeamName must be the Zero Trust team name (a DNS label), got ${JSON.stringify(c.teamName)}`);
  for (const aud of [c.audTag, ...(c.smtp ? [c.smtp.audTag] : [])]) {
    if (!/^[A-Za-z0-9]{16,128}$/.test(aud))
      throw new Error(`the Access application's AUD tag must be hex/alphanumeric, got ${JSON.stringify(aud)}`);
  }
  if (c.smtp) {
    assertDomainName("smtpIngress.hostname", c.smtp.hostname);
    assertPort("smtpIngress port", c.smtp.port);
  }
  return [
    {
      hostname: c.relayHostname,
      path: c.pathRegex,
      service: `http://127.0.0.1:${c.relayPort}`,
      originRequest: { access: { required: true, teamName: c.teamName, audTag: [c.audTag] } },
    },
    ...(c.smtp
      ? [
          {
            hostname: c.smtp.hostname,
            service: `tcp://127.0.0.1:${c.smtp.port}`,
            originRequest: { access: { required: true as const, teamName: c.teamName, audTag: [c.smtp.audTag] } },
          },
        ]
      : []),
    { service: "http_status:404" },
  ];
}

/** /etc/cloudflared/mail-relay.yml */
export function renderCloudflaredConfig(c: CloudflaredSettings): string {
  return JSON.stringify({ "no-autoupdate": true, ingress: cloudflaredIngress(c) }, null, 2) + "\n";
}
