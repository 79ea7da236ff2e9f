/**
 * The stack's configuration, read once and checked at the edge.
 *
 * This is the only file that calls `new pulumi.Config()`. `parseConfig` is a pure function over raw
 * values so that every rule can be tested without the Pulumi engine; `loadConfig` feeds it the stack's
 * values. Every problem is reported at once, each naming the key and the fix.
 */
import * as net from "node:net";
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import {
  DEBIAN_RELEASES,
  DEFAULT_RELEASE,
  RELEASES,
  releaseForImage,
  releaseName,
  type DebianRelease,
} from "../cloud-init/release";
import { RELAY_HTTP_PORT, RELAY_SMTP_PORT } from "../relay/host-contract";

export const NS = "mail-relay";

/** Every non-secret key this program reads, with how its raw string is decoded. */
export const CONFIG_KEYS = {
  domain: "string",
  zone: "string",
  mtaHostname: "string",
  relayHostname: "string",
  nodeCount: "json",
  serverType: "string",
  location: "string",
  image: "string",
  allowUntestedImage: "json",
  adminCidrs: "json",
  sshPublicKey: "string",
  allowedSenders: "json",
  defaultSender: "string",
  ipv6: "json",
  smarthost: "json",
  relay: "json",
  protectPrimaryIps: "json",
  cloudflareAccountId: "string",
  accessTeamName: "string",
  allowWideAdminCidrs: "json",
  dnsTtl: "json",
  spf: "json",
  dkimSelectors: "json",
  dmarc: "json",
  mx: "json",
  bimi: "json",
  tunnel: "json",
  callers: "json",
  smtpIngress: "json",
} as const;
export type ConfigKey = keyof typeof CONFIG_KEYS;

/** Secret keys: set with `pulumi config set --secret`. */
export const SECRET_KEYS = ["sshPrivateKey", "smarthostPassword"] as const;
export type SecretKey = (typeof SECRET_KEYS)[number];

const hostnameRe = /^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))+$/;
const dnsNameRe = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?)+$/;
const selectorRe = /^[a-z0-9][a-z0-9-]{0,62}$/;
const emailRe = /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-z0-9.-]+$/;
const callerRe = /^[a-z][a-z0-9-]{0,31}$/;

const hostname = (what: string) =>
  z
    .string()
    .transform((s) => s.trim().toLowerCase().replace(/\.$/, ""))
    .refine((s) => hostnameRe.test(s), { message: `must be a DNS name like ${what}` });

/** Narrower than an office or VPN needs: an IPv4 /16 or an IPv6 /48 (a site). Wider needs allowWideAdminCidrs. */
export const ADMIN_PREFIX_MIN = { 4: 16, 6: 48 } as const;

export function isWiderThanASite(cidr: string): boolean {
  const [addr, len] = cidr.split("/");
  return net.isIP(addr) === 4 ? Number(len) < ADMIN_PREFIX_MIN[4] : Number(len) < ADMIN_PREFIX_MIN[6];
}

/** 0.0.0.0/0, ::/0, and anything nearly as wide (e.g. 0.0.0.0/1 + 128.0.0.0/1) is the whole Internet. */
function isTooBroad(cidr: string): boolean {
  const [addr, len] = cidr.split("/");
  return net.isIP(addr) === 4 ? Number(len) < 8 : Number(len) < 16;
}

export function isCidr(value: string): boolean {
  const m = /^(.+)\/(\d{1,3})$/.exec(value);
  if (!m) return false;
  const family = net.isIP(m[1]);
  const len = Number(m[2]);
  return (family === 4 && len <= 32) || (family === 6 && len <= 128);
}

const cidrList = z
  .array(z.string(), { invalid_type_error: 'must be a list of CIDRs, e.g. ["203.0.113.0/24"]' })
  .min(1, 'must list at least one CIDR (the addresses allowed to reach SSH), e.g. ["203.0.113.0/24"]')
  .superRefine((list, ctx) => {
    list.forEach((c, i) => {
      if (!isCidr(c)) {
        ctx.addIssue({
          code: "custom",
          path: [i],
          message: `"${c}" is not a CIDR; write it like 203.0.113.0/24 or 2001:db8::/48`,
        });
      } else if (isTooBroad(c)) {
        ctx.addIssue({
          code: "custom",
          path: [i],
          message: `"${c}" opens SSH to (nearly) the whole Internet and is refused (0.0.0.0/0 and ::/0 included; prefixes shorter than /8 or /16 too); list your office/VPN ranges instead`,
        });
      }
    });
  });

