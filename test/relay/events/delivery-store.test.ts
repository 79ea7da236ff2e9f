import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import {
  DELIVERY_STATES,
  DeliveryStore,
  type DeliveryState,
  type MessageDelivery,
} from "../../../relay/storage/delivery-store";
import type { LogFact } from "../../../relay/events/postfix-log";
import { tempDir } from "../fixtures";
import { DeliveryStore as LegacyStore } from "./legacy-delivery-store";

const DOMAIN = "mail.example.com";
const LONG = 3650 * 86_400_000;
const IDS = Array.from({ length: 6 }, (_, i) => `6f1c2d3e-0000-4000-8000-${String(i * 7919).padStart(12, "0")}`);
const CALLERS = ["app", "billing"];
const RCPTS = ["a@example.net", "b@example.net", "B@Example.net", "c@example.org"];
const QIDS = ["4ZA1", "4ZA2", "4ZA3", "4ZA4", "4ZA5"];
const T0 = Date.UTC(2026, 11, 1, 12, 0, 0);

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});
function dir(prefix: string): string {
  const t = tempDir(prefix);
  cleanups.push(t.cleanup);
  return t.dir;
}

type Fact =
  | { k: "mid"; msg: number; qid: number; foreign: boolean }
  | { k: "rcpt"; qid: number; rcpt: number; status: "sent" | "deferred" | "bounced" }
  | { k: "expired"; qid: number }
  | { k: "removed"; qid: number };
type Op =
  | { k: "handoff"; msg: number; caller: number; qid: number | null; to: number[]; at: boolean; tick: number }
  | { k: "facts"; facts: Fact[]; commit: boolean; tick: number }
  | { k: "restart" }
  | { k: "compact" };

const factArb: fc.Arbitrary<Fact> = fc.oneof(
  fc.record({
    k: fc.constant("mid" as const),
    msg: fc.nat(IDS.length - 1),
    qid: fc.nat(QIDS.length - 1),
    foreign: fc.boolean(),
  }),
  fc.record({
    k: fc.constant("rcpt" as const),
    qid: fc.nat(QIDS.length - 1),
    rcpt: fc.nat(RCPTS.length - 1),
    status: fc.constantFrom("sent" as const, "deferred" as const, "bounced" as const),
  }),
  fc.record({ k: fc.constant("expired" as const), qid: fc.nat(QIDS.length - 1) }),
  fc.record({ k: fc.constant("removed" as const), qid: fc.nat(QIDS.length - 1) }),
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant("handoff" as const),
      msg: fc.nat(IDS.length - 1),
      caller: fc.nat(CALLERS.length - 1),
      qid: fc.option(fc.nat(QIDS.length - 1)),
      to: fc.array(fc.nat(RCPTS.length - 1), { minLength: 1, maxLength: 3 }),
      at: fc.boolean(),
      tick: fc.nat(2),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant("facts" as const),
      facts: fc.array(factArb, { maxLength: 6 }),
      commit: fc.boolean(),
      tick: fc.nat(2),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("restart" as const) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("compact" as const) }) },
);

function toFacts(facts: Fact[], at: number): { fact: LogFact; line: number }[] {
  return facts.map((f, line) => {
    const queueId = QIDS[f.qid] as string;
    switch (f.k) {
      case "mid":
        return {
          line,
          fact: {
            kind: "message-id",
            queueId,
            messageId: `${IDS[f.msg]}@${f.foreign ? "other.example" : DOMAIN}`,
            at,
          },
        };
      case "rcpt":
        return {
          line,
          fact: {
            kind: "recipient",
            queueId,
            recipient: RCPTS[f.rcpt] as string,
            status: f.status,
            dsn: f.status === "sent" ? "2.0.0" : f.status === "deferred" ? "4.4.1" : "5.1.1",
            relay: "mx.example.net[192.0.2.1]:25",
            delaySeconds: 30,
            reply: `reply for ${f.status}`,
            at,
          },
        };
      case "expired":
        return { line, fact: { kind: "expired", queueId, at } };
      case "removed":
        return { line, fact: { kind: "removed", queueId, at } };
      default: {
        const never: never = f;
        throw new Error(`unknown ${JSON.stringify(never)}`);
      }
    }
  });
}

/**
 * A message as callers see it. `updatedAt` (used only for retention, never shown) is left out: the old store set it
 * to the replay's clock for a message known only from a hand-off without `at`; the new one keeps the first time.
 */
