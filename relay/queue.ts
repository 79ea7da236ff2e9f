import { constants as fsc, promises as fs } from "node:fs";
import * as path from "node:path";
import { RelayError } from "./errors";
import { qfs } from "./qfs";

export type JobState = "pending" | "processing" | "sent" | "failed";
export const JOB_STATES: readonly JobState[] = ["pending", "processing", "sent", "failed"];

/** A job as stored in pending/, processing/ and failed/: the composed message plus what the worker and the CLI need. */
export interface Job {
  readonly id: string;
  readonly caller: string;
  readonly createdAt: number;
  attempts: number;
  nextAttemptAt: number;
  lastError?: string;
  failedAt?: number;
  /** Envelope: the From address (DMARC alignment) and every To/Cc/Bcc address, domains in ASCII. */
  readonly envelope: { readonly from: string; readonly to: readonly string[] };
  readonly subject: string;
  readonly recipientDomains: readonly string[];
  readonly tags: readonly string[];
  readonly idempotency?: { readonly keyHash: string; readonly bodyHash: string };
  /** The complete MIME message, built once at acceptance so every retry sends the same bytes. */
  readonly raw: string;
}

/** What stays after hand-off: enough for status lookups and idempotency, not the message. */
export interface SentRecord {
  readonly id: string;
  readonly caller: string;
  readonly createdAt: number;
  readonly handedOffAt: number;
  readonly attempts: number;
  readonly postfixQueueId?: string;
  readonly recipientCount: number;
  readonly idempotency?: { readonly keyHash: string; readonly bodyHash: string };
}

export interface JobStatus {
  readonly id: string;
  readonly state: "queued" | "sending" | "handed_off" | "failed";
  readonly attempts: number;
  readonly createdAt: number;
  readonly nextAttemptAt?: number;
  readonly lastError?: string;
  readonly handedOffAt?: number;
  readonly postfixQueueId?: string;
}

export interface QueueOptions {
  readonly root: string;
  readonly maxAttempts: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  readonly minFreeBytes: number;
  readonly sentRetentionMs: number;
  readonly now?: () => number;
  /** Last check before a new job is written (every ingress passes here): throws a RelayError to refuse it. */
  readonly admit?: (job: Job) => void | Promise<void>;
}

export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;
/** Memory the queue may spend on accepted-but-unclaimed messages to save the worker a read (see QueueStore.fresh). */
export const FRESH_MAX_BYTES = 8 * 1024 * 1024;
const ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isJobId(id: string): boolean {
  return ID_PATTERN.test(id);
}

/** Delay before the next attempt after `failures` failed attempts: base, doubling, capped. */
export function backoffMs(failures: number, baseMs: number, maxMs: number): number {
  if (failures < 1) return 0;
  const exp = Math.min(failures - 1, 52);
  return Math.min(baseMs * 2 ** exp, maxMs);
}

interface IndexEntry {
  state: "pending" | "processing" | "failed";
  attempts: number;
  nextAttemptAt: number;
  createdAt: number;
  caller: string;
  lastError?: string;
}

interface HeapItem {
  at: number;
  seq: number;
  id: string;
}

/**
 * Min-heap on (nextAttemptAt, arrival order). Hand-written (30 lines) because no heap package is a dependency and
 * the queue needs O(log n) "next due job" without rescanning pending/ per job.
 */
class DueHeap {
  private readonly items: HeapItem[] = [];
  peek(): HeapItem | undefined {
    return this.items[0];
  }
  push(item: HeapItem): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!DueHeap.less(a[i] as HeapItem, a[p] as HeapItem)) break;
      [a[i], a[p]] = [a[p] as HeapItem, a[i] as HeapItem];
      i = p;
    }
  }
  pop(): HeapItem | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && DueHeap.less(a[l] as HeapItem, a[m] as HeapItem)) m = l;
        if (r < a.length && DueHeap.less(a[r] as HeapItem, a[m] as HeapItem)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m] as HeapItem, a[i] as HeapItem];
        i = m;
      }
    }
    return top;
  }
  private static less(x: HeapItem, y: HeapItem): boolean {
    return x.at < y.at || (x.at === y.at && x.seq < y.seq);
  }
}

