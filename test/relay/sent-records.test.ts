import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { SentRecord } from "../../relay/storage/job";
import { SentRecords } from "../../relay/storage/sent-records";

const rec = (over: Partial<SentRecord> = {}): SentRecord => ({
  id: randomUUID(),
  caller: "app",
  createdAt: 1000,
  handedOffAt: 2000,
  attempts: 1,
  recipientCount: 3,
  postfixQueueId: "4XyZ12abc",
  ...over,
});

describe("SentRecords (hand-off records in typed columns)", () => {
  it("gives back every field status needs, for each caller and queue id shape, and forgets a deleted id", () => {
    const s = new SentRecords();
    const a = rec();
    const b = rec({ caller: "billing", attempts: 7, postfixQueueId: undefined });
    const c = rec({ postfixQueueId: "4dXyZ9k1mN2pQ3rS4tU" }); // longer than the inline 16 bytes
    for (const r of [a, b, c]) s.set(r);
    const { idempotency: _a, ...aView } = a;
    expect(s.get(a.id)).toEqual(aView);
    const { postfixQueueId: _q, ...bView } = b;
    expect(s.get(b.id)).toEqual(bView);
    expect(s.get(c.id)?.postfixQueueId).toBe("4dXyZ9k1mN2pQ3rS4tU");
    expect(s.size).toBe(3);
    s.delete(b.id);
    expect(s.get(b.id)).toBeUndefined();
    expect(s.has(a.id)).toBe(true);
    expect(s.get(randomUUID())).toBeUndefined();
  });

  it("a later record of an id replaces the earlier one (the log's latest line wins)", () => {
    const s = new SentRecords();
    const a = rec();
    s.set(a);
    s.set({ ...a, attempts: 2, postfixQueueId: "QNEW" });
    expect(s.size).toBe(1);
    expect(s.get(a.id)).toMatchObject({ attempts: 2, postfixQueueId: "QNEW" });
  });

  it("forgetBefore drops exactly the records handed off at or before the cutoff; freed slots are reused", () => {
    const s = new SentRecords();
    const old = Array.from({ length: 3000 }, (_, i) => rec({ handedOffAt: i }));
    const young = Array.from({ length: 3000 }, (_, i) => rec({ handedOffAt: 10_000 + i }));
    for (const r of [...old, ...young]) s.set(r);
    expect(s.forgetBefore(2999)).toBe(3000);
    expect(old.some((r) => s.has(r.id))).toBe(false);
    expect(young.every((r) => s.get(r.id)?.handedOffAt === r.handedOffAt)).toBe(true);
    for (const r of old) s.set(r);
    expect(s.size).toBe(6000);
  });
});
