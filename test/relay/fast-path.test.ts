import { randomUUID } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { SMTPServer } from "smtp-server";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { FastPath } from "../../relay/fast-path";
import { RelayMetrics } from "../../relay/metrics";
import { SmtpHandoff } from "../../relay/handoff/smtp";
import { QueueStore, type Job } from "../../relay/storage/queue";
import { SENT_LOG } from "../../relay/storage/sent-log";
import { sha256 } from "../../relay/validate";
import { captureLog, queueOptions, tempDir } from "./fixtures";

/** A loopback SMTP sink standing in for Postfix (a fake): answers DATA with `reply`, or holds it while `hold` is set */
let reply: { code: number; text: string } = { code: 250, text: "2.0.0 Ok: queued as Q1" };
let hold: Promise<void> | null = null;
let received: string[] = [];
let server: SMTPServer;
let port = 0;
let seq = 0;

beforeAll(async () => {
  server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    onData(stream, _session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        const answer = (): void => {
          if (reply.code !== 250) return callback(Object.assign(new Error(reply.text), { responseCode: reply.code }));
          received.push(/X-Id: (\S+)/.exec(Buffer.concat(chunks).toString())?.[1] ?? "?");
          callback(null, `2.0.0 Ok: queued as Q${++seq}`);
        };
        if (hold) void hold.then(answer);
        else answer();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const dirs: { cleanup(): void }[] = [];
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  reply = { code: 250, text: "ok" };
  hold = null;
  received = [];
  while (closers.length) await closers.pop()?.();
  while (dirs.length) dirs.pop()?.cleanup();
});

function job(over: Partial<Job> = {}): Job {
  const id = randomUUID();
  return {
    id,
    caller: "app",
    createdAt: Date.now(),
    attempts: 0,
    nextAttemptAt: Date.now(),
    envelope: { from: "noreply@example.com", to: ["user@example.net"] },
    subject: "s",
    recipientDomains: ["example.net"],
    tags: [],
    raw: `X-Id: ${id}\r\nSubject: s\r\n\r\nbody\r\n`,
    ...over,
  };
}

async function relayQueue(
  root?: string,
  maxConnections = 2,
  wait: {
    waitMs?: number;
    maxWaitingBytes?: number;
    metrics?: RelayMetrics;
    beforeHandoff?: (job: Job) => Promise<void>;
  } = {},
) {
  const r = root ?? tempDir("relay-fast-");
  if (!root) dirs.push(r as { dir: string; cleanup(): void });
  const dir = typeof r === "string" ? r : r.dir;
  const q = new QueueStore(queueOptions(dir));
  await q.open();
  const handoff = new SmtpHandoff({ host: "127.0.0.1", port, timeoutMs: 5000, maxConnections });
  const tracked: string[] = [];
  const logged = captureLog();
  q.setFastPath(
    new FastPath({
      handoff,
      log: logged.log,
      onHandedOff: async (j, qid) => void tracked.push(`${j.id} ${qid}`),
      ...wait,
    }),
  );
  closers.push(async () => {
    await handoff.close();
    await q.close();
  });
  // Warm the pool, as a running relay's is: a request never waits for a connection that is still connecting (the
  // fake's greeting takes ~100 ms: smtp-server looks up the client's name), so a cold pool would queue the second
  // message of a test instead of making it wait for the first.
  const warm = { id: "warm", from: "noreply@example.com", to: ["user@example.net"], raw: "X-Id: warm\r\n\r\nw\r\n" };
  await handoff.trySend(warm, 0)?.catch(() => undefined);
  received = [];
  return { q, dir, tracked, handoff, logLines: logged.lines };
}

const files = (dir: string, d: string) => readdirSync(path.join(dir, d)).filter((f) => f.endsWith(".json"));
const logIds = (dir: string): string[] =>
  readFileSync(path.join(dir, SENT_LOG), "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => (JSON.parse(l) as { id: string }).id);
const keyed = (key: string, body = "b"): Job =>
  job({ idempotency: { keyHash: sha256(`app\n${key}`), bodyHash: sha256(body) } });

describe("the synchronous fast path (QueueStore.accept with a FastPath over a fake Postfix)", () => {
  it("with nothing due, the message is handed off during accept(): no job file, one record line, status handed_off", async () => {
    const { q, dir, tracked } = await relayQueue();
    const j = job();
    const r = await q.accept(j);
    expect(r).toEqual({ id: j.id, duplicate: false, handedOff: { postfixQueueId: "Q" + seq } });
    expect(received).toEqual([j.id]);
    expect(files(dir, "pending")).toEqual([]);
    expect(files(dir, "sent")).toEqual([]);
    expect(logIds(dir)).toEqual([j.id]);
    expect(await q.status(j.id)).toMatchObject({ state: "handed_off", attempts: 1, postfixQueueId: "Q" + seq });
    expect(tracked).toEqual([`${j.id} Q${seq}`]);
  });

  it("the tracking line goes out beside the hand-off, not before it: a delivery tracker held back (a fake) does not hold the message back from Postfix", async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const { q } = await relayQueue(undefined, 2, { beforeHandoff: () => held });
    const j = job();
    const accepted = q.accept(j);
    for (let i = 0; i < 100 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(received).toEqual([j.id]);
    let settled = false;
    void accepted.finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(settled).toBe(false); // the 202 still waits for the tracker's line
    release();
    expect((await accepted).handedOff).toBeDefined();
  });

  // A tracker fails by rejecting, or by throwing before it returns a promise (a bug, or a synchronous write that
  // fails): both ways, crossed with both answers from Postfix.
  const failingTrackers = {
    rejects: (): Promise<void> => Promise.reject(new Error("EIO: disk gone (fake)")),
    "throws synchronously": (): Promise<void> => {
      throw new Error("EIO: disk gone (fake)");
    },
  } as const;
  for (const [how, beforeHandoff] of Object.entries(failingTrackers))
    for (const [postfix, outcome] of [
      ["takes the message", "it is handed off all the same (not sent twice by the worker), with a warning"],
      ["answers 451", "it is queued, with a warning"],
    ] as const) {
      it(`a delivery tracker that ${how} while Postfix ${postfix}: ${outcome}`, async () => {
        const { q, dir, logLines } = await relayQueue(undefined, 2, { beforeHandoff });
        if (postfix === "answers 451") reply = { code: 451, text: "4.3.0 try later" };
        const j = job();
        const r = await q.accept(j);
        expect(r.handedOff !== undefined).toBe(postfix === "takes the message");
        expect(files(dir, "pending")).toEqual(postfix === "takes the message" ? [] : [`${j.id}.json`]);
        expect(logLines.some((l) => l.includes("delivery tracking") && l.includes("EIO: disk gone"))).toBe(true);
      });
    }

  it("a due job in the queue sends new messages to the queue too, so they do not overtake it", async () => {
    const { q, dir } = await relayQueue();
    const waiting = job();
    await q.enqueue(waiting); // due now, not claimed (no worker)
    const j = job();
    const r = await q.accept(j);
    expect(r.handedOff).toBeUndefined();
    expect(received).toEqual([]);
    expect(files(dir, "pending").sort()).toEqual([`${waiting.id}.json`, `${j.id}.json`].sort());
  });

  it("a job waiting for a later retry does not close the fast path (it is not due)", async () => {
    const { q } = await relayQueue();
    await q.enqueue(job({ nextAttemptAt: Date.now() + 3_600_000 }));
    expect((await q.accept(job())).handedOff).toBeDefined();
  });

  for (const code of [451, 550]) {
    it(`Postfix answering ${code} queues the message in pending/ (the worker decides: retry or failed)`, async () => {
      reply = { code, text: `${code} no` };
      const { q, dir } = await relayQueue();
      const j = job();
      const r = await q.accept(j);
      expect(r).toEqual({ id: j.id, duplicate: false });
      expect(files(dir, "pending")).toEqual([`${j.id}.json`]);
      expect(await q.status(j.id)).toMatchObject({ state: "queued", attempts: 0 });
    });
  }

  it("Postfix away (connection refused) queues the message", async () => {
    const dirT = tempDir("relay-fast-");
    dirs.push(dirT);
    const q = new QueueStore(queueOptions(dirT.dir));
    await q.open();
    const handoff = new SmtpHandoff({ host: "127.0.0.1", port: 1, timeoutMs: 2000 });
    q.setFastPath(new FastPath({ handoff, log: captureLog().log }));
    closers.push(() => handoff.close().then(() => q.close()));
    const j = job();
    expect((await q.accept(j)).handedOff).toBeUndefined();
    expect(files(dirT.dir, "pending")).toEqual([`${j.id}.json`]);
  });

  it("with every pooled connection busy and RELAY_FAST_PATH_WAIT_MS 0, a message is queued at once instead of waiting for one", async () => {
    const { q, dir } = await relayQueue(undefined, 1, { waitMs: 0 });
    let release!: () => void;
    hold = new Promise<void>((r) => (release = r));
    const first = q.accept(job());
    await new Promise((r) => setTimeout(r, 100)); // the first holds the only connection in DATA
    const second = job();
    const r2 = await q.accept(second);
    expect(r2.handedOff).toBeUndefined();
    expect(files(dir, "pending")).toEqual([`${second.id}.json`]);
    release();
    expect((await first).handedOff).toBeDefined();
  });

  for (const [waitMs, heldMs, handedOff] of [
    [1000, 150, true],
    [50, 400, false],
  ] as const) {
    it(`with the only pooled connection busy for ${heldMs} ms and a ${waitMs} ms wait, the next message is ${handedOff ? "handed off once it frees (no job file)" : "queued when the wait runs out, and counted as busy"}`, async () => {
      const metrics = new RelayMetrics({ depth: () => ({}) } as unknown as QueueStore, false);
      const { q, dir } = await relayQueue(undefined, 1, { waitMs, metrics });
      let release!: () => void;
      hold = new Promise<void>((r) => (release = r));
      const first = q.accept(job());
      await new Promise((r) => setTimeout(r, 50)); // the first holds the only connection in DATA
      const second = job();
      const r2 = q.accept(second);
      setTimeout(release, heldMs);
      expect((await r2).handedOff !== undefined).toBe(handedOff);
      expect(files(dir, "pending")).toEqual(handedOff ? [] : [`${second.id}.json`]);
      expect((await first).handedOff).toBeDefined();
      const busy = (await metrics.registry.getSingleMetric("relay_fast_path_queued_total")!.get()).values;
      expect(busy.find((v) => v.labels.reason === "busy")?.value ?? 0).toBe(handedOff ? 0 : 1);
    });
  }

  it("past maxWaitingBytes of messages waiting, the next message is queued at once instead of joining the line", async () => {
    const { q, dir } = await relayQueue(undefined, 1, { waitMs: 5000, maxWaitingBytes: 1000 });
    let release!: () => void;
    hold = new Promise<void>((r) => (release = r));
    const big = (): Job => job({ raw: `X-Id: x\r\nSubject: s\r\n\r\n${"b".repeat(400)}\r\n` });
    const first = q.accept(big()); // in DATA: 4xx bytes in flight
    await new Promise((r) => setTimeout(r, 50));
    const second = q.accept(big()); // waits: 8xx bytes
    await new Promise((r) => setTimeout(r, 20));
    const third = big();
    const started = Date.now();
    expect((await q.accept(third)).handedOff).toBeUndefined(); // would pass 1000: not waiting
    expect(Date.now() - started).toBeLessThan(1000);
    expect(files(dir, "pending")).toEqual([`${third.id}.json`]);
    release();
    expect((await first).handedOff).toBeDefined();
    expect((await second).handedOff).toBeDefined();
  });

  it("concurrent requests with one Idempotency-Key hand off once; the others get the first id", async () => {
    const { q } = await relayQueue();
    const a = keyed("k1");
    const b = keyed("k1");
    const c = keyed("k1");
    const rs = await Promise.all([q.accept(a), q.accept(b), q.accept(c)]);
    expect(received).toEqual([a.id]);
    expect(rs.map((r) => [r.id, r.duplicate])).toEqual([
      [a.id, false],
      [a.id, true],
      [a.id, true],
    ]);
  });

  it("after a restart, a replay of a key handed off by the fast path is a duplicate (not sent again); another body is a conflict", async () => {
    const t = tempDir("relay-fast-");
    dirs.push(t);
    const first = await relayQueue(t.dir);
    const a = keyed("k2", "body");
    await first.q.accept(a);
    expect(received).toEqual([a.id]);
    await first.handoff.close();
    await first.q.close();
    const second = await relayQueue(t.dir); // (its pool warm-up clears `received`)
    expect(await second.q.accept(keyed("k2", "body"))).toEqual({ id: a.id, duplicate: true });
    await expect(second.q.accept(keyed("k2", "other"))).rejects.toMatchObject({ code: "idempotency_conflict" });
    expect(received).toEqual([]); // nothing sent after the restart
    expect(await second.q.status(a.id)).toMatchObject({ state: "handed_off" });
  });
});

describe("the hand-off record log (sent.log)", () => {
  it("a torn last line (a crash during its write, never acknowledged) is cut off at open; the records before it stay", async () => {
    const t = tempDir("relay-log-");
    dirs.push(t);
    const q1 = new QueueStore(queueOptions(t.dir));
    await q1.open();
    const j = job();
    await q1.enqueue(j);
    await q1.markSent((await q1.claimNext()) as Job, "QA");
    await q1.close();
    writeFileSync(path.join(t.dir, SENT_LOG), '{"id":"torn', { flag: "a" });
    const q2 = new QueueStore(queueOptions(t.dir));
    const report = await q2.open();
    expect(report).toMatchObject({ sent: 1, unreadable: [] });
    const j2 = job();
    await q2.enqueue(j2);
    await q2.markSent((await q2.claimNext()) as Job, "QB");
    await q2.close();
    expect(logIds(t.dir)).toEqual([j.id, j2.id]);
  });

  it("records of the old sent/ directory move into the log at start (upgrade) and the files are removed", async () => {
    const t = tempDir("relay-log-");
    dirs.push(t);
    mkdirSync(path.join(t.dir, "sent"), { recursive: true });
    const id = randomUUID();
    const rec = { id, caller: "app", createdAt: Date.now(), handedOffAt: Date.now(), attempts: 1, recipientCount: 1 };
    writeFileSync(path.join(t.dir, "sent", `${id}.json`), JSON.stringify({ ...rec, postfixQueueId: "QOLD" }));
    const q = new QueueStore(queueOptions(t.dir));
    expect((await q.open()).sent).toBe(1);
    await q.close();
    expect(files(t.dir, "sent")).toEqual([]);
    expect(logIds(t.dir)).toEqual([id]);
    const again = new QueueStore(queueOptions(t.dir));
    await again.open();
    expect(await again.status(id)).toMatchObject({ state: "handed_off", postfixQueueId: "QOLD" });
    await again.close();
  });

  it("a job whose record is in the log (a crash between the record and the job file's removal) is not sent again", async () => {
    const t = tempDir("relay-log-");
    dirs.push(t);
    const q1 = new QueueStore(queueOptions(t.dir));
    await q1.open();
    const j = job();
    await q1.enqueue(j);
    const claimed = (await q1.claimNext()) as Job;
    const kept = readFileSync(path.join(t.dir, "processing", `${j.id}.json`));
    await q1.markSent(claimed, "QC");
    await q1.close();
    writeFileSync(path.join(t.dir, "processing", `${j.id}.json`), kept); // as if the unlink never happened
    const q2 = new QueueStore(queueOptions(t.dir));
    await q2.recover();
    const report = await q2.loadIndex().loaded;
    expect(report).toMatchObject({ pending: 0, sent: 1 });
    expect(await q2.claimNext()).toBeNull();
    expect(files(t.dir, "pending")).toEqual([]);
    await q2.close();
  });
});
