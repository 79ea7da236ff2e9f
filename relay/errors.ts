/**
 * Every error the relay answers with, in one place: code -> HTTP status. 4xx say exactly what was wrong; 5xx stay
 * generic.
 */
export const ERROR_STATUS = {
  unauthorized: 401,
  invalid_json: 400,
  invalid_field: 400,
  invalid_address: 400,
  address_needs_quoting: 400,
  confusable_domain: 400,
  invalid_author: 400,
  header_injection: 400,
  header_not_allowed: 400,
  from_not_allowed: 400,
  too_many_recipients: 400,
  subject_too_long: 400,
  missing_body: 400,
  invalid_attachment: 400,
  invalid_idempotency_key: 400,
  forbidden: 403,
  not_found: 404,
  idempotency_conflict: 409,
  recipient_suppressed: 422,
  from_not_signable: 422,
  payload_too_large: 413,
  message_too_large: 413,
  unsupported_media_type: 415,
  message_too_complex: 422,
  rate_limited: 429,
  quota_exceeded: 429,
  internal: 500,
  queue_unavailable: 503,
  disk_nearly_full: 503,
  handoff_unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/**
 * When each code is answered. docs/relay-api.md's error table is generated from this and ERROR_STATUS (npm run
 * docs:gen).
 */
export const ERROR_MEANING: Record<ErrorCode, string> = {
  unauthorized: "Missing, malformed or wrong bearer token (checked first, before the body is read).",
  invalid_json: "Body is not valid JSON (or is empty).",
  invalid_field:
    "Missing, wrongly typed or unknown field, blank subject, bad tag, " +
    "over-long header value (the message names the field).",
  invalid_address: "An address in from/to/cc/bcc/replyTo is not valid or starts with `-`.",
  address_needs_quoting:
    'An address whose local part needs quoting (e.g. `"x>y"@example.net`): refused on both doors, because Postfix, ' +
    "receivers and the relay's log reader disagree on where it ends. A quoted local part that needs no quoting " +
    '(`"gone"@example.net`) is the same mailbox as the unquoted one and is accepted as that.',
  confusable_domain:
    "A domain label that mixes scripts (Latin with Cyrillic, Greek, ...) or is written only in letters that look " +
    "Latin: it reads as another domain than it is.",
  invalid_author:
    "SMTP door: the From: or Sender: field is not exactly one RFC 5322 mailbox (a group, a list, `<>`, obsolete " +
    "syntax, a comment, or a display name that reads as an address, also inside an encoded word).",
  header_injection: "CR, LF or NUL in a header field.",
  header_not_allowed:
    "A custom header that is not an `X-` header, an `X-` header reserved for the MTA or filters (`X-Spam-*`, " +
    "`X-MS-Exchange-*`, ...), or more than 20.",
  from_not_allowed:
    "`from` (HTTP), or MAIL FROM, From: or Sender: (SMTP) is not among the caller's allowed senders (its own list, " +
    "else `RELAY_ALLOWED_FROM`), compared in canonical form.",
  too_many_recipients:
    "to + cc + bcc (HTTP, counted as given, before any address is parsed) or the distinct RCPT TO (SMTP) > " +
    "`RELAY_MAX_RECIPIENTS`.",
  subject_too_long: "Subject over 200 characters.",
  missing_body: "Neither `text` nor `html`.",
  invalid_attachment: "Attachment content not base64, a bad content type, or a `message/*` type.",
  invalid_idempotency_key: "`Idempotency-Key` empty, over 256 characters or not visible ASCII.",
  forbidden: "`/metrics` from a non-loopback caller or with a tunnel header.",
  not_found: "Unknown message id (or another caller's), unknown route.",
  recipient_suppressed:
    "A recipient (to, cc or bcc) is on the suppression list (a hard bounce, or added by you or the operator); " +
    "the message names every such address and nothing is queued. See `GET /suppressions`.",
  from_not_signable:
    "The From: domain of the message as queued is not one OpenDKIM signs (the domains of `RELAY_ALLOWED_FROM`): " +
    "the relay's last check before a message enters the queue; nothing unsigned leaves.",
  idempotency_conflict: "Same `Idempotency-Key` within 24 h with a different body.",
  payload_too_large: "Body over `RELAY_BODY_LIMIT_BYTES`.",
  message_too_complex:
    "HTML with more than 5,000 elements or nested deeper than 64 (checked by a linear scan before any parser runs), " +
    "or a composition that overran its deadline.",
  quota_exceeded:
    "Over a per-caller recipient or byte quota (per minute or per UTC day); " +
    "the message names the quota and when it frees up.",
  message_too_large:
    "The composed message is over `RELAY_MAX_MESSAGE_BYTES` (e.g. HTML-only with many `<hr>`: " +
    "html-to-text makes each a 78-character line).",
  unsupported_media_type: "Body not sent as `application/json`.",
  rate_limited:
    "Over `RELAY_RATE_LIMIT_PER_MIN` for this token; with `Retry-After` and " +
    "`RateLimit-Limit`/`-Remaining`/`-Reset` headers.",
  internal: "Unexpected error (the detail goes to the log).",
  queue_unavailable: "The job could not be written (or `/ready`: the queue is not writable).",
  disk_nearly_full: "Free space under `RELAY_MIN_FREE_BYTES` (or ENOSPC).",
  handoff_unavailable: "`/ready` only: Postfix is not reachable.",
};

/** An error the HTTP layer turns into `{"ok":false,"error":{code,message}}` with the code's status. */
export class RelayError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  /** The offending request field, for 400s. */
  readonly field?: string;

  constructor(code: ErrorCode, message: string, field?: string) {
    super(message);
    this.name = "RelayError";
    this.code = code;
    this.statusCode = ERROR_STATUS[code];
    this.field = field;
  }
}