const smarthostSchema = z
  .object({
    host: hostname("smtp.eu.mailgun.org"),
    port: z.number().int().min(1).max(65535).default(587),
    username: z.string().min(1, "must be the smarthost's SMTP username"),
    /** The smarthost's SPF include, e.g. "mailgun.org" (added to SPF as include:<value>). */
    spfInclude: hostname("mailgun.org").optional(),
  })
  .strict();

const relayLimitsSchema = z
  .object({
    rateLimitPerMin: z.number().int().min(1).max(100_000).default(60),
    bodyLimitBytes: z
      .number()
      .int()
      .min(16_384)
      .max(50 * 1024 * 1024)
      .default(524_288),
    maxRecipients: z.number().int().min(1).max(1000).default(50),
    handoff: z.enum(["smtp", "sendmail"]).default("smtp"),
    /** Teardown (destroy, or a server replacement) waits this long for the relay's and Postfix's queues to drain. */
    teardownDrainSeconds: z.number().int().min(0).max(3600).default(300),
    /** Teardown goes ahead even when mail is still queued on the server's disk (it is lost with the disk). */
    allowQueueLoss: z.boolean().default(false),
    /** Per caller, per minute and per UTC day: recipients (to+cc+bcc) and composed bytes. */
    quotas: z
      .object({
        recipientsPerMin: z.number().int().min(1).max(1_000_000).default(500),
        recipientsPerDay: z.number().int().min(1).max(100_000_000).default(10_000),
        bytesPerMin: z
          .number()
          .int()
          .min(1024)
          .default(50 * 1024 * 1024),
        bytesPerDay: z
          .number()
          .int()
          .min(1024)
          .default(1024 * 1024 * 1024),
      })
      .strict()
      .default({}),
    /** Hard bounces (5.x.x except 5.7.x) put the address on the stack's suppression list. */
    autoSuppress: z.boolean().default(true),
  })
  .strict()
  .default({});

const spfSchema = z
  .object({
    includes: z
      .array(
        z
          .string()
          .transform((s) => s.trim().toLowerCase())
          .refine((s) => dnsNameRe.test(s), { message: "each include must be a domain like _spf.mx.cloudflare.net" }),
      )
      .default([]),
    all: z
      .enum(["~all", "-all"], { errorMap: () => ({ message: 'must be "~all" or "-all" (never "+all" or "?all")' }) })
      .default("~all"),
  })
  .strict()
  .default({});

const dkimSelectorSchema = z
  .object({
    name: z.string().refine((s) => selectorRe.test(s), { message: "must be a DNS label such as mail202611" }),
    active: z.boolean().default(false),
  })
  .strict();

const dmarcSchema = z
  .object({
    policy: z.enum(["none", "quarantine", "reject"]).default("quarantine"),
    pct: z.number().int().min(0).max(100).default(100),
    rua: z
      .array(z.string().regex(/^mailto:[^\s,;!]+@[^\s,;!]+$/, "each rua must look like mailto:dmarc@example.com"))
      .default([]),
    adkim: z.enum(["r", "s"]).default("s"),
    aspf: z.enum(["r", "s"]).default("s"),
  })
  .strict()
  .default({});

const mxSchema = z
  .array(
    z.object({ host: hostname("route1.mx.cloudflare.net"), priority: z.number().int().min(0).max(65535) }).strict(),
    {
      invalid_type_error: 'must be a list like [{"host":"route1.mx.cloudflare.net","priority":10}]',
    },
  )
  .min(1, "must list the domain's existing mailbox provider MX hosts (replies, bounces and DMARC reports go there)");

const bimiSchema = z
  .object({
    logoUrl: z
      .string()
      .url()
      .refine((u) => u.startsWith("https://") && u.endsWith(".svg"), {
        message: "logoUrl must be an https:// URL of an SVG file",
      }),
    authorityUrl: z
      .string()
      .url()
      .refine((u) => u.startsWith("https://"), { message: "authorityUrl must be https://" })
      .optional(),
  })
  .strict();

