/**
 * The relay's error codes (relay/errors.ts ERROR_STATUS is the source; test/client/codes.test.ts ties this list to
 * it, so a code the relay adds fails the tests until it is added here).
 */
export const RELAY_ERROR_CODES = [
  "unauthorized",
  "invalid_json",
  "invalid_field",
  "invalid_address",
  "address_needs_quoting",
  "confusable_domain",
  "invalid_author",
  "header_injection",
  "header_not_allowed",
  "from_not_allowed",
  "too_many_recipients",
  "subject_too_long",
  "missing_body",
  "invalid_attachment",
  "invalid_idempotency_key",
  "forbidden",
  "not_found",
  "idempotency_conflict",
  "recipient_suppressed",
  "from_not_signable",
  "payload_too_large",
  "message_too_large",
  "unsupported_media_type",
  "message_too_complex",
  "rate_limited",
  "quota_exceeded",
  "internal",
  "queue_unavailable",
  "disk_nearly_full",
  "handoff_unavailable",
] as const;

export type RelayErrorCode = (typeof RELAY_ERROR_CODES)[number];

const KNOWN_CODES: ReadonlySet<string> = new Set(RELAY_ERROR_CODES);

export function isRelayErrorCode(code: unknown): code is RelayErrorCode {
  return typeof code === "string" && KNOWN_CODES.has(code);
}

/** The relay answered with its own error body: `{"ok":false,"error":{code,message,field?}}`. */
export class RelayApiError extends Error {
  readonly code: RelayErrorCode;
  readonly status: number;
  /** The request field the error is about (400s). */
  readonly field?: string;
  /** From a 429's Retry-After, when the relay gave one. */
  readonly retryAfterMs?: number;
  /** How many HTTP attempts were made before this error was final. */
  readonly attempts: number;

  constructor(
    code: RelayErrorCode,
    status: number,
    message: string,
    o: { field?: string; retryAfterMs?: number; attempts: number },
  ) {
    super(`${status} ${code}: ${message}`);
    this.name = "RelayApiError";
    this.code = code;
    this.status = status;
    this.attempts = o.attempts;
    if (o.field !== undefined) this.field = o.field;
    if (o.retryAfterMs !== undefined) this.retryAfterMs = o.retryAfterMs;
  }
}

/**
 * An HTTP answer that is not the relay's own: Cloudflare Access refusing the service token (403), the tunnel's 404
 * for a path outside its ingress, a 502 when the relay is down behind the tunnel.
 */
export class RelayHttpError extends Error {
  readonly status: number;
  /** The first 500 characters of the body, for the log. */
  readonly body: string;
  readonly attempts: number;

  constructor(status: number, body: string, attempts: number) {
    super(`HTTP ${status} not from the relay (the edge, Access or the tunnel answered): ${body.slice(0, 200)}`);
    this.name = "RelayHttpError";
    this.status = status;
    this.body = body.slice(0, 500);
    this.attempts = attempts;
  }
}

/** No HTTP answer at all (DNS, connection refused or reset, the per-request timeout), after every retry. */
export class RelayNetworkError extends Error {
  readonly attempts: number;

  constructor(message: string, attempts: number, cause: unknown) {
    super(message, { cause });
    this.name = "RelayNetworkError";
    this.attempts = attempts;
  }
}

/** waitFor ran out of time; `last` is the last status read. */
export class RelayTimeoutError extends Error {
  readonly last: unknown;

  constructor(message: string, last: unknown) {
    super(message);
    this.name = "RelayTimeoutError";
    this.last = last;
  }
}
