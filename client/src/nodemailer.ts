/**
 * A nodemailer transport on the relay's HTTP API: an app that sends with nodemailer switches by changing its
 * transport, `nodemailer.createTransport(relayTransport({ url, token, accessClientId, accessClientSecret }))`.
 * nodemailer itself is not imported: nodemailer hands this object each message (its `send(mail, callback)` contract).
 */
import { RelayClient, type RelayClientOptions } from "./client.js";
import type { Address, SendMessage } from "./types.js";

/** What nodemailer hands a transport: the message's data and normalize(), which resolves content and addresses. */
export interface NodemailerMail {
  readonly data: Record<string, unknown>;
  normalize(callback: (err: Error | null, data?: Record<string, unknown>) => void): void;
}

export interface RelayTransportInfo {
  readonly envelope: { readonly from: string | false; readonly to: readonly string[] };
  /** The relay's message id: pass it to RelayClient.status() / waitFor(). */
  readonly messageId: string;
  readonly accepted: readonly string[];
  readonly rejected: readonly string[];
  readonly pending: readonly string[];
  readonly response: string;
  /** True when the relay answered from its idempotency record (nothing new was queued). */
  readonly replayed: boolean;
}

/**
 * nodemailer options the relay's API has no field for. Refused, never dropped: the message would otherwise go out
 * without what the app asked for.
 */
export const UNSUPPORTED_FIELDS: Readonly<Record<string, string>> = {
  sender: "the relay sets Sender/envelope from `from`",
  envelope: "the relay's envelope sender is `from` (SPF/DMARC alignment) and its recipients are to+cc+bcc",
  messageId: "the relay writes the Message-ID (<id@domain>)",
  date: "the relay writes the Date",
  inReplyTo: "no threading headers; only X- headers can be set",
  references: "no threading headers; only X- headers can be set",
  priority: "no priority headers; only X- headers can be set",
  list: "no List-* headers; only X- headers can be set",
  icalEvent: "no calendar parts",
  alternatives: "only text and html bodies",
  amp: "no AMP part",
  watchHtml: "no watchHtml part",
  raw: "the relay composes the message itself",
};

interface NmAddress {
  readonly name?: string;
  readonly address: string;
}

function addresses(v: unknown): Address[] {
  const list = (Array.isArray(v) ? v : v ? [v] : []) as NmAddress[];
  return list.map((a) => (a.name ? { email: a.address, name: a.name } : a.address));
}

function headerValue(key: string, v: unknown): string {
  const one = Array.isArray(v) ? (v.length === 1 ? v[0] : undefined) : v;
  const value = one !== null && typeof one === "object" ? (one as { value?: unknown }).value : one;
  if (typeof value !== "string")
    throw new Error(`mail-relay transport: headers.${key} must be one string value (the relay takes one per header)`);
  return value;
}

function headers(h: unknown): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  const entries: [string, unknown][] = Array.isArray(h)
    ? (h as { key: string; value: unknown }[]).map((e) => [e.key, e.value])
    : Object.entries((h ?? {}) as Record<string, unknown>);
  for (const [k, v] of entries) {
    if (k in out) throw new Error(`mail-relay transport: headers.${k} is given twice`);
    out[k] = headerValue(k, v);
  }
  return entries.length > 0 ? out : undefined;
}

interface NmAttachment {
  readonly filename?: string | false;
  readonly contentType?: string;
  readonly content?: string | Buffer;
  readonly encoding?: string;
  readonly cid?: string;
  readonly raw?: unknown;
}

function attachments(list: unknown): SendMessage["attachments"] {
  const items = (list ?? []) as NmAttachment[];
  if (items.length === 0) return undefined;
  return items.map((a, i) => {
    if (a.cid !== undefined)
      throw new Error(
        `mail-relay transport: attachments[${i}].cid: the relay has no inline (cid) parts; ` +
          `attach the file without cid or link the image`,
      );
    // After normalize(): a Buffer (or a stream, file, URL, non-UTF-8 string) is base64 with encoding "base64".
    const content =
      a.content === undefined
        ? ""
        : Buffer.isBuffer(a.content)
          ? a.content.toString("base64")
          : a.encoding === "base64"
            ? a.content
            : Buffer.from(a.content, "utf8").toString("base64");
    return {
      filename: a.filename || `attachment-${i + 1}`,
      ...(a.contentType !== undefined ? { contentType: a.contentType } : {}),
      content,
    };
  });
}

