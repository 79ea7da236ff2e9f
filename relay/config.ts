import { createHash } from "node:crypto";
import { isIP } from "node:net";
import { z } from "zod";
import isEmail from "validator/lib/isEmail";
import isFQDN from "validator/lib/isFQDN";
import { defaultMaxMessageBytes, MESSAGE_SIZE_FACTOR, RELAY_SMTP_PORT } from "./host-contract";

/** A caller's webhook: where, which events, and the signing secrets (current first; two during a rotation). */
export interface CallerWebhookConfig {
  readonly url: string;
  readonly events: ReadonlySet<string>;
  readonly secrets: readonly string[];
}

/**
 * One caller: the SHA-256 of its token (hex) and the name logs, rate limits and quotas use for it. The relay never
 * needs the token itself: the host stores digests only (SMTP_RELAY_TOKEN_SHA256), so a copy of the env file does not
 * authenticate anyone.
 */
export interface CallerToken {
  readonly name: string;
  readonly sha256: string;
}

export function tokenSha256(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** A caller from a plaintext token (development, tests): only its digest is kept. */
export function callerToken(name: string, token: string): CallerToken {
  return { name, sha256: tokenSha256(token) };
}

/** Per-caller quotas, counted in fixed windows (the minute, the UTC day) in memory; a restart starts them afresh. */
export interface Quotas {
  readonly recipientsPerMin: number;
  readonly recipientsPerDay: number;
  readonly bytesPerMin: number;
  readonly bytesPerDay: number;
}

export type HandoffConfig =
  | { readonly kind: "sendmail"; readonly path: string }
  | { readonly kind: "smtp"; readonly host: string; readonly port: number };

/** The SMTP ingress (relay/smtp-ingress.ts): on only when RELAY_SMTP_LISTEN is set. */
export interface SmtpIngressConfig {
  readonly listen: { readonly host: string; readonly port: number };
  /** The name in the greeting and the certificate's subject, e.g. smtp-relay.example.com. */
  readonly hostname: string;
  /** PEM files for STARTTLS (the deploy step pushes them; infra/smtpTls.ts makes them). */
  readonly tlsKeyFile: string;
  readonly tlsCertFile: string;
}

export interface RelayConfig {
  readonly listen: { readonly host: string; readonly port: number };
  readonly smtpIngress?: SmtpIngressConfig;
  readonly tokens: readonly CallerToken[];
  readonly allowedFrom: ReadonlySet<string>;
  /**
   * Caller -> the senders it may use; a caller without an entry may use allowedFrom. Each is a subset of allowedFrom.
   */
  readonly callerFrom: ReadonlyMap<string, ReadonlySet<string>>;
  readonly quotas: Quotas;
  readonly messageIdDomain: string;
  readonly queueRoot: string;
  readonly maxAttempts: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  readonly handoffTimeoutMs: number;
  readonly handoff: HandoffConfig;
  /** Hand-offs in flight at once (and SMTP connections to Postfix); see relay/worker.ts. */
  readonly handoffConcurrency: number;
  readonly rateLimitPerMin: number;
  readonly bodyLimitBytes: number;
  /** The largest composed message (after MIME encoding) the relay queues; see relay/host-contract.ts. */
  readonly maxMessageBytes: number;
  readonly maxRecipients: number;
  readonly minFreeBytes: number;
  readonly sentRetentionMs: number;
  readonly logLevel: string;
  /** Postfix's maillog_file the delivery tracker follows; undefined = tracking off. */
  readonly postfixLog?: string;
  /** Hard bounces put the address on the suppression list. */
  readonly autoSuppress?: boolean;
  /** Callers with a webhookUrl. */
  readonly webhooks?: ReadonlyMap<string, CallerWebhookConfig>;
}

const WEBHOOK_SUBSCRIPTIONS = ["delivered", "deferred", "bounced", "expired", "suppressed"];
const DEFAULT_SUBSCRIPTIONS = ["delivered", "bounced", "expired", "suppressed"];

/** `name=value,name=value` (the SMTP_RELAY_TOKEN shape) -> map; problems name the entry, never a secret value. */
function namedList(raw: string | undefined, what: string): { map: Map<string, string>; problems: string[] } {
  const map = new Map<string, string>();
  const problems: string[] = [];
  for (const part of (raw ?? "")
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean)) {
    const eq = part.indexOf("=");
    const name = eq > 0 ? part.slice(0, eq) : "";
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) problems.push(`each entry is caller=${what}`);
    else if (map.has(name)) problems.push(`caller "${name}" is listed twice`);
    else map.set(name, part.slice(eq + 1));
  }
  return { map, problems };
}

