import { describe, expect, it } from "vitest";
import { makeAuthenticator } from "../../relay/app";
import { callerToken } from "../../relay/config";
import { appsClosedAfterEach, auth, makeApp, TOKEN_APP, TOKEN_BILLING, validBody, type TestApp } from "./fixtures";

const app = appsClosedAfterEach();

const post = (t: TestApp, headers: Record<string, string>, body: unknown = validBody(), remoteAddress?: string) =>
  t.app.inject({
    method: "POST",
    url: "/send",
    headers,
    payload: JSON.stringify(body),
    ...(remoteAddress ? { remoteAddress } : {}),
  });

describe("authentication", () => {
  it("a request without a token is refused with 401, even from loopback (the tunnel makes everyone loopback)", async () => {
    const t = await app();
    const res = await post(t, { "content-type": "application/json" }, validBody(), "127.0.0.1");
    expect(res.statusCode).toBe(401);
    expect(res.json()).toEqual({ ok: false, error: { code: "unauthorized", message: expect.any(String) } });
    expect(t.queue.depth().pending).toBe(0);
  });

  it("a wrong token, a prefix of a right token, or a right token with a suffix is refused with 401", async () => {
    const t = await app();
    for (const bad of ["x".repeat(40), TOKEN_APP.slice(0, -1), `${TOKEN_APP}x`, "", TOKEN_APP.toUpperCase()]) {
      const res = await post(t, { authorization: `Bearer ${bad}`, "content-type": "application/json" });
      expect(res.statusCode, bad).toBe(401);
    }
    expect((await post(t, { authorization: TOKEN_APP, "content-type": "application/json" })).statusCode).toBe(401); // no "Bearer"
  });

  it("authentication runs before the body is read: a huge or broken body without a token still gets 401", async () => {
    const t = await app();
    const huge = await t.app.inject({
      method: "POST",
      url: "/send",
      headers: { "content-type": "application/json" },
      payload: "x".repeat(200 * 1024),
    });
    expect(huge.statusCode).toBe(401);
    const broken = await t.app.inject({
      method: "POST",
      url: "/send",
      headers: { "content-type": "text/html" },
      payload: "<",
    });
    expect(broken.statusCode).toBe(401);
  });

  it("every configured token is accepted (rotation) and names its caller", async () => {
    const check = makeAuthenticator([callerToken("app", TOKEN_APP), callerToken("billing", TOKEN_BILLING)]);
    expect(check(`Bearer ${TOKEN_APP}`)).toBe("app");
    expect(check(`Bearer ${TOKEN_BILLING}`)).toBe("billing");
    expect(check(undefined)).toBeUndefined();
    expect(check("Bearer ")).toBeUndefined();
  });

  it("/messages/:id needs a token too, and a caller sees only its own messages", async () => {
    const t = await app();
    const id = (await post(t, auth())).json().id as string;
    expect((await t.app.inject({ method: "GET", url: `/messages/${id}` })).statusCode).toBe(401);
    expect(
      (await t.app.inject({ method: "GET", url: `/messages/${id}`, headers: auth(TOKEN_BILLING) })).statusCode,
    ).toBe(404);
    const mine = await t.app.inject({ method: "GET", url: `/messages/${id}`, headers: auth() });
    expect(mine.statusCode).toBe(200);
    expect(mine.json().message).toMatchObject({ id, state: "queued", attempts: 0 });
  });
});

describe("rate limiting is per token, never per source IP", () => {
  it("the (N+1)th request in a minute gets 429 with Retry-After and RateLimit-* headers", async () => {
    const t = await app({ config: { rateLimitPerMin: 3 } });
    for (let i = 0; i < 3; i++) expect((await post(t, auth())).statusCode).toBe(202);
    const res = await post(t, auth());
    expect(res.statusCode).toBe(429);
    expect(res.json().error.code).toBe("rate_limited");
    expect(Number(res.headers["retry-after"])).toBeGreaterThan(0);
    expect(res.headers["ratelimit-limit"]).toBe("3");
    expect(res.headers["ratelimit-remaining"]).toBe("0");
    expect(res.headers["ratelimit-reset"]).toBeDefined();
  });

  it("another token is not slowed down by the first one's limit", async () => {
    const t = await app({ config: { rateLimitPerMin: 2 } });
    for (let i = 0; i < 3; i++) await post(t, auth(TOKEN_APP));
    expect((await post(t, auth(TOKEN_APP))).statusCode).toBe(429);
    expect((await post(t, auth(TOKEN_BILLING))).statusCode).toBe(202);
  });

  it("changing the source address does not reset a token's limit", async () => {
    const t = await app({ config: { rateLimitPerMin: 2 } });
    expect((await post(t, auth(), validBody(), "10.0.0.1")).statusCode).toBe(202);
    expect((await post(t, auth(), validBody(), "10.0.0.2")).statusCode).toBe(202);
    expect((await post(t, auth(), validBody(), "10.0.0.3")).statusCode).toBe(429);
  });

  it("unauthenticated requests do not use up a caller's budget", async () => {
    const t = await app({ config: { rateLimitPerMin: 2 } });
    for (let i = 0; i < 5; i++)
      await post(t, {
        authorization: "Bearer wrong-token-wrong-token-wrong-token",
        "content-type": "application/json",
      });
    expect((await post(t, auth())).statusCode).toBe(202);
  });
});

