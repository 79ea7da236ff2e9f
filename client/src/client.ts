import { randomUUID } from "node:crypto";
import { isRelayErrorCode, RelayApiError, RelayHttpError, RelayNetworkError, RelayTimeoutError } from "./errors.js";
import {
  FINAL_STATES,
  type MessagePage,
  type MessageState,
  type MessageStatus,
  type SendMessage,
  type SendResult,
  type Suppression,
} from "./types.js";

export interface RetryOptions {
  /** HTTP attempts in all, the first included (default 5; 1 turns retries off). */
  readonly attempts?: number;
  /** First backoff delay (default 250 ms); it doubles per attempt, with jitter. */
  readonly baseDelayMs?: number;
  /** Cap of one backoff delay (default 10 s). */
  readonly maxDelayMs?: number;
  /** The longest Retry-After honoured (default 60 s); a 429 or 503 asking for longer is thrown at once. */
  readonly maxRetryAfterMs?: number;
}

export interface RelayClientOptions {
  /** The relay's URL, e.g. `https://mail-relay.example.com` (the `relayUrl` stack output). */
  readonly url: string;
  /** The caller's relay token (`relayTokens` output), sent as `Authorization: Bearer`. */
  readonly token: string;
  /** The caller's Cloudflare Access service token (`accessClientIds` / `accessClientSecrets` outputs). */
  readonly accessClientId?: string;
  readonly accessClientSecret?: string;
  /** Time limit of one HTTP attempt (default 30 s); a timed-out attempt counts as a network error. */
  readonly timeoutMs?: number;
  readonly retry?: RetryOptions;
}

export interface CallOptions {
  readonly signal?: AbortSignal;
}

export interface SendOptions extends CallOptions {
  /**
   * The Idempotency-Key (1-256 visible ASCII characters). Default: a new UUID per send() call, reused by its
   * retries. Give your own (e.g. `order-1234-receipt`) to make a send safe to repeat across restarts: the relay keeps
   * it 24 h per token.
   */
  readonly idempotencyKey?: string;
}

export interface WaitOptions extends CallOptions {
  /** Return once the state is one of these (default: the final states, FINAL_STATES). */
  readonly states?: readonly MessageState[];
  /** Give up after this long (default 120 s) with a RelayTimeoutError carrying the last status. */
  readonly timeoutMs?: number;
  /** Time between two GET /messages/:id (default 1 s). */
  readonly intervalMs?: number;
}

export interface ListOptions extends CallOptions {
  readonly state?: MessageState;
  /** Hand-off time: a Date, ms since the epoch, or ISO 8601. */
  readonly since?: Date | number | string;
  /** 1-100 (the relay's default: 50). */
  readonly limit?: number;
  /** The previous page's nextCursor. */
  readonly cursor?: string;
}

/** Which failures one call may retry. POST /send carries an Idempotency-Key, so a retry never queues twice. */
interface RetryScope {
  /** No answer came back (the request may or may not have been done). */
  readonly network: boolean;
}

interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly json: unknown;
  readonly attempts: number;
}

const VERSION = "0.1.0";

/** A Retry-After header (seconds or an HTTP date) in ms; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * The relay's HTTP API for callers: send (with an Idempotency-Key and safe retries), status, waitFor, the message list
 * and the suppression list. Needs nothing but Node's global fetch (Node 18 and later).
 */
export class RelayClient {
  private readonly base: string;
  private readonly headers: Readonly<Record<string, string>>;
  private readonly timeoutMs: number;
  private readonly retry: Required<RetryOptions>;

