import type { Logger } from "pino";
import type { Handoff } from "./handoff/types";
import { HandoffError } from "./handoff/types";
import type { RelayMetrics } from "./metrics";
import type { Job, QueueStore } from "./storage";
import { TransientSet } from "./transient";

export interface WorkerDeps {
  readonly queue: QueueStore;
  readonly handoff: Handoff;
  readonly log: Logger;
  readonly metrics?: RelayMetrics;
  /**
   * Hand-offs in flight at once (default 1: serial). Jobs are still claimed in due order; with more than one, a
   * crash can leave up to this many jobs between Postfix's 250 and their fsync'd record (each is sent again).
   */
  readonly concurrency?: number;
  /** Longest sleep between checks, so a clock jump cannot stall the queue. */
  readonly maxIdleMs?: number;
  readonly now?: () => number;
  /** Before the hand-off: the delivery tracker learns the caller and recipients before Postfix can log anything. */
  readonly beforeHandoff?: (job: Job) => Promise<void>;
  /** After the hand-off is recorded: the delivery tracker learns the caller, recipients and Postfix queue id. */
  readonly onHandedOff?: (job: Job, postfixQueueId: string | undefined, at: number) => Promise<void>;
}

/**
 * Drains the queue in due order, `concurrency` jobs at a time. After a temporary failure (a 4xx from Postfix, a
 * refused connection) the whole pool falls back to one job at a time, exactly as the serial worker, until a hand-off
 * succeeds: a Postfix that is refusing mail is not hit by several attempts at once, and no more jobs than before
 * spend an attempt on it.
 */
export class QueueWorker {
  private readonly deps: WorkerDeps;
  private readonly concurrency: number;
  private running = false;
  private loop: Promise<void> | null = null;
  private wakeUp: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly inFlight = new TransientSet<Promise<void>>();
  /** Set by a temporary failure, cleared by a success: hand off one job at a time meanwhile. */
  private degraded = false;

  constructor(deps: WorkerDeps) {
    this.deps = deps;
    this.concurrency = Math.max(1, Math.floor(deps.concurrency ?? 1));
  }

  /** After a temporary failure until the next success: the fast path stays off meanwhile (Postfix is refusing). */
  isDegraded(): boolean {
    return this.degraded;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Called after an enqueue, or when a hand-off ends: look at the queue now instead of at the next timer. */
  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    w?.();
  }

  /** Stops taking jobs; resolves once every job in hand is handed off or back in pending/. */
  async stop(): Promise<void> {
    this.running = false;
    this.wake();
    await this.loop;
  }

  private async run(): Promise<void> {
    const { queue, log } = this.deps;
    while (this.running) {
      const limit = this.degraded ? 1 : this.concurrency;
      if (this.inFlight.size >= limit) {
        await this.sleep(this.deps.maxIdleMs ?? 60_000); // woken when a hand-off ends
        continue;
      }
      let job: Job | null;
      try {
        job = await queue.claimNext();
      } catch (err) {
        log.error({ err: (err as Error).message }, "queue claim failed");
        await this.sleep(1000);
        continue;
      }
      if (job) {
        const p: Promise<void> = this.process(job).finally(() => {
          this.inFlight.delete(p);
          this.wake();
        });
        this.inFlight.add(p);
        continue;
      }
      const due = queue.nextDueAt();
      const idle = this.deps.maxIdleMs ?? 60_000;
      const now = (this.deps.now ?? Date.now)();
      await this.sleep(due === undefined ? idle : Math.min(Math.max(due - now, 0) + 1, idle));
    }
    await Promise.all(this.inFlight);
  }

  private sleep(ms: number): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => {
      this.wakeUp = resolve;
      this.timer = setTimeout(() => this.wake(), ms);
    });
  }

  private async process(job: Job): Promise<void> {
    const { queue, handoff, log, metrics } = this.deps;
    const ctx = {
      id: job.id,
      caller: job.caller,
      attempt: job.attempts + 1,
      recipients: job.envelope.to.length,
      domains: job.recipientDomains,
    };
    const started = process.hrtime.bigint();
    const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
    let res: Awaited<ReturnType<Handoff["send"]>>;
    try {
      await this.deps.beforeHandoff?.(job);
      res = await handoff.send({ id: job.id, from: job.envelope.from, to: job.envelope.to, raw: job.raw });
    } catch (err) {
      const failure =
        err instanceof HandoffError ? err : new HandoffError(err instanceof Error ? err.message : String(err));
      if (!failure.permanent) this.degraded = true;
      metrics?.handoffSeconds.observe({ result: "error" }, seconds());
      try {
        const r = await queue.markAttemptFailed(job, failure.message, failure.permanent);
        metrics?.handoffs.inc({ result: r.state === "failed" ? "failed" : "retry" });
        if (r.state === "pending") metrics?.retries.inc();
        const fields = Object.assign({}, ctx, {
          outcome: r.state === "failed" ? "failed" : "retry",
          permanent: failure.permanent,
          err: failure.message,
          nextAttemptAt: r.nextAttemptAt,
        });
        if (r.state === "failed") log.error(fields, "hand-off failed for good; job moved to failed/");
        else log.warn(fields, "hand-off failed; will retry");
      } catch (err2) {
        // Could not write the job back: it stays in processing/ and returns to pending/ at the next start.
        log.error(Object.assign({}, ctx, { err: (err2 as Error).message }), "could not reschedule the job");
        await this.pause(1000);
      }
      return;
    }
    this.degraded = false;
    metrics?.handoffSeconds.observe({ result: "ok" }, seconds());
    metrics?.handoffs.inc({ result: "ok" });
    try {
      await queue.markSent(job, res.queueId);
    } catch (err) {
      // Handed off but not recorded (disk): the job stays in processing/ and is sent again after a restart
      // (at-least-once).
      log.error(
        Object.assign({}, ctx, { outcome: "record_failed", err: (err as Error).message }),
        "could not record the hand-off",
      );
      await this.pause(1000);
      return;
    }
    try {
      await this.deps.onHandedOff?.(job, res.queueId, (this.deps.now ?? Date.now)());
    } catch (err) {
      // Tracking still maps the queue id through the Message-ID in Postfix's log; only the caller link waits.
      log.warn(
        Object.assign({}, ctx, { err: (err as Error).message }),
        "could not record the hand-off for delivery tracking",
      );
    }
    log.info(
      Object.assign({}, ctx, {
        outcome: "handed_off",
        handoff: handoff.kind,
        postfixQueueId: res.queueId,
        rejectedRecipients: res.rejectedRecipients,
        ms: Math.round(seconds() * 1000),
      }),
      "handed off to postfix",
    );
  }

  /** A job's own pause after a disk error (keeps its slot busy, like the serial worker did). */
  private pause(ms: number): Promise<void> {
    return this.running ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();
  }
}
