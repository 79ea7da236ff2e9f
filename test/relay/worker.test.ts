import { randomUUID } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import type { Handoff, HandoffMessage } from "../../relay/handoff/types";
import { HandoffError } from "../../relay/handoff/types";
import { QueueStore, type Job } from "../../relay/storage/queue";
import { QueueWorker } from "../../relay/worker";
import { captureLog, queueOptions, tempDir } from "./fixtures";

const dirs: { cleanup(): void }[] = [];
afterEach(() => {
  while (dirs.length) dirs.pop()?.cleanup();
});

function job(nextAttemptAt: number): Job {
  const now = Date.now();
  return {
    id: randomUUID(),
    caller: "app",
    createdAt: now,
    attempts: 0,
    nextAttemptAt,
    envelope: { from: "noreply@example.com", to: ["u@example.net"] },
    subject: "s",
    recipientDomains: ["example.net"],
    tags: [],
    raw: "Subject: s\r\n\r\nx\r\n",
  };
}

/** A hand-off whose answers the test scripts; it records when each call starts and ends and how many overlap. */
function scriptedHandoff(answer: (n: number, msg: HandoffMessage) => { ms: number; fail?: HandoffError }) {
  const events: { n: number; id: string; kind: "start" | "ok" | "fail"; inFlight: number }[] = [];
  let inFlight = 0;
  let calls = 0;
  const handoff: Handoff = {
    kind: "smtp",
    check: async () => undefined,
    close: async () => undefined,
    send: async (msg) => {
      const n = ++calls;
      inFlight++;
      events.push({ n, id: msg.id, kind: "start", inFlight });
      const a = answer(n, msg);
      await new Promise((r) => setTimeout(r, a.ms));
      inFlight--;
      events.push({ n, id: msg.id, kind: a.fail ? "fail" : "ok", inFlight });
      if (a.fail) throw a.fail;
      return { queueId: `Q${n}` };
    },
  };
  return { handoff, events };
}

async function setup(jobs: number, concurrency: number, handoff: Handoff) {
  const t = tempDir("relay-worker-");
  dirs.push(t);
  const queue = new QueueStore(queueOptions(t.dir, { retryBaseMs: 60_000, maxAttempts: 5 }));
  await queue.open();
  const now = Date.now();
  const queued = Array.from({ length: jobs }, (_, i) => job(now - jobs + i));
  for (const j of queued) await queue.enqueue(j);
  const worker = new QueueWorker({ queue, handoff, log: captureLog().log, concurrency });
  return { queue, worker, queued };
}

async function until(cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("the worker hands off several jobs at once when asked to", () => {
  it("starts jobs in due order, never more than `concurrency` at once, and records each exactly once", async () => {
    const { handoff, events } = scriptedHandoff(() => ({ ms: 5 }));
    const { queue, worker, queued } = await setup(40, 4, handoff);
    worker.start();
    await until(() => queue.depth().sent === 40);
    await worker.stop();
    const starts = events.filter((e) => e.kind === "start");
    expect(starts.map((e) => e.id)).toEqual(queued.map((j) => j.id));
    expect(Math.max(...events.map((e) => e.inFlight))).toBe(4);
    expect(queue.depth()).toMatchObject({ pending: 0, processing: 0, sent: 40 });
  });

  it("serial by default", async () => {
    const { handoff, events } = scriptedHandoff(() => ({ ms: 2 }));
    const { queue, worker } = await setup(10, 1, handoff);
    worker.start();
    await until(() => queue.depth().sent === 10);
    await worker.stop();
    expect(Math.max(...events.map((e) => e.inFlight))).toBe(1);
  });

  it("after a 4xx the pool hands off one job at a time until a hand-off succeeds, then widens again", async () => {
    const { handoff, events } = scriptedHandoff((n) =>
      n === 1
        ? { ms: 30, fail: new HandoffError("SMTP 451 4.7.1 Service unavailable - try again later") }
        : n <= 6
          ? { ms: 30, fail: new HandoffError("SMTP 451 4.7.1 try later") }
          : { ms: 10 },
    );
    const { queue, worker } = await setup(30, 4, handoff);
    worker.start();
    await until(
      () =>
        queue.depth().sent + queue.depth().pending === 30 &&
        queue.depth().processing === 0 &&
        events.filter((e) => e.kind !== "start").length >= 30,
    );
    await worker.stop();
    const firstFail = events.findIndex((e) => e.kind === "fail");
    const firstOkAfter = events.findIndex((e, i) => i > firstFail && e.kind === "ok");
    // Between the first failure and the first success, every job started alone.
    const startsBetween = events.slice(firstFail + 1, firstOkAfter).filter((e) => e.kind === "start");
    expect(startsBetween.length).toBeGreaterThanOrEqual(3);
    for (const e of startsBetween) expect(e.inFlight).toBe(1);
    // ...and after it the pool is back to 4 at once.
    expect(Math.max(...events.slice(firstOkAfter).map((e) => e.inFlight))).toBe(4);
    expect(queue.depth().pending).toBe(6); // the six refused jobs wait for their backoff, attempts 1
  });

  it("stop() waits for every job in hand", async () => {
    const { handoff, events } = scriptedHandoff(() => ({ ms: 100 }));
    const { queue, worker } = await setup(8, 4, handoff);
    worker.start();
    await until(() => events.filter((e) => e.kind === "start").length === 4);
    await worker.stop();
    expect(events.filter((e) => e.kind === "ok")).toHaveLength(4);
    expect(queue.depth()).toMatchObject({ processing: 0, pending: 4, sent: 4 });
  });
});