  constructor(o: RelayClientOptions) {
    let u: URL;
    try {
      u = new URL(o.url);
    } catch {
      throw new TypeError(
        `RelayClient: url "${o.url}" is not a URL; give the relayUrl output, e.g. https://mail-relay.example.com`,
      );
    }
    if (u.protocol !== "https:" && u.protocol !== "http:")
      throw new TypeError(`RelayClient: url must be http(s)://, got ${u.protocol}`);
    if (typeof o.token !== "string" || o.token.trim() === "")
      throw new TypeError("RelayClient: token is empty; give the caller's relay token (the relayTokens output)");
    if ((o.accessClientId === undefined) !== (o.accessClientSecret === undefined))
      throw new TypeError(
        "RelayClient: give both accessClientId and accessClientSecret (the Access service token), or neither",
      );
    const retry = o.retry ?? {};
    this.retry = {
      attempts: retry.attempts ?? 5,
      baseDelayMs: retry.baseDelayMs ?? 250,
      maxDelayMs: retry.maxDelayMs ?? 10_000,
      maxRetryAfterMs: retry.maxRetryAfterMs ?? 60_000,
    };
    if (!Number.isInteger(this.retry.attempts) || this.retry.attempts < 1)
      throw new TypeError(`RelayClient: retry.attempts must be an integer >= 1, got ${String(retry.attempts)}`);
    this.timeoutMs = o.timeoutMs ?? 30_000;
    this.base = o.url.replace(/\/+$/, "");
    this.headers = {
      authorization: `Bearer ${o.token}`,
      accept: "application/json",
      "user-agent": `mail-relay-client/${VERSION}`,
      ...(o.accessClientId !== undefined && o.accessClientSecret !== undefined
        ? { "cf-access-client-id": o.accessClientId, "cf-access-client-secret": o.accessClientSecret }
        : {}),
    };
  }

  /**
   * POST /send. Resolves once the relay has the message durably queued (202); that is not delivery (see waitFor).
   * Retries network errors, 429 (after its Retry-After) and 5xx with the same Idempotency-Key; never another 4xx.
   */
  async send(message: SendMessage, o: SendOptions = {}): Promise<SendResult> {
    const idempotencyKey = o.idempotencyKey ?? randomUUID();
    const a = await this.request("POST", "/send", { network: true }, o.signal, {
      body: JSON.stringify(message),
      headers: { "content-type": "application/json", "idempotency-key": idempotencyKey },
    });
    const id = (a.json as { id?: unknown }).id;
    if (typeof id !== "string") throw new RelayHttpError(a.status, JSON.stringify(a.json), a.attempts);
    return { id, replayed: a.headers.get("idempotent-replayed") === "true", idempotencyKey, attempts: a.attempts };
  }

  /** GET /messages/:id. An unknown id (or another caller's) is a RelayApiError with code `not_found`. */
  async status(id: string, o: CallOptions = {}): Promise<MessageStatus> {
    const a = await this.request("GET", `/messages/${encodeURIComponent(id)}`, { network: true }, o.signal);
    return (a.json as { message: MessageStatus }).message;
  }

  /** Polls GET /messages/:id until its state is one of `states`. */
  async waitFor(id: string, o: WaitOptions = {}): Promise<MessageStatus> {
    const states = o.states ?? FINAL_STATES;
    const deadline = Date.now() + (o.timeoutMs ?? 120_000);
    const interval = o.intervalMs ?? 1000;
    for (;;) {
      const s = await this.status(id, o);
      if (states.includes(s.state)) return s;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new RelayTimeoutError(
          `message ${id} is still ${s.state} after ${o.timeoutMs ?? 120_000} ms; waited for ${states.join(" | ")}`,
          s,
        );
      await sleep(Math.min(interval, left), o.signal);
    }
  }

  /** GET /messages: one page of the caller's handed-off messages. */
  async listMessages(o: ListOptions = {}): Promise<MessagePage> {
    const q = new URLSearchParams();
    if (o.state !== undefined) q.set("state", o.state);
    if (o.since !== undefined) q.set("since", o.since instanceof Date ? o.since.toISOString() : String(o.since));
    if (o.limit !== undefined) q.set("limit", String(o.limit));
    if (o.cursor !== undefined) q.set("cursor", o.cursor);
    const qs = q.toString();
    const a = await this.request("GET", `/messages${qs ? `?${qs}` : ""}`, { network: true }, o.signal);
    const { messages, nextCursor } = a.json as MessagePage;
    return nextCursor !== undefined ? { messages, nextCursor } : { messages };
  }

