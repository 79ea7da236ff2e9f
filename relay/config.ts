/**
 * The relay's configuration, checked once at startup: ./config/env.ts reads each variable, ./config/callers.ts the
 * callers' tokens, senders and webhooks; here they are checked against each other, and the relay refuses to start
 * with one message naming every bad variable.
 */
import { defaultMaxMessageBytes, MESSAGE_SIZE_FACTOR } from "./host-contract";
import { MIN_TOKEN_LENGTH, parseWebhooks, type CallerToken, type CallerWebhookConfig } from "./config/callers";
import { envSchema, type Quotas, type RelayEnv } from "./config/env";

export {
  callerToken,
  MIN_TOKEN_LENGTH,
  parseCallerFrom,
  parseTokenDigests,
  parseTokens,
  parseWebhooks,
  tokenSha256,
  type CallerToken,
  type CallerWebhookConfig,
} from "./config/callers";
export { DEFAULT_QUOTAS, type Quotas, type RelayEnv } from "./config/env";

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
  /** Hand a new message to Postfix during the request when possible (SMTP hand-off only; relay/fast-path.ts). */
  readonly fastPath: boolean;
  /** How long a fast-path request waits for a busy pooled connection before the message is queued (0: not at all). */
  readonly fastPathWaitMs: number;
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

/** Checks the whole environment at once; throws one ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv): RelayConfig {
  const parsed = envSchema.safeParse(env);
  const noTokens = !env.SMTP_RELAY_TOKEN?.trim() && !env.SMTP_RELAY_TOKEN_SHA256?.trim();
  const tokensMissing = {
    variable: "SMTP_RELAY_TOKEN_SHA256",
    message:
      `required (or SMTP_RELAY_TOKEN): the callers' tokens, as name=<sha256 hex> or name=<token ` +
      `of ${MIN_TOKEN_LENGTH}+ characters>`,
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
      message:
        `must be <= ${MESSAGE_SIZE_FACTOR} x RELAY_BODY_LIMIT_BYTES (${messageCeiling}): ` +
        `Postfix's message_size_limit is sized from that`,
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
        "set SMTP_RELAY_TOKEN_SHA256 (digests, as on the host) or SMTP_RELAY_TOKEN (plaintext, " +
        "for development), not both",
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
    fastPath: e.RELAY_FAST_PATH !== "false",
    fastPathWaitMs: e.RELAY_FAST_PATH_WAIT_MS,
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
  e: Pick<RelayEnv, "RELAY_SMTP_LISTEN" | "RELAY_SMTP_HOSTNAME" | "RELAY_SMTP_TLS_KEY" | "RELAY_SMTP_TLS_CERT">,
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
        message:
          `required with RELAY_SMTP_LISTEN: the path of the listener's ${what} (PEM); ` +
          `STARTTLS is mandatory before AUTH`,
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
