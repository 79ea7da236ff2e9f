import { promises as fs } from "node:fs";
import * as path from "node:path";
import { callbackFs } from "./callback-fs";
import { DurableWriter, fsyncDir } from "./durable-write";
import { RelayError } from "./errors";
import {
  backoffMs,
  IDEMPOTENCY_TTL_MS,
  isJobId,
  JOB_STATES,
  jobStatus,
  readJobFile,
  readSentRecord,
  sentStatus,
  type Job,
  type JobState,
  type JobStatus,
  type SentRecord,
} from "./job";
import { IdempotencyKeys } from "./idempotency-keys";
import { JobIndex } from "./job-index";
import { countJsonFiles, scanJsonFiles } from "./json-scan";

export { backoffMs, IDEMPOTENCY_TTL_MS, isJobId, JOB_STATES } from "./job";
export type { Job, JobState, JobStatus, SentRecord } from "./job";

export interface QueueOptions {
  readonly root: string;
  readonly maxAttempts: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  readonly minFreeBytes: number;
  readonly sentRetentionMs: number;
  readonly now?: () => number;
}

/** Memory the queue may spend on accepted-but-unclaimed messages to save the worker a read (see QueueStore.fresh). */
export const FRESH_MAX_BYTES = 8 * 1024 * 1024;

export interface RecoveryReport {
  readonly pending: number;
  readonly failed: number;
  readonly sent: number;
  readonly recoveredFromProcessing: number;
  readonly unreadable: readonly string[];
  readonly ms: number;
}

/** Where the background read of the queue's files stands (GET /health shows it). */
export interface LoadProgress {
  readonly phase: "listing" | "jobs" | "sent records";
  readonly read: number;
  readonly total: number;
}

/** The queue is open for new jobs; its existing files are still being read into the index. */
export interface IndexLoad {
  readonly recoveredFromProcessing: number;
  /** Every job of pending/ and failed/ is indexed: the worker may start (earlier, it could overtake older jobs). */
  readonly jobsIndexed: Promise<void>;
  /**
   * The hand-off records are read too: idempotency and counts are complete. Rejects if the read failed or was stopped.
   */
  readonly loaded: Promise<RecoveryReport>;
}

/** The load was stopped by close(): nothing failed. */
export class LoadStopped extends Error {
  constructor() {
    super("the queue is closing");
    this.name = "LoadStopped";
  }
}

/**
 * The on-disk queue: pending/ -> processing/ -> sent/ (small record) or back to pending/ or to failed/.
 * Every write is durable (DurableWriter), so a half-written file is never picked up and an accepted job survives a
 * power cut. An in-memory index answers "next due job" without readdir. It is filled in the background after the
 * queue opens, so a backlog of 100,000 jobs does not keep the relay's door shut while its files are read.
 */