function shown(m: MessageDelivery | undefined): Omit<MessageDelivery, "updatedAt"> | undefined {
  if (!m) return m;
  const { updatedAt: _updatedAt, ...rest } = m;
  return rest;
}

/** Every answer of `get` and of `list` (each caller, state, since, a second page) is the oracle's. */
function expectSameAnswers(store: DeliveryStore, oracle: LegacyStore, now: number): void {
  for (const id of IDS) expect(shown(store.get(id)), `get(${id})`).toEqual(shown(oracle.get(id)));
  for (const caller of [...CALLERS, "nobody"])
    for (const state of [undefined, ...DELIVERY_STATES] as (DeliveryState | undefined)[])
      for (const since of [undefined, T0 + Math.floor((now - T0) / 2)])
        for (const limit of [2, 100]) {
          const q = { limit, ...(state ? { state } : {}), ...(since !== undefined ? { since } : {}) };
          const first = store.list(caller, q);
          expect(first.map(shown), `list(${caller}, ${JSON.stringify(q)})`).toEqual(oracle.list(caller, q).map(shown));
          const last = first[first.length - 1];
          if (last?.handedOffAt === undefined) continue;
          const next = { ...q, after: { at: last.handedOffAt, id: last.id } };
          expect(store.list(caller, next).map(shown), `list(${caller}, ${JSON.stringify(next)})`).toEqual(
            oracle.list(caller, next).map(shown),
          );
        }
}