const smtpIngressSchema = z
  .object(
    {
      enabled: z.boolean({ invalid_type_error: "must be true or false" }).default(false),
      hostname: hostname("smtp-relay.example.com").optional(),
    },
    {
      invalid_type_error:
        "must be an object like {enabled: true, hostname: smtp-relay.example.com}; set it with `pulumi config set --path mail-relay:smtpIngress.enabled true`",
    },
  )
  .strict()
  .default({});

const rawSchema = z.object({
  domain: hostname("example.com"),
  zone: hostname("example.com").optional(),
  mtaHostname: hostname("mail.example.com").optional(),
  relayHostname: hostname("mail-relay.example.com").optional(),
  nodeCount: z.number().int().min(1, "must be at least 1").max(9, "must be at most 9").default(1),
  serverType: z
    .string()
    .regex(/^[a-z0-9-]+$/, "must be a Hetzner server type such as cx22")
    .default("cx22"),
  location: z
    .string()
    .regex(/^[a-z0-9-]+$/, "must be a Hetzner location such as fsn1")
    .default("fsn1"),
  image: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._-]*$/, `must be a Hetzner image name such as ${RELEASES[DEFAULT_RELEASE].hetznerImage}`)
    .default(RELEASES[DEFAULT_RELEASE].hetznerImage),
  allowUntestedImage: z.boolean().default(false),
  adminCidrs: cidrList,
  allowWideAdminCidrs: z.boolean().default(false),
  sshPublicKey: z
    .string({
      required_error: "is required: the public half of the key the deploy step uses (ssh-ed25519 AAAA... you@host)",
    })
    .refine((k) => /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( .*)?$/.test(k.trim()), {
      message: "must be an OpenSSH public key line (ssh-ed25519 AAAA... comment)",
    }),
  allowedSenders: z
    .array(z.string().transform((s) => s.trim().toLowerCase()))
    .min(1, 'must list at least one sender address, e.g. ["noreply@example.com"]'),
  defaultSender: z
    .string()
    .transform((s) => s.trim().toLowerCase())
    .optional(),
  ipv6: z.boolean().default(false),
  smarthost: smarthostSchema.optional(),
  relay: relayLimitsSchema,
  protectPrimaryIps: z.boolean().default(true),
  cloudflareAccountId: z
    .string()
    .regex(/^[0-9a-f]{32}$/, "must be the 32-hex-digit Cloudflare account id (dashboard URL)")
    .optional(),
  accessTeamName: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "must be the Zero Trust team name, the <team> of <team>.cloudflareaccess.com")
    .optional(),
  dnsTtl: z
    .number()
    .int()
    .refine((n) => n === 1 || (n >= 60 && n <= 86400), { message: "must be 1 (automatic) or 60..86400 seconds" })
    .default(300),
  spf: spfSchema,
  dkimSelectors: z
    .array(dkimSelectorSchema)
    .min(1, 'must list at least one selector, e.g. [{"name":"mail202611","active":true}]'),
  dmarc: dmarcSchema,
  mx: mxSchema,
  bimi: bimiSchema.optional(),
  tunnel: z.boolean().default(true),
  callers: z
    .array(
      z.union([
        z.string().refine((s) => callerRe.test(s), { message: "caller names are lowercase words like app or billing" }),
        z
          .object({
            name: z
              .string()
              .refine((s) => callerRe.test(s), { message: "caller names are lowercase words like app or billing" }),
            /** The senders this caller may use: a subset of allowedSenders. Default: all of allowedSenders. */
            allowedSenders: z
              .array(z.string().transform((s) => s.trim().toLowerCase()))
              .min(1)
              .optional(),
            webhookUrl: z
              .string()
              .url()
              .refine((u) => u.startsWith("https://") && !/[\s,|]/.test(u), {
                message: 'must be an https:// URL (without spaces, "," or "|")',
              })
              .optional(),
            events: z
              .array(z.enum(["delivered", "deferred", "bounced", "expired", "suppressed"]))
              .min(1)
              .optional(),
          })
          .strict(),
      ]),
    )
    .default(["app"]),
  smtpIngress: smtpIngressSchema,
});

/** Webhook events a caller gets when its entry names none; `deferred` is opt-in. */
export const DEFAULT_WEBHOOK_EVENTS = ["delivered", "bounced", "expired", "suppressed"] as const;

export interface CallerWebhook {
  readonly caller: string;
  readonly url: string;
  readonly events: readonly string[];
}

