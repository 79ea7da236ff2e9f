import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { QueueStore } from "./storage";

/** The relay's Prometheus metrics, on a private registry (nothing global, so tests can build several apps). */
export class RelayMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<"route" | "outcome">;
  readonly handoffSeconds: Histogram<"result">;
  readonly handoffs: Counter<"result">;
  readonly fastPathQueued: Counter<"reason">;
  readonly retries: Counter;
  readonly deliveryEvents: Counter<"outcome">;
  readonly deliverySeconds: Histogram;
  readonly maillogUnparsed: Counter;
  readonly maillogSkipped: Counter;

  constructor(queue: QueueStore, withProcessMetrics = true) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: "relay_requests_total",
      help: "HTTP requests by route and outcome (accepted, duplicate, or the error code)",
      labelNames: ["route", "outcome"],
      registers,
    });
    new Gauge({
      name: "relay_queue_jobs",
      help: "Jobs in the queue by state (sent = hand-off records kept, in sent.log)",
      labelNames: ["state"],
      registers,
      collect() {
        for (const [state, n] of Object.entries(queue.depth())) this.set({ state }, n);
      },
    });
    this.handoffSeconds = new Histogram({
      name: "relay_handoff_duration_seconds",
      help: "Time to hand one message to Postfix",
      labelNames: ["result"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.handoffs = new Counter({
      name: "relay_handoffs_total",
      help: "Hand-off attempts by result (ok, retry, failed)",
      labelNames: ["result"],
      registers,
    });
    this.fastPathQueued = new Counter({
      name: "relay_fast_path_queued_total",
      help:
        "Messages the fast path queued instead of handing off in the request " +
        "(busy: no pooled connection within RELAY_FAST_PATH_WAIT_MS)",
      labelNames: ["reason"],
      registers,
    });
    this.retries = new Counter({
      name: "relay_retries_total",
      help: "Jobs put back to pending/ for another attempt",
      registers,
    });
    this.deliveryEvents = new Counter({
      name: "relay_delivery_events_total",
      help: "Per-recipient outcomes read from Postfix's log (delivered, deferred, bounced, expired)",
      labelNames: ["outcome"],
      registers,
    });
    this.deliverySeconds = new Histogram({
      name: "relay_handoff_to_delivery_seconds",
      help: "From the hand-off to Postfix to the recipient MX's 250, per delivered recipient",
      buckets: [0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600],
      registers,
    });
    this.maillogUnparsed = new Counter({
      name: "relay_maillog_unparsed_lines_total",
      help: "Postfix log lines the delivery tracker did not understand (logged at debug)",
      registers,
    });
    this.maillogSkipped = new Counter({
      name: "relay_maillog_skipped_lines_total",
      help: "Postfix log lines over 1 MiB the delivery tracker skipped (it keeps reading after them)",
      registers,
    });
    if (withProcessMetrics) collectDefaultMetrics({ register: this.registry, prefix: "relay_" });
  }
}