export interface RecoveryReport {
  readonly pending: number;
  readonly failed: number;
  readonly sent: number;
  readonly recoveredFromProcessing: number;
  readonly unreadable: readonly string[];
  readonly ms: number;
}

/**
 * The on-disk queue: pending/ -> processing/ -> sent/ (small record) or back to pending/ or to failed/.
 * Every write is temp file + fsync + rename + directory fsync, so a half-written file is never picked up and an
 * accepted job survives a power cut. An in-memory index, rebuilt at open(), answers "next due job" without readdir.
 */
export class QueueStore {
  readonly root: string;
  private readonly opts: QueueOptions;
  private readonly now: () => number;
  private readonly index = new Map<string, IndexEntry>();
  private readonly heap = new DueHeap();
  private readonly idempotency = new Map<string, { id: string; bodyHash: string; createdAt: number }>();
  private readonly idempotencyInflight = new Map<string, Promise<unknown>>();
  private readonly dirSync = new Map<string, { running: Promise<void> | null; next: Promise<void> | null }>();
  private readonly callers = new Map<string, string>();
  private readonly counts = { pending: 0, processing: 0, failed: 0 };
  private sentOnDisk = 0;
  private seq = 0;
  private diskCheck: { at: number; free: number } | null = null;
  /**
   * Jobs accepted by this process and not yet claimed, so the worker does not read back a file it just wrote
   * (a read + JSON.parse per message). Bounded by FRESH_MAX_BYTES of message text; past that, claims read the disk.
   * The file on disk stays the source of truth: it is written before a job enters this map.
   */
  private readonly fresh = new Map<string, Job>();
  private freshBytes = 0;

  constructor(opts: QueueOptions) {
    this.opts = opts;
    this.root = opts.root;
    this.now = opts.now ?? Date.now;
  }

  dir(state: JobState | "tmp"): string {
    return path.join(this.root, state);
  }

  /** Creates the directories, drops half-written temp files, moves processing/ back to pending/, rebuilds the index. */
  async open(): Promise<RecoveryReport> {
    const started = this.now();
    await fs.mkdir(this.root, { recursive: true, mode: 0o700 });
    for (const d of [...JOB_STATES, "tmp"] as const) await fs.mkdir(this.dir(d), { recursive: true, mode: 0o700 });
    for (const f of await fs.readdir(this.dir("tmp"))) await fs.rm(path.join(this.dir("tmp"), f), { force: true });

    let recovered = 0;
    for (const f of await fs.readdir(this.dir("processing"))) {
      if (!f.endsWith(".json")) continue;
      await fs.rename(path.join(this.dir("processing"), f), path.join(this.dir("pending"), f));
      recovered++;
    }
    if (recovered > 0) {
      await this.fsyncDir(this.dir("pending"));
      await this.fsyncDir(this.dir("processing"));
    }

    const unreadable: string[] = [];
    const now = this.now();
    await this.eachJson(this.dir("pending"), unreadable, (_f, v) => {
      const job = v as Job;
      this.addToIndex(job, "pending");
      this.rememberIdempotency(job.idempotency, job.id, job.createdAt, now);
    });
    await this.eachJson(this.dir("failed"), unreadable, (_f, v) => {
      const job = v as Job;
      this.addToIndex(job, "failed");
      this.rememberIdempotency(job.idempotency, job.id, job.createdAt, now);
    });
    let sent = 0;
    await this.eachJson(this.dir("sent"), unreadable, async (f, v) => {
      const rec = v as SentRecord;
      if (now - rec.handedOffAt > this.opts.sentRetentionMs) {
        await fs.rm(path.join(this.dir("sent"), f), { force: true });
        return;
      }
      sent++;
      this.rememberIdempotency(rec.idempotency, rec.id, rec.createdAt, now);
    });
    this.sentOnDisk = sent;
    return {
      pending: this.counts.pending,
      failed: this.counts.failed,
      sent,
      recoveredFromProcessing: recovered,
      unreadable,
      ms: this.now() - started,
    };
  }