type Raw = z.infer<typeof rawSchema>;

export interface DkimSelector {
  readonly name: string;
  readonly active: boolean;
}

export interface NodeSpec {
  /** 1-based index; part of every per-node resource name, so adding a node never renames another. */
  readonly index: number;
  /** Resource-name stem, e.g. "node1". */
  readonly key: string;
  /** MTA hostname (EHLO, PTR, A record). */
  readonly mtaHostname: string;
}

/** The whole, checked configuration the program builds from. */
export interface MailRelayConfig {
  readonly project: string;
  readonly stack: string;
  readonly domain: string;
  readonly zone: string;
  readonly relayHostname: string;
  readonly nodes: readonly NodeSpec[];
  readonly serverType: string;
  readonly location: string;
  readonly image: string;
  /** The Debian release the host files are rendered for: the image's, or the default release for an untested image. */
  readonly release: DebianRelease;
  /** The image is none of the tested ones (allowUntestedImage). */
  readonly untestedImage: boolean;
  readonly adminCidrs: readonly string[];
  /** adminCidrs wider than /16 (IPv4) or /48 (IPv6) were accepted on purpose; preview/up print a warning. */
  readonly wideAdminCidrs: readonly string[];
  readonly sshPublicKey: string;
  readonly allowedSenders: readonly string[];
  readonly defaultSender: string;
  readonly ipv6: boolean;
  readonly smarthost?: Raw["smarthost"];
  readonly relay: Raw["relay"] & { readonly port: number };
  readonly protectPrimaryIps: boolean;
  readonly cloudflareAccountId?: string;
  readonly accessTeamName?: string;
  readonly dnsTtl: number;
  readonly spf: Raw["spf"];
  readonly dkimSelectors: readonly DkimSelector[];
  readonly activeSelector: string;
  readonly dmarc: Raw["dmarc"];
  readonly mx: Raw["mx"];
  readonly bimi?: Raw["bimi"];
  readonly tunnel: boolean;
  readonly callers: readonly string[];
  /** Callers with their own sender list (a subset of allowedSenders); the others may use every allowed sender. */
  readonly callerSenders: Readonly<Record<string, readonly string[]>>;
  /**
   * The relay's SMTP listener (127.0.0.1:port) and its tunnel hostname; undefined when smtpIngress.enabled is false.
   */
  readonly smtpIngress?: { readonly hostname: string; readonly port: number };
  /** Callers with a webhookUrl (callers may be names or {name, webhookUrl?, events?}). */
  readonly webhooks: readonly CallerWebhook[];
}

