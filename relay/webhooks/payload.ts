import type { DeliveryEvent } from "../storage";

export type WebhookEventType =
  "email.delivered" | "email.delivery_delayed" | "email.bounced" | "email.expired" | "email.suppressed";
/** Per-caller subscription names (config) -> event types. */
export const WEBHOOK_EVENTS = {
  delivered: "email.delivered",
  deferred: "email.delivery_delayed",
  bounced: "email.bounced",
  expired: "email.expired",
  suppressed: "email.suppressed",
} as const;
export type WebhookSubscription = keyof typeof WEBHOOK_EVENTS;
export const DEFAULT_WEBHOOK_EVENTS: readonly WebhookSubscription[] = ["delivered", "bounced", "expired"];

export interface WebhookPayload {
  readonly type: WebhookEventType;
  readonly created_at: string;
  readonly data: Record<string, unknown>;
}

/** The body for one delivery event (Resend's shape: type, created_at, data). */
export function deliveryPayload(e: DeliveryEvent): WebhookPayload {
  const type = WEBHOOK_EVENTS[e.state];
  const data: Record<string, unknown> = {
    email_id: e.messageId,
    to: e.recipient,
    ...(e.dsn !== undefined ? { dsn: e.dsn } : {}),
    ...(e.reply !== undefined ? { remote_reply: e.reply } : {}),
    attempts: e.attempts,
  };
  if (e.state === "bounced") data.bounce = { type: e.hard ? "hard" : "soft", dsn: e.dsn, message: e.reply };
  if (e.state === "deferred" && e.retryEstimateAt !== undefined)
    data.next_retry_estimate = new Date(e.retryEstimateAt).toISOString();
  return { type, created_at: new Date(e.at).toISOString(), data };
}

export function suppressedPayload(e: DeliveryEvent): WebhookPayload {
  return {
    type: "email.suppressed",
    created_at: new Date(e.at).toISOString(),
    data: { email_id: e.messageId, to: e.recipient, reason: "hard_bounce", dsn: e.dsn },
  };
}