/** Reads RELAY_WEBHOOK_URLS / _EVENTS / _SECRETS; exported for the webhook sender's own start. */
export function parseWebhooks(
  env: NodeJS.ProcessEnv,
  callers: readonly string[],
): { webhooks: Map<string, CallerWebhookConfig>; problems: { variable: string; message: string }[] } {
  const problems: { variable: string; message: string }[] = [];
  const urls = namedList(env.RELAY_WEBHOOK_URLS, "https://...");
  const events = namedList(env.RELAY_WEBHOOK_EVENTS, "delivered+bounced+...");
  const secrets = namedList(env.RELAY_WEBHOOK_SECRETS, "whsec_...");
  for (const p of urls.problems) problems.push({ variable: "RELAY_WEBHOOK_URLS", message: p });
  for (const p of events.problems) problems.push({ variable: "RELAY_WEBHOOK_EVENTS", message: p });
  for (const p of secrets.problems) problems.push({ variable: "RELAY_WEBHOOK_SECRETS", message: p });
  const webhooks = new Map<string, CallerWebhookConfig>();
  for (const [name, url] of urls.map) {
    if (!callers.includes(name))
      problems.push({ variable: "RELAY_WEBHOOK_URLS", message: `"${name}" is not a caller in SMTP_RELAY_TOKEN` });
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      parsed = undefined;
    }
    if (!parsed || parsed.protocol !== "https:")
      problems.push({ variable: "RELAY_WEBHOOK_URLS", message: `the URL of "${name}" must be https://` });
    const ev = (events.map.get(name) ?? DEFAULT_SUBSCRIPTIONS.join("+")).split("+").filter(Boolean);
    for (const e of ev)
      if (!WEBHOOK_SUBSCRIPTIONS.includes(e))
        problems.push({
          variable: "RELAY_WEBHOOK_EVENTS",
          message: `"${e}" (caller ${name}) is not one of ${WEBHOOK_SUBSCRIPTIONS.join(", ")}`,
        });
    const sec = (secrets.map.get(name) ?? "").split("|").filter(Boolean);
    if (sec.length === 0 || sec.some((x) => !/^whsec_[A-Za-z0-9+/]{22,}={0,2}$/.test(x)))
      problems.push({
        variable: "RELAY_WEBHOOK_SECRETS",
        message: `caller "${name}" needs a whsec_<base64> secret (two, separated by "|", during a rotation)`,
      });
    webhooks.set(name, { url, events: new Set(ev), secrets: sec });
  }
  return { webhooks, problems };
}

export const MIN_TOKEN_LENGTH = 32;

/** Per caller: about 10x a busy transactional sender, far below what a stolen token could otherwise spray. */
export const DEFAULT_QUOTAS: Quotas = {
  recipientsPerMin: 500,
  recipientsPerDay: 10_000,
  bytesPerMin: 50 * 1024 * 1024,
  bytesPerDay: 1024 * 1024 * 1024,
};

/** Raised when the environment is wrong: the message lists every bad variable at once. */
export class ConfigError extends Error {
  readonly variables: readonly string[];
  constructor(problems: readonly { variable: string; message: string }[]) {
    super(
      "mail-relay refuses to start; fix these variables in /etc/mail-relay.env:\n" +
        problems.map((p) => `  - ${p.variable}: ${p.message}`).join("\n"),
    );
    this.name = "ConfigError";
    this.variables = problems.map((p) => p.variable);
  }
}

const intVar = (def: number, min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === "") return def;
      if (!/^\d+$/.test(v.trim())) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: `must be a whole number, got "${v}"` });
        return z.NEVER;
      }
      const n = Number(v.trim());
      if (n < min || n > max) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: `must be between ${min} and ${max}, got ${n}` });
        return z.NEVER;
      }
      return n;
    });

const emailOptions = {
  allow_display_name: false,
  require_tld: true,
  allow_ip_domain: false,
  allow_utf8_local_part: false,
};

