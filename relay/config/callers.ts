/**
 * The callers as the environment names them: their tokens (or the tokens' digests), the senders each may use, and
 * their webhooks. Each parser returns its problems instead of throwing, so relay/config.ts reports them all at once.
 */
import { createHash } from "node:crypto";
import isEmail from "validator/lib/isEmail";

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

/** validator's isEmail options: a bare address (no display name), an ASCII local part, a domain with a TLD. */
export const emailOptions = {
  allow_display_name: false,
  require_tld: true,
  allow_ip_domain: false,
  allow_utf8_local_part: false,
};

export const MIN_TOKEN_LENGTH = 32;

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
        `token #${i + 1}${named ? ` (${name})` : ""} is ${token.length} characters; ` +
          `each token needs at least ${MIN_TOKEN_LENGTH}`,
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

/** A caller's digests: one, or two while its token is rotated (old and new both authenticate until the old goes). */
export const MAX_TOKENS_PER_CALLER = 2;

/**
 * `name=<64 hex digits>,...`: the SHA-256 of each caller's token, as the deploy step writes it on the host; during a
 * rotation `name=<hex>|<hex>`, and each digest authenticates as the same caller (one rate limit, one quota).
 */
export function parseTokenDigests(raw: string): { tokens: CallerToken[]; problems: string[] } {
  const problems: string[] = [];
  const tokens: CallerToken[] = [];
  const parts = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (parts.length === 0) problems.push("set at least one name=<sha256 hex> entry");
  const entries = new Set<string>();
  parts.forEach((part, i) => {
    const m = /^([A-Za-z0-9_.-]{1,64})=([0-9a-fA-F]{64}(?:\|[0-9a-fA-F]{64})*)$/.exec(part);
    if (!m) {
      problems.push(
        `entry #${i + 1} must be name=<64 hex digits> (the SHA-256 of the caller's token), or ` +
          `name=<hex>|<hex> while its token is rotated`,
      );
      return;
    }
    const name = m[1] as string;
    const digests = (m[2] as string).toLowerCase().split("|");
    if (entries.has(name))
      problems.push(
        `caller name "${name}" is used twice (a rotation lists both digests in one entry: name=<hex>|<hex>)`,
      );
    entries.add(name);
    if (digests.length > MAX_TOKENS_PER_CALLER)
      problems.push(
        `entry #${i + 1} (${name}) lists ${digests.length} digests; at most ${MAX_TOKENS_PER_CALLER} (old and new ` +
          `during a rotation)`,
      );
    for (const sha256 of digests) tokens.push({ name, sha256 });
  });
  const digestsSeen = new Set<string>();
  for (const t of tokens) {
    if (digestsSeen.has(t.sha256)) problems.push(`the same token is listed twice`);
    digestsSeen.add(t.sha256);
  }
  return { tokens, problems };
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
