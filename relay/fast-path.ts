import type { Logger } from "pino";
import type { Handoff } from "./handoff/types";
import type { RelayMetrics } from "./metrics";
import type { FastHandoff, Job } from "./storage";

export interface FastPathDeps {
  readonly handoff: Pick<Handoff, "kind" | "trySend">;
  readonly log: Logger;
  readonly metrics?: RelayMetrics;
  /** True while the worker sees Postfix refusing (a 4xx, a refused connection): everything is queued meanwhile. */
  readonly degraded?: () => boolean;
  /** The worker's hooks, same meaning: the delivery tracker learns the message before and after the hand-off. */
  readonly beforeHandoff?: (job: Job) => Promise<void>;
  readonly onHandedOff?: (job: Job, postfixQueueId: string | undefined, at: number) => Promise<void>;
}

/**
 * The synchronous fast path QueueStore.accept() takes when nothing is due before the new message: the message goes
 * to Postfix during the request over a free pooled connection. Postfix fsyncs its queue file before its 250, so a
 * message it took is as durable as a job file; the queue then writes only the hand-off record.
 *
 * Anything but a 250 (a 4xx, a 5xx, a connection error or timeout) returns undefined and the message is queued as
 * before: the worker then retries it with backoff, or moves it to failed/ on a 5xx, exactly as for any queued job
 * (one extra attempt against Postfix, which is not counted). A busy pool also returns undefined at once.
 */
export class FastPath implements FastHandoff {
  private readonly deps: FastPathDeps;

  constructor(deps: FastPathDeps) {
    this.deps = deps;
  }

  async tryHandOff(job: Job): Promise<{ queueId?: string } | undefined> {
    const { handoff, log, metrics } = this.deps;
    if (!handoff.trySend || this.deps.degraded?.()) return undefined;
    const msg = { id: job.id, from: job.envelope.from, to: job.envelope.to, raw: job.raw };
    const started = process.hrtime.bigint();
    const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      await this.deps.beforeHandoff?.(job);
    } catch (err) {
      log.warn({ id: job.id, err: (err as Error).message }, "fast path: delivery tracking unavailable; queueing");
      return undefined;
    }
    const sending = handoff.trySend(msg);
    if (!sending) return undefined;
    try {
      const res = await sending;
      metrics?.handoffSeconds.observe({ result: "ok" }, seconds());
      metrics?.handoffs.inc({ result: "ok" });
      if (res.rejectedRecipients)
        log.warn({ id: job.id, rejectedRecipients: res.rejectedRecipients }, "Postfix refused some recipients");
      return res.queueId !== undefined ? { queueId: res.queueId } : {};
    } catch (err) {
      metrics?.handoffSeconds.observe({ result: "error" }, seconds());
      log.info(
        { id: job.id, caller: job.caller, err: (err as Error).message },
        "fast path: Postfix did not take the message; queued for the worker",
      );
      return undefined;
    }
  }

  async handedOff(job: Job, postfixQueueId: string | undefined, at: number): Promise<void> {
    try {
      await this.deps.onHandedOff?.(job, postfixQueueId, at);
    } catch (err) {
      // As in the worker: tracking still maps the queue id through the Message-ID in Postfix's log.
      this.deps.log.warn(
        { id: job.id, err: (err as Error).message },
        "could not record the hand-off for delivery tracking",
      );
    }
  }
}