/** `name=token` names a caller; a token without a name (or ending in base64 `=` padding) gets `caller-N`. */
export function parseTokens(raw: string): { tokens: CallerToken[]; problems: string[] } {
  const problems: string[] = [];
  const tokens: CallerToken[] = [];
  const parts = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (parts.length === 0) problems.push(`set at least one token of ${MIN_TOKEN_LENGTH}+ characters`);
  parts.forEach((part, i) => {
    const eq = part.indexOf("=");
    const rest = eq >= 0 ? part.slice(eq + 1) : "";
    const named = eq > 0 && !/^=*$/.test(rest);
    const name = named ? part.slice(0, eq) : `caller-${i + 1}`;
    const token = named ? rest : part;
    if (named && !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
      problems.push(
        `token #${i + 1}: the caller name before "=" may use only letters, digits, "_", "." and "-" (1-64 chars)`,
      );
    }
    if (token.length < MIN_TOKEN_LENGTH) {
      problems.push(
        `token #${i + 1}${named ? ` (${name})` : ""} is ${token.length} characters; each token needs at least ${MIN_TOKEN_LENGTH}`,
      );
    }
    if (/\s/.test(token)) problems.push(`token #${i + 1} contains whitespace`);
    tokens.push(callerToken(name, token));
  });
  return { tokens, problems: [...problems, ...duplicateProblems(tokens)] };
}

function duplicateProblems(tokens: readonly CallerToken[]): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  const values = new Set<string>();
  for (const t of tokens) {
    if (names.has(t.name)) problems.push(`caller name "${t.name}" is used twice`);
    if (values.has(t.sha256)) problems.push(`the same token is listed twice`);
    names.add(t.name);
    values.add(t.sha256);
  }
  return problems;
}

/** `name=<64 hex digits>,...`: the SHA-256 of each caller's token, as the deploy step writes it on the host. */
export function parseTokenDigests(raw: string): { tokens: CallerToken[]; problems: string[] } {
  const problems: string[] = [];
  const tokens: CallerToken[] = [];
  const parts = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (parts.length === 0) problems.push("set at least one name=<sha256 hex> entry");
  parts.forEach((part, i) => {
    const m = /^([A-Za-z0-9_.-]{1,64})=([0-9a-fA-F]{64})$/.exec(part);
    if (!m) {
      problems.push(`entry #${i + 1} must be name=<64 hex digits> (the SHA-256 of the caller's token)`);
      return;
    }
    tokens.push({ name: m[1] as string, sha256: (m[2] as string).toLowerCase() });
  });
  return { tokens, problems: [...problems, ...duplicateProblems(tokens)] };
}

/** `caller=a@x;b@x,caller2=c@x`: per-caller sender allowlists. */
export function parseCallerFrom(raw: string): { map: Map<string, Set<string>>; problems: string[] } {
  const map = new Map<string, Set<string>>();
  const problems: string[] = [];
  for (const part of raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")) {
    const eq = part.indexOf("=");
    const name = part.slice(0, eq);
    if (eq <= 0 || !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
      problems.push(`"${part.slice(0, 40)}" must be caller=address;address`);
      continue;
    }
    const list = part
      .slice(eq + 1)
      .split(";")
      .map((s) => s.trim().toLowerCase())
      .filter((s) => s !== "");
    if (list.length === 0) problems.push(`caller "${name}" lists no address`);
    for (const a of list)
      if (!isEmail(a, emailOptions) || a.startsWith("-"))
        problems.push(`caller "${name}": "${a}" is not a valid address`);
    if (map.has(name)) problems.push(`caller "${name}" is listed twice`);
    map.set(name, new Set(list));
  }
  return { map, problems };
}

/** "IP:PORT" ("[::1]:2525" for IPv6); `def` when unset, undefined when unset and there is no default. */
const listenVar = (def: string | undefined) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      const s = v === undefined || v.trim() === "" ? def : v.trim();
      if (s === undefined) return undefined;
      const m = /^(.+):(\d{1,5})$/.exec(s);
      const host = m?.[1]?.replace(/^\[(.*)\]$/, "$1");
      const port = Number(m?.[2]);
      if (!m || !host || isIP(host) === 0 || port < 0 || port > 65535) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          message: `must be IP:PORT such as ${def ?? `127.0.0.1:${RELAY_SMTP_PORT}`}, got "${s}"`,
        });
        return z.NEVER;
      }
      return { host, port };
    });

const absolutePath = z
  .string()
  .optional()
  .refine((v) => v === undefined || v === "" || v.startsWith("/"), { message: "must be an absolute path" });