describe("idempotency", () => {
  it("the same key and body return the original id and queue nothing new", async () => {
    const t = await app();
    const h = { ...auth(), "idempotency-key": "order-42-receipt" };
    const first = await post(t, h);
    const again = await post(t, h, { ...validBody() });
    expect(first.statusCode).toBe(202);
    expect(again.statusCode).toBe(202);
    expect(again.json().id).toBe(first.json().id);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(t.queue.depth().pending).toBe(1);
  });

  it("the same key with a different body is refused with 409", async () => {
    const t = await app();
    const h = { ...auth(), "idempotency-key": "order-43" };
    expect((await post(t, h)).statusCode).toBe(202);
    const res = await post(t, h, validBody({ subject: "something else" }));
    expect(res.statusCode).toBe(409);
    expect(res.json().error.code).toBe("idempotency_conflict");
    expect(t.queue.depth().pending).toBe(1);
  });

  it("concurrent requests with the same key queue one message", async () => {
    const t = await app();
    const h = { ...auth(), "idempotency-key": "burst" };
    const res = await Promise.all(Array.from({ length: 8 }, () => post(t, h)));
    expect(new Set(res.map((r) => r.json().id)).size).toBe(1);
    expect(t.queue.depth().pending).toBe(1);
  });

  it("keys are per caller: another token may reuse the same key", async () => {
    const t = await app();
    const a = await post(t, { ...auth(TOKEN_APP), "idempotency-key": "k1" });
    const b = await post(t, { ...auth(TOKEN_BILLING), "idempotency-key": "k1" }, validBody({ subject: "other" }));
    expect(b.statusCode).toBe(202);
    expect(b.json().id).not.toBe(a.json().id);
  });

  it("idempotency records survive a restart (rebuilt from disk)", async () => {
    const first = await makeApp();
    const h = { ...auth(), "idempotency-key": "survives" };
    const id = (await post(first, h)).json().id;
    await first.app.close();
    const second = await app({ root: first.root });
    const again = await post(second, h);
    expect(again.json().id).toBe(id);
    expect((await post(second, h, validBody({ subject: "changed" }))).statusCode).toBe(409);
    second.close = async () => {
      await second.app.close();
      await first.close();
    };
  });

  it("a key expires after 24 hours", async () => {
    let now = Date.parse("2026-01-01T00:00:00Z");
    const t = await app({ now: () => now });
    const h = { ...auth(), "idempotency-key": "daily" };
    const id = (await post(t, h)).json().id;
    now += 24 * 3_600_000 + 1;
    const later = await post(t, h, validBody({ subject: "new day" }));
    expect(later.statusCode).toBe(202);
    expect(later.json().id).not.toBe(id);
  });
});

describe("/metrics is only for loopback callers without tunnel headers", () => {
  it("a loopback caller without proxy headers gets Prometheus text", async () => {
    const t = await app();
    await post(t, auth());
    const res = await t.app.inject({ method: "GET", url: "/metrics", remoteAddress: "127.0.0.1" });
    expect(res.statusCode).toBe(200);
    expect(res.body).toMatch(/relay_requests_total\{route="\/send",outcome="accepted"\} 1/);
    expect(res.body).toMatch(/relay_queue_jobs\{state="pending"\} 1/);
  });

  for (const header of ["cf-connecting-ip", "cf-ray", "cf-warp-tag-id", "x-forwarded-for"]) {
    it(`a loopback request carrying ${header} (i.e. through the tunnel) is refused`, async () => {
      const t = await app();
      const res = await t.app.inject({
        method: "GET",
        url: "/metrics",
        remoteAddress: "127.0.0.1",
        headers: { [header]: "203.0.113.7" },
      });
      expect(res.statusCode).toBe(403);
      expect(res.json().error.code).toBe("forbidden");
    });
  }

  it("a non-loopback caller is refused", async () => {
    const t = await app();
    const res = await t.app.inject({ method: "GET", url: "/metrics", remoteAddress: "192.0.2.10" });
    expect(res.statusCode).toBe(403);
  });
});