  /** GET /suppressions: the entries from this caller's messages, or that it added. */
  async suppressions(o: CallOptions = {}): Promise<Suppression[]> {
    const a = await this.request("GET", "/suppressions", { network: true }, o.signal);
    return (a.json as { suppressions: Suppression[] }).suppressions;
  }

  /**
   * DELETE /suppressions/:email; resolves with the address removed. Not retried after a network error: if the first
   * request did remove it, the retry would answer 404.
   */
  async removeSuppression(email: string, o: CallOptions = {}): Promise<string> {
    const a = await this.request("DELETE", `/suppressions/${encodeURIComponent(email)}`, { network: false }, o.signal);
    return (a.json as { removed: string }).removed;
  }

  private backoff(attempt: number): number {
    const d = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
    return d / 2 + (Math.random() * d) / 2;
  }

  private async request(
    method: string,
    path: string,
    scope: RetryScope,
    signal: AbortSignal | undefined,
    extra: { body?: string; headers?: Record<string, string> } = {},
  ): Promise<Answer> {
    const url = this.base + path;
    const max = this.retry.attempts;
    for (let attempt = 1; ; attempt++) {
      const timeout = new AbortController();
      const timer = setTimeout(() => timeout.abort(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      const onAbort = (): void => timeout.abort(signal?.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      let status: number;
      let headers: Headers;
      let text: string;
      try {
        const res = await fetch(url, {
          method,
          headers: { ...this.headers, ...extra.headers },
          ...(extra.body !== undefined ? { body: extra.body } : {}),
          signal: timeout.signal,
        });
        status = res.status;
        headers = res.headers;
        text = await res.text();
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (!scope.network || attempt >= max)
          throw new RelayNetworkError(
            `${method} ${url}: ${(err as Error).message}${causeText(err)} (after ${attempt} attempt(s))`,
            attempt,
            err,
          );
        await sleep(this.backoff(attempt), signal);
        continue;
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      }
      let json: unknown = undefined;
      try {
        json = text === "" ? undefined : JSON.parse(text);
      } catch {
        /* not JSON: an answer from the edge or the tunnel */
      }
      if (status >= 200 && status < 300) return { status, headers, json, attempts: attempt };
      const retryAfterMs = parseRetryAfter(headers.get("retry-after"));
      const error = toError(status, json, text, attempt, retryAfterMs);
      // Only what is safe to repeat: 429 and 5xx say the request was not done (a 5xx /send is replayed under its key).
      const retryable = status === 429 || status >= 500;
      if (!retryable || attempt >= max) throw error;
      if (retryAfterMs !== undefined && retryAfterMs > this.retry.maxRetryAfterMs) throw error;
      await sleep(retryAfterMs ?? this.backoff(attempt), signal);
    }
  }
}

function causeText(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause ? ` (${cause.code ?? cause.message ?? String(cause)})` : "";
}

function toError(
  status: number,
  json: unknown,
  text: string,
  attempts: number,
  retryAfterMs: number | undefined,
): RelayApiError | RelayHttpError {
  const e = (json as { ok?: unknown; error?: { code?: unknown; message?: unknown; field?: unknown } } | undefined)
    ?.error;
  if ((json as { ok?: unknown } | undefined)?.ok === false && e && isRelayErrorCode(e.code))
    return new RelayApiError(e.code, status, typeof e.message === "string" ? e.message : e.code, {
      attempts,
      ...(typeof e.field === "string" ? { field: e.field } : {}),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
  return new RelayHttpError(status, text, attempts);
}