  /** Reads every *.json of a directory with bounded concurrency (startup only). */
  private async eachJson(dir: string, unreadable: string[], fn: (file: string, value: unknown) => void | Promise<void>): Promise<void> {
    const files = (await fs.readdir(dir)).filter((f) => f.endsWith(".json"));
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < files.length) {
        const f = files[next++] as string;
        let value: unknown;
        try {
          value = JSON.parse(await fs.readFile(path.join(dir, f), "utf8"));
        } catch {
          unreadable.push(path.join(dir, f));
          continue;
        }
        await fn(f, value);
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
  }

  private intern(caller: string): string {
    const known = this.callers.get(caller);
    if (known !== undefined) return known;
    this.callers.set(caller, caller);
    return caller;
  }

  private addToIndex(job: Job, state: IndexEntry["state"]): void {
    const prev = this.index.get(job.id);
    if (prev) this.counts[prev.state]--;
    const entry: IndexEntry = {
      state,
      attempts: job.attempts,
      nextAttemptAt: job.nextAttemptAt,
      createdAt: job.createdAt,
      caller: this.intern(job.caller),
    };
    if (job.lastError !== undefined) entry.lastError = job.lastError;
    this.index.set(job.id, entry);
    this.counts[state]++;
    if (state === "pending") this.heap.push({ at: job.nextAttemptAt, seq: this.seq++, id: job.id });
  }

  private dropFromIndex(id: string): void {
    const prev = this.index.get(id);
    if (!prev) return;
    this.counts[prev.state]--;
    this.index.delete(id);
  }

  private rememberIdempotency(idem: Job["idempotency"], id: string, createdAt: number, now: number): void {
    if (idem && now - createdAt < IDEMPOTENCY_TTL_MS) {
      this.idempotency.set(idem.keyHash, { id, bodyHash: idem.bodyHash, createdAt });
    }
  }

  /** Refuses new work when free space is under the threshold (cached for a second: one statfs per second, not per request). */
  async assertCanAccept(): Promise<void> {
    const now = this.now();
    if (!this.diskCheck || now - this.diskCheck.at > 1000 || now < this.diskCheck.at) {
      let free: number;
      try {
        const s = await fs.statfs(this.root);
        free = Number(s.bavail) * Number(s.bsize);
      } catch (err) {
        throw new RelayError("queue_unavailable", `statfs ${this.root}: ${(err as Error).message}`);
      }
      this.diskCheck = { at: now, free };
    }
    if (this.diskCheck.free < this.opts.minFreeBytes) {
      throw new RelayError("disk_nearly_full", `free space ${this.diskCheck.free} bytes < RELAY_MIN_FREE_BYTES ${this.opts.minFreeBytes}`);
    }
  }

  /** Writes a probe file the way jobs are written; /ready uses it. */
  async probeWritable(): Promise<void> {
    await this.assertCanAccept();
    const probe = path.join(this.dir("tmp"), `ready-probe.${process.pid}.${this.seq++}`);
    await fs.writeFile(probe, "ok", { mode: 0o600 });
    await fs.rm(probe, { force: true });
  }

