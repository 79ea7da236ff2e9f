/** The shapes of the relay's HTTP API (docs/relay-api.md; the request schema is relay/validate.ts). */

/** `"user@example.com"` or `{ email, name }` (a display name goes in the object form). */
export type Address = string | { readonly email: string; readonly name?: string };

/** The body of POST /send. Unknown fields are refused by the relay (400 invalid_field). */
export interface SendMessage {
  readonly from: Address;
  readonly to: Address | readonly Address[];
  readonly cc?: Address | readonly Address[];
  readonly bcc?: Address | readonly Address[];
  readonly replyTo?: Address | readonly Address[];
  readonly subject: string;
  readonly text?: string;
  readonly html?: string;
  /** `content` is base64. */
  readonly attachments?: readonly {
    readonly filename: string;
    readonly contentType?: string;
    readonly content: string;
  }[];
  /** `X-` headers only (the relay refuses others with 400 header_not_allowed). */
  readonly headers?: Readonly<Record<string, string>>;
  readonly tags?: readonly string[];
}

/**
 * Every state GET /messages/:id can report: the queue's (before Postfix has the message) and the delivery
 * tracker's (after). test/client/codes.test.ts ties this list to relay/storage/job.ts and
 * relay/storage/delivery-store.ts.
 */
export const MESSAGE_STATES = [
  "queued",
  "sending",
  "failed",
  "handed_off",
  "delivered",
  "partially_delivered",
  "deferred",
  "bounced",
  "expired",
] as const;
export type MessageState = (typeof MESSAGE_STATES)[number];

/** States after which nothing changes any more: what waitFor waits for by default. */
export const FINAL_STATES: readonly MessageState[] = [
  "delivered",
  "partially_delivered",
  "bounced",
  "expired",
  "failed",
];

export type RecipientState = "pending" | "delivered" | "deferred" | "bounced" | "expired";

export interface RecipientStatus {
  readonly email: string;
  readonly state: RecipientState;
  readonly attempts: number;
  readonly dsn?: string;
  /** The MX's answer, or Postfix's reason. */
  readonly remoteReply?: string;
  readonly at?: string;
  readonly nextRetryEstimate?: string;
}

/** GET /messages/:id's `message`. */
export interface MessageStatus {
  readonly id: string;
  readonly state: MessageState;
  readonly attempts?: number;
  readonly createdAt?: number;
  readonly nextAttemptAt?: number;
  readonly lastError?: string;
  readonly handedOffAt?: number;
  readonly postfixQueueId?: string;
  readonly recipients?: readonly RecipientStatus[];
}

export interface SendResult {
  readonly id: string;
  /** True when the relay answered from its idempotency record (`Idempotent-Replayed: true`): nothing new was queued. */
  readonly replayed: boolean;
  /** The Idempotency-Key the request carried (generated unless the caller gave one). */
  readonly idempotencyKey: string;
  /** HTTP attempts it took (more than 1 after a retried network error, 429 or 5xx). */
  readonly attempts: number;
}

/** GET /messages: the caller's handed-off messages, oldest hand-off first. */
export interface MessagePage {
  readonly messages: readonly {
    readonly id: string;
    readonly handedOffAt: number;
    readonly state: MessageState;
    readonly recipients: readonly RecipientStatus[];
  }[];
  /** Absent on the last page. */
  readonly nextCursor?: string;
}

export interface Suppression {
  readonly email: string;
  readonly reason: "hard_bounce" | "manual";
  readonly origin: "automatic" | "caller" | "operator";
  readonly createdAt: string;
  readonly messageId?: string;
  readonly dsn?: string;
}
