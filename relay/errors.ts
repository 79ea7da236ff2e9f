/** Every error the relay answers with, in one place: code -> HTTP status. 4xx say exactly what was wrong; 5xx stay generic. */
export const ERROR_STATUS = {
  unauthorized: 401,
  invalid_json: 400,
  invalid_field: 400,
  invalid_address: 400,
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
  payload_too_large: 413,
  message_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  internal: 500,
  queue_unavailable: 503,
  disk_nearly_full: 503,
  handoff_unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

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
export const GENERIC_5XX: Record<"internal" | "queue_unavailable" | "disk_nearly_full" | "handoff_unavailable", string> = {
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
  unsupported_media_type: { code: 554, enhanced: "5.6.0" },
  rate_limited: { code: 451, enhanced: "4.7.1" },
  internal: { code: 451, enhanced: "4.3.0" },
  queue_unavailable: { code: 451, enhanced: "4.3.0" },
  disk_nearly_full: { code: 452, enhanced: "4.3.1" },
  handoff_unavailable: { code: 451, enhanced: "4.3.0" },
};