export interface ConfigSecrets<S> {
  readonly sshPrivateKey: S;
  readonly smarthostPassword?: S;
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`mail-relay configuration has ${problems.length} problem(s):\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/** MTA hostnames: `mail.<domain>` for one node; `mail1.`, `mail2.` ... when there are several. */
export function nodeHostnames(base: string, count: number): string[] {
  if (count === 1) return [base];
  const [first, ...rest] = base.split(".");
  return Array.from({ length: count }, (_, i) => [`${first}${i + 1}`, ...rest].join("."));
}

function isWithin(name: string, domain: string): boolean {
  return name === domain || name.endsWith(`.${domain}`);
}

function keyPath(path: (string | number)[]): string {
  const [key, ...rest] = path;
  return `${NS}:${String(key)}${rest.map((p) => (typeof p === "number" ? `[${p}]` : `.${p}`)).join("")}`;
}

/**
 * Check raw config values (already decoded from the stack file) and the presence of secrets.
 * Throws one ConfigError listing every problem.
 */
export function parseConfig(
  raw: Partial<Record<ConfigKey, unknown>>,
  secretsPresent: Record<SecretKey, boolean>,
  ctx: { project: string; stack: string },
): MailRelayConfig {
  const problems: string[] = [];
  const parsed = rawSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const missing = issue.code === "invalid_type" && issue.received === "undefined";
      problems.push(
        missing
          ? `${keyPath(issue.path)} is required; set it with \`pulumi config set ${keyPath(issue.path)} ...\` (see Pulumi.yaml for its description)`
          : `${keyPath(issue.path)} ${issue.message}`,
      );
    }
  }
  if (!secretsPresent.sshPrivateKey) {
    problems.push(
      `${NS}:sshPrivateKey is required; set it with \`pulumi config set --secret ${NS}:sshPrivateKey < ~/.ssh/mail-relay\``,
    );
  }
  if (!parsed.success) throw new ConfigError(problems);

  const c = parsed.data;
  const zone = c.zone ?? c.domain;
  const mtaBase = c.mtaHostname ?? `mail.${c.domain}`;
  const relayHostname = c.relayHostname ?? `mail-relay.${c.domain}`;

  if (!isWithin(c.domain, zone))
    problems.push(`${NS}:zone "${zone}" must be the Cloudflare zone that contains ${NS}:domain "${c.domain}"`);
  if (!isWithin(mtaBase, zone))
    problems.push(`${NS}:mtaHostname "${mtaBase}" must be inside the zone "${zone}" so its A record can be managed`);
  if (c.tunnel && !isWithin(relayHostname, zone))
    problems.push(`${NS}:relayHostname "${relayHostname}" must be inside the zone "${zone}"`);
  if (relayHostname === mtaBase)
    problems.push(
      `${NS}:relayHostname must differ from the MTA hostname: one is the proxied HTTP entry, the other the unproxied SMTP identity`,
    );

  c.allowedSenders.forEach((s, i) => {
    if (!emailRe.test(s)) problems.push(`${keyPath(["allowedSenders", i])} "${s}" is not an email address`);
    else if (s.split("@")[1] !== c.domain) {
      problems.push(
        `${keyPath(["allowedSenders", i])} "${s}" must be at ${c.domain}: strict DMARC alignment needs the From domain to be the sending domain`,
      );
    }
  });
  const defaultSender = c.defaultSender ?? c.allowedSenders[0];
  if (!c.allowedSenders.includes(defaultSender))
    problems.push(`${NS}:defaultSender "${defaultSender}" must be one of ${NS}:allowedSenders`);

  const active = c.dkimSelectors.filter((s) => s.active);
  if (active.length !== 1)
    problems.push(`${NS}:dkimSelectors must mark exactly one selector "active": true (found ${active.length})`);
  const names = c.dkimSelectors.map((s) => s.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) problems.push(`${NS}:dkimSelectors lists "${dup}" twice; selector names must be unique`);

  if (c.bimi && !(c.dmarc.policy !== "none" && c.dmarc.pct === 100)) {
    problems.push(
      `${NS}:bimi needs ${NS}:dmarc.policy "quarantine" or "reject" at pct 100 (receivers ignore BIMI otherwise); tighten dmarc or remove bimi`,
    );
  }
  const smtpHostname = c.smtpIngress.hostname ?? `smtp-relay.${c.domain}`;
  if (c.smtpIngress.hostname !== undefined && !c.smtpIngress.enabled) {
    problems.push(
      `${NS}:smtpIngress.hostname is set but ${NS}:smtpIngress.enabled is not true; set enabled: true or remove the hostname`,
    );
  }
  if (c.smtpIngress.enabled && c.tunnel) {
    if (!isWithin(smtpHostname, zone))
      problems.push(
        `${NS}:smtpIngress.hostname "${smtpHostname}" must be inside the zone "${zone}" (its CNAME and Access application live there)`,
      );
    if ([relayHostname, ...nodeHostnames(mtaBase, c.nodeCount)].includes(smtpHostname)) {
      problems.push(
        `${NS}:smtpIngress.hostname must differ from relayHostname and the MTA hostnames: it is its own tunnel route and Access application`,
      );
    }
  }
  if (c.smtpIngress.enabled && !c.tunnel && c.smtpIngress.hostname !== undefined) {
    problems.push(
      `${NS}:smtpIngress.hostname is only routed through the tunnel, and ${NS}:tunnel is false; remove the hostname (the listener stays on the host's 127.0.0.1:${RELAY_SMTP_PORT}) or set tunnel true`,
    );
  }
  const mxHosts = new Set(c.mx.map((m) => m.host));
  for (const h of [
    ...nodeHostnames(mtaBase, c.nodeCount),
    relayHostname,
    ...(c.smtpIngress.enabled ? [smtpHostname] : []),
  ]) {
    if (mxHosts.has(h))
      problems.push(
        `${NS}:mx must not point at ${h}: this relay never receives mail; keep your mailbox provider's MX hosts`,
      );
  }
  if (c.smarthost && !secretsPresent.smarthostPassword) {
    problems.push(
      `${NS}:smarthostPassword is required when ${NS}:smarthost is set; set it with \`pulumi config set --secret ${NS}:smarthostPassword\``,
    );
  }
  if (c.tunnel && !c.cloudflareAccountId) {
    problems.push(
      `${NS}:cloudflareAccountId is required when ${NS}:tunnel is true (the tunnel and Access live in the account); or set ${NS}:tunnel false`,
    );
  }
  const imageRelease = releaseForImage(c.image);
  if (imageRelease === undefined && !c.allowUntestedImage) {
    problems.push(
      `${NS}:image "${c.image}" is not a tested image: use ${testedImages()}, or set ${NS}:allowUntestedImage true to deploy it anyway (the host files are then rendered for ${releaseName(DEFAULT_RELEASE)})`,
    );
  }
  if (c.tunnel && !c.accessTeamName) {
    problems.push(
      `${NS}:accessTeamName is required when ${NS}:tunnel is true: cloudflared checks the Access JWT against <team>.cloudflareaccess.com (Zero Trust dashboard, Settings > Custom pages); or set ${NS}:tunnel false`,
    );
  }
  const wide = c.adminCidrs.filter((x) => isCidr(x) && isWiderThanASite(x));
  if (wide.length > 0 && !c.allowWideAdminCidrs) {
    problems.push(
      `${NS}:adminCidrs ${wide.map((x) => `"${x}"`).join(", ")} ${wide.length === 1 ? "is" : "are"} wider than an IPv4 /16 or an IPv6 /48: SSH would be open to far more than your office or VPN; list narrower ranges, or set ${NS}:allowWideAdminCidrs true to accept it (preview and up then warn)`,
    );
  }
  const callerNames = c.callers.map((x) => (typeof x === "string" ? x : x.name));
  const webhooks: CallerWebhook[] = c.callers.flatMap((x) =>
    typeof x !== "string" && x.webhookUrl !== undefined
      ? [{ caller: x.name, url: x.webhookUrl, events: x.events ?? [...DEFAULT_WEBHOOK_EVENTS] }]
      : [],
  );
  const callerDup = callerNames.find((n, i) => callerNames.indexOf(n) !== i);
  if (callerDup) problems.push(`${NS}:callers lists "${callerDup}" twice`);
  if (c.callers.length === 0) problems.push(`${NS}:callers must name at least one calling service, e.g. ["app"]`);
  const callerSenders: Record<string, readonly string[]> = {};
  c.callers.forEach((x, i) => {
    if (typeof x === "string" || x.allowedSenders === undefined) return;
    for (const a of x.allowedSenders) {
      if (!c.allowedSenders.includes(a))
        problems.push(
          `${keyPath(["callers", i, "allowedSenders"])} lists ${a}, which is not in ${NS}:allowedSenders; a caller's senders are a subset of the stack's`,
        );
    }
    callerSenders[x.name] = [...new Set(x.allowedSenders)];
  });

  if (problems.length > 0) throw new ConfigError(problems);

  return {
    project: ctx.project,
    stack: ctx.stack,
    domain: c.domain,
    zone,
    relayHostname,
    nodes: nodeHostnames(mtaBase, c.nodeCount).map((h, i) => ({ index: i + 1, key: `node${i + 1}`, mtaHostname: h })),
    serverType: c.serverType,
    location: c.location,
    image: c.image,
    release: imageRelease ?? DEFAULT_RELEASE,
    untestedImage: imageRelease === undefined,
    adminCidrs: c.adminCidrs,
    wideAdminCidrs: c.adminCidrs.filter(isWiderThanASite),
    sshPublicKey: c.sshPublicKey.trim(),
    allowedSenders: c.allowedSenders,
    defaultSender,
    ipv6: c.ipv6,
    smarthost: c.smarthost,
    relay: { ...c.relay, port: RELAY_HTTP_PORT },
    protectPrimaryIps: c.protectPrimaryIps,
    cloudflareAccountId: c.cloudflareAccountId,
    accessTeamName: c.accessTeamName,
    dnsTtl: c.dnsTtl,
    spf: c.spf,
    dkimSelectors: c.dkimSelectors,
    activeSelector: active[0].name,
    dmarc: c.dmarc,
    mx: c.mx,
    bimi: c.bimi,
    tunnel: c.tunnel,
    callers: callerNames,
    callerSenders,
    ...(c.smtpIngress.enabled ? { smtpIngress: { hostname: smtpHostname, port: RELAY_SMTP_PORT } } : {}),
    webhooks,
  };
}

