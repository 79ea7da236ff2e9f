import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { IdempotencyKeys } from "../../relay/storage/idempotency-keys";
import { sha256 } from "../../relay/validate";

describe("IdempotencyKeys: key hash -> the message it created", () => {
  it("finds a key with its id and time, and tells whether the body matches the first use's", () => {
    const keys = new IdempotencyKeys();
    const id = randomUUID();
    keys.remember(sha256("app\norder-1"), sha256("{a}"), id, 1000);
    expect(keys.lookup(sha256("app\norder-1"), sha256("{a}"))).toEqual({ id, createdAt: 1000, sameBody: true });
    expect(keys.lookup(sha256("app\norder-1"), sha256("{b}"))).toMatchObject({ id, sameBody: false });
    expect(keys.lookup(sha256("billing\norder-1"), sha256("{a}"))).toBeUndefined(); // scoped per token by the hash
  });

  it("forgets keys first used at or before the cutoff, keeps the rest, across growth", () => {
    const keys = new IdempotencyKeys();
    const ids = Array.from({ length: 3000 }, () => randomUUID());
    ids.forEach((id, i) => keys.remember(sha256(`k${i}`), sha256(`b${i}`), id, i));
    keys.forgetBefore(1499);
    expect(keys.size).toBe(1500);
    expect(keys.lookup(sha256("k1499"), sha256("b1499"))).toBeUndefined();
    expect(keys.lookup(sha256("k1500"), sha256("b1500"))).toEqual({ id: ids[1500], createdAt: 1500, sameBody: true });
    keys.remember(sha256("k0"), sha256("b0"), ids[0] as string, 5000); // a forgotten key can be used anew
    expect(keys.lookup(sha256("k0"), sha256("b0"))).toMatchObject({ id: ids[0], createdAt: 5000 });
    expect(keys.size).toBe(1501);
  });

  it("a hash that is not lowercase hex SHA-256 (a damaged file) is neither remembered nor matched", () => {
    const keys = new IdempotencyKeys();
    keys.remember("not-a-hash", sha256("b"), randomUUID(), 1);
    keys.remember(sha256("k"), "not-a-hash", randomUUID(), 1);
    expect(keys.size).toBe(0);
    expect(keys.lookup("not-a-hash", sha256("b"))).toBeUndefined();
  });
});