/** nodemailer's mail data (after normalize()) as the relay's POST /send body. */
export function toSendMessage(data: Record<string, unknown>): SendMessage {
  const from = addresses(data.from)[0];
  const msg: Record<string, unknown> = {
    ...(from !== undefined ? { from } : {}),
    to: addresses(data.to),
    subject: data.subject,
  };
  for (const k of ["cc", "bcc", "replyTo"] as const) {
    const list = addresses(data[k]);
    if (list.length > 0) msg[k] = list;
  }
  if (typeof data.text === "string" && data.text !== "") msg.text = data.text;
  if (typeof data.html === "string" && data.html !== "") msg.html = data.html;
  const att = attachments(data.attachments);
  if (att) msg.attachments = att;
  const h = headers(data.headers);
  if (h) msg.headers = h;
  if (Array.isArray(data.tags)) msg.tags = data.tags;
  return msg as unknown as SendMessage;
}

/** Fields in the app's mail options that the relay cannot carry, with why. */
export function unsupportedFields(data: Record<string, unknown>): string[] {
  const out = Object.keys(UNSUPPORTED_FIELDS)
    .filter((k) => data[k] !== undefined && data[k] !== null && data[k] !== false)
    .map((k) => `${k} (${UNSUPPORTED_FIELDS[k]})`);
  const att = (data.attachments ?? []) as NmAttachment[];
  att.forEach((a, i) => {
    if (a.raw !== undefined) out.push(`attachments[${i}].raw (give content, path or href instead)`);
  });
  return out;
}

export class RelayTransport {
  readonly name = "mail-relay";
  readonly version = "0.1.0";
  readonly client: RelayClient;

  constructor(client: RelayClient) {
    this.client = client;
  }

  /** nodemailer's transport contract. Extra mail fields read: `tags` (string[]) and `idempotencyKey`. */
  send(mail: NodemailerMail, callback: (err: Error | null, info?: RelayTransportInfo) => void): void {
    this.sendMail(mail).then(
      (info) => callback(null, info),
      (err: Error) => callback(err),
    );
  }

  /** transporter.verify(): one authenticated request through Access and the relay token (callback or promise). */
  verify(): Promise<true>;
  verify(callback: (err: Error | null, success?: true) => void): void;
  verify(callback?: (err: Error | null, success?: true) => void): Promise<true> | void {
    const p = this.client.listMessages({ limit: 1 }).then(() => true as const);
    if (!callback) return p;
    p.then(
      (ok) => callback(null, ok),
      (err: Error) => callback(err),
    );
  }

  private async sendMail(mail: NodemailerMail): Promise<RelayTransportInfo> {
    const unsupported = unsupportedFields(mail.data);
    if (unsupported.length > 0)
      throw new Error(`mail-relay transport: the relay's API has no field for ${unsupported.join("; ")}`);
    const data = await new Promise<Record<string, unknown>>((resolve, reject) =>
      mail.normalize((err, d) => (err || !d ? reject(err ?? new Error("normalize gave nothing")) : resolve(d))),
    );
    const key = typeof mail.data.idempotencyKey === "string" ? mail.data.idempotencyKey : undefined;
    const r = await this.client.send(toSendMessage(data), key !== undefined ? { idempotencyKey: key } : {});
    const envelope = (data.envelope ?? { from: false, to: [] }) as { from: string | false; to: string[] };
    return {
      envelope,
      messageId: r.id,
      accepted: [...envelope.to],
      rejected: [],
      pending: [],
      response: `202 queued as ${r.id}${r.replayed ? " (idempotent replay)" : ""}`,
      replayed: r.replayed,
    };
  }
}

/** A nodemailer transport for the relay, from client options or an existing RelayClient. */
export function relayTransport(o: RelayClientOptions | RelayClient): RelayTransport {
  return new RelayTransport(o instanceof RelayClient ? o : new RelayClient(o));
}
