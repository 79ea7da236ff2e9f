import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/** Standard Webhooks (as Svix and Resend): `whsec_` + base64 of the HMAC key. */
export const SECRET_PREFIX = "whsec_";
/** Receivers refuse timestamps further than this from their clock (replays). */
export const TOLERANCE_SECONDS = 5 * 60;

export function newWebhookSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString("base64");
}

function keyOf(secret: string): Buffer {
  if (!secret.startsWith(SECRET_PREFIX)) throw new Error(`a webhook secret starts with ${SECRET_PREFIX}`);
  const key = Buffer.from(secret.slice(SECRET_PREFIX.length), "base64");
  if (key.length < 16) throw new Error("a webhook secret holds at least 16 bytes of key");
  return key;
}

/**
 * `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`; with several secrets (rotation) the signatures are space-separated.
 */
export function signWebhook(secrets: readonly string[], id: string, timestampSeconds: number, body: string): string {
  return secrets
    .map((s) => `v1,${createHmac("sha256", keyOf(s)).update(`${id}.${timestampSeconds}.${body}`).digest("base64")}`)
    .join(" ");
}

/** The headers the relay sends with every webhook. The id is the event's id, the same on every retry. */
export function webhookHeaders(
  secrets: readonly string[],
  id: string,
  timestampSeconds: number,
  body: string,
): Record<string, string> {
  return {
    "webhook-id": id,
    "webhook-timestamp": String(timestampSeconds),
    "webhook-signature": signWebhook(secrets, id, timestampSeconds, body),
    "content-type": "application/json",
  };
}

/** The receiver's check (docs and tests): a valid v1 signature for one of the secrets, a timestamp within 5 minutes. */
export function verifyWebhook(
  secret: string,
  headers: Record<string, string | undefined>,
  body: string,
  nowSeconds = Math.floor(Date.now() / 1000),
): boolean {
  const id = headers["webhook-id"];
  const ts = Number(headers["webhook-timestamp"]);
  const sig = headers["webhook-signature"];
  if (!id || !sig || !Number.isInteger(ts) || Math.abs(nowSeconds - ts) > TOLERANCE_SECONDS) return false;
  const expected = Buffer.from(signWebhook([secret], id, ts, body).slice(3), "base64");
  return sig.split(" ").some((s) => {
    const [v, b64] = s.split(",", 2);
    const got = Buffer.from(b64 ?? "", "base64");
    return v === "v1" && got.length === expected.length && timingSafeEqual(got, expected);
  });
}