export class QueueStore {
  readonly root: string;
  private readonly opts: QueueOptions;
  private readonly now: () => number;
  private readonly writer: DurableWriter;
  private readonly index = new JobIndex();
  private readonly idempotency = new IdempotencyKeys();
  private readonly idempotencyInflight = new Map<string, Promise<unknown>>();
  private sentOnDisk = 0;
  private probeSeq = 0;
  private diskCheck: { at: number; free: number } | null = null;
  /** Set while files are being read into the index. */
  private progress: { phase: LoadProgress["phase"]; read: number; total: number } | null = null;
  private jobsIndexed = true;
  /** Keyed requests wait for it: a key can only be called new once every file that could hold it has been read. */
  private idempotencyKnown: Promise<void> = Promise.resolve();
  private settleIdempotency: { resolve: () => void; reject: (err: Error) => void } | null = null;
  private loading: IndexLoad | null = null;
  private openedAt = 0;
  private recovered = 0;
  private stopping = false;
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
    this.writer = new DurableWriter(this.dir("tmp"));
  }

  dir(state: JobState | "tmp"): string {
    return path.join(this.root, state);
  }

  /** Opens the queue and waits until every file is read into the index (tests, benchmarks, the CLI). */
  async open(): Promise<RecoveryReport> {
    await this.recover();
    return this.loadIndex().loaded;
  }

  /**
   * The part of opening that must come before the first request: directories, tmp/ emptied, processing/ back to
   * pending/. From here on the queue accepts jobs; loadIndex() then reads the existing files in the background.
   */
  async recover(): Promise<{ recoveredFromProcessing: number }> {
    this.openedAt = this.now();
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
      await fsyncDir(this.dir("pending"));
      await fsyncDir(this.dir("processing"));
    }
    this.recovered = recovered;
    // Until loadIndex() has read every file: status lookups fall back to the files, keyed requests wait.
    this.progress = { phase: "listing", read: 0, total: 0 };
    this.jobsIndexed = false;
    this.idempotencyKnown = new Promise<void>((resolve, reject) => (this.settleIdempotency = { resolve, reject }));
    this.idempotencyKnown.catch(() => undefined); // enqueue() awaits it and handles a rejection
    return { recoveredFromProcessing: recovered };
  }

  /**
   * Reads pending/, failed/ and sent/ into the index in the background, in slices that leave the event loop free
   * (relay/json-scan.ts), while new jobs are accepted. The worker must wait for `jobsIndexed`.
   */
  loadIndex(): IndexLoad {
    if (this.loading) return this.loading;
    let jobsDone!: { resolve: () => void; reject: (err: Error) => void };
    const jobsIndexed = new Promise<void>((resolve, reject) => (jobsDone = { resolve, reject }));
    const loaded = this.load(() => jobsDone.resolve());
    loaded.then(
      () => this.settleIdempotency?.resolve(),
      (err: Error) => {
        jobsDone.reject(err);
        this.settleIdempotency?.reject(err);
      },
    );
    // Whoever awaits these handles their rejection; these handlers only keep Node from calling it unhandled.
    jobsIndexed.catch(() => undefined);
    this.loading = { recoveredFromProcessing: this.recovered, jobsIndexed, loaded };
    return this.loading;
  }

  private async load(onJobsIndexed: () => void): Promise<RecoveryReport> {
    const progress = this.progress;
    if (!progress) throw new Error("loadIndex() before recover()");
    const started = this.openedAt;
    const unreadable: string[] = [];
    const now = this.now();
    const scan = { stopped: (): boolean => this.stopping };
    progress.total =
      (await countJsonFiles(this.dir("pending"), scan)) + (await countJsonFiles(this.dir("failed"), scan));
    progress.phase = "jobs";

    for (const state of ["pending", "failed"] as const) {
      await scanJsonFiles(
        this.dir(state),
        (name, file) => {
          progress.read++;
          if (!file.ok) {
            if (!file.missing) unreadable.push(path.join(this.dir(state), name));
            return;
          }
          const job = file.value as Job;
          if (job?.id !== name.slice(0, -".json".length) || !isJobId(job.id) || typeof job.nextAttemptAt !== "number") {
            unreadable.push(path.join(this.dir(state), name));
            return;
          }
          if (this.index.has(job.id)) return; // accepted by this process during the load: already indexed
          this.index.put(job, state);
          this.rememberIdempotency(job.idempotency, job.id, job.createdAt, now);
        },
        { ...scan, withoutRaw: true },
      );
      if (this.stopping) throw new LoadStopped();
    }
    this.jobsIndexed = true;
    onJobsIndexed();

    progress.phase = "sent records";
    progress.read = 0;
    progress.total = await countJsonFiles(this.dir("sent"), scan);
    const expired: string[] = [];
    let kept = 0;
    await scanJsonFiles(
      this.dir("sent"),
      (name, file) => {
        progress.read++;
        if (!file.ok) {
          if (!file.missing) unreadable.push(path.join(this.dir("sent"), name));
          return;
        }
        const rec = file.value as SentRecord;
        if (now - rec.handedOffAt > this.opts.sentRetentionMs) {
          expired.push(name);
          return;
        }
        this.rememberIdempotency(rec.idempotency, rec.id, rec.createdAt, now);
        // The worker runs meanwhile: a record it wrote since the start is counted by markSent, not here.
        if (rec.handedOffAt < started) kept++;
      },
      scan,
    );
    if (this.stopping) throw new LoadStopped();
    for (const name of expired) await callbackFs.unlinkIfExists(path.join(this.dir("sent"), name));
    this.sentOnDisk += kept;
    this.progress = null;
    return {
      pending: this.index.counts.pending,
      failed: this.index.counts.failed,
      sent: kept,
      recoveredFromProcessing: this.recovered,
      unreadable,
      ms: this.now() - started,
    };
  }

  /** Where the background load stands, or undefined once every file is read. */
  loadProgress(): LoadProgress | undefined {
    return this.progress ? { ...this.progress } : undefined;
  }

  /** Stops a load still running (shutdown): keyed requests waiting for it get 503, the worker is not started. */
  stopLoading(): void {
    this.stopping = true;
    if (!this.loading) this.settleIdempotency?.reject(new LoadStopped());
  }

  private rememberIdempotency(idem: Job["idempotency"], id: string, createdAt: number, now: number): void {
    if (idem && now - createdAt < IDEMPOTENCY_TTL_MS)
      this.idempotency.remember(idem.keyHash, idem.bodyHash, id, createdAt);
  }

  /**
   * Refuses new work when free space is under the threshold (cached for a second: one statfs per second, not per
   * request).
   */
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
      throw new RelayError(
        "disk_nearly_full",
        `free space ${this.diskCheck.free} bytes < RELAY_MIN_FREE_BYTES ${this.opts.minFreeBytes}`,
      );
    }
  }

  /** Writes a probe file the way jobs are written; /ready uses it. */
  async probeWritable(): Promise<void> {
    await this.assertCanAccept();
    const probe = path.join(this.dir("tmp"), `ready-probe.${process.pid}.${this.probeSeq++}`);
    await fs.writeFile(probe, "ok", { mode: 0o600 });
    await fs.rm(probe, { force: true });
  }

  /**
   * Makes the job durable in pending/ before the caller hears 202. With an idempotency key, the same key and body
   * return the first id (nothing new is written) and a different body is refused with 409. While the index loads,
   * a keyed request waits for it (the key may be in a file not read yet); a request without a key does not wait.
   */
  async enqueue(job: Job): Promise<{ id: string; duplicate: boolean }> {
    const idem = job.idempotency;
    if (!idem) {
      await this.writeNew(job);
      return { id: job.id, duplicate: false };
    }
    try {
      await this.idempotencyKnown;
    } catch (err) {
      throw new RelayError(
        "queue_unavailable",
        `idempotency keys are unknown: the queue index did not load (${(err as Error).message})`,
      );
    }
    for (
      let inflight = this.idempotencyInflight.get(idem.keyHash);
      inflight;
      inflight = this.idempotencyInflight.get(idem.keyHash)
    ) {
      await inflight.catch(() => undefined);
    }
    const existing = this.idempotency.lookup(idem.keyHash, idem.bodyHash);
    if (existing && this.now() - existing.createdAt < IDEMPOTENCY_TTL_MS) {
      if (!existing.sameBody) {
        throw new RelayError(
          "idempotency_conflict",
          `this Idempotency-Key was used within 24 h with a different body (message ${existing.id})`,
        );
      }
      return { id: existing.id, duplicate: true };
    }
    const write = this.writeNew(job);
    this.idempotencyInflight.set(idem.keyHash, write);
    try {
      await write;
      this.idempotency.remember(idem.keyHash, idem.bodyHash, job.id, job.createdAt);
    } finally {
      this.idempotencyInflight.delete(idem.keyHash);
    }
    return { id: job.id, duplicate: false };
  }

  private async writeNew(job: Job): Promise<void> {
    await this.assertCanAccept();
    try {
      await this.writer.write(this.dir("pending"), `${job.id}.json`, JSON.stringify(job));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOSPC") {
        throw new RelayError("disk_nearly_full", `write ${job.id}: ${(err as Error).message}`);
      }
      throw new RelayError("queue_unavailable", `write ${job.id}: ${(err as Error).message}`);
    }
    this.index.put(job, "pending");
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
    return this.index.peekDue()?.at;
  }

  /** Moves the next due job to processing/ and returns it; null when nothing is due. Never reads the directory. */
  async claimNext(): Promise<Job | null> {
    const now = this.now();
    for (;;) {
      const top = this.index.peekDue();
      if (!top || top.at > now) return null;
      this.index.markProcessing(top.id); // taken before the await: a concurrent claim gets the next job
      const file = `${top.id}.json`;
      try {
        await callbackFs.rename(path.join(this.dir("pending"), file), path.join(this.dir("processing"), file));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") {
          this.index.delete(top.id); // removed behind our back (e.g. queue drop): forget it
          this.takeFresh(top.id);
          continue;
        }
        this.index.unmarkProcessing(top.id);
        throw err;
      }
      return (
        this.takeFresh(top.id) ??
        (JSON.parse(await callbackFs.readFile(path.join(this.dir("processing"), file))) as Job)
      );
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
    await this.writer.write(this.dir("sent"), `${job.id}.json`, JSON.stringify(rec));
    await callbackFs.unlinkIfExists(path.join(this.dir("processing"), `${job.id}.json`));
    this.index.delete(job.id);
    this.sentOnDisk++;
    return rec;
  }

  /**
   * Hand-off failed: back to pending/ with the next attempt time, or to failed/ after the last attempt
   * (or at once when the failure is permanent, e.g. a 5xx from Postfix).
   */
  async markAttemptFailed(
    job: Job,
    error: string,
    permanent: boolean,
  ): Promise<{ state: "pending" | "failed"; nextAttemptAt?: number }> {
    const now = this.now();
    const attempts = job.attempts + 1;
    const last = permanent || attempts >= this.opts.maxAttempts;
    const next: Job = last
      ? { ...job, attempts, lastError: error, failedAt: now }
      : {
          ...job,
          attempts,
          lastError: error,
          nextAttemptAt: now + backoffMs(attempts, this.opts.retryBaseMs, this.opts.retryMaxMs),
        };
    const state = last ? "failed" : "pending";
    await this.writer.write(this.dir(state), `${job.id}.json`, JSON.stringify(next));
    await callbackFs.unlinkIfExists(path.join(this.dir("processing"), `${job.id}.json`));
    this.index.put(next, state);
    return last ? { state } : { state, nextAttemptAt: next.nextAttemptAt };
  }

  /** State of one message for GET /messages/:id; undefined when unknown (or not this caller's). */
  async status(id: string, caller?: string): Promise<JobStatus | undefined> {
    if (!isJobId(id)) return undefined;
    const e = this.index.get(id);
    if (e) return caller !== undefined && e.caller !== caller ? undefined : jobStatus(e.state, e);
    if (!this.jobsIndexed) {
      // Still loading: the job may sit in a file the index has not reached yet; read that file.
      const found = await readJobFile(this.root, id, ["pending", "failed", "processing"]);
      if (found)
        return caller !== undefined && found.job.caller !== caller ? undefined : jobStatus(found.state, found.job);
    }
    const rec = await readSentRecord(this.root, id);
    if (!rec || (caller !== undefined && rec.caller !== caller)) return undefined;
    return sentStatus(rec);
  }

  /** Counts by state for /metrics (sent = records kept on disk). */
  depth(): Record<JobState, number> {
    return { ...this.index.counts, sent: this.sentOnDisk };
  }

  /** Deletes sent records past retention and forgets idempotency keys older than 24 h (skipped while loading). */
  async prune(): Promise<number> {
    if (this.progress) return 0;
    const now = this.now();
    this.idempotency.forgetBefore(now - IDEMPOTENCY_TTL_MS);
    const expired: string[] = [];
    await scanJsonFiles(this.dir("sent"), (name, file) => {
      // an unreadable record is left for the operator
      if (file.ok && now - (file.value as SentRecord).handedOffAt > this.opts.sentRetentionMs) expired.push(name);
    });
    for (const name of expired) await callbackFs.unlinkIfExists(path.join(this.dir("sent"), name));
    this.sentOnDisk = Math.max(0, this.sentOnDisk - expired.length);
    return expired.length;
  }
}
