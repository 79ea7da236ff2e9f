// What the client retries, and what it must not: every failure is injected by a FAKE server (node:http on
// 127.0.0.1:0, scripted per request) or a FAKE proxy in front of the real relay; the codes come from relay/errors.ts.
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { ERROR_STATUS, type ErrorCode } from "../../relay/errors";
import { RelayApiError, RelayClient, RelayHttpError, RelayNetworkError, parseRetryAfter } from "../../client/src/index";
import { FROM, startRealRelay, TOKEN } from "./real-relay";

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage["headers"];
  readonly body: string;
  readonly at: number;
}
type Step = (req: IncomingMessage, res: ServerResponse, body: string) => void;

const servers: { close(): void }[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A fake relay: answers the n-th request with steps[n] (the last step repeats), and records every request. */
async function fakeServer(steps: Step[]): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body, at: Date.now() });
      (steps[Math.min(seen.length - 1, steps.length - 1)] as Step)(req, res, body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  servers.push({ close: () => server.close() });
  server.on("connection", (s) => servers.push({ close: () => s.destroy() }));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

const relayError =
  (code: ErrorCode, headers: Record<string, string> = {}): Step =>
  (_req, res) =>
    res
      .writeHead(ERROR_STATUS[code], { "content-type": "application/json", ...headers })
      .end(JSON.stringify({ ok: false, error: { code, message: `fake ${code}` } }));
const accepted: Step = (_req, res) =>
  res
    .writeHead(202, { "content-type": "application/json" })
    .end(JSON.stringify({ ok: true, queued: true, id: "id-1" }));
const dropConnection: Step = (req) => req.socket.destroy();

const msg = { from: FROM, to: "ok@example.net", subject: "retry", text: "x" };
const client = (url: string, attempts = 4) =>
  new RelayClient({ url, token: TOKEN, retry: { attempts, baseDelayMs: 5, maxDelayMs: 20 } });

describe("the client retries only what is safe to repeat (fake server: fault injection)", () => {
  it("fake server: a dropped connection is retried with the same Idempotency-Key and body", async () => {
    const f = await fakeServer([dropConnection, dropConnection, accepted]);
    const r = await client(f.url).send(msg);
    expect(r).toMatchObject({ id: "id-1", attempts: 3 });
    expect(f.seen).toHaveLength(3);
    expect(new Set(f.seen.map((s) => s.headers["idempotency-key"]))).toEqual(new Set([r.idempotencyKey]));
    expect(new Set(f.seen.map((s) => s.body)).size).toBe(1);
  });

  it("fake server: a 429 is retried after its Retry-After (seconds), not before", async () => {
    const f = await fakeServer([relayError("rate_limited", { "retry-after": "1" }), accepted]);
    const r = await client(f.url).send(msg);
    expect(r.attempts).toBe(2);
    const waited = (f.seen[1] as Seen).at - (f.seen[0] as Seen).at;
    expect(waited).toBeGreaterThanOrEqual(950);
    expect(waited).toBeLessThan(3000);
  });

  it("fake server: a 429 asking for longer than maxRetryAfterMs is thrown at once, carrying retryAfterMs", async () => {
    const f = await fakeServer([relayError("quota_exceeded", { "retry-after": "3600" }), accepted]);
    const e = await client(f.url)
      .send(msg)
      .catch((x) => x);
    expect(e).toBeInstanceOf(RelayApiError);
    expect(e).toMatchObject({ code: "quota_exceeded", status: 429, retryAfterMs: 3_600_000, attempts: 1 });
    expect(f.seen).toHaveLength(1);
  });

  it("fake server: a 503 is retried with capped backoff, then thrown with the relay's code after the last attempt", async () => {
    const f = await fakeServer([relayError("queue_unavailable")]);
    const e = await client(f.url, 3)
      .send(msg)
      .catch((x) => x);
    expect(e).toMatchObject({ code: "queue_unavailable", status: 503, attempts: 3 });
    expect(f.seen).toHaveLength(3);
    expect(new Set(f.seen.map((s) => s.headers["idempotency-key"])).size).toBe(1);
  });

  const codes = Object.keys(ERROR_STATUS) as ErrorCode[];
  const final = codes.filter((c) => ERROR_STATUS[c] < 500 && ERROR_STATUS[c] !== 429);
  const transient = codes.filter((c) => ERROR_STATUS[c] >= 500 || ERROR_STATUS[c] === 429);

  it.each(final)("fake server: %s (a 4xx other than 429) is never retried", async (code) => {
    const f = await fakeServer([relayError(code), accepted]);
    const e = await client(f.url)
      .send(msg)
      .catch((x) => x);
    expect(e).toBeInstanceOf(RelayApiError);
    expect(e).toMatchObject({ code, status: ERROR_STATUS[code], attempts: 1 });
    expect(f.seen).toHaveLength(1);
  });

  it.each(transient)("fake server: %s (429 or 5xx) is retried, and the retry succeeds", async (code) => {
    const f = await fakeServer([relayError(code), accepted]);
    expect((await client(f.url).send(msg)).attempts).toBe(2);
  });

  it("fake server: an answer that is not the relay's is a RelayHttpError: Access's 403 final, the tunnel's 502 retried", async () => {
    const access = await fakeServer([(_q, res) => res.writeHead(403, { "content-type": "text/html" }).end("<html>")]);
    const e = await client(access.url)
      .send(msg)
      .catch((x) => x);
    expect(e).toBeInstanceOf(RelayHttpError);
    expect(e).toMatchObject({ status: 403, attempts: 1 });
    const tunnel = await fakeServer([(_q, res) => res.writeHead(502).end("bad gateway"), accepted]);
    expect((await client(tunnel.url).send(msg)).attempts).toBe(2);
  });

  it("fake server: an attempt with no answer within timeoutMs counts as a network error and is retried", async () => {
    const f = await fakeServer([() => undefined, accepted]);
    const c = new RelayClient({ url: f.url, token: TOKEN, timeoutMs: 200, retry: { baseDelayMs: 5 } });
    expect((await c.send(msg)).attempts).toBe(2);
  });

  it("fake server: DELETE /suppressions is not retried after a network error (the first may have removed it)", async () => {
    const f = await fakeServer([dropConnection, (_q, res) => res.end(JSON.stringify({ ok: true, removed: "x" }))]);
    expect(
      await client(f.url)
        .removeSuppression("a@example.net")
        .catch((x) => x),
    ).toBeInstanceOf(RelayNetworkError);
    expect(f.seen).toHaveLength(1);
    expect(f.seen[0]?.url).toBe("/suppressions/a%40example.net");
  });

  it("fake server: every request carries the relay token and both Access headers", async () => {
    const f = await fakeServer([accepted]);
    await new RelayClient({ url: f.url, token: TOKEN, accessClientId: "cid", accessClientSecret: "csecret" }).send(msg);
    expect(f.seen[0]?.headers).toMatchObject({
      authorization: `Bearer ${TOKEN}`,
      "cf-access-client-id": "cid",
      "cf-access-client-secret": "csecret",
      "content-type": "application/json",
    });
  });

  it("Retry-After is read as seconds or as an HTTP date", () => {
    const now = Date.parse("2026-12-04T10:00:00Z");
    expect(parseRetryAfter("7", now)).toBe(7000);
    expect(parseRetryAfter("Fri, 04 Dec 2026 10:00:30 GMT", now)).toBe(30_000);
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });
});

describe("the idempotent retry against the real relay", () => {
  let close: (() => Promise<void>) | undefined;
  afterAll(() => close?.());

  it("fake proxy in front of the real relay drops the relay's first 202: the retry gets the same id and one message is queued", async () => {
    const relay = await startRealRelay();
    close = relay.close;
    const upstream = new URL(relay.url);
    let dropped = 0;
    // Forwards each request to the relay; the first answer is thrown away and the connection cut, as a network
    // failure after the relay accepted.
    const proxy = await fakeServer([
      (req, res, body) => {
        const up = httpRequest(
          { host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers },
          (ur) => {
            const chunks: Buffer[] = [];
            ur.on("data", (c: Buffer) => chunks.push(c));
            ur.on("end", () => {
              if (dropped++ === 0) req.socket.destroy();
              else res.writeHead(ur.statusCode ?? 502, ur.headers).end(Buffer.concat(chunks));
            });
          },
        );
        up.end(body);
      },
    ]);
    const c = client(proxy.url);
    const r = await c.send(msg);
    expect(r.attempts).toBe(2);
    expect(r.replayed).toBe(true); // the relay answered the retry from its idempotency record
    await new RelayClient({ url: relay.url, token: TOKEN }).waitFor(r.id, {
      states: ["handed_off"],
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    await new Promise((res) => setTimeout(res, 300));
    expect(relay.received.map((m) => m.to)).toEqual([["ok@example.net"]]);
  });
});
