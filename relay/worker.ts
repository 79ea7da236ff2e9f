import type { Logger } from "pino";
import type { Handoff } from "./handoff/types";
import { HandoffError } from "./handoff/types";
import type { RelayMetrics } from "./metrics";
import type { Job, QueueStore } from "./queue";

export interface WorkerDeps {
  readonly queue: QueueStore;
  readonly handoff: Handoff;
  readonly log: Logger;
  readonly metrics?: RelayMetrics;
  /** Longest sleep between checks, so a clock jump cannot stall the queue. */
  readonly maxIdleMs?: number;
  readonly now?: () => number;
  /** Before the hand-off: the delivery tracker learns the caller and recipients before Postfix can log anything. */
  readonly beforeHandoff?: (job: Job) => Promise<void>;
  /** After the hand-off is recorded: the delivery tracker learns the caller, recipients and Postfix queue id. */
  readonly onHandedOff?: (job: Job, postfixQueueId: string | undefined, at: number) => Promise<void>;
}

/** Drains the queue serially (easier to reason about than parallel throughput for transactional volume). */
export class QueueWorker {
  private readonly deps: WorkerDeps;
  private running = false;
  private loop: Promise<void> | null = null;
  private wakeUp: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(deps: WorkerDeps) {
    this.deps = deps;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Called after an enqueue: look at the queue now instead of at the next timer. */
  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    w?.();
  }

  /** Stops taking jobs; resolves once the job in hand is handed off or back in pending/. */
  async stop(): Promise<void> {
    this.running = false;
    this.wake();
    await this.loop;
  }

  private async run(): Promise<void> {
    const { queue, log } = this.deps;
    while (this.running) {
      let job: Job | null;
      try {
        job = await queue.claimNext();
      } catch (err) {
        log.error({ err: (err as Error).message }, "queue claim failed");
        await this.sleep(1000);
        continue;
      }
      if (job) {
        await this.process(job);
        continue;
      }
      const due = queue.nextDueAt();
      const idle = this.deps.maxIdleMs ?? 60_000;
      const now = (this.deps.now ?? Date.now)();
      await this.sleep(due === undefined ? idle : Math.min(Math.max(due - now, 0) + 1, idle));
    }
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
    const ctx = { id: job.id, caller: job.caller, attempt: job.attempts + 1, recipients: job.envelope.to.length, domains: job.recipientDomains };
    const started = process.hrtime.bigint();
    const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
    let res: Awaited<ReturnType<Handoff["send"]>>;
    try {
      await this.deps.beforeHandoff?.(job);
      res = await handoff.send({ id: job.id, from: job.envelope.from, to: job.envelope.to, raw: job.raw });
    } catch (err) {
      const failure = err instanceof HandoffError ? err : new HandoffError(err instanceof Error ? err.message : String(err));
      metrics?.handoffSeconds.observe({ result: "error" }, seconds());
      try {
        const r = await queue.markAttemptFailed(job, failure.message, failure.permanent);
        metrics?.handoffs.inc({ result: r.state === "failed" ? "failed" : "retry" });
        if (r.state === "pending") metrics?.retries.inc();
        const fields = { ...ctx, outcome: r.state === "failed" ? "failed" : "retry", permanent: failure.permanent, err: failure.message, nextAttemptAt: r.nextAttemptAt };
        if (r.state === "failed") log.error(fields, "hand-off failed for good; job moved to failed/");
        else log.warn(fields, "hand-off failed; will retry");
      } catch (err2) {
        // Could not write the job back: it stays in processing/ and returns to pending/ at the next start.
        log.error({ ...ctx, err: (err2 as Error).message }, "could not reschedule the job");
        await this.sleep(1000);
      }
      return;
    }
    metrics?.handoffSeconds.observe({ result: "ok" }, seconds());
    metrics?.handoffs.inc({ result: "ok" });
    try {
      await queue.markSent(job, res.queueId);
    } catch (err) {
      // Handed off but not recorded (disk): the job stays in processing/ and is sent again after a restart (at-least-once).
      log.error({ ...ctx, outcome: "record_failed", err: (err as Error).message }, "could not record the hand-off");
      await this.sleep(1000);
      return;
    }
    try {
      await this.deps.onHandedOff?.(job, res.queueId, (this.deps.now ?? Date.now)());
    } catch (err) {
      // Tracking still maps the queue id through the Message-ID in Postfix's log; only the caller link waits.
      log.warn({ ...ctx, err: (err as Error).message }, "could not record the hand-off for delivery tracking");
    }
    log.info(
      { ...ctx, outcome: "handed_off", handoff: handoff.kind, postfixQueueId: res.queueId, rejectedRecipients: res.rejectedRecipients, ms: Math.round(seconds() * 1000) },
      "handed off to postfix",
    );
  }
}
