// Per-caller quotas (recipients and bytes, per minute and per UTC day) and per-caller sender allowlists: a stolen or
// runaway token can send only so much, and only as the senders its caller owns.
import { describe, expect, it } from "vitest";
import { callerToken, loadConfig, tokenSha256 } from "../../relay/config";
import { appsClosedAfterEach, auth, TOKEN_APP, TOKEN_BILLING, validBody, type TestApp } from "./fixtures";

const app = appsClosedAfterEach();

const post = (t: TestApp, body: unknown, token = TOKEN_APP) =>
  t.app.inject({ method: "POST", url: "/send", headers: auth(token), payload: JSON.stringify(body) });
const quotas = {
  recipientsPerMin: 1000,
  recipientsPerDay: 100_000,
  bytesPerMin: 100 * 1024 * 1024,
  bytesPerDay: 1024 * 1024 * 1024,
};

describe("per-caller quotas", () => {
  it("recipients per minute: the request that would pass the quota gets 429 quota_exceeded; the next minute is fresh; other callers are not affected", async () => {
    let now = Date.UTC(2026, 10, 30, 10, 0, 5);
    const t = await app({ config: { quotas: { ...quotas, recipientsPerMin: 7 } }, now: () => now });
    const three = validBody({ to: ["a@example.net", "b@example.net", "c@example.net"] });
    expect((await post(t, three)).statusCode).toBe(202);
    expect((await post(t, three)).statusCode).toBe(202);
    const over = await post(t, three);
    expect(over.statusCode).toBe(429);
    expect(over.json().error).toMatchObject({
      code: "quota_exceeded",
      message: expect.stringMatching(/7 recipients per minute/),
    });
    expect(t.queue.depth().pending).toBe(2);
    expect((await post(t, validBody())).statusCode).toBe(202); // one more fits exactly
    expect((await post(t, three, TOKEN_BILLING)).statusCode).toBe(202);
    now += 60_000;
    expect((await post(t, three)).statusCode).toBe(202);
  });

  it("recipients per day hold across minutes until the UTC day turns", async () => {
    let now = Date.UTC(2026, 10, 30, 23, 58, 0);
    const t = await app({ config: { quotas: { ...quotas, recipientsPerDay: 2 } }, now: () => now });
    expect((await post(t, validBody())).statusCode).toBe(202);
    now += 60_000;
    expect((await post(t, validBody())).statusCode).toBe(202);
    now += 30_000;
    expect((await post(t, validBody())).json().error.message).toMatch(/2 recipients per day/);
    now = Date.UTC(2026, 11, 1, 0, 0, 1);
    expect((await post(t, validBody())).statusCode).toBe(202);
  });

  it("bytes per minute count the composed message", async () => {
    const t = await app({ config: { quotas: { ...quotas, bytesPerMin: 8 * 1024 } } });
    const big = validBody({ text: "x".repeat(5000) });
    expect((await post(t, big)).statusCode).toBe(202);
    const r = await post(t, big);
    expect(r.statusCode).toBe(429);
    expect(r.json().error.message).toMatch(/8192 bytes per minute/);
  });

  it("has sane defaults when the environment says nothing", () => {
    const c = loadConfig({
      SMTP_RELAY_TOKEN_SHA256: `app=${tokenSha256("t".repeat(40))}`,
      RELAY_ALLOWED_FROM: "noreply@example.com",
    });
    expect(c.quotas).toEqual({
      recipientsPerMin: 500,
      recipientsPerDay: 10_000,
      bytesPerMin: 50 * 1024 * 1024,
      bytesPerDay: 1024 * 1024 * 1024,
    });
  });
});

describe("per-caller sender allowlists", () => {
  it("a caller limited to one sender can't send as another allowed sender; a caller without a list may use all", async () => {
    const t = await app({ config: { callerFrom: new Map([["billing", new Set(["support@example.com"])]]) } });
    const asNoreply = validBody();
    const asSupport = validBody({ from: "support@example.com" });
    const r = await post(t, asNoreply, TOKEN_BILLING);
    expect(r.statusCode).toBe(400);
    expect(r.json().error.code).toBe("from_not_allowed");
    expect((await post(t, asSupport, TOKEN_BILLING)).statusCode).toBe(202);
    expect((await post(t, asNoreply, TOKEN_APP)).statusCode).toBe(202);
    expect((await post(t, asSupport, TOKEN_APP)).statusCode).toBe(202);
  });

  it("RELAY_CALLER_FROM is read from the environment and must stay inside RELAY_ALLOWED_FROM", () => {
    const env = {
      SMTP_RELAY_TOKEN_SHA256: `app=${tokenSha256("a".repeat(40))},billing=${tokenSha256("b".repeat(40))}`,
      RELAY_ALLOWED_FROM: "noreply@example.com,tickets@example.com",
    };
    expect(loadConfig({ ...env, RELAY_CALLER_FROM: "billing=tickets@example.com" }).callerFrom.get("billing")).toEqual(
      new Set(["tickets@example.com"]),
    );
    expect(() => loadConfig({ ...env, RELAY_CALLER_FROM: "billing=ceo@example.com" })).toThrow(
      /RELAY_CALLER_FROM[\s\S]*not in RELAY_ALLOWED_FROM/,
    );
    expect(() => loadConfig({ ...env, RELAY_CALLER_FROM: "nobody=tickets@example.com" })).toThrow(/has no token/);
  });
});

describe("tokens are stored as SHA-256 digests", () => {
  it("the relay authenticates against SMTP_RELAY_TOKEN_SHA256 and never needs the token itself", async () => {
    const c = loadConfig({
      SMTP_RELAY_TOKEN_SHA256: `app=${tokenSha256(TOKEN_APP)}`,
      RELAY_ALLOWED_FROM: "noreply@example.com",
    });
    expect(c.tokens).toEqual([callerToken("app", TOKEN_APP)]);
    const t = await app({ config: { tokens: c.tokens } });
    expect((await post(t, validBody())).statusCode).toBe(202);
    // The digest itself is not a token.
    expect((await post(t, validBody(), tokenSha256(TOKEN_APP))).statusCode).toBe(401);
  });

  it("a malformed digest, or both variables at once, is refused at startup", () => {
    expect(() => loadConfig({ SMTP_RELAY_TOKEN_SHA256: "app=abc", RELAY_ALLOWED_FROM: "noreply@example.com" })).toThrow(
      /SMTP_RELAY_TOKEN_SHA256[\s\S]*64 hex/,
    );
    expect(() =>
      loadConfig({
        SMTP_RELAY_TOKEN_SHA256: `app=${tokenSha256("x")}`,
        SMTP_RELAY_TOKEN: `app=${"y".repeat(40)}`,
        RELAY_ALLOWED_FROM: "noreply@example.com",
      }),
    ).toThrow(/not both/);
  });
});
