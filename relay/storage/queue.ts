import { promises as fs } from "node:fs";
import * as path from "node:path";
import { callbackFs } from "./callback-fs";
import { DurableWriter, fsyncDir } from "./durable-write";
import { RelayError } from "../errors";
import {
  backoffMs,
  IDEMPOTENCY_TTL_MS,
  isJobId,
  JOB_STATES,
  jobStatus,
  readJobFile,
  sentStatus,
  type Job,
  type JobState,
  type JobStatus,
  type SentRecord,
} from "./job";
import { IdempotencyKeys } from "./idempotency-keys";
import { JobIndex } from "./job-index";
import { countJsonFiles, scanJsonFiles } from "../json-scan";
import { SentLog } from "./sent-log";
import { SentRecords } from "./sent-records";
import { TransientMap } from "../transient";

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
  readonly phase: "sent records" | "listing" | "jobs";
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

/**
 * The synchronous fast path (relay/fast-path.ts): hands a new message to Postfix during the request when a pooled
 * connection is free. Postfix fsyncs its queue file before its 250, so the message is then as durable as a job file.
 */
export interface FastHandoff {
  /** Postfix's answer when it took the message now; undefined when it did not (busy, refused, away): queue it. */
  tryHandOff(job: Job): Promise<{ readonly queueId?: string } | undefined>;
  /** After the hand-off is taken (delivery tracking); runs beside the record's fsync and never throws. */
  handedOff(job: Job, postfixQueueId: string | undefined, at: number): Promise<void>;
}

/** What accept() did: queued (pending/), handed to Postfix during the request (fast path), or an idempotent replay. */
export interface Accepted {
  readonly id: string;
  readonly duplicate: boolean;
  /** Set when this request handed the message to Postfix itself (the record is durable). */
  readonly handedOff?: { readonly postfixQueueId?: string };
}

/** The load was stopped by close(): nothing failed. */
export class LoadStopped extends Error {
  constructor() {
    super("the queue is closing");
    this.name = "LoadStopped";
  }
}

/**
 * The on-disk queue: pending/ -> processing/ -> a hand-off record in sent.log, or back to pending/ or to failed/.
 * Every write is durable (DurableWriter; the record log is group-committed, relay/sent-log.ts), so a half-written
 * file is never picked up and an accepted job survives a power cut. The records of the retention period are kept in
 * memory: status lookups never read a file.
 *
 * accept() is the one entry both doors use: with a fast path set (setFastPath) and no due backlog, the message is
 * handed to Postfix inside the request and only its record is written; otherwise it is queued.
 *
 * An in-memory index answers "next due job" without readdir. It is filled in the background after the queue opens,
 * so a backlog of 100,000 jobs does not keep the relay's door shut while its files are read.
 */
export class QueueStore {
  readonly root: string;
  private readonly opts: QueueOptions;
  private readonly now: () => number;
  private readonly writer: DurableWriter;
  private readonly index = new JobIndex();
  private readonly idempotency = new IdempotencyKeys();
  private readonly idempotencyInflight = new TransientMap<string, Promise<unknown>>();
  private readonly sentLog: SentLog;
  /** Hand-off records of the retention period, in append order (status lookups, depth, compaction). */
  private readonly sent = new SentRecords();
  private sentReady = false;
  private sentLoaded: Promise<void> = Promise.resolve();
  private settleSent: { resolve: () => void; reject: (err: Error) => void } | null = null;
  private fastPath: FastHandoff | null = null;
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
  private readonly fresh = new TransientMap<string, Job>();
  private freshBytes = 0;

  constructor(opts: QueueOptions) {
    this.opts = opts;
    this.root = opts.root;
    this.now = opts.now ?? Date.now;
    this.writer = new DurableWriter(this.dir("tmp"));
    this.sentLog = new SentLog(opts.root);
  }

  /** Turns the synchronous fast path on (server.ts, with the SMTP hand-off); null turns it off. */
  setFastPath(fast: FastHandoff | null): void {
    this.fastPath = fast;
  }