const schema = z.object({
  RELAY_LISTEN: listenVar("127.0.0.1:2525").transform((v) => v as { host: string; port: number }),
  // The SMTP ingress: off unless RELAY_SMTP_LISTEN is set; STARTTLS needs the key and certificate files.
  RELAY_SMTP_LISTEN: listenVar(undefined),
  RELAY_SMTP_HOSTNAME: z
    .string()
    .optional()
    .refine((v) => v === undefined || v === "" || isFQDN(v, { require_tld: false }), {
      message: "must be a host name such as smtp-relay.example.com",
    }),
  RELAY_SMTP_TLS_KEY: absolutePath,
  RELAY_SMTP_TLS_CERT: absolutePath,
  SMTP_RELAY_TOKEN: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === "") return undefined;
      const { tokens, problems } = parseTokens(v);
      for (const p of problems) ctx.addIssue({ code: z.ZodIssueCode.custom, message: p });
      return tokens;
    }),
  SMTP_RELAY_TOKEN_SHA256: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === "") return undefined;
      const { tokens, problems } = parseTokenDigests(v);
      for (const p of problems) ctx.addIssue({ code: z.ZodIssueCode.custom, message: p });
      return tokens;
    }),
  RELAY_CALLER_FROM: z
    .string()
    .optional()
    .transform((v, ctx) => {
      const { map, problems } = parseCallerFrom(v ?? "");
      for (const p of problems) ctx.addIssue({ code: z.ZodIssueCode.custom, message: p });
      return map;
    }),
  RELAY_QUOTA_RECIPIENTS_PER_MIN: intVar(DEFAULT_QUOTAS.recipientsPerMin, 1),
  RELAY_QUOTA_RECIPIENTS_PER_DAY: intVar(DEFAULT_QUOTAS.recipientsPerDay, 1),
  RELAY_QUOTA_BYTES_PER_MIN: intVar(DEFAULT_QUOTAS.bytesPerMin, 1024),
  RELAY_QUOTA_BYTES_PER_DAY: intVar(DEFAULT_QUOTAS.bytesPerDay, 1024),
  RELAY_ALLOWED_FROM: z
    .string({ required_error: "required: comma-separated sender addresses callers may use as From" })
    .transform((v, ctx) => {
      const list = v
        .split(",")
        .map((s) => s.trim().toLowerCase())
        .filter((s) => s !== "");
      if (list.length === 0) ctx.addIssue({ code: z.ZodIssueCode.custom, message: "list at least one sender address" });
      for (const a of list) {
        if (!isEmail(a, emailOptions) || a.startsWith("-")) {
          ctx.addIssue({ code: z.ZodIssueCode.custom, message: `"${a}" is not a valid address` });
        }
      }
      return list;
    }),
  RELAY_MESSAGE_ID_DOMAIN: z
    .string()
    .optional()
    .refine((v) => v === undefined || v === "" || isFQDN(v, { require_tld: true }), {
      message: "must be a domain name such as mail.example.com",
    }),
  QUEUE_ROOT: z
    .string()
    .optional()
    .transform((v) => (v === undefined || v === "" ? "/var/spool/mail-relay" : v))
    .refine((v) => v.startsWith("/"), { message: "must be an absolute path" }),
  QUEUE_MAX_ATTEMPTS: intVar(8, 1, 100),
  QUEUE_RETRY_BASE_MS: intVar(30_000, 1),
  QUEUE_RETRY_MAX_MS: intVar(3_600_000, 1),
  SENDMAIL_TIMEOUT_MS: intVar(30_000, 100, 600_000),
  RELAY_HANDOFF: z
    .string()
    .optional()
    .transform((v, ctx): { kind: "sendmail" } | { kind: "smtp"; host: string; port: number } => {
      const s = v === undefined || v.trim() === "" ? "smtp://127.0.0.1:25" : v.trim();
      if (s === "sendmail") return { kind: "sendmail" };
      const m = /^smtp:\/\/([^/:]+):(\d{1,5})\/?$/.exec(s);
      const port = Number(m?.[2]);
      if (!m || port < 1 || port > 65535) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          message: `must be "sendmail" or "smtp://HOST:PORT" (default smtp://127.0.0.1:25), got "${s}"`,
        });
        return z.NEVER;
      }
      return { kind: "smtp", host: m[1] as string, port };
    }),
  SENDMAIL_PATH: z
    .string()
    .optional()
    .transform((v) => (v === undefined || v === "" ? "/usr/sbin/sendmail" : v))
    .refine((v) => v.startsWith("/"), { message: "must be an absolute path" }),
  // Default from bench:handoff against the rendered Postfix + OpenDKIM: 4 at once handed off 1.8x the serial rate, 8 no
  // more than 4.
  RELAY_HANDOFF_CONCURRENCY: intVar(4, 1, 32),
  RELAY_RATE_LIMIT_PER_MIN: intVar(60, 1),
  RELAY_BODY_LIMIT_BYTES: intVar(524_288, 1024, 64 * 1024 * 1024),
  RELAY_MAX_MESSAGE_BYTES: intVar(0, 1024, MESSAGE_SIZE_FACTOR * 64 * 1024 * 1024),
  RELAY_MAX_RECIPIENTS: intVar(50, 1, 1000),
  RELAY_MIN_FREE_BYTES: intVar(100 * 1024 * 1024, 0),
  QUEUE_SENT_RETENTION_MS: intVar(7 * 24 * 3_600_000, 24 * 3_600_000),
  RELAY_POSTFIX_LOG: z
    .string()
    .optional()
    .transform((v) => (v === undefined || v.trim() === "" ? "/var/log/mail-relay/postfix.log" : v.trim()))
    .refine((v) => v === "off" || v.startsWith("/"), {
      message: 'must be an absolute path (Postfix\'s maillog_file) or "off"',
    }),
  RELAY_AUTO_SUPPRESS: z
    .enum(["true", "false"], { errorMap: () => ({ message: 'must be "true" or "false"' }) })
    .optional(),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]).optional(),
});

