import { describe, expect, it } from "vitest";
import { callerToken, ConfigError, loadConfig, parseTokens } from "../../relay/config";
import { MESSAGE_SIZE_FACTOR } from "../../relay/host-contract";

const good = {
  SMTP_RELAY_TOKEN: "app=0123456789abcdef0123456789abcdef,billing=fedcba9876543210fedcba9876543210",
  RELAY_ALLOWED_FROM: "noreply@example.com, Support@Example.com",
};

describe("relay environment", () => {
  it("defaults follow the issue: 127.0.0.1:2525, /var/spool/mail-relay, 8 attempts, 30 s doubling to 1 h, smtp://127.0.0.1:25", () => {
    const c = loadConfig(good);
    expect(c.listen).toEqual({ host: "127.0.0.1", port: 2525 });
    expect(c.queueRoot).toBe("/var/spool/mail-relay");
    expect([c.maxAttempts, c.retryBaseMs, c.retryMaxMs, c.handoffTimeoutMs]).toEqual([8, 30_000, 3_600_000, 30_000]);
    expect(c.handoff).toEqual({ kind: "smtp", host: "127.0.0.1", port: 25 });
    expect([c.rateLimitPerMin, c.bodyLimitBytes, c.maxRecipients]).toEqual([60, 524_288, 50]);
    expect(c.tokens.map((t) => t.name)).toEqual(["app", "billing"]);
    expect([...c.allowedFrom]).toEqual(["noreply@example.com", "support@example.com"]);
    expect(c.messageIdDomain).toBe("example.com");
  });

  it("RELAY_MAX_MESSAGE_BYTES defaults to 8x the body limit and may only be lowered (Postfix's message_size_limit is sized from 8x)", () => {
    expect(loadConfig(good).maxMessageBytes).toBe(MESSAGE_SIZE_FACTOR * 524_288);
    expect(loadConfig({ ...good, RELAY_BODY_LIMIT_BYTES: "100000" }).maxMessageBytes).toBe(
      MESSAGE_SIZE_FACTOR * 100_000,
    );
    expect(loadConfig({ ...good, RELAY_MAX_MESSAGE_BYTES: "2000000" }).maxMessageBytes).toBe(2_000_000);
    const tooBig = () => loadConfig({ ...good, RELAY_MAX_MESSAGE_BYTES: String(MESSAGE_SIZE_FACTOR * 524_288 + 1) });
    expect(tooBig).toThrow(ConfigError);
    expect(tooBig).toThrow(/RELAY_MAX_MESSAGE_BYTES/);
  });

  it("RELAY_HANDOFF_CONCURRENCY: 4 hand-offs at once by default (bench:handoff), 1 to 32", () => {
    expect(loadConfig(good).handoffConcurrency).toBe(4);
    expect(loadConfig({ ...good, RELAY_HANDOFF_CONCURRENCY: "1" }).handoffConcurrency).toBe(1);
    for (const bad of ["0", "33", "two"])
      expect(() => loadConfig({ ...good, RELAY_HANDOFF_CONCURRENCY: bad })).toThrow(/RELAY_HANDOFF_CONCURRENCY/);
  });

  it("RELAY_FAST_PATH_WAIT_MS: a fast-path request waits up to 1000 ms for a busy connection by default, 0 to 30000", () => {
    expect(loadConfig(good).fastPathWaitMs).toBe(1000);
    expect(loadConfig({ ...good, RELAY_FAST_PATH_WAIT_MS: "0" }).fastPathWaitMs).toBe(0);
    expect(loadConfig({ ...good, RELAY_FAST_PATH_WAIT_MS: "30000" }).fastPathWaitMs).toBe(30000);
    for (const bad of ["-1", "30001", "1s", "1.5"])
      expect(() => loadConfig({ ...good, RELAY_FAST_PATH_WAIT_MS: bad })).toThrow(/RELAY_FAST_PATH_WAIT_MS/);
  });

  it("RELAY_HANDOFF=sendmail uses SENDMAIL_PATH", () => {
    expect(loadConfig({ ...good, RELAY_HANDOFF: "sendmail" }).handoff).toEqual({
      kind: "sendmail",
      path: "/usr/sbin/sendmail",
    });
    expect(loadConfig({ ...good, RELAY_HANDOFF: "sendmail", SENDMAIL_PATH: "/opt/x/sendmail" }).handoff).toEqual({
      kind: "sendmail",
      path: "/opt/x/sendmail",
    });
  });

  it("every bad variable is named in one error", () => {
    const env = {
      RELAY_LISTEN: "0.0.0.0",
      SMTP_RELAY_TOKEN: "short",
      RELAY_ALLOWED_FROM: "not-an-address",
      QUEUE_ROOT: "relative/path",
      QUEUE_MAX_ATTEMPTS: "eight",
      QUEUE_RETRY_BASE_MS: "-5",
      QUEUE_RETRY_MAX_MS: "1.5",
      SENDMAIL_TIMEOUT_MS: "10",
      RELAY_HANDOFF: "http://127.0.0.1:25",
      SENDMAIL_PATH: "sendmail",
      RELAY_RATE_LIMIT_PER_MIN: "0",
      RELAY_BODY_LIMIT_BYTES: "lots",
      RELAY_MAX_RECIPIENTS: "0",
      RELAY_MESSAGE_ID_DOMAIN: "not a domain",
      RELAY_MIN_FREE_BYTES: "x",
      LOG_LEVEL: "chatty",
    };
    let err: unknown;
    try {
      loadConfig(env);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const names = Object.keys(env);
    expect([...new Set((err as ConfigError).variables)].sort()).toEqual(names.sort());
    for (const n of names) expect((err as ConfigError).message).toContain(`- ${n}:`);
  });

  it("a missing token or allowlist is named", () => {
    expect(() => loadConfig({})).toThrow(/SMTP_RELAY_TOKEN[\s\S]*RELAY_ALLOWED_FROM/);
  });

  it("the error never echoes a token value", () => {
    const secret = "tooShortButSecret";
    expect(() => loadConfig({ ...good, SMTP_RELAY_TOKEN: secret })).toThrow(ConfigError);
    try {
      loadConfig({ ...good, SMTP_RELAY_TOKEN: `app=${secret}` });
    } catch (e) {
      expect((e as Error).message).not.toContain(secret);
      expect((e as Error).message).toMatch(/token #1 \(app\) is 17 characters; each token needs at least 32/);
    }
  });

  it("token names: optional name= prefix, base64 padding is not mistaken for a name, duplicates refused", () => {
    const b64 = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=";
    expect(parseTokens(b64).tokens).toEqual([callerToken("caller-1", b64)]);
    expect(parseTokens(`ci=${b64}`).tokens).toEqual([callerToken("ci", b64)]);
    expect(parseTokens(`a=${"x".repeat(32)},a=${"y".repeat(32)}`).problems).toContain('caller name "a" is used twice');
    expect(parseTokens(`${"x".repeat(32)},${"x".repeat(32)}`).problems).toContain("the same token is listed twice");
    expect(parseTokens("bad name!=" + "x".repeat(32)).problems[0]).toMatch(/caller name/);
  });

  it("QUEUE_RETRY_MAX_MS below QUEUE_RETRY_BASE_MS is refused", () => {
    expect(() => loadConfig({ ...good, QUEUE_RETRY_BASE_MS: "5000", QUEUE_RETRY_MAX_MS: "1000" })).toThrow(
      /QUEUE_RETRY_MAX_MS/,
    );
  });

  it("RELAY_LISTEN accepts IPv6 in brackets and RELAY_HANDOFF any smtp host:port", () => {
    const c = loadConfig({ ...good, RELAY_LISTEN: "[::1]:2626", RELAY_HANDOFF: "smtp://127.0.0.1:10025" });
    expect(c.listen).toEqual({ host: "::1", port: 2626 });
    expect(c.handoff).toEqual({ kind: "smtp", host: "127.0.0.1", port: 10025 });
  });
});