describe("the delivery store keeps per-message state on disk and answers as the in-memory store did", () => {
  it("any sequence of hand-offs, log batches (committed or lost to a crash), restarts and compactions: every get, list, page and event is the old store's", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
        let now = T0;
        const clock = () => now;
        // Tiny thresholds: checkpoints and compactions run all the time, in the background, between the ops.
        const opts = {
          messageIdDomain: DOMAIN,
          retentionMs: LONG,
          now: clock,
          checkpointBytes: 256,
          compactBytes: 1024,
        };
        const store = new DeliveryStore(dir("ds-new-"), opts);
        const oracle = new LegacyStore(dir("ds-old-"), { messageIdDomain: DOMAIN, retentionMs: LONG, now: clock });
        await store.open();
        await oracle.open();
        let offset = 0;
        try {
          for (const op of ops) {
            switch (op.k) {
              case "handoff": {
                now += op.tick;
                const h = {
                  id: IDS[op.msg] as string,
                  caller: CALLERS[op.caller] as string,
                  to: op.to.map((i) => RCPTS[i] as string),
                  ...(op.at ? { at: now } : {}),
                  ...(op.qid !== null ? { postfixQueueId: QIDS[op.qid] as string } : {}),
                };
                await store.recordHandoff(h);
                await oracle.recordHandoff(h);
                break;
              }
              case "facts": {
                now += op.tick;
                offset += 100;
                const after = { inode: 7, offset };
                const facts = toFacts(op.facts, now);
                const a = store.plan(facts, after);
                const b = oracle.plan(facts, after);
                expect(a.events).toEqual(b.events);
                if (op.commit) {
                  await store.commit(a.records, after);
                  await oracle.commit(b.records, after);
                } else {
                  // The relay died after planning (side effects done) and before the batch was stored.
                  await store.open();
                  await oracle.close();
                  await oracle.open();
                }
                break;
              }
              case "restart":
                await store.close();
                await oracle.close();
                await store.open();
                await oracle.open();
                expect(store.position).toEqual(oracle.position);
                break;
              case "compact":
                await store.compact();
                break;
              default: {
                const never: never = op;
                throw new Error(`unknown ${JSON.stringify(never)}`);
              }
            }
            expectSameAnswers(store, oracle, now);
          }
        } finally {
          await store.close();
          await oracle.close();
        }
      }),
      { numRuns: 60 },
    );
  }, 120_000);

  it("thousands of messages over many order blocks, rare states and callers, hand-offs out of time order: every page of every list is the old store's", async () => {
    const now = () => T0;
    const opts = { messageIdDomain: DOMAIN, retentionMs: LONG, now };
    const store = new DeliveryStore(dir("ds-many-"), opts);
    const oracle = new LegacyStore(dir("ds-many-old-"), opts);
    await store.open();
    await oracle.open();
    const rng = fc.sample(fc.tuple(fc.nat(999), fc.nat(99), fc.nat(99)), { numRuns: 3000, seed: 42 });
    const ids = rng.map((_, i) => `7a000000-0000-4000-8000-${String(i).padStart(12, "0")}`);
    const callers = ["app", "billing", "rare"];
    // In waves of 100 concurrent hand-offs (as the worker's), then one log batch per wave.
    for (let w = 0; w < ids.length; w += 100) {
      const wave = ids.slice(w, w + 100).map((id, k) => {
        const i = w + k;
        const [jitter, c, st] = rng[i] as [number, number, number];
        const h = {
          id,
          caller: callers[c < 3 ? 2 : c % 2] as string,
          to: ["a@example.net"],
          postfixQueueId: `Q${i}`,
          // mostly in time order, some earlier than the ones before (concurrent hand-offs), many at the same ms
          at: T0 + Math.floor(i / 3) - (jitter < 50 ? jitter : 0),
        };
        const status: "bounced" | "deferred" | "sent" | undefined =
          st < 2 ? "bounced" : st < 10 ? "deferred" : st < 95 ? "sent" : undefined;
        return { h, i, status };
      });
      await Promise.all(wave.map(({ h }) => store.recordHandoff(h)));
      for (const { h } of wave) await oracle.recordHandoff(h);
      const facts = wave.flatMap(({ i, status }) =>
        status
          ? [
              {
                line: i,
                fact: {
                  kind: "recipient" as const,
                  queueId: `Q${i}`,
                  recipient: "a@example.net",
                  status,
                  dsn: "2.0.0",
                  relay: "mx",
                  delaySeconds: 1,
                  reply: "r",
                  at: T0 + i,
                },
              },
            ]
          : [],
      );
      const pos = { inode: 1, offset: w };
      await store.commit(store.plan(facts, pos).records, pos);
      await oracle.commit(oracle.plan(facts, pos).records, pos);
    }
    // a later change of state (deferred -> delivered) on old messages, so block summaries go stale
    const later = ids.flatMap((_, i) =>
      i % 7 === 0
        ? [
            {
              line: i,
              fact: {
                kind: "recipient" as const,
                queueId: `Q${i}`,
                recipient: "a@example.net",
                status: "sent" as const,
                dsn: "2.0.0",
                relay: "mx",
                delaySeconds: 1,
                reply: "r",
                at: T0 + 5000,
              },
            },
          ]
        : [],
    );
    const pos = { inode: 2, offset: 1 };
    await store.commit(store.plan(later, pos).records, pos);
    await oracle.commit(oracle.plan(later, pos).records, pos);
    for (const reopen of [false, true]) {
      if (reopen) {
        await store.close();
        await store.open();
      }
      for (const caller of callers)
        for (const state of [undefined, ...DELIVERY_STATES] as (DeliveryState | undefined)[]) {
          let after: { at: number; id: string } | undefined;
          for (let page = 0; page < 200; page++) {
            const q = { limit: 100, ...(state ? { state } : {}), ...(after ? { after } : {}) };
            const got = store.list(caller, q).map(shown);
            expect(got, `${caller} ${state} page ${page}`).toEqual(oracle.list(caller, q).map(shown));
            const last = got[got.length - 1];
            if (!last || got.length < 100) break;
            after = { at: last.handedOffAt as number, id: last.id };
          }
        }
    }
    await store.close();
    await oracle.close();
  }, 120_000);

  it("a message whose record passes 64 KiB (hundreds of long recipients) reads back whole: live, after a restart, after compaction", async () => {
    const root = dir("ds-long-");
    const opts = { messageIdDomain: DOMAIN, retentionMs: LONG, now: () => T0 };
    const to = Array.from({ length: 400 }, (_, i) => `${"x".repeat(200)}.${i}@example.net`);
    const s = new DeliveryStore(root, opts);
    await s.open();
    await s.recordHandoff({ id: IDS[0] as string, caller: "app", to, postfixQueueId: "QL", at: T0 });
    await s.recordHandoff({ id: IDS[1] as string, caller: "app", to: ["a@example.net"], at: T0 + 1 });
    const check = (st: DeliveryStore) => {
      expect(st.get(IDS[0] as string)?.recipients.map((r) => r.address)).toEqual(to);
      expect(st.list("app", { limit: 10 }).map((m) => m.recipients.length)).toEqual([400, 1]);
    };
    check(s);
    await s.close();
    const t = new DeliveryStore(root, opts);
    await t.open();
    check(t);
    await t.compact();
    check(t);
    await t.close();
  });

  it("a journal written by the old store is read once and rewritten as whole-message records; nothing is lost", async () => {
    const root = dir("ds-migrate-");
    const now = () => T0;
    const old = new LegacyStore(root, { messageIdDomain: DOMAIN, retentionMs: LONG, now });
    const reference = new LegacyStore(dir("ds-ref-"), { messageIdDomain: DOMAIN, retentionMs: LONG, now });
    await old.open();
    await reference.open();
    for (const s of [old, reference]) {
      for (const [i, id] of IDS.entries())
        await s.recordHandoff({
          id,
          caller: CALLERS[i % 2] as string,
          to: ["a@example.net"],
          postfixQueueId: `Q${i}`,
          at: T0 + i,
        });
      const facts = IDS.map((id, i) => ({
        line: i,
        fact: {
          kind: "recipient" as const,
          queueId: `Q${i}`,
          recipient: "a@example.net",
          status: i % 2 === 0 ? ("sent" as const) : ("deferred" as const),
          dsn: "2.0.0",
          relay: "mx",
          delaySeconds: 1,
          reply: "ok",
          at: T0 + 10,
        },
      }));
      await s.commit(s.plan(facts, { inode: 3, offset: 99 }).records, { inode: 3, offset: 99 });
      await s.close();
    }
    const file = path.join(root, "events", "deliveries.jsonl");
    expect(readFileSync(file, "utf8")).not.toContain('"t":"j"');
    const store = new DeliveryStore(root, { messageIdDomain: DOMAIN, retentionMs: LONG, now });
    const opened = await store.open();
    expect(opened.messages).toBe(IDS.length);
    await reference.open();
    expect(store.position).toEqual({ inode: 3, offset: 99 });
    expectSameAnswers(store, reference, T0 + 10);
    const lines = readFileSync(file, "utf8").split("\n").filter(Boolean);
    expect(JSON.parse(lines[0] as string).t).toBe("j");
    expect(lines.map((l) => (JSON.parse(l) as { t: string }).t)).not.toContain("r");
    // and a second start reads the new form the same way (from the checkpoint written at close)
    await store.close();
    const again = new DeliveryStore(root, { messageIdDomain: DOMAIN, retentionMs: LONG, now });
    expect((await again.open()).checkpoint).toBe(true);
    expectSameAnswers(again, reference, T0 + 10);
    await again.close();
    await reference.close();
  });

  it("a checkpoint for another journal (or a damaged one) is not used: the whole journal is read instead", async () => {
    const root = dir("ds-ckpt-");
    const opts = { messageIdDomain: DOMAIN, retentionMs: LONG, now: () => T0 };
    const a = new DeliveryStore(root, opts);
    await a.open();
    for (const id of IDS) await a.recordHandoff({ id, caller: "app", to: ["a@example.net"], at: T0 });
    await a.close();
    const idx = path.join(root, "events", "deliveries.idx");
    for (const damage of [
      (b: Buffer) => b.subarray(0, b.length - 5), // cut short
      (b: Buffer) => Buffer.concat([Buffer.from("XXXXXXXX"), b.subarray(8)]), // wrong magic
      (b: Buffer) =>
        Buffer.from(b.toString("latin1").replace(/"journal":"[0-9a-f-]+"/, `"journal":"${IDS[0]}"`), "latin1"),
    ]) {
      const good = readFileSync(idx);
      writeFileSync(idx, damage(good));
      const b = new DeliveryStore(root, opts);
      const opened = await b.open();
      expect(opened.checkpoint).toBe(false);
      expect(opened.messages).toBe(IDS.length);
      for (const id of IDS) expect(b.get(id)?.handedOffAt).toBe(T0);
      await b.close(); // writes a good checkpoint again
    }
  });

  it("messages not updated within the retention are dropped (at open and by compaction), the others kept", async () => {
    const root = dir("ds-retain-");
    let now = T0;
    const opts = { messageIdDomain: DOMAIN, retentionMs: 86_400_000, now: () => now };
    const s = new DeliveryStore(root, opts);
    await s.open();
    await s.recordHandoff({ id: IDS[0] as string, caller: "app", to: ["a@example.net"], at: now });
    now += 2 * 86_400_000;
    await s.recordHandoff({ id: IDS[1] as string, caller: "app", to: ["a@example.net"], at: now });
    await s.compact();
    expect(s.get(IDS[0] as string)).toBeUndefined();
    expect(s.get(IDS[1] as string)?.handedOffAt).toBe(now);
    expect(s.list("app", { limit: 10 }).map((m) => m.id)).toEqual([IDS[1]]);
    await s.close();
    now += 2 * 86_400_000;
    const t = new DeliveryStore(root, opts);
    expect((await t.open()).messages).toBe(0);
    await t.close();
  });
});
