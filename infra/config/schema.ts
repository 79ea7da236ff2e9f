/**
 * The stack's keys, one zod schema each: the one place a key is declared. The key list (`CONFIG_KEYS`), how each raw
 * string is decoded, and the parsed types all derive from `rawSchema`; checks across keys live in ./checks.ts.
 */
import * as net from "node:net";
import { z } from "zod";
import { DEFAULT_OUTBOUND_TLS, OUTBOUND_TLS_MODES } from "../../cloud-init/outbound-tls";
import { DEFAULT_RELEASE, RELEASES } from "../../cloud-init/release";
import { RELAY_HTTP_PORT } from "../../relay/host-contract";

export const NS = "mail-relay";

/** Secret keys: set with `pulumi config set --secret`. */
export const SECRET_KEYS = ["sshPrivateKey", "smarthostPassword"] as const;
export type SecretKey = (typeof SECRET_KEYS)[number];

const hostnameRe = /^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))+$/;
const dnsNameRe = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?)+$/;
const selectorRe = /^[a-z0-9][a-z0-9-]{0,62}$/;
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
          message:
            `"${c}" opens SSH to (nearly) the whole Internet and is refused (0.0.0.0/0 and ::/0 included; ` +
            `prefixes shorter than /8 or /16 too); list your office/VPN ranges instead`,
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
  // The relay's HTTP port is the host contract's, not a stack key; the parsed limits carry it for the components.
  .transform((r) => ({ ...r, port: RELAY_HTTP_PORT }))
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
    // Never "+all" or "?all": either authorizes the whole Internet to send as the domain.
    all: z.enum(["~all", "-all"]).default("~all"),
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
      invalid_type_error: "must be an object like {enabled: true, hostname: smtp-relay.example.com}",
    },
  )
  .strict()
  .default({});

/**
 * A credential's generations, oldest first: one, or two while it is rotated (the old one still works, the new one is
 * handed out). Generation 1 keeps the names a stack had before rotations existed. `pulumi config set --path` may store
 * a number as a string, so digits are accepted either way.
 */
const generationsSchema = z
  .array(
    z.union(
      [
        z.number().int().min(1).max(999),
        z
          .string()
          .regex(/^[1-9]\d{0,2}$/)
          .transform(Number),
      ],
      {
        errorMap: () => ({ message: "each generation is a whole number from 1 to 999, e.g. [1, 2]" }),
      },
    ),
    { invalid_type_error: "must be a list of generations, oldest first, e.g. [1] or [1, 2] during a rotation" },
  )
  .min(1, "must keep at least one generation, e.g. [2]")
  .max(2, "lists at most two generations: the old one and the new one, during a rotation")
  .refine((g) => g.every((x, i) => i === 0 || x > g[i - 1]), {
    message: "must list generations oldest first, each newer than the last, e.g. [1, 2]",
  });

const rotationsSchema = z
  .object({
    /** Every caller's Access service token (they expire after a year): renewal adds a generation. */
    accessTokens: generationsSchema.default([1]),
    /** Per caller: its relay bearer token. */
    relayTokens: z.record(generationsSchema).default({}),
    /** Per caller with a webhookUrl: its webhook signing secret. */
    webhookSecrets: z.record(generationsSchema).default({}),
  })
  .strict()
  .default({});

export const rawSchema = z.object({
  domain: hostname("example.com"),
  zone: hostname("example.com").optional(),
  mtaHostname: hostname("mail.example.com").optional(),
  mtaHostnames: z
    .array(hostname("mail1.example.com"), { invalid_type_error: 'must be a list like ["mail1.example.com"]' })
    .optional(),
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
    })
    .transform((k) => k.trim()),
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
  /** Direct delivery's outbound TLS; the opt-out's value names the risk it accepts. */
  outboundTls: z.enum(OUTBOUND_TLS_MODES).default(DEFAULT_OUTBOUND_TLS),
  /** The user has a certificate (not the free Universal SSL one) covering proxied names deeper than one level. */
  certificateCoversDeepHostnames: z.boolean().default(false),
  rotations: rotationsSchema,
});

/** The stack file's keys as parsed: per-key defaults and normalisation applied, nothing checked across keys yet. */
export type RawConfig = z.output<typeof rawSchema>;
export type ConfigKey = keyof typeof rawSchema.shape;

/**
 * How a key's raw string (what `pulumi.Config.get` returns) is decoded: a key whose schema is a string (or a string
 * enum) is taken as written; every other key (numbers, booleans, lists, objects) is parsed as JSON, which is how Pulumi
 * hands over a YAML value that is not a string.
 */
export type Decoding = "string" | "json";

export function decodingOf(schema: z.ZodTypeAny): Decoding {
  if (schema instanceof z.ZodOptional || schema instanceof z.ZodNullable) return decodingOf(schema.unwrap());
  if (schema instanceof z.ZodDefault) return decodingOf(schema.removeDefault());
  if (schema instanceof z.ZodEffects) return decodingOf(schema.innerType());
  return schema instanceof z.ZodString || schema instanceof z.ZodEnum ? "string" : "json";
}

/** Every non-secret key this program reads, with how its raw string is decoded; derived from `rawSchema`. */
export const CONFIG_KEYS = Object.fromEntries(
  Object.entries(rawSchema.shape).map(([key, schema]) => [key, decodingOf(schema)]),
) as Readonly<Record<ConfigKey, Decoding>>;

export type DkimSelector = Readonly<z.output<typeof dkimSelectorSchema>>;