  /**
   * Makes the job durable in pending/ before the caller hears 202. With an idempotency key, the same key and body
   * return the first id (nothing new is written) and a different body is refused with 409.
   */
  async enqueue(job: Job): Promise<{ id: string; duplicate: boolean }> {
    const idem = job.idempotency;
    if (!idem) {
      await this.writeNew(job);
      return { id: job.id, duplicate: false };
    }
    for (let inflight = this.idempotencyInflight.get(idem.keyHash); inflight; inflight = this.idempotencyInflight.get(idem.keyHash)) {
      await inflight.catch(() => undefined);
    }
    const existing = this.idempotency.get(idem.keyHash);
    if (existing && this.now() - existing.createdAt < IDEMPOTENCY_TTL_MS) {
      if (existing.bodyHash !== idem.bodyHash) {
        throw new RelayError("idempotency_conflict", `this Idempotency-Key was used within 24 h with a different body (message ${existing.id})`);
      }
      return { id: existing.id, duplicate: true };
    }
    const write = this.writeNew(job);
    this.idempotencyInflight.set(idem.keyHash, write);
    try {
      await write;
      this.idempotency.set(idem.keyHash, { id: job.id, bodyHash: idem.bodyHash, createdAt: job.createdAt });
    } finally {
      this.idempotencyInflight.delete(idem.keyHash);
    }
    return { id: job.id, duplicate: false };
  }

