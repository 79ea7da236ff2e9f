/**
 * The relay's environment (/etc/mail-relay.env), one zod schema per variable: defaults, bounds and the per-variable
 * messages. Checks across variables are in relay/config.ts.
 */
import { isIP } from "node:net";
import { z } from "zod";
import isEmail from "validator/lib/isEmail";
import isFQDN from "validator/lib/isFQDN";
import { MESSAGE_SIZE_FACTOR, RELAY_SMTP_PORT } from "../host-contract";
import { emailOptions, parseCallerFrom, parseTokenDigests, parseTokens } from "./callers";

/** Per-caller quotas, counted in fixed windows (the minute, the UTC day) in memory; a restart starts them afresh. */
export interface Quotas {
  readonly recipientsPerMin: number;
  readonly recipientsPerDay: number;
  readonly bytesPerMin: number;
  readonly bytesPerDay: number;
}

/** Per caller: about 10x a busy transactional sender, far below what a stolen token could otherwise spray. */
export const DEFAULT_QUOTAS: Quotas = {
  recipientsPerMin: 500,
  recipientsPerDay: 10_000,
  bytesPerMin: 50 * 1024 * 1024,
  bytesPerDay: 1024 * 1024 * 1024,
};

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

export const envSchema = z.object({
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
  RELAY_FAST_PATH: z.enum(["true", "false"], { errorMap: () => ({ message: 'must be "true" or "false"' }) }).optional(),
  // How long a request waits for a busy pooled connection before its message is queued instead (docs/operations.md).
  RELAY_FAST_PATH_WAIT_MS: intVar(1000, 0, 30_000),
  RELAY_AUTO_SUPPRESS: z
    .enum(["true", "false"], { errorMap: () => ({ message: 'must be "true" or "false"' }) })
    .optional(),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]).optional(),
});

/** The environment as parsed: each variable with its default, nothing checked across variables yet. */
export type RelayEnv = z.output<typeof envSchema>;
