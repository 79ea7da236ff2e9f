// Plain typed values the renderers take. Nothing here (or anywhere in cloud-init/) imports @pulumi/*:
// every renderer is a pure function of these values, testable without the Pulumi engine.
import type { OutboundTlsMode } from "./outbound-tls";
import type { DebianRelease } from "./release";

/** One file the deploy step writes on the host. */
export interface HostFile {
  /** Absolute path on the host. */
  readonly path: string;
  readonly content: string;
  /** Octal string, e.g. "0644", "0640", "0600". */
  readonly mode: string;
  readonly owner: string;
  readonly group: string;
  /** true: content must be wrapped in pulumi.secret by the caller. */
  readonly secret: boolean;
}

export interface SmarthostSettings {
  /** e.g. smtp.eu.mailgun.org: must be the name on the provider's TLS certificate (it is verified). */
  readonly host: string;
  /** e.g. 587 (STARTTLS) or 465 (implicit TLS). */
  readonly port: number;
  readonly username: string;
}

/** Everything the host's mail/relay configuration depends on (non-secret). */
export interface HostSettings {
  /** Sending domain, e.g. example.com (or staging.example.com). */
  readonly domain: string;
  /** This node's MTA hostname (myhostname/smtp_helo_name), e.g. mail.example.com. */
  readonly mtaHostname: string;
  /** 2525; the relay listens on 127.0.0.1:<relayPort>. */
  readonly relayPort: number;
  /** The relay's JSON body limit; message_size_limit must be >= what that can produce. */
  readonly relayBodyLimitBytes: number;
  /** The ACTIVE DKIM selector, e.g. mail202611. */
  readonly dkimSelector: string;
  /** When set: relayhost = [host]:port, verified TLS + SASL mandatory. */
  readonly smarthost?: SmarthostSettings;
  /** inet_protocols = all when true, ipv4 when false. */
  readonly ipv6: boolean;
  /** Whether cloudflared's unit is part of the host files. */
  readonly tunnel: boolean;
  /** Who may reach SSH: the host ruleset repeats the cloud firewall's list. */
  readonly adminCidrs: readonly string[];
  /** Envelope senders Postfix accepts over SMTP (the relay's allowlist, enforced a second time). */
  readonly allowedSenders: readonly string[];
  /**
   * The relay's hand-off to Postfix (default smtp). sendmail needs setgid postdrop, so the unit loosens two sandbox
   * settings.
   */
  readonly relayHandoff?: "smtp" | "sendmail";
  /** The Debian release the host runs (from the image): what differs between releases lives in release.ts. */
  readonly release: DebianRelease;
  /** The relay's SMTP ingress (off when absent): its TLS key and certificate become host files. */
  readonly smtpIngress?: SmtpIngressSettings;
  /**
   * Direct delivery's outbound TLS (mail-relay:outboundTls; default dane-and-mta-sts). Ignored with a smarthost,
   * which is always verified TLS; the config refuses the opt-out there.
   */
  readonly outboundTls?: OutboundTlsMode;
}

/** The SMTP ingress on the host: the relay listens on 127.0.0.1:<port>; cloudflared's tcp:// route reaches it. */
export interface SmtpIngressSettings {
  /** 2587. */
  readonly port: number;
  /** The public name (Access application, certificate subject), e.g. smtp-relay.example.com. */
  readonly hostname: string;
}

/** Values rendered into /etc/mail-relay.env (secret because of tokens). Env names are fixed by the relay. */
export interface RelayEnvSettings {
  /** RELAY_LISTEN, "127.0.0.1:2525". */
  readonly listen: string;
  /**
   * The callers' tokens; the file gets SMTP_RELAY_TOKEN_SHA256="name=<sha256 hex>,..." (digests only). `previous`:
   * a token being rotated out, still accepted (`name=<new>|<old>`) until the rotation's second step drops it.
   */
  readonly tokens: readonly { name: string; token: string; previous?: readonly string[] }[];
  /** RELAY_ALLOWED_FROM. */
  readonly allowedFrom: readonly string[];
  /** RELAY_CALLER_FROM: callers with their own (narrower) sender list; the others may use allowedFrom. */
  readonly callerFrom: readonly { name: string; senders: readonly string[] }[];
  /** RELAY_QUOTA_*: per caller, per minute and per UTC day. */
  readonly quotas: {
    readonly recipientsPerMin: number;
    readonly recipientsPerDay: number;
    readonly bytesPerMin: number;
    readonly bytesPerDay: number;
  };
  /** RELAY_MESSAGE_ID_DOMAIN. */
  readonly messageIdDomain: string;
  /** RELAY_RATE_LIMIT_PER_MIN. */
  readonly rateLimitPerMin: number;
  /** RELAY_BODY_LIMIT_BYTES. */
  readonly bodyLimitBytes: number;
  /** RELAY_MAX_RECIPIENTS. */
  readonly maxRecipients: number;
  /** RELAY_HANDOFF, e.g. "smtp://127.0.0.1:25" or "sendmail". */
  readonly handoff: string;
  /** QUEUE_ROOT, "/var/spool/mail-relay". */
  readonly queueRoot: string;
  /** RELAY_SMTP_LISTEN, RELAY_SMTP_HOSTNAME, RELAY_SMTP_TLS_KEY, RELAY_SMTP_TLS_CERT; absent = no SMTP ingress. */
  readonly smtpIngress?: {
    readonly listen: string;
    readonly hostname: string;
    readonly tlsKeyFile: string;
    readonly tlsCertFile: string;
  };
  /** RELAY_AUTO_SUPPRESS: hard bounces suppress the address (default true). */
  readonly autoSuppress?: boolean;
  /** RELAY_WEBHOOK_URLS / _EVENTS / _SECRETS: callers with a webhook; the secret is whsec_<base64>. */
  /** `previous`: signing secrets being rotated out; the relay signs with the current one and each of them. */
  readonly webhooks?: readonly {
    caller: string;
    url: string;
    events: readonly string[];
    secret: string;
    previous?: readonly string[];
  }[];
}

export interface HostSecrets {
  /** Active selector's RSA key (PEM, PKCS#1 or PKCS#8). */
  readonly dkimPrivateKeyPem: string;
  /** Active selector's Ed25519 key (PEM, PKCS#8), for its own selector <selector>-ed25519 (RFC 8463). */
  readonly dkimEd25519PrivateKeyPem: string;
  /** Output of renderRelayEnv. */
  readonly relayEnv: string;
  /** Required when smarthost is set. */
  readonly smarthostPassword?: string;
  /** Required when tunnel is set. */
  readonly tunnelToken?: string;
  /** Required with smtpIngress: the STARTTLS private key (PEM) and its self-signed certificate. */
  readonly smtpTlsKeyPem?: string;
  readonly smtpTlsCertPem?: string;
}

/** The only inputs of user-data: changing user-data replaces the Hetzner server. */
export interface BootstrapSettings {
  /** Short name, e.g. "mail". */
  readonly hostname: string;
  /** MTA hostname, e.g. mail.example.com. */
  readonly fqdn: string;
}
