/**
 * The relay's storage, in one folder behind one surface: what the HTTP door (app.ts), the SMTP door
 * (smtp-ingress.ts), the worker and the server (server.ts, which opens and closes it) use. Nothing outside this folder
 * reaches into its files.
 *
 * - QueueStore (queue.ts): `accept()` is the doors' one entry point: the synchronous fast path when nothing is due
 *   and a pooled connection is idle, else a durable job file; the worker's `claimNext()`/`markSent()`/`retry()`; the
 *   hand-off records (sent-log.ts, group-committed, kept in sent-records.ts's typed columns); idempotency keys for
 *   24 h (idempotency-keys.ts); the job index and its due heap (job-index.ts, due-heap.ts, packed-key-map.ts).
 * - DeliveryStore (delivery-store.ts): per-recipient delivery state after the hand-off, journal + typed columns.
 * - SuppressionList (suppression.ts): the suppression file.
 * - WebhookOutbox (webhook-outbox.ts): webhooks waiting for the sender.
 * - durable-write.ts and callback-fs.ts: the fsync'd writes all of them share.
 */
export { LoadStopped, QueueStore } from "./queue";
export type { FastHandoff, Job, LoadProgress } from "./queue";
export { DeliveryStore } from "./delivery-store";
export { SuppressionList } from "./suppression";
export { WebhookOutbox } from "./webhook-outbox";
export { DELIVERY_STATES, aggregateState } from "./delivery-store";
export type { DeliveryEvent, DeliveryState, MessageDelivery } from "./delivery-store";
export { DurableWriter, fsyncDir } from "./durable-write";
export { JOB_STATES, isJobId, jobFile, readJobFile, readSentRecord } from "./job";
export type { JobState, SentRecord } from "./job";
export type { JobStatus } from "./queue";
export { readSentLog } from "./sent-log";
export type { SuppressionEntry } from "./suppression";
export type { OutboxItem } from "./webhook-outbox";