/** Checks the whole environment at once; throws one ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv): RelayConfig {
  const parsed = schema.safeParse(env);
  const noTokens = !env.SMTP_RELAY_TOKEN?.trim() && !env.SMTP_RELAY_TOKEN_SHA256?.trim();
  const tokensMissing = {
    variable: "SMTP_RELAY_TOKEN_SHA256",
    message: `required (or SMTP_RELAY_TOKEN): the callers' tokens, as name=<sha256 hex> or name=<token of ${MIN_TOKEN_LENGTH}+ characters>`,
  };
  if (!parsed.success) {
    throw new ConfigError([
      ...(noTokens ? [tokensMissing] : []),
      ...parsed.error.issues.map((i) => ({ variable: String(i.path[0] ?? "environment"), message: i.message })),
    ]);
  }
  const e = parsed.data;
  const problems: { variable: string; message: string }[] = [];
  const messageCeiling = defaultMaxMessageBytes(e.RELAY_BODY_LIMIT_BYTES);
  const maxMessageBytes = e.RELAY_MAX_MESSAGE_BYTES || messageCeiling;
  if (maxMessageBytes > messageCeiling) {
    problems.push({
      variable: "RELAY_MAX_MESSAGE_BYTES",
      message: `must be <= ${MESSAGE_SIZE_FACTOR} x RELAY_BODY_LIMIT_BYTES (${messageCeiling}): Postfix's message_size_limit is sized from that`,
    });
  }
  if (e.QUEUE_RETRY_MAX_MS < e.QUEUE_RETRY_BASE_MS) {
    problems.push({
      variable: "QUEUE_RETRY_MAX_MS",
      message: `must be >= QUEUE_RETRY_BASE_MS (${e.QUEUE_RETRY_BASE_MS})`,
    });
  }
  const tokens = e.SMTP_RELAY_TOKEN_SHA256 ?? e.SMTP_RELAY_TOKEN;
  if (e.SMTP_RELAY_TOKEN_SHA256 !== undefined && e.SMTP_RELAY_TOKEN !== undefined) {
    problems.push({
      variable: "SMTP_RELAY_TOKEN",
      message:
        "set SMTP_RELAY_TOKEN_SHA256 (digests, as on the host) or SMTP_RELAY_TOKEN (plaintext, for development), not both",
    });
  }
  if (tokens === undefined) problems.push(tokensMissing);
  for (const [caller, senders] of e.RELAY_CALLER_FROM) {
    if (tokens !== undefined && !tokens.some((t) => t.name === caller))
      problems.push({ variable: "RELAY_CALLER_FROM", message: `caller "${caller}" has no token` });
    for (const a of senders) {
      if (!e.RELAY_ALLOWED_FROM.includes(a))
        problems.push({
          variable: "RELAY_CALLER_FROM",
          message: `caller "${caller}": ${a} is not in RELAY_ALLOWED_FROM`,
        });
    }
  }
  const firstFrom = e.RELAY_ALLOWED_FROM[0] as string;
  const messageIdDomain = e.RELAY_MESSAGE_ID_DOMAIN || firstFrom.slice(firstFrom.lastIndexOf("@") + 1);
  const smtpIngress = smtpIngressConfig(e, messageIdDomain, problems);
  const hooks = parseWebhooks(
    env,
    (tokens ?? []).map((t) => t.name),
  );
  problems.push(...hooks.problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    listen: e.RELAY_LISTEN,
    ...(smtpIngress ? { smtpIngress } : {}),
    tokens: tokens ?? [],
    allowedFrom: new Set(e.RELAY_ALLOWED_FROM),
    callerFrom: e.RELAY_CALLER_FROM,
    quotas: {
      recipientsPerMin: e.RELAY_QUOTA_RECIPIENTS_PER_MIN,
      recipientsPerDay: e.RELAY_QUOTA_RECIPIENTS_PER_DAY,
      bytesPerMin: e.RELAY_QUOTA_BYTES_PER_MIN,
      bytesPerDay: e.RELAY_QUOTA_BYTES_PER_DAY,
    },
    messageIdDomain,
    queueRoot: e.QUEUE_ROOT,
    maxAttempts: e.QUEUE_MAX_ATTEMPTS,
    retryBaseMs: e.QUEUE_RETRY_BASE_MS,
    retryMaxMs: e.QUEUE_RETRY_MAX_MS,
    handoffTimeoutMs: e.SENDMAIL_TIMEOUT_MS,
    handoff: e.RELAY_HANDOFF.kind === "sendmail" ? { kind: "sendmail", path: e.SENDMAIL_PATH } : e.RELAY_HANDOFF,
    handoffConcurrency: e.RELAY_HANDOFF_CONCURRENCY,
    rateLimitPerMin: e.RELAY_RATE_LIMIT_PER_MIN,
    bodyLimitBytes: e.RELAY_BODY_LIMIT_BYTES,
    maxMessageBytes,
    maxRecipients: e.RELAY_MAX_RECIPIENTS,
    minFreeBytes: e.RELAY_MIN_FREE_BYTES,
    sentRetentionMs: e.QUEUE_SENT_RETENTION_MS,
    logLevel: e.LOG_LEVEL ?? "info",
    ...(e.RELAY_POSTFIX_LOG !== "off" ? { postfixLog: e.RELAY_POSTFIX_LOG } : {}),
    autoSuppress: e.RELAY_AUTO_SUPPRESS !== "false",
    webhooks: hooks.webhooks,
  };
}

/**
 * The SMTP ingress settings, or undefined when RELAY_SMTP_LISTEN is unset; a listener without its TLS files is a
 * problem.
 */