  private async writeNew(job: Job): Promise<void> {
    await this.opts.admit?.(job);
    await this.assertCanAccept();
    try {
      await this.writeDurable("pending", `${job.id}.json`, JSON.stringify(job));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOSPC") {
        throw new RelayError("disk_nearly_full", `write ${job.id}: ${(err as Error).message}`);
      }
      throw new RelayError("queue_unavailable", `write ${job.id}: ${(err as Error).message}`);
    }
    this.addToIndex(job, "pending");
    if (this.freshBytes + job.raw.length <= FRESH_MAX_BYTES) {
      this.fresh.set(job.id, job);
      this.freshBytes += job.raw.length;
    }
  }

  private takeFresh(id: string): Job | undefined {
    const job = this.fresh.get(id);
    if (job) {
      this.fresh.delete(id);
      this.freshBytes -= job.raw.length;
    }
    return job;
  }

  /** The time the next pending job is due, or undefined when nothing is pending. */
  nextDueAt(): number | undefined {
    for (let top = this.heap.peek(); top; top = this.heap.peek()) {
      const e = this.index.get(top.id);
      if (e && e.state === "pending" && e.nextAttemptAt === top.at) return top.at;
      this.heap.pop(); // stale: dropped, retried or moved since it was pushed
    }
    return undefined;
  }

  /** Moves the next due job to processing/ and returns it; null when nothing is due. Never reads the directory. */
  async claimNext(): Promise<Job | null> {
    const now = this.now();
    for (;;) {
      const due = this.nextDueAt();
      if (due === undefined || due > now) return null;
      const top = this.heap.pop() as HeapItem;
      const file = `${top.id}.json`;
      try {
        await qfs.rename(path.join(this.dir("pending"), file), path.join(this.dir("processing"), file));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") {
          this.dropFromIndex(top.id); // removed behind our back (e.g. queue drop): forget it
          this.takeFresh(top.id);
          continue;
        }
        throw err;
      }
      const entry = this.index.get(top.id) as IndexEntry;
      this.counts.pending--;
      this.counts.processing++;
      entry.state = "processing";
      return this.takeFresh(top.id) ?? (JSON.parse(await qfs.readFile(path.join(this.dir("processing"), file))) as Job);
    }
  }

  /** Hand-off succeeded: keep a small record (status, idempotency), drop the message. */
  async markSent(job: Job, postfixQueueId: string | undefined): Promise<SentRecord> {
    const rec: SentRecord = {
      id: job.id,
      caller: job.caller,
      createdAt: job.createdAt,
      handedOffAt: this.now(),
      attempts: job.attempts + 1,
      recipientCount: job.envelope.to.length,
      ...(postfixQueueId !== undefined ? { postfixQueueId } : {}),
      ...(job.idempotency ? { idempotency: job.idempotency } : {}),
    };
    await this.writeDurable("sent", `${job.id}.json`, JSON.stringify(rec));
    await qfs.unlinkIfExists(path.join(this.dir("processing"), `${job.id}.json`));
    this.dropFromIndex(job.id);
    this.sentOnDisk++;
    return rec;
  }

  /**
   * Hand-off failed: back to pending/ with the next attempt time, or to failed/ after the last attempt
   * (or at once when the failure is permanent, e.g. a 5xx from Postfix).
   */
  async markAttemptFailed(job: Job, error: string, permanent: boolean): Promise<{ state: "pending" | "failed"; nextAttemptAt?: number }> {
    const now = this.now();
    const attempts = job.attempts + 1;
    const last = permanent || attempts >= this.opts.maxAttempts;
    const next: Job = last
      ? { ...job, attempts, lastError: error, failedAt: now }
      : { ...job, attempts, lastError: error, nextAttemptAt: now + backoffMs(attempts, this.opts.retryBaseMs, this.opts.retryMaxMs) };
    const state = last ? "failed" : "pending";
    await this.writeDurable(state, `${job.id}.json`, JSON.stringify(next));
    await qfs.unlinkIfExists(path.join(this.dir("processing"), `${job.id}.json`));
    this.addToIndex(next, state);
    return last ? { state } : { state, nextAttemptAt: next.nextAttemptAt };
  }

  /** State of one message for GET /messages/:id; undefined when unknown (or not this caller's). */
  async status(id: string, caller?: string): Promise<JobStatus | undefined> {
    if (!isJobId(id)) return undefined;
    const e = this.index.get(id);
    if (e) {
      if (caller !== undefined && e.caller !== caller) return undefined;
      const state = e.state === "pending" ? "queued" : e.state === "processing" ? "sending" : "failed";
      return {
        id,
        state,
        attempts: e.attempts,
        createdAt: e.createdAt,
        ...(e.state === "pending" ? { nextAttemptAt: e.nextAttemptAt } : {}),
        ...(e.lastError !== undefined ? { lastError: e.lastError } : {}),
      };
    }
    const rec = await this.readSent(id);
    if (!rec || (caller !== undefined && rec.caller !== caller)) return undefined;
    return {
      id,
      state: "handed_off",
      attempts: rec.attempts,
      createdAt: rec.createdAt,
      handedOffAt: rec.handedOffAt,
      ...(rec.postfixQueueId !== undefined ? { postfixQueueId: rec.postfixQueueId } : {}),
    };
  }

  private async readSent(id: string): Promise<SentRecord | undefined> {
    try {
      return JSON.parse(await fs.readFile(path.join(this.dir("sent"), `${id}.json`), "utf8")) as SentRecord;
    } catch {
      return undefined;
    }
  }

  /** Counts by state for /metrics (sent = records kept on disk). */
  depth(): Record<JobState, number> {
    return { ...this.counts, sent: this.sentOnDisk };
  }

  /** Deletes sent records past retention and forgets idempotency keys older than 24 h. */
  async prune(): Promise<number> {
    const now = this.now();
    for (const [k, v] of this.idempotency) if (now - v.createdAt >= IDEMPOTENCY_TTL_MS) this.idempotency.delete(k);
    let removed = 0;
    for (const f of await fs.readdir(this.dir("sent"))) {
      const p = path.join(this.dir("sent"), f);
      try {
        const rec = JSON.parse(await fs.readFile(p, "utf8")) as SentRecord;
        if (now - rec.handedOffAt > this.opts.sentRetentionMs) {
          await fs.rm(p, { force: true });
          removed++;
        }
      } catch {
        // unreadable record: leave it for the operator
      }
    }
    this.sentOnDisk = Math.max(0, this.sentOnDisk - removed);
    return removed;
  }

  // ---- operator commands (relay stopped) ----

  /** Reads a job or sent record straight from disk, wherever it is. */
  async find(id: string): Promise<{ state: JobState; job?: Job; sent?: SentRecord } | undefined> {
    if (!isJobId(id)) return undefined;
    for (const state of ["pending", "processing", "failed"] as const) {
      try {
        const job = JSON.parse(await fs.readFile(path.join(this.dir(state), `${id}.json`), "utf8")) as Job;
        return { state, job };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    }
    const sent = await this.readSent(id);
    return sent ? { state: "sent", sent } : undefined;
  }

  /** Lists jobs on disk (readdir: an operator command, not the worker's path). */
  async list(states: readonly ("pending" | "processing" | "failed")[]): Promise<{ state: JobState; job: Job }[]> {
    const out: { state: JobState; job: Job }[] = [];
    for (const state of states) {
      const unreadable: string[] = [];
      await this.eachJson(this.dir(state), unreadable, (_f, v) => {
        out.push({ state, job: v as Job });
      });
    }
    return out.sort((a, b) => a.job.createdAt - b.job.createdAt);
  }

  /** Puts a pending or failed job back to pending/, due now, with a fresh attempt count. */
  async retry(id: string): Promise<"pending" | "failed"> {
    const found = await this.find(id);
    if (!found || !found.job || found.state === "sent") throw new Error(`no pending or failed job ${id}`);
    if (found.state === "processing") throw new Error(`job ${id} is in processing/; start and stop the relay once, or retry it after recovery`);
    this.takeFresh(id); // the rewritten file, not an older copy in memory, is what the worker must send
    const job: Job = { ...found.job, attempts: 0, nextAttemptAt: this.now() };
    delete job.failedAt;
    await this.writeDurable("pending", `${id}.json`, JSON.stringify(job));
    if (found.state === "failed") await fs.rm(path.join(this.dir("failed"), `${id}.json`), { force: true });
    this.addToIndex(job, "pending");
    return found.state;
  }

  /** Deletes a pending or failed job for good. */
  async drop(id: string): Promise<"pending" | "failed"> {
    const found = await this.find(id);
    if (!found || found.state === "sent" || found.state === "processing") throw new Error(`no pending or failed job ${id}`);
    await fs.rm(path.join(this.dir(found.state), `${id}.json`));
    await this.fsyncDir(this.dir(found.state));
    this.dropFromIndex(id);
    this.takeFresh(id);
    return found.state;
  }

  /** Moves every failed job back to pending/. */
  async retryFailed(): Promise<string[]> {
    const ids = (await this.list(["failed"])).map((j) => j.job.id);
    for (const id of ids) await this.retry(id);
    return ids;
  }

  // ---- durable writes ----

  private async writeDurable(state: JobState, name: string, data: string): Promise<void> {
    const tmp = path.join(this.dir("tmp"), `${name}.${process.pid}.${this.seq++}`);
    const fd = await qfs.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
    try {
      await qfs.writeAll(fd, data);
      await qfs.fsync(fd);
    } finally {
      await qfs.close(fd);
    }
    await qfs.rename(tmp, path.join(this.dir(state), name));
    await this.syncDir(this.dir(state));
  }

  /** Group commit: concurrent writers share one directory fsync that started after their rename. */
  private syncDir(dir: string): Promise<void> {
    let s = this.dirSync.get(dir);
    if (!s) {
      s = { running: null, next: null };
      this.dirSync.set(dir, s);
    }
    const st = s;
    const start = (): Promise<void> => {
      const p = this.fsyncDir(dir).finally(() => {
        if (st.running === p) st.running = null;
      });
      st.running = p;
      return p;
    };
    if (!st.running) return start();
    if (!st.next) {
      st.next = st.running
        .catch(() => undefined)
        .then(() => {
          st.next = null;
          return start();
        });
    }
    return st.next;
  }

  private async fsyncDir(dir: string): Promise<void> {
    const fd = await qfs.open(dir, fsc.O_RDONLY);
    try {
      await qfs.fsync(fd);
    } finally {
      await qfs.close(fd);
    }
  }
}