/** "debian-13 (the default) or debian-12": the images the program is tested on, newest first. */
function testedImages(): string {
  const images = [...DEBIAN_RELEASES]
    .reverse()
    .map((r) => `${RELEASES[r].hetznerImage}${r === DEFAULT_RELEASE ? " (the default)" : ""}`);
  return `${images.slice(0, -1).join(", ")} or ${images[images.length - 1]}`;
}

/**
 * Settings that are valid but easy to misread, each as one warning line (loadConfig prints them with pulumi.log.warn,
 * so `pulumi preview` and `npm run plan` show them). Pure, so tests can call it.
 */
export function configWarnings(c: MailRelayConfig): string[] {
  const warnings: string[] = [];
  if (c.untestedImage) {
    warnings.push(
      `${NS}:image "${c.image}" is not tested (${NS}:allowUntestedImage is true): the host files are rendered for ${releaseName(c.release)}; ` +
        `the deploy step's checks (cloud-init, postfix check, opendkim -n, the relay's health check) are all that stands between a mismatch and a broken host. Tested: ${testedImages()}`,
    );
  }
  const n = c.nodes.length;
  if (n > 1 && c.tunnel) {
    warnings.push(
      `${NS}:nodeCount is ${n}: all nodes serve the same tunnel and Cloudflare sends each request to any node's connector, so ` +
        `GET /messages/:id can reach a node that does not hold the message and answer 404, an Idempotency-Key retry can reach another ` +
        `node and send the message twice, and rate limits are per node (up to ${n} x ${c.relay.rateLimitPerMin}/min per caller). ` +
        `The nodes share no queue: more nodes give more sending IPs and keep /send answering while a node is down, nothing more; see docs/configuration.md`,
    );
  } else if (n > 1) {
    warnings.push(
      `${NS}:nodeCount is ${n} with ${NS}:tunnel false: ${n} independent relays, each reachable only from its own host; they share no queue, no message status and no rate limit`,
    );
  }
  if (c.wideAdminCidrs.length > 0) {
    warnings.push(
      `${NS}:allowWideAdminCidrs is true: SSH is open to ${c.wideAdminCidrs.join(", ")} (wider than an IPv4 /16 or an IPv6 /48)`,
    );
  }
  return warnings;
}

