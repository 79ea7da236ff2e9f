import { promises as fsp, readdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { randomUUID } from "node:crypto";
import { afterEach, describe, expect, it, vi } from "vitest";
import { callbackFs } from "../../relay/storage/callback-fs";
import { backoffMs, FRESH_MAX_BYTES, LoadStopped, QueueStore, type Job } from "../../relay/storage/queue";
import { SENT_LOG } from "../../relay/storage/sent-log";
import { sha256 } from "../../relay/validate";
import { queueOptions, tempDir } from "./fixtures";

const dirs: { cleanup(): void }[] = [];
afterEach(() => {
  vi.restoreAllMocks();
  while (dirs.length) dirs.pop()?.cleanup();
});

function root(): string {
  const t = tempDir("relay-queue-");
  dirs.push(t);
  return t.dir;
}

function job(now: number, over: Partial<Job> = {}): Job {
  return {
    id: randomUUID(),
    caller: "app",
    createdAt: now,
    attempts: 0,
    nextAttemptAt: now,
    envelope: { from: "noreply@example.com", to: ["user@example.net"] },
    subject: "s",
    recipientDomains: ["example.net"],
    tags: [],
    raw: "Subject: s\r\n\r\nbody\r\n",
    ...over,
  };
}

const files = (r: string, d: string) => readdirSync(path.join(r, d)).filter((f) => f.endsWith(".json"));
const logLines = (r: string): string[] =>
  readFileSync(path.join(r, SENT_LOG), "utf8")
    .split("\n")
    .filter((l) => l !== "");

describe("backoff schedule", () => {
  it("30 s doubling, capped at 1 h", () => {
    const sched = Array.from({ length: 9 }, (_, i) => backoffMs(i + 1, 30_000, 3_600_000));
    expect(sched).toEqual([30_000, 60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000, 3_600_000]);
    expect(backoffMs(1000, 30_000, 3_600_000)).toBe(3_600_000); // no overflow for silly attempt counts
  });
});

describe("queue transitions", () => {
  it("an accepted job is a complete file in pending/ before enqueue resolves, and nothing is left in tmp/", async () => {
    const r = root();
    const q = new QueueStore(queueOptions(r));
    await q.open();
    const j = job(Date.now());
    await q.enqueue(j);
    expect(files(r, "pending")).toEqual([`${j.id}.json`]);
    expect(JSON.parse(await fsp.readFile(path.join(r, "pending", `${j.id}.json`), "utf8"))).toEqual(j);
    expect(readdirSync(path.join(r, "tmp"))).toEqual([]);
  });

  it("pending -> processing -> sent keeps a small record with the postfix queue id and drops the message", async () => {
    const r = root();
    const q = new QueueStore(queueOptions(r));
    await q.open();
    const j = job(Date.now());
    await q.enqueue(j);
    const claimed = await q.claimNext();
    expect(claimed?.id).toBe(j.id);
    expect(files(r, "pending")).toEqual([]);
    expect(files(r, "processing")).toEqual([`${j.id}.json`]);
    expect((await q.status(j.id))?.state).toBe("sending");
    await q.markSent(claimed as Job, "4XyZ12abc");
    expect(files(r, "processing")).toEqual([]);
    expect(files(r, "sent")).toEqual([]); // one log line per record, no file per message
    const rec = JSON.parse(await fsp.readFile(path.join(r, SENT_LOG), "utf8"));
    expect(rec).toMatchObject({ id: j.id, postfixQueueId: "4XyZ12abc", attempts: 1 });
    expect(rec.raw).toBeUndefined();
    expect(await q.status(j.id)).toMatchObject({ state: "handed_off", postfixQueueId: "4XyZ12abc", attempts: 1 });
  });

  it("a failed attempt goes back to pending/ with nextAttemptAt from the backoff, and is not due before then", async () => {
    const r = root();
    let now = 1_000_000;
    const q = new QueueStore(
      queueOptions(r, { now: () => now, retryBaseMs: 30_000, retryMaxMs: 3_600_000, maxAttempts: 8 }),
    );
    await q.open();
    await q.enqueue(job(now));
    const c1 = (await q.claimNext()) as Job;
    const r1 = await q.markAttemptFailed(c1, "SMTP 451 4.7.1 milter unavailable", false);
    expect(r1).toEqual({ state: "pending", nextAttemptAt: now + 30_000 });
    expect(await q.claimNext()).toBeNull();
    now += 29_999;
    expect(await q.claimNext()).toBeNull();
    now += 1;
    const c2 = (await q.claimNext()) as Job;
    expect(c2).toMatchObject({ id: c1.id, attempts: 1, lastError: "SMTP 451 4.7.1 milter unavailable" });
    expect((await q.markAttemptFailed(c2, "again", false)).nextAttemptAt).toBe(now + 60_000);
    expect(await q.status(c1.id)).toMatchObject({ state: "queued", attempts: 2, lastError: "again" });
  });

  it("after the last attempt the job moves to failed/ with its last error", async () => {
    const r = root();
    let now = 0;
    const q = new QueueStore(queueOptions(r, { now: () => now, maxAttempts: 3, retryBaseMs: 10, retryMaxMs: 10 }));
    await q.open();
    const j = job(now);
    await q.enqueue(j);
    for (let i = 0; i < 3; i++) {
      const c = (await q.claimNext()) as Job;
      expect(c).not.toBeNull();
      await q.markAttemptFailed(c, `fail ${i + 1}`, false);
      now += 10;
    }
    expect(files(r, "failed")).toEqual([`${j.id}.json`]);
    expect(files(r, "pending")).toEqual([]);
    expect(await q.claimNext()).toBeNull();
    expect(await q.status(j.id)).toMatchObject({ state: "failed", attempts: 3, lastError: "fail 3" });
  });

  it("a permanent failure (5xx) goes to failed/ at once", async () => {
    const r = root();
    const q = new QueueStore(queueOptions(r, { maxAttempts: 8 }));
    await q.open();
    await q.enqueue(job(Date.now()));
    const c = (await q.claimNext()) as Job;
    expect((await q.markAttemptFailed(c, "SMTP 550 5.1.1 no such user", true)).state).toBe("failed");
    expect(files(r, "failed")).toHaveLength(1);
  });

  it("jobs are claimed in due order, oldest first for equal times", async () => {
    const r = root();
    let now = 100;
    const q = new QueueStore(queueOptions(r, { now: () => now }));
    await q.open();
    const late = job(now, { nextAttemptAt: 150 });
    const a = job(now);
    const b = job(now);
    await q.enqueue(late);
    await q.enqueue(a);
    await q.enqueue(b);
    now = 200;
    const order = [];
    for (let c = await q.claimNext(); c; c = await q.claimNext()) order.push(c.id);
    expect(order).toEqual([a.id, b.id, late.id]);
  });
});

describe("recovery at startup", () => {
  it("anything left in processing/ goes back to pending/ and is sent again", async () => {
    const r = root();
    const q1 = new QueueStore(queueOptions(r));
    await q1.open();
    const j = job(Date.now());
    await q1.enqueue(j);
    await q1.claimNext(); // crash while handing off: the file stays in processing/
    expect(files(r, "processing")).toHaveLength(1);

    const q2 = new QueueStore(queueOptions(r));
    const report = await q2.open();
    expect(report).toMatchObject({ recoveredFromProcessing: 1, pending: 1 });
    expect(files(r, "processing")).toEqual([]);
    expect((await q2.claimNext())?.id).toBe(j.id);
  });

  it("a half-written temp file is never picked up and is removed", async () => {
    const r = root();
    const q1 = new QueueStore(queueOptions(r));
    await q1.open();
    writeFileSync(path.join(r, "tmp", `${randomUUID()}.json.123.0`), '{"id":"trunc');
    const q2 = new QueueStore(queueOptions(r));
    expect((await q2.open()).pending).toBe(0);
    expect(readdirSync(path.join(r, "tmp"))).toEqual([]);
    expect(await q2.claimNext()).toBeNull();
  });

  it("the index is rebuilt from pending/ and failed/, keeping retry times", async () => {
    const r = root();
    const now = 5_000;
    const q1 = new QueueStore(queueOptions(r, { now: () => now }));
    await q1.open();
    const due = job(now);
    const later = job(now, { nextAttemptAt: now + 60_000, attempts: 2 });
    const dead = job(now);
    await q1.enqueue(due);
    await q1.enqueue(later);
    await q1.enqueue(dead);
    const q2 = new QueueStore(queueOptions(r, { now: () => now, maxAttempts: 1 }));
    await q2.open();
    // move "dead" to failed through the normal path on a fresh store
    const claimed: Job[] = [];
    for (let c = await q2.claimNext(); c; c = await q2.claimNext()) claimed.push(c);
    expect(claimed.map((c) => c.id).sort()).toEqual([due.id, dead.id].sort());
    for (const c of claimed) if (c.id === dead.id) await q2.markAttemptFailed(c, "x", true);
    const q3 = new QueueStore(queueOptions(r, { now: () => now }));
    await q3.open();
    expect(q3.depth()).toMatchObject({ pending: 2, failed: 1, processing: 0 });
    expect(await q3.status(later.id)).toMatchObject({ state: "queued", nextAttemptAt: 65_000, attempts: 2 });
  });

  it("sent records older than the retention are deleted at startup (the record log is rewritten without them)", async () => {
    const r = root();
    let now = 0;
    const q1 = new QueueStore(queueOptions(r, { now: () => now, sentRetentionMs: 1000 }));
    await q1.open();
    const old = job(now);
    await q1.enqueue(old);
    await q1.markSent((await q1.claimNext()) as Job, undefined);
    now = 900;
    const kept = job(now);
    await q1.enqueue(kept);
    await q1.markSent((await q1.claimNext()) as Job, undefined);
    await q1.close();
    expect(logLines(r)).toHaveLength(2);
    now = 1500;
    const q2 = new QueueStore(queueOptions(r, { now: () => now, sentRetentionMs: 1000 }));
    expect((await q2.open()).sent).toBe(1);
    expect(await q2.status(old.id)).toBeUndefined();
    expect(await q2.status(kept.id)).toMatchObject({ state: "handed_off" });
    expect(logLines(r).map((l) => JSON.parse(l).id)).toEqual([kept.id]);
    await q2.close();
  });
});

describe("the queue does not slow down as it grows", () => {
  it("claiming jobs never lists a directory (the in-memory index answers)", async () => {
    const r = root();
    const q = new QueueStore(queueOptions(r));
    await q.open();
    for (let i = 0; i < 300; i++) await q.enqueue(job(Date.now()));
    const readdir = vi.spyOn(fsp, "readdir");
    for (let i = 0; i < 300; i++) expect(await q.claimNext()).not.toBeNull();
    expect(await q.claimNext()).toBeNull();
    expect(readdir).not.toHaveBeenCalled();
  });

  it("20,000 pending jobs: the index rebuilds, and each claim costs one rename and one read whatever the depth", async () => {
    const r = root();
    const q0 = new QueueStore(queueOptions(r));
    await q0.open();
    // Lay out the files directly (as a long outage would leave them); enqueue's fsyncs are measured by the benchmark.
    const now = Date.now();
    for (let i = 0; i < 20_000; i++) {
      const j = job(now - 1000, { nextAttemptAt: now - 1000 + (i % 100) });
      writeFileSync(path.join(r, "pending", `${j.id}.json`), JSON.stringify(j));
    }
    const q = new QueueStore(queueOptions(r));
    const report = await q.open();
    expect(report.pending).toBe(20_000);
    const spies = {
      readdir: vi.spyOn(fsp, "readdir"),
      rename: vi.spyOn(callbackFs, "rename"),
      readFile: vi.spyOn(callbackFs, "readFile"),
    };
    const t0 = process.hrtime.bigint();
    let last = -Infinity;
    for (let i = 0; i < 500; i++) {
      const c = (await q.claimNext()) as Job;
      expect(c.nextAttemptAt).toBeGreaterThanOrEqual(last); // still in due order
      last = c.nextAttemptAt;
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(
      `queue: rebuilt the index of 20,000 pending jobs in ${report.ms} ms; 500 claims at that depth took ${ms.toFixed(0)} ms`,
    );
    expect(spies.readdir).not.toHaveBeenCalled();
    expect(spies.rename).toHaveBeenCalledTimes(500);
    expect(spies.readFile).toHaveBeenCalledTimes(500);
    expect(q.depth()).toMatchObject({ pending: 19_500, processing: 500 });
  });
});

describe("the worker does not read back what this process just wrote", () => {
  it("a job accepted by this process is claimed from memory (no read), identical to the file on disk", async () => {
    const r = root();
    const q = new QueueStore(queueOptions(r));
    await q.open();
    const j = job(Date.now());
    await q.enqueue(j);
    const onDisk = JSON.parse(await fsp.readFile(path.join(r, "pending", `${j.id}.json`), "utf8"));
    const readFile = vi.spyOn(callbackFs, "readFile");
    const claimed = await q.claimNext();
    expect(readFile).not.toHaveBeenCalled();
    expect(claimed).toEqual(onDisk);
    expect(files(r, "processing")).toEqual([`${j.id}.json`]); // the move to processing/ still happens on disk
  });

  it("past the memory budget, claims read the file; a job removed behind the queue's back is not sent from memory", async () => {
    const r = root();
    const q = new QueueStore(queueOptions(r));
    await q.open();
    const big = "x".repeat(Math.ceil(FRESH_MAX_BYTES / 2) + 1);
    const a = job(Date.now() - 3, { raw: big });
    const b = job(Date.now() - 2, { raw: big }); // over budget: not kept in memory
    const c = job(Date.now() - 1);
    for (const x of [a, b, c]) await q.enqueue(x);
    await fsp.rm(path.join(r, "pending", `${c.id}.json`)); // e.g. an operator's drop while it waited
    const readFile = vi.spyOn(callbackFs, "readFile");
    expect((await q.claimNext())?.id).toBe(a.id);
    expect(readFile).toHaveBeenCalledTimes(0);
    expect((await q.claimNext())?.id).toBe(b.id);
    expect(readFile).toHaveBeenCalledTimes(1);
    expect(await q.claimNext()).toBeNull();
  });
});

describe("the queue accepts jobs before its files are read (background index load)", () => {
  /** Lays out `n` due jobs as a long outage would leave them (oldest due first), without going through enqueue. */
  function prefill(r: string, n: number, now: number, over: (i: number) => Partial<Job> = () => ({})): Job[] {
    const jobs: Job[] = [];
    for (let i = 0; i < n; i++) {
      const j = job(now - 10_000, {
        nextAttemptAt: now - 10_000 + i,
        attempts: 1,
        lastError: "connect ECONNREFUSED 127.0.0.1:25",
        ...over(i),
      });
      writeFileSync(path.join(r, "pending", `${j.id}.json`), JSON.stringify(j));
      jobs.push(j);
    }
    return jobs;
  }

  it("jobs accepted before and during the load are indexed once, and the worker then takes every older job first, each once", async () => {
    const r = root();
    await new QueueStore(queueOptions(r)).open();
    const now = Date.now();
    const old = prefill(r, 300, now);
    const q = new QueueStore(queueOptions(r));
    await q.recover();
    const early = job(now);
    await q.enqueue(early); // the door is open: its file is in pending/ when the load lists it
    const load = q.loadIndex();
    expect(q.loadProgress()).toBeDefined();
    const during = job(now + 1);
    await q.enqueue(during); // a request without a key does not wait for the load
    await load.jobsIndexed;
    await load.loaded;
    expect(q.depth()).toMatchObject({ pending: 302, processing: 0 });
    expect(q.loadProgress()).toBeUndefined();
    const claimed: string[] = [];
    for (let c = await q.claimNext(); c; c = await q.claimNext()) claimed.push(c.id);
    expect(claimed).toHaveLength(302);
    expect(new Set(claimed).size).toBe(302);
    expect(claimed.slice(0, 300)).toEqual(old.map((j) => j.id)); // due order, as before the restart
    expect(claimed.slice(300)).toEqual([early.id, during.id]);
  });

  it("GET /messages/:id during the load reads the job's file instead of answering 'unknown'", async () => {
    const r = root();
    await new QueueStore(queueOptions(r)).open();
    const [a] = prefill(r, 300, Date.now());
    const q = new QueueStore(queueOptions(r));
    await q.recover();
    q.loadIndex();
    // Nothing is indexed before the load's first slice, which runs only after this turn of the event loop.
    expect(await q.status((a as Job).id, "app")).toMatchObject({
      state: "queued",
      attempts: 1,
      lastError: "connect ECONNREFUSED 127.0.0.1:25",
    });
    expect(await q.status((a as Job).id, "billing")).toBeUndefined(); // another caller's message stays unknown
    expect(await q.status(randomUUID())).toBeUndefined();
  });

  it("a keyed request during the load waits for it, so a key stored in a file not yet read is still a duplicate", async () => {
    const r = root();
    await new QueueStore(queueOptions(r)).open();
    const idempotency = { keyHash: sha256("app\norder-1"), bodyHash: sha256("{}") };
    const [first] = prefill(r, 1, Date.now(), () => ({ idempotency }));
    prefill(r, 300, Date.now());
    const q = new QueueStore(queueOptions(r));
    await q.recover();
    q.loadIndex();
    const again = await q.enqueue(job(Date.now(), { idempotency }));
    expect(again).toEqual({ id: (first as Job).id, duplicate: true });
    await expect(
      q.enqueue(job(Date.now(), { idempotency: { ...idempotency, bodyHash: sha256("other") } })),
    ).rejects.toMatchObject({ code: "idempotency_conflict" });
    expect(q.depth().pending).toBe(301);
  });

  it("stopping during the load answers waiting keyed requests with 503 and never reports the jobs as indexed", async () => {
    const r = root();
    await new QueueStore(queueOptions(r)).open();
    prefill(r, 300, Date.now());
    const q = new QueueStore(queueOptions(r));
    await q.recover();
    const load = q.loadIndex();
    const keyed = q.enqueue(job(Date.now(), { idempotency: { keyHash: sha256("k"), bodyHash: sha256("b") } }));
    q.stopLoading();
    await expect(keyed).rejects.toMatchObject({ code: "queue_unavailable" });
    await expect(load.jobsIndexed).rejects.toBeInstanceOf(LoadStopped);
    await expect(load.loaded).rejects.toBeInstanceOf(LoadStopped);
  });

  it("an unreadable or misnamed job file is reported and left in place, not indexed", async () => {
    const r = root();
    await new QueueStore(queueOptions(r)).open();
    const [good] = prefill(r, 1, Date.now());
    const torn = path.join(r, "pending", `${randomUUID()}.json`);
    writeFileSync(torn, '{"id":"tr');
    const misnamed = path.join(r, "pending", `${randomUUID()}.json`);
    writeFileSync(misnamed, JSON.stringify(job(Date.now())));
    const q = new QueueStore(queueOptions(r));
    const report = await q.open();
    expect([...report.unreadable].sort()).toEqual([torn, misnamed].sort());
    expect(report.pending).toBe(1);
    expect((await q.claimNext())?.id).toBe((good as Job).id);
    expect(files(r, "pending").length).toBe(2);
  });

  it("hand-off records: keys of the last 24 h are remembered, each record is counted once although the worker writes new ones meanwhile", async () => {
    let now = 1_000_000_000;
    const r = root();
    const q1 = new QueueStore(queueOptions(r, { now: () => now }));
    await q1.open();
    const idempotency = { keyHash: sha256("app\nk"), bodyHash: sha256("b") };
    const keyed = job(now, { idempotency });
    await q1.enqueue(keyed);
    await q1.enqueue(job(now));
    for (let c = await q1.claimNext(); c; c = await q1.claimNext()) await q1.markSent(c, undefined);
    now += 60_000;
    const q2 = new QueueStore(queueOptions(r, { now: () => now }));
    await q2.recover();
    const load = q2.loadIndex();
    await q2.enqueue(job(now));
    await load.jobsIndexed;
    await q2.markSent((await q2.claimNext()) as Job, undefined); // the worker, while sent/ is being read
    expect((await load.loaded).sent).toBe(2);
    expect(q2.depth().sent).toBe(3);
    expect(await q2.enqueue(job(now, { idempotency }))).toEqual({ id: keyed.id, duplicate: true });
  });
});
