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
  /**
   * How long a request may wait for a pooled connection when all are busy (RELAY_FAST_PATH_WAIT_MS); 0: only a
   * connection free now, else the message is queued at once.
   */
  readonly waitMs?: number;
  /** Message bytes that may wait or be in flight on the fast path at once; past it, messages are queued at once. */
  readonly maxWaitingBytes?: number;
}

/** The default bound on message bytes waiting for (or in) a fast-path hand-off: a few hundred typical messages. */
export const FAST_PATH_MAX_WAITING_BYTES = 16 * 1024 * 1024;

/**
 * The synchronous fast path QueueStore.accept() takes when nothing is due before the new message: the message goes
 * to Postfix during the request over a free pooled connection. Postfix fsyncs its queue file before its 250, so a
 * message it took is as durable as a job file; the queue then writes only the hand-off record.
 *
 * With every pooled connection busy, the request waits in the pool's line for up to `waitMs`: a job file costs
 * the relay an open, a write, an fsync, a rename and a later read and unlink (bench:chain measured ~0.7 ms of CPU per
 * message for them), a wait costs a timer. Past `waitMs`, or past `maxWaitingBytes` of messages waiting, the message
 * is queued; a queued message that falls due then closes the fast path until the worker has caught up
 * (QueueStore.fastPathOpen), so a backlog drains in order.
 *
 * Anything but a 250 (a 4xx, a 5xx, a connection error or timeout) returns undefined and the message is queued as
 * before: the worker then retries it with backoff, or moves it to failed/ on a 5xx, exactly as for any queued job
 * (one extra attempt against Postfix, which is not counted).
 */
export class FastPath implements FastHandoff {
  private readonly deps: FastPathDeps;
  private readonly waitMs: number;
  private readonly maxWaitingBytes: number;
  /** Bytes of the messages now waiting for, or in, a fast-path hand-off. */
  private inFlightBytes = 0;

  constructor(deps: FastPathDeps) {
    this.deps = deps;
    this.waitMs = deps.waitMs ?? 0;
    this.maxWaitingBytes = deps.maxWaitingBytes ?? FAST_PATH_MAX_WAITING_BYTES;
  }

  async tryHandOff(job: Job): Promise<{ queueId?: string } | undefined> {
    const { handoff, log, metrics } = this.deps;
    if (!handoff.trySend) return undefined;
    if (this.deps.degraded?.()) {
      metrics?.fastPathQueued.inc({ reason: "degraded" });
      return undefined;
    }
    const msg = { id: job.id, from: job.envelope.from, to: job.envelope.to, raw: job.raw };
    const started = process.hrtime.bigint();
    const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
    // The tracking line goes out beside the hand-off, not before it: its append may wait behind the delivery
    // journal's fsync in progress (group commit), and the 202 then paid for that fsync and for its own record's
    // (bench:relay's open loop). The store knows the message in memory from this call on, so log lines Postfix
    // writes within milliseconds still find their caller.
    const tracked: Promise<Error | undefined> = (async () => this.deps.beforeHandoff?.(job))().then(
      () => undefined,
      (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
    );
    // Postfix has it, or our queue does: either way the record log, not the tracker, decides what happens next,
    // so a tracker that failed is a warning, on every outcome of the hand-off.
    const trackingSettled = async (handedOff: boolean): Promise<void> => {
      const err = await tracked;
      if (err)
        log.warn(
          { id: job.id, err: err.message },
          handedOff
            ? "fast path: handed off, but delivery tracking is unavailable"
            : "fast path: delivery tracking unavailable",
        );
    };
    const size = job.raw.length;
    const waitMs = this.inFlightBytes + size <= this.maxWaitingBytes ? this.waitMs : 0;
    this.inFlightBytes += size;
    try {
      // undefined (now or after the wait): no pooled connection came, nothing was sent
      let res: Awaited<ReturnType<typeof handoff.trySend>>;
      try {
        res = await handoff.trySend(msg, waitMs);
      } finally {
        await trackingSettled(res !== undefined);
      }
      if (!res) {
        metrics?.fastPathQueued.inc({ reason: "busy" });
        return undefined;
      }
      metrics?.handoffSeconds.observe({ result: "ok" }, seconds());
      metrics?.handoffs.inc({ result: "ok" });
      if (res.rejectedRecipients)
        log.warn({ id: job.id, rejectedRecipients: res.rejectedRecipients }, "Postfix refused some recipients");
      return res.queueId !== undefined ? { queueId: res.queueId } : {};
    } catch (err) {
      metrics?.handoffSeconds.observe({ result: "error" }, seconds());
      metrics?.fastPathQueued.inc({ reason: "refused" });
      log.info(
        { id: job.id, caller: job.caller, err: (err as Error).message },
        "fast path: Postfix did not take the message; queued for the worker",
      );
      return undefined;
    } finally {
      this.inFlightBytes -= size;
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
