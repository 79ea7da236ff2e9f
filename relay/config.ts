import { isIP } from "node:net";
import { z } from "zod";
import isEmail from "validator/lib/isEmail";
import isFQDN from "validator/lib/isFQDN";
import { defaultMaxMessageBytes, MESSAGE_SIZE_FACTOR } from "./host-contract";

/** One caller: a token and the name logs and rate limits use for it. */
export interface CallerToken {
  readonly name: string;
  readonly token: string;
}

export type HandoffConfig =
  | { readonly kind: "sendmail"; readonly path: string }
  | { readonly kind: "smtp"; readonly host: string; readonly port: number };

export interface RelayConfig {
  readonly listen: { readonly host: string; readonly port: number };
  readonly tokens: readonly CallerToken[];
  readonly allowedFrom: ReadonlySet<string>;
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
}

export const MIN_TOKEN_LENGTH = 32;

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

const emailOptions = { allow_display_name: false, require_tld: true, allow_ip_domain: false, allow_utf8_local_part: false };

/** `name=token` names a caller; a token without a name (or ending in base64 `=` padding) gets `caller-N`. */
export function parseTokens(raw: string): { tokens: CallerToken[]; problems: string[] } {
  const problems: string[] = [];
  const tokens: CallerToken[] = [];
  const parts = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (parts.length === 0) problems.push(`set at least one token of ${MIN_TOKEN_LENGTH}+ characters`);
  parts.forEach((part, i) => {
    const eq = part.indexOf("=");
    const rest = eq >= 0 ? part.slice(eq + 1) : "";
    const named = eq > 0 && !/^=*$/.test(rest);
    const name = named ? part.slice(0, eq) : `caller-${i + 1}`;
    const token = named ? rest : part;
    if (named && !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
      problems.push(`token #${i + 1}: the caller name before "=" may use only letters, digits, "_", "." and "-" (1-64 chars)`);
    }
    if (token.length < MIN_TOKEN_LENGTH) {
      problems.push(`token #${i + 1}${named ? ` (${name})` : ""} is ${token.length} characters; each token needs at least ${MIN_TOKEN_LENGTH}`);
    }
    if (/\s/.test(token)) problems.push(`token #${i + 1} contains whitespace`);
    tokens.push({ name, token });
  });
  const names = new Set<string>();
  const values = new Set<string>();
  for (const t of tokens) {
    if (names.has(t.name)) problems.push(`caller name "${t.name}" is used twice`);
    if (values.has(t.token)) problems.push(`the same token is listed twice`);
    names.add(t.name);
    values.add(t.token);
  }
  return { tokens, problems };
}

const schema = z.object({
  RELAY_LISTEN: z
    .string()
    .optional()
    .transform((v, ctx) => {
      const s = v === undefined || v.trim() === "" ? "127.0.0.1:2525" : v.trim();
      const m = /^(.+):(\d{1,5})$/.exec(s);
      const host = m?.[1]?.replace(/^\[(.*)\]$/, "$1");
      const port = Number(m?.[2]);
      if (!m || !host || isIP(host) === 0 || port < 0 || port > 65535) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: `must be IP:PORT such as 127.0.0.1:2525, got "${s}"` });
        return z.NEVER;
      }
      return { host, port };
    }),
  SMTP_RELAY_TOKEN: z
    .string({ required_error: `required: one or more comma-separated tokens of ${MIN_TOKEN_LENGTH}+ characters` })
    .transform((v, ctx) => {
      const { tokens, problems } = parseTokens(v);
      for (const p of problems) ctx.addIssue({ code: z.ZodIssueCode.custom, message: p });
      return tokens;
    }),
  RELAY_ALLOWED_FROM: z
    .string({ required_error: "required: comma-separated sender addresses callers may use as From" })
    .transform((v, ctx) => {
      const list = v.split(",").map((s) => s.trim().toLowerCase()).filter((s) => s !== "");
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
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: `must be "sendmail" or "smtp://HOST:PORT" (default smtp://127.0.0.1:25), got "${s}"` });
        return z.NEVER;
      }
      return { kind: "smtp", host: m[1] as string, port };
    }),
  SENDMAIL_PATH: z
    .string()
    .optional()
    .transform((v) => (v === undefined || v === "" ? "/usr/sbin/sendmail" : v))
    .refine((v) => v.startsWith("/"), { message: "must be an absolute path" }),
  // Default from bench:handoff against the rendered Postfix + OpenDKIM: 4 at once handed off 1.8x the serial rate, 8 no more than 4.
  RELAY_HANDOFF_CONCURRENCY: intVar(4, 1, 32),
  RELAY_RATE_LIMIT_PER_MIN: intVar(60, 1),
  RELAY_BODY_LIMIT_BYTES: intVar(524_288, 1024, 64 * 1024 * 1024),
  RELAY_MAX_MESSAGE_BYTES: intVar(0, 1024, MESSAGE_SIZE_FACTOR * 64 * 1024 * 1024),
  RELAY_MAX_RECIPIENTS: intVar(50, 1, 1000),
  RELAY_MIN_FREE_BYTES: intVar(100 * 1024 * 1024, 0),
  QUEUE_SENT_RETENTION_MS: intVar(7 * 24 * 3_600_000, 24 * 3_600_000),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]).optional(),
});

/** Checks the whole environment at once; throws one ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv): RelayConfig {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => ({ variable: String(i.path[0] ?? "environment"), message: i.message })),
    );
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
    problems.push({ variable: "QUEUE_RETRY_MAX_MS", message: `must be >= QUEUE_RETRY_BASE_MS (${e.QUEUE_RETRY_BASE_MS})` });
  }
  const firstFrom = e.RELAY_ALLOWED_FROM[0] as string;
  const messageIdDomain = e.RELAY_MESSAGE_ID_DOMAIN || firstFrom.slice(firstFrom.lastIndexOf("@") + 1);
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    listen: e.RELAY_LISTEN,
    tokens: e.SMTP_RELAY_TOKEN,
    allowedFrom: new Set(e.RELAY_ALLOWED_FROM),
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
  };
}

/** The CLI only needs the queue location, so operators can run it without the tokens. */
export function loadQueueRoot(env: NodeJS.ProcessEnv): string {
  const root = env.QUEUE_ROOT || "/var/spool/mail-relay";
  if (!root.startsWith("/")) throw new ConfigError([{ variable: "QUEUE_ROOT", message: "must be an absolute path" }]);
  return root;
}
