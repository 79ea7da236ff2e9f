// /etc/mail-relay.env: the relay's environment, read by systemd's EnvironmentFile=.
import { createHash } from "node:crypto";
import type { RelayEnvSettings } from "./types";
import { assertIntInRange, assertSingleLine } from "./validate";

/**
 * Characters systemd's EnvironmentFile= parser takes literally in an unquoted value: printable ASCII without
 * whitespace, quotes, backslash (escapes, line continuation), "$" and "`" (expansion in some versions/tools).
 * Anything else is refused rather than quoted, so what the relay reads is exactly what was configured.
 */
const ENV_SAFE = /^[\x21-\x7e]+$/;
const ENV_UNSAFE_CHARS = /["'\\$`]/;

function envValue(name: string, value: string): string {
  assertSingleLine(name, value);
  if (value === "" || !ENV_SAFE.test(value) || ENV_UNSAFE_CHARS.test(value)) {
    throw new Error(
      `${name}: value must be non-empty printable ASCII without spaces, quotes, backslash, ` +
        `"$" or "\`" (systemd's EnvironmentFile would change it)`,
    );
  }
  return value;
}

function list(name: string, items: readonly string[]): string {
  if (items.length === 0) throw new Error(`${name}: list at least one entry`);
  for (const i of items) {
    if (i.includes(",")) throw new Error(`${name}: an entry must not contain "," (it separates entries)`);
  }
  return envValue(name, items.join(","));
}

/** The relay's fixed variable names, in file order. */
export const RELAY_ENV_NAMES = [
  "RELAY_LISTEN",
  "SMTP_RELAY_TOKEN_SHA256",
  "RELAY_ALLOWED_FROM",
  "RELAY_CALLER_FROM",
  "RELAY_MESSAGE_ID_DOMAIN",
  "RELAY_RATE_LIMIT_PER_MIN",
  "RELAY_BODY_LIMIT_BYTES",
  "RELAY_MAX_RECIPIENTS",
  "RELAY_QUOTA_RECIPIENTS_PER_MIN",
  "RELAY_QUOTA_RECIPIENTS_PER_DAY",
  "RELAY_QUOTA_BYTES_PER_MIN",
  "RELAY_QUOTA_BYTES_PER_DAY",
  "RELAY_HANDOFF",
  "QUEUE_ROOT",
] as const;

/** The SMTP ingress's variables, appended only when it is on (the file is unchanged for a relay without it). */
export const RELAY_SMTP_ENV_NAMES = [
  "RELAY_SMTP_LISTEN",
  "RELAY_SMTP_HOSTNAME",
  "RELAY_SMTP_TLS_KEY",
  "RELAY_SMTP_TLS_CERT",
] as const;

export function renderRelayEnv(e: RelayEnvSettings): string {
  if (e.tokens.length === 0) throw new Error("SMTP_RELAY_TOKEN: configure at least one token");
  const names = new Set<string>();
  for (const t of e.tokens) {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(t.name)) {
      throw new Error(
        `SMTP_RELAY_TOKEN: caller name ${JSON.stringify(t.name)} may use only letters, digits, "_", "." and "-" (1-64)`,
      );
    }
    if (names.has(t.name)) throw new Error(`SMTP_RELAY_TOKEN: caller name "${t.name}" is used twice`);
    names.add(t.name);
    // The token is never echoed in an error message.
    for (const token of [t.token, ...(t.previous ?? [])]) {
      if (token.includes(",")) throw new Error(`SMTP_RELAY_TOKEN: the token of "${t.name}" contains ","`);
      envValue(`SMTP_RELAY_TOKEN (token of "${t.name}")`, token);
    }
    if ((t.previous ?? []).length > 1)
      throw new Error(`SMTP_RELAY_TOKEN: "${t.name}" has ${t.previous!.length} previous tokens; a rotation keeps one`);
  }
  for (const [name, v] of [
    ["RELAY_RATE_LIMIT_PER_MIN", e.rateLimitPerMin],
    ["RELAY_BODY_LIMIT_BYTES", e.bodyLimitBytes],
    ["RELAY_MAX_RECIPIENTS", e.maxRecipients],
    ["RELAY_QUOTA_RECIPIENTS_PER_MIN", e.quotas.recipientsPerMin],
    ["RELAY_QUOTA_RECIPIENTS_PER_DAY", e.quotas.recipientsPerDay],
    ["RELAY_QUOTA_BYTES_PER_MIN", e.quotas.bytesPerMin],
    ["RELAY_QUOTA_BYTES_PER_DAY", e.quotas.bytesPerDay],
  ] as const) {
    assertIntInRange(name, v, 1, Number.MAX_SAFE_INTEGER);
  }
  const allowed = new Set(e.allowedFrom);
  for (const c of e.callerFrom) {
    if (!names.has(c.name)) throw new Error(`RELAY_CALLER_FROM: caller "${c.name}" has no token`);
    if (c.senders.length === 0) throw new Error(`RELAY_CALLER_FROM: caller "${c.name}" lists no sender`);
    for (const a of c.senders) {
      if (!allowed.has(a)) throw new Error(`RELAY_CALLER_FROM: ${a} (caller "${c.name}") is not in RELAY_ALLOWED_FROM`);
      if (/[;,=]/.test(a)) throw new Error(`RELAY_CALLER_FROM: ${a} must not contain ";", "," or "="`);
    }
  }
  // An empty value is how "no caller has its own list" is written; envValue refuses empty, so it is set apart.
  const callerFrom = e.callerFrom.map((c) => `${c.name}=${c.senders.join(";")}`).join(",");
  const values: Record<(typeof RELAY_ENV_NAMES)[number], string> = {
    RELAY_LISTEN: envValue("RELAY_LISTEN", e.listen),
    // Digests only: the relay compares SHA-256(presented token) with them, so the host never holds a usable token.
    SMTP_RELAY_TOKEN_SHA256: e.tokens
      .map(
        (t) =>
          `${t.name}=${[t.token, ...(t.previous ?? [])]
            .map((x) => createHash("sha256").update(x, "utf8").digest("hex"))
            .join("|")}`,
      )
      .join(","),
    RELAY_ALLOWED_FROM: list("RELAY_ALLOWED_FROM", e.allowedFrom),
    RELAY_CALLER_FROM: callerFrom === "" ? "" : envValue("RELAY_CALLER_FROM", callerFrom),
    RELAY_MESSAGE_ID_DOMAIN: envValue("RELAY_MESSAGE_ID_DOMAIN", e.messageIdDomain),
    RELAY_RATE_LIMIT_PER_MIN: String(e.rateLimitPerMin),
    RELAY_BODY_LIMIT_BYTES: String(e.bodyLimitBytes),
    RELAY_MAX_RECIPIENTS: String(e.maxRecipients),
    RELAY_QUOTA_RECIPIENTS_PER_MIN: String(e.quotas.recipientsPerMin),
    RELAY_QUOTA_RECIPIENTS_PER_DAY: String(e.quotas.recipientsPerDay),
    RELAY_QUOTA_BYTES_PER_MIN: String(e.quotas.bytesPerMin),
    RELAY_QUOTA_BYTES_PER_DAY: String(e.quotas.bytesPerDay),
    RELAY_HANDOFF: envValue("RELAY_HANDOFF", e.handoff),
    QUEUE_ROOT: envValue("QUEUE_ROOT", e.queueRoot),
  };
  const smtp = e.smtpIngress;
  const smtpValues: Record<(typeof RELAY_SMTP_ENV_NAMES)[number], string> | undefined = smtp && {
    RELAY_SMTP_LISTEN: envValue("RELAY_SMTP_LISTEN", smtp.listen),
    RELAY_SMTP_HOSTNAME: envValue("RELAY_SMTP_HOSTNAME", smtp.hostname),
    RELAY_SMTP_TLS_KEY: envValue("RELAY_SMTP_TLS_KEY", smtp.tlsKeyFile),
    RELAY_SMTP_TLS_CERT: envValue("RELAY_SMTP_TLS_CERT", smtp.tlsCertFile),
  };
  const lines = [
    ...RELAY_ENV_NAMES.map((k) => `${k}=${values[k]}`),
    ...(smtpValues ? RELAY_SMTP_ENV_NAMES.map((k) => `${k}=${smtpValues[k]}`) : []),
  ];
  if (e.autoSuppress === false) lines.push("RELAY_AUTO_SUPPRESS=false");
  const hooks = e.webhooks ?? [];
  if (hooks.length > 0) {
    for (const h of hooks) {
      if (!names.has(h.caller)) throw new Error(`RELAY_WEBHOOK_URLS: "${h.caller}" is not a caller`);
      if (!/^https:\/\/[^\s,|]+$/.test(h.url))
        throw new Error(`RELAY_WEBHOOK_URLS: the URL of "${h.caller}" must be https:// without spaces, "," or "|"`);
      for (const secret of [h.secret, ...(h.previous ?? [])])
        if (!/^whsec_[A-Za-z0-9+/]+=*$/.test(secret))
          throw new Error(`RELAY_WEBHOOK_SECRETS: the secret of "${h.caller}" is not whsec_<base64>`);
    }
    lines.push(
      `RELAY_WEBHOOK_URLS=${envValue("RELAY_WEBHOOK_URLS", hooks.map((h) => `${h.caller}=${h.url}`).join(","))}`,
    );
    lines.push(
      `RELAY_WEBHOOK_EVENTS=${envValue(
        "RELAY_WEBHOOK_EVENTS",
        hooks.map((h) => `${h.caller}=${h.events.join("+")}`).join(","),
      )}`,
    );
    // Current first: the relay signs with every secret listed (Standard Webhooks: several signatures per message).
    const secrets = hooks.map((h) => `${h.caller}=${[h.secret, ...(h.previous ?? [])].join("|")}`);
    lines.push(`RELAY_WEBHOOK_SECRETS=${secrets.join(",")}`);
  }
  return lines.join("\n") + "\n";
}