  /** Closes the record log after the last append (shutdown, after the worker stopped). */
  async close(): Promise<void> {
    await this.sentLog.close();
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
    this.progress = { phase: "sent records", read: 0, total: 0 };
    this.jobsIndexed = false;
    this.sentReady = false;
    this.sentLoaded = new Promise<void>((resolve, reject) => (this.settleSent = { resolve, reject }));
    this.sentLoaded.catch(() => undefined); // status() awaits it and handles a rejection
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
        this.settleSent?.reject(err);
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

    // 1. The hand-off records first (one file): a job whose record exists was handed off before a crash that came
    // before its processing/ file was removed; it is not sent again.
    let expiredRecords = 0;
    const keep = (rec: SentRecord): void => {
      if (now - rec.handedOffAt > this.opts.sentRetentionMs) {
        expiredRecords++;
        return;
      }
      this.sent.set(rec); // the latest record of an id wins, in append order
      this.rememberIdempotency(rec.idempotency, rec.id, rec.createdAt, now);
    };
    const opened = await this.sentLog.open(keep);
    if (opened.bad > 0) unreadable.push(`${this.sentLog.file} (${opened.bad} unreadable lines, skipped)`);
    // Upgrade: records of the sent/ directory (one file each, before the log) move into the log once.
    const legacy: { name: string; rec: SentRecord }[] = [];
    progress.total = await countJsonFiles(this.dir("sent"), scan);
    await scanJsonFiles(
      this.dir("sent"),
      (name, file) => {
        progress.read++;
        if (!file.ok) {
          if (!file.missing) unreadable.push(path.join(this.dir("sent"), name));
          return;
        }
        legacy.push({ name, rec: file.value as SentRecord });
      },
      scan,
    );
    if (this.stopping) throw new LoadStopped();
    const moved = legacy.filter(
      ({ rec }) => !this.sent.has(rec.id) && now - rec.handedOffAt <= this.opts.sentRetentionMs,
    );
    if (moved.length > 0) await this.sentLog.appendAll(moved.map((l) => l.rec));
    for (const { rec } of moved) keep(rec);
    for (const { name } of legacy) await callbackFs.unlinkIfExists(path.join(this.dir("sent"), name));
    if (legacy.length > 0) await fsyncDir(this.dir("sent"));
    this.sentReady = true;
    this.settleSent?.resolve();

    progress.phase = "listing";
    progress.read = 0;
    progress.total =
      (await countJsonFiles(this.dir("pending"), scan)) + (await countJsonFiles(this.dir("failed"), scan));
    progress.phase = "jobs";

    const handedOff: string[] = [];
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
          if (state === "pending" && this.sent.has(job.id)) {
            handedOff.push(path.join(this.dir(state), name));
            return;
          }
          this.index.put(job, state);
          this.rememberIdempotency(job.idempotency, job.id, job.createdAt, now);
        },
        Object.assign({}, scan, { withoutRaw: true }),
      );
      if (this.stopping) throw new LoadStopped();
    }
    for (const f of handedOff) await callbackFs.unlinkIfExists(f);
    this.jobsIndexed = true;
    onJobsIndexed();
    if (expiredRecords > 0 && this.sentLog.lines >= 2 * this.sent.size) await this.compactSent();
    this.progress = null;
    return {
      pending: this.index.counts.pending,
      failed: this.index.counts.failed,
      sent: this.sent.size,
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
    const r = await this.accept(job, false);
    return { id: r.id, duplicate: r.duplicate };
  }

  /**
   * What both doors call: enqueue()'s rules (durable before 202, idempotency), and with the fast path on (and
   * `fast` not false) the hand-off inside the request when nothing is due before this message. A keyed request holds
   * its key until its hand-off is recorded or its job written, so a concurrent replay waits and then finds it.
   */
  async accept(job: Job, fast = true): Promise<Accepted> {
    const idem = job.idempotency;
    if (!idem) {
      const handedOff = await this.store(job, fast);
      return { id: job.id, duplicate: false, ...(handedOff ? { handedOff } : {}) };
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
    const write = this.store(job, fast);
    this.idempotencyInflight.set(idem.keyHash, write);
    let handedOff: Accepted["handedOff"];
    try {
      handedOff = await write;
      this.idempotency.remember(idem.keyHash, idem.bodyHash, job.id, job.createdAt);
    } finally {
      this.idempotencyInflight.delete(idem.keyHash);
    }
    return { id: job.id, duplicate: false, ...(handedOff ? { handedOff } : {}) };
  }

  /** True when a new message may overtake nothing: the index is loaded and no pending job is due. */
  private fastPathOpen(): boolean {
    if (!this.jobsIndexed || !this.sentReady) return false;
    const top = this.index.peekDue();
    return top === undefined || top.at > this.now();
  }

  /**
   * The fast path when it is open and Postfix takes the message (then only the record is written, group-committed);
   * else the job file in pending/.
   */
  private async store(job: Job, fast: boolean): Promise<Accepted["handedOff"]> {
    const fp = this.fastPath;
    if (fast && fp && this.fastPathOpen()) {
      await this.assertCanAccept();
      const res = await fp.tryHandOff(job);
      if (res) {
        const rec = this.sentRecord(job, res.queueId, 0);
        this.sent.set(rec);
        try {
          await Promise.all([this.sentLog.append(rec), fp.handedOff(job, res.queueId, rec.handedOffAt)]);
        } catch (err) {
          this.sent.delete(job.id);
          // Postfix has the message; without its record an idempotent replay would send it again. 503: the caller
          // sees the failure (the documented window between Postfix's 250 and our record).
          throw new RelayError(
            "queue_unavailable",
            `handed off as ${res.queueId ?? "?"} but the record was not written: ${(err as Error).message}`,
          );
        }
        return res.queueId !== undefined ? { postfixQueueId: res.queueId } : {};
      }
    }
    await this.writeNew(job);
    return undefined;
  }

  private sentRecord(job: Job, postfixQueueId: string | undefined, attempts: number): SentRecord {
    return {
      id: job.id,
      caller: job.caller,
      createdAt: job.createdAt,
      handedOffAt: this.now(),
      attempts: attempts + 1,
      recipientCount: job.envelope.to.length,
      ...(postfixQueueId !== undefined ? { postfixQueueId } : {}),
      ...(job.idempotency ? { idempotency: job.idempotency } : {}),
    };
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
    const rec = this.sentRecord(job, postfixQueueId, job.attempts);
    this.sent.set(rec); // before the append: status says handed_off as soon as Postfix has it
    try {
      await this.sentLog.append(rec);
    } catch (err) {
      this.sent.delete(job.id);
      throw err;
    }
    // A crash before this unlink: the next start finds the record and drops the job instead of sending it again.
    await callbackFs.unlinkIfExists(path.join(this.dir("processing"), `${job.id}.json`));
    this.index.delete(job.id);
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
      ? Object.assign({}, job, { attempts, lastError: error, failedAt: now })
      : Object.assign({}, job, {
          attempts,
          lastError: error,
          nextAttemptAt: now + backoffMs(attempts, this.opts.retryBaseMs, this.opts.retryMaxMs),
        });
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
    if (!this.sentReady) {
      try {
        await this.sentLoaded;
      } catch {
        return undefined;
      }
    }
    const rec = this.sent.get(id);
    if (!rec || (caller !== undefined && rec.caller !== caller)) return undefined;
    return sentStatus(rec);
  }

  /** Counts by state for /metrics (sent = hand-off records kept). */
  depth(): Record<JobState, number> {
    return Object.assign({}, this.index.counts, { sent: this.sent.size });
  }

  /**
   * Forgets hand-off records past retention and idempotency keys older than 24 h (skipped while loading); rewrites
   * the record log when most of its lines are gone.
   */
  async prune(): Promise<number> {
    if (this.progress) return 0;
    const now = this.now();
    this.idempotency.forgetBefore(now - IDEMPOTENCY_TTL_MS);
    const expired = this.sent.forgetBefore(now - this.opts.sentRetentionMs - 1);
    if (expired > 0 && this.sentLog.lines >= 2 * this.sent.size) await this.compactSent();
    return expired;
  }

  private compactSent(): Promise<void> {
    return this.sentLog.compact((id) => this.sent.has(id));
  }
}
