// Rotating a caller's token without a gap: during the rotation the host lists two digests for the caller
// (SMTP_RELAY_TOKEN_SHA256 name=<new>|<old>, what the program renders for rotations.relayTokens.<caller> [1, 2]), both
// tokens authenticate as that one caller (one rate limit, one quota), and the second step's env drops the old one.
import { describe, expect, it } from "vitest";
import { loadConfig, tokenSha256 } from "../../relay/config";
import { appsClosedAfterEach, auth, validBody, type TestApp } from "./fixtures";

const app = appsClosedAfterEach();
const OLD = "app-old-token-0123456789abcdefghijklmnopqrstu";
const NEW = "app-new-token-0123456789abcdefghijklmnopqrstu";
const post = (t: TestApp, token: string) =>
  t.app.inject({ method: "POST", url: "/send", headers: auth(token), payload: JSON.stringify(validBody()) });
const env = (digests: string) => ({ SMTP_RELAY_TOKEN_SHA256: digests, RELAY_ALLOWED_FROM: "noreply@example.com" });

describe("a caller's token during a rotation", () => {
  it("both the old and the new token are accepted, as the same caller (they share its quota)", async () => {
    const c = loadConfig(env(`app=${tokenSha256(NEW)}|${tokenSha256(OLD)}`));
    expect(c.tokens.map((t) => t.name)).toEqual(["app", "app"]);
    const t = await app({
      config: {
        tokens: c.tokens,
        quotas: { recipientsPerMin: 2, recipientsPerDay: 100, bytesPerMin: 1 << 20, bytesPerDay: 1 << 30 },
      },
    });
    expect((await post(t, OLD)).statusCode).toBe(202);
    expect((await post(t, NEW)).statusCode).toBe(202);
    // One caller: the third recipient this minute is over app's quota, whichever token sends it.
    expect((await post(t, OLD)).statusCode).toBe(429);
    expect((await post(t, "x".repeat(40))).statusCode).toBe(401);
  });

  it("after the rotation's second step only the new token works", async () => {
    const c = loadConfig(env(`app=${tokenSha256(NEW)}`));
    const t = await app({ config: { tokens: c.tokens } });
    expect((await post(t, NEW)).statusCode).toBe(202);
    expect((await post(t, OLD)).statusCode).toBe(401);
  });

  it.each([
    [`app=${tokenSha256(NEW)},app=${tokenSha256(OLD)}`, /"app" is used twice .*name=<hex>\|<hex>/],
    [`app=${tokenSha256(NEW)}|${tokenSha256(OLD)}|${tokenSha256("z".repeat(40))}`, /lists 3 digests; at most 2/],
    [`app=${tokenSha256(NEW)}|${tokenSha256(NEW)}`, /the same token is listed twice/],
    [`app=${tokenSha256(NEW)}|abc`, /name=<hex>\|<hex> while its token is rotated/],
  ])("%s is refused at startup with the fix", (digests, message) => {
    expect(() => loadConfig(env(digests))).toThrow(message);
  });
});