describe("health, readiness, status and errors", () => {
  it("GET /health answers 200 ok", async () => {
    const t = await app();
    const res = await t.app.inject({ method: "GET", url: "/health" });
    expect(res.statusCode).toBe(200);
    expect(res.body).toBe("ok");
  });

  it("GET /ready is 503 when the hand-off to postfix is not possible, 200 when it is", async () => {
    const down = await app({ handoff: { check: async () => Promise.reject(new Error("ECONNREFUSED 127.0.0.1:25")) } });
    const res = await down.app.inject({ method: "GET", url: "/ready" });
    expect(res.statusCode).toBe(503);
    expect(res.json().error.code).toBe("handoff_unavailable");
    expect(res.body).not.toContain("ECONNREFUSED"); // 5xx detail goes to the log only
    const up = await app();
    expect((await up.app.inject({ method: "GET", url: "/ready" })).statusCode).toBe(200);
  });

  it("POST /send answers 503 disk_nearly_full when free space is under the threshold", async () => {
    const t = await app();
    // The queue's threshold is huge here: no disk has this much free space.
    (t.queue as unknown as { opts: { minFreeBytes: number } }).opts.minFreeBytes = Number.MAX_SAFE_INTEGER;
    const res = await post(t, auth());
    expect(res.statusCode).toBe(503);
    expect(res.json().error.code).toBe("disk_nearly_full");
    expect((await t.app.inject({ method: "GET", url: "/ready" })).json().error.code).toBe("queue_unavailable");
  });

  it("POST /send answers 503 queue_unavailable when the queue cannot be written", async () => {
    const t = await app();
    const { rmSync } = await import("node:fs");
    rmSync(`${t.root}/tmp`, { recursive: true, force: true });
    const res = await post(t, auth());
    expect(res.statusCode).toBe(503);
    expect(res.json()).toEqual({
      ok: false,
      error: { code: "queue_unavailable", message: "the queue is unavailable; retry later" },
    });
  });

  it("GET /messages/:id for an unknown id is 404", async () => {
    const t = await app();
    const res = await t.app.inject({
      method: "GET",
      url: "/messages/00000000-0000-4000-8000-000000000000",
      headers: auth(),
    });
    expect(res.statusCode).toBe(404);
    expect(res.json().error.code).toBe("not_found");
    expect(
      (await t.app.inject({ method: "GET", url: "/messages/..%2F..%2Fetc%2Fpasswd", headers: auth() })).statusCode,
    ).toBe(404);
  });

  it("logs name the caller, recipient count and domains, and never the token, body or full addresses", async () => {
    const t = await app();
    const secretText = "the-secret-body-text";
    await post(t, auth(), validBody({ to: ["alice@example.net", "bob@example.org"], text: secretText }));
    await post(t, { authorization: `Bearer ${TOKEN_BILLING}x`, "content-type": "application/json" });
    const all = t.lines.join("\n");
    const queued = t.lines.map((l) => JSON.parse(l)).find((l) => l.msg === "queued");
    expect(queued).toMatchObject({
      caller: "app",
      recipients: 2,
      domains: ["example.net", "example.org"],
      outcome: "queued",
    });
    expect(queued.id).toMatch(/^[0-9a-f-]{36}$/);
    for (const secret of [TOKEN_APP, TOKEN_BILLING, secretText, "alice@example.net", "bob@"])
      expect(all).not.toContain(secret);
  });
});

describe("over a real socket (127.0.0.1, port 0)", () => {
  it("accepts a /send and reports its status", async () => {
    const t = await app();
    const address = await t.app.listen({ host: "127.0.0.1", port: 0 });
    const res = await fetch(`${address}/send`, { method: "POST", headers: auth(), body: JSON.stringify(validBody()) });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const status = await fetch(`${address}/messages/${id}`, { headers: auth() });
    expect(((await status.json()) as { message: { state: string } }).message.state).toBe("queued");
  });
});

describe("log lines", () => {
  it("a refused request's log line names its request id once (req.log already binds reqId)", async () => {
    const t = await app();
    const res = await post(t, auth(), { ...validBody(), from: "ceo@example.com" });
    expect(res.statusCode).toBe(400);
    const refused = t.lines.filter((l) => l.includes('"request refused"'));
    expect(refused).toHaveLength(1);
    expect(refused[0].match(/"reqId"/g)).toHaveLength(1);
  });
});