/** Generic text for 5xx answers: the detail goes to the log, never to the caller. */
export const GENERIC_5XX: Record<
  "internal" | "queue_unavailable" | "disk_nearly_full" | "handoff_unavailable",
  string
> = {
  internal: "internal error",
  queue_unavailable: "the queue is unavailable; retry later",
  disk_nearly_full: "the queue disk is nearly full; retry later",
  handoff_unavailable: "postfix is not reachable",
};

export interface ErrorBody {
  ok: false;
  error: { code: ErrorCode; message: string; field?: string };
}

export function errorBody(err: RelayError): ErrorBody {
  const error: ErrorBody["error"] = { code: err.code, message: err.message };
  if (err.field !== undefined) error.field = err.field;
  return { ok: false, error };
}

/**
 * The SMTP ingress's reply for each code (relay/smtp-ingress.ts), with its RFC 3463 enhanced status: 4xx tells the
 * client to try again later (queue down, rate limited), 5xx never to retry (sender not allowed, too large, too many
 * recipients). A code the HTTP API adds must be mapped here too (the Record makes tsc say so).
 */
export const SMTP_REPLY: Record<ErrorCode, { readonly code: number; readonly enhanced: string }> = {
  unauthorized: { code: 535, enhanced: "5.7.8" },
  invalid_json: { code: 554, enhanced: "5.6.0" },
  invalid_field: { code: 554, enhanced: "5.6.0" },
  invalid_address: { code: 553, enhanced: "5.1.3" },
  address_needs_quoting: { code: 553, enhanced: "5.1.3" },
  confusable_domain: { code: 553, enhanced: "5.1.3" },
  invalid_author: { code: 550, enhanced: "5.7.1" },
  header_injection: { code: 554, enhanced: "5.6.0" },
  header_not_allowed: { code: 550, enhanced: "5.7.1" },
  from_not_allowed: { code: 550, enhanced: "5.7.1" },
  too_many_recipients: { code: 550, enhanced: "5.5.3" },
  subject_too_long: { code: 554, enhanced: "5.6.0" },
  missing_body: { code: 554, enhanced: "5.6.0" },
  invalid_attachment: { code: 554, enhanced: "5.6.0" },
  invalid_idempotency_key: { code: 554, enhanced: "5.6.0" },
  forbidden: { code: 550, enhanced: "5.7.1" },
  not_found: { code: 550, enhanced: "5.1.1" },
  idempotency_conflict: { code: 554, enhanced: "5.6.0" },
  payload_too_large: { code: 552, enhanced: "5.3.4" },
  message_too_large: { code: 552, enhanced: "5.3.4" },
  message_too_complex: { code: 554, enhanced: "5.6.0" },
  quota_exceeded: { code: 452, enhanced: "4.5.3" },
  recipient_suppressed: { code: 550, enhanced: "5.7.1" },
  from_not_signable: { code: 550, enhanced: "5.7.1" },
  unsupported_media_type: { code: 554, enhanced: "5.6.0" },
  rate_limited: { code: 451, enhanced: "4.7.1" },
  internal: { code: 451, enhanced: "4.3.0" },
  queue_unavailable: { code: 451, enhanced: "4.3.0" },
  disk_nearly_full: { code: 452, enhanced: "4.3.1" },
  handoff_unavailable: { code: 451, enhanced: "4.3.0" },
};