/** Decode one raw config string; JSON keys that don't parse become a named problem. */
export function decodeRaw(get: (key: string) => string | undefined): {
  raw: Partial<Record<ConfigKey, unknown>>;
  problems: string[];
} {
  const raw: Partial<Record<ConfigKey, unknown>> = {};
  const problems: string[] = [];
  for (const [key, kind] of Object.entries(CONFIG_KEYS) as [ConfigKey, string][]) {
    const value = get(key);
    if (value === undefined) continue;
    if (kind === "string") {
      raw[key] = value;
      continue;
    }
    try {
      raw[key] = JSON.parse(value);
    } catch {
      problems.push(
        `${NS}:${key} must be valid YAML/JSON (a number, boolean, list or object); got ${JSON.stringify(value.slice(0, 40))}`,
      );
    }
  }
  return { raw, problems };
}

/** Read and check the stack's config. Secrets stay Outputs. */
export function loadConfig(): { config: MailRelayConfig; secrets: ConfigSecrets<pulumi.Output<string>> } {
  const cfg = new pulumi.Config(NS);
  const { raw, problems } = decodeRaw((k) => cfg.get(k));
  const sshPrivateKey = cfg.getSecret("sshPrivateKey");
  const smarthostPassword = cfg.getSecret("smarthostPassword");
  let config: MailRelayConfig;
  try {
    config = parseConfig(
      raw,
      { sshPrivateKey: sshPrivateKey !== undefined, smarthostPassword: smarthostPassword !== undefined },
      {
        project: pulumi.getProject(),
        stack: pulumi.getStack(),
      },
    );
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError([...problems, ...e.problems]);
    throw e;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  for (const w of configWarnings(config)) void pulumi.log.warn(w);
  return { config, secrets: { sshPrivateKey: sshPrivateKey!, smarthostPassword } };
}