function smtpIngressConfig(
  e: Pick<
    z.infer<typeof schema>,
    "RELAY_SMTP_LISTEN" | "RELAY_SMTP_HOSTNAME" | "RELAY_SMTP_TLS_KEY" | "RELAY_SMTP_TLS_CERT"
  >,
  messageIdDomain: string,
  problems: { variable: string; message: string }[],
): SmtpIngressConfig | undefined {
  if (e.RELAY_SMTP_LISTEN === undefined) return undefined;
  for (const [variable, value, what] of [
    ["RELAY_SMTP_TLS_KEY", e.RELAY_SMTP_TLS_KEY, "private key"],
    ["RELAY_SMTP_TLS_CERT", e.RELAY_SMTP_TLS_CERT, "certificate"],
  ] as const) {
    if (!value)
      problems.push({
        variable,
        message: `required with RELAY_SMTP_LISTEN: the path of the listener's ${what} (PEM); STARTTLS is mandatory before AUTH`,
      });
  }
  return {
    listen: e.RELAY_SMTP_LISTEN,
    hostname: e.RELAY_SMTP_HOSTNAME || messageIdDomain,
    tlsKeyFile: e.RELAY_SMTP_TLS_KEY ?? "",
    tlsCertFile: e.RELAY_SMTP_TLS_CERT ?? "",
  };
}

/** The CLI only needs the queue location, so operators can run it without the tokens. */
export function loadQueueRoot(env: NodeJS.ProcessEnv): string {
  const root = env.QUEUE_ROOT || "/var/spool/mail-relay";
  if (!root.startsWith("/")) throw new ConfigError([{ variable: "QUEUE_ROOT", message: "must be an absolute path" }]);
  return root;
}
