import type { Logger } from "pino";
import type { RelayMetrics } from "../metrics";
import type { DeliveryEvent, DeliveryStore } from "../storage";
import type { LogTail } from "./log-tail";
import { parsePostfixLogLine, type LogFact } from "./postfix-log";

export interface TrackerDeps {
  readonly store: DeliveryStore;
  readonly tail: LogTail;
  readonly log: Logger;
  readonly metrics?: RelayMetrics;
  /**
   * Side effects of a batch's events (suppression, webhook outbox), awaited before the batch's position is stored:
   * if the relay dies in between, the same lines give the same event ids again, so these must be idempotent.
   */
  readonly beforeCommit?: (events: readonly DeliveryEvent[]) => Promise<void>;
  readonly pollMs?: number;
  readonly now?: () => number;
}

/** Follows Postfix's log and records, per recipient, what happened to each message the relay handed off. */
export class DeliveryTracker {
  private running = false;
  private loop: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private wakeUp: (() => void) | null = null;

  constructor(private readonly deps: TrackerDeps) {}

  /** Reads and commits every whole line available now; returns the number of lines read. */
  async pollOnce(): Promise<number> {
    const { store, tail, log, metrics } = this.deps;
    const now = (this.deps.now ?? Date.now)();
    let total = 0;
    for (;;) {
      const chunk = await tail.read(store.position);
      if (chunk.lostTrack)
        log.warn({ file: tail.file }, `delivery tracking: ${chunk.lostTrack}; events in it may be missing`);
      if (chunk.skippedBytes !== undefined) {
        metrics?.maillogSkipped.inc();
        log.warn({ file: tail.file, bytes: chunk.skippedBytes }, "delivery tracking: skipped a log line over 1 MiB");
      }
      const samePos =
        store.position && chunk.next.inode === store.position.inode && chunk.next.offset === store.position.offset;
      if (chunk.lines.length === 0 && samePos) return total;
      const facts: { fact: LogFact; line: number }[] = [];
      chunk.lines.forEach((line, i) => {
        const r = parsePostfixLogLine(line, now);
        if (r.kind === "fact") facts.push({ fact: r.fact, line: i });
        else if (r.kind === "unparsed") {
          metrics?.maillogUnparsed.inc();
          log.debug({ line: line.slice(0, 300) }, "postfix log line not understood");
        }
      });
      const { records, events } = store.plan(facts, chunk.next);
      try {
        if (events.length > 0) await this.deps.beforeCommit?.(events);
        await store.commit(records, chunk.next);
      } catch (err) {
        await store.open(); // memory ran ahead of the journal: reload what is durable and read these lines again
        throw err;
      }
      for (const e of events) {
        metrics?.deliveryEvents.inc({ outcome: e.state });
        if (e.state === "delivered" && e.handedOffAt !== undefined)
          metrics?.deliverySeconds.observe(Math.max(0, e.at - e.handedOffAt) / 1000);
        log.info(
          {
            id: e.messageId,
            caller: e.caller,
            outcome: e.state,
            dsn: e.dsn,
            attempts: e.attempts,
            domain: e.recipient.slice(e.recipient.lastIndexOf("@") + 1),
          },
          "delivery event",
        );
      }
      total += chunk.lines.length;
    }
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        try {
          await this.pollOnce();
        } catch (err) {
          this.deps.log.error({ err: (err as Error).message }, "delivery tracking failed; retrying");
        }
        await new Promise<void>((resolve) => {
          this.wakeUp = resolve;
          this.timer = setTimeout(resolve, this.deps.pollMs ?? 1000);
        });
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.wakeUp?.();
    await this.loop;
  }
}
