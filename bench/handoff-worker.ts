// Child of bench/handoff-bench.ts, started with `ip netns exec <ns> node --import tsx bench/handoff-worker.ts <spec>`
// so that 127.0.0.1:25 is the bench's own Postfix, not the host's. It composes every message first (not timed), then
// hands them off one at a time with the relay's own hand-off classes ("smtp", "sendmail"), or through the relay's own
// queue and worker with `concurrency` hand-offs at once ("queue": QueueStore + QueueWorker + SmtpHandoff, jobs
// enqueued first, untimed), and prints one JSON line with per-message latency and outcome.
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import * as path from "node:path";
import pino from "pino";
import { composeMessage } from "../relay/mime";
import { QueueStore, type Job } from "../relay/storage/queue";
import { QueueWorker } from "../relay/worker";
import { SendmailHandoff } from "../relay/handoff/sendmail";
import { SmtpHandoff } from "../relay/handoff/smtp";
import type { Handoff } from "../relay/handoff/types";
import type { SendRequest } from "../relay/validate";

export interface WorkerSpec {
  readonly kind: "smtp" | "sendmail" | "queue";
  /** "queue": hand-offs in flight at once (QueueWorker concurrency = SmtpHandoff connections). */
  readonly concurrency?: number;
  /** "queue": where the queue lives (a real disk: the queue's fsyncs are part of the cost). */
  readonly queueBase?: string;
  /** Tag written into X-Bench-Phase, so the bench can count this phase's messages at the sink. */
  readonly phase: string;
  readonly count: number;
  readonly from: string;
  readonly to: string;
  readonly sendmailPath: string;
  readonly timeoutMs: number;
}

export interface SendOutcome {
  readonly ms: number;
  readonly ok: boolean;
  readonly queueId?: string;
  readonly error?: string;
  /** SMTP reply code when the error carried one (e.g. 451). */
  readonly code?: number;
}

export interface WorkerResult {
  readonly phase: string;
  readonly kind: WorkerSpec["kind"];
  readonly totalMs: number;
  /** Wall clock (Date.now) at the first hand-off and after the last one, to compare with sink file mtimes. */
  readonly startedAt: number;
  readonly endedAt: number;
  /** Size of one composed message. */
  readonly bytes: number;
  readonly outcomes: readonly SendOutcome[];
}

/** The same few-KB text+html payload bench/relay-bench.mjs posts. */
function request(spec: WorkerSpec, i: number): SendRequest {
  return {
    from: { email: spec.from, name: "Bench" },
    to: [{ email: spec.to }],
    cc: [],
    bcc: [],
    replyTo: [],
    subject: `Your receipt #${i}`,
    text: "Thanks for your order. ".repeat(40),
    html: `<p>${"Thanks for your <b>order</b>. ".repeat(40)}</p>`,
    attachments: [],
    headers: { "X-Bench-Phase": spec.phase },
    tags: [],
  };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? "") as WorkerSpec;
  const date = new Date();
  const raws: Buffer[] = [];
  for (let i = 0; i < spec.count; i++)
    raws.push(await composeMessage(request(spec, i), { messageId: `<${spec.phase}-${i}@mail.example.com>`, date }));

  if (spec.kind === "queue") return queueRun(spec, raws);
  const handoff: Handoff =
    spec.kind === "smtp"
      ? new SmtpHandoff({ host: "127.0.0.1", port: 25, timeoutMs: spec.timeoutMs, maxConnections: 2 })
      : new SendmailHandoff({ path: spec.sendmailPath, timeoutMs: spec.timeoutMs });
  const outcomes: SendOutcome[] = [];
  const startedAt = Date.now();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < raws.length; i++) {
    const s = process.hrtime.bigint();
    try {
      const r = await handoff.send({
        id: `${spec.phase}-${i}`,
        from: spec.from,
        to: [spec.to],
        raw: raws[i] as Buffer,
      });
      outcomes.push({
        ms: Number(process.hrtime.bigint() - s) / 1e6,
        ok: true,
        ...(r.queueId ? { queueId: r.queueId } : {}),
      });
    } catch (err) {
      const message = (err as Error).message;
      const code = /^SMTP (\d{3})\b/.exec(message)?.[1];
      outcomes.push({
        ms: Number(process.hrtime.bigint() - s) / 1e6,
        ok: false,
        error: message.slice(0, 300),
        ...(code ? { code: Number(code) } : {}),
      });
    }
  }
  const totalMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const endedAt = Date.now();
  await handoff.close();
  const result: WorkerResult = {
    phase: spec.phase,
    kind: spec.kind,
    totalMs,
    startedAt,
    endedAt,
    bytes: raws[0]?.length ?? 0,
    outcomes,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** The relay's own queue and worker: enqueue everything (untimed), then time the worker until every job is recorded. */
async function queueRun(spec: WorkerSpec, raws: Buffer[]): Promise<void> {
  const k = spec.concurrency ?? 1;
  const root = mkdtempSync(path.join(spec.queueBase ?? "/tmp", "handoff-queue-"));
  try {
    const queue = new QueueStore({
      root,
      maxAttempts: 8,
      retryBaseMs: 30_000,
      retryMaxMs: 3_600_000,
      minFreeBytes: 0,
      sentRetentionMs: 86_400_000,
    });
    await queue.open();
    const now = Date.now();
    const ids: string[] = [];
    for (const [i, raw] of raws.entries()) {
      const id = randomUUID();
      ids.push(id);
      const job: Job = {
        id,
        caller: "bench",
        createdAt: now,
        attempts: 0,
        nextAttemptAt: now - raws.length + i,
        envelope: { from: spec.from, to: [spec.to] },
        subject: "bench",
        recipientDomains: ["example.org"],
        tags: [],
        raw: raw.toString("utf8"),
      };
      await queue.enqueue(job);
    }
    const handoff = new SmtpHandoff({ host: "127.0.0.1", port: 25, timeoutMs: spec.timeoutMs, maxConnections: k });
    const worker = new QueueWorker({ queue, handoff, log: pino({ level: "warn" }), concurrency: k });
    const startedAt = Date.now();
    const t0 = process.hrtime.bigint();
    worker.start();
    while (queue.depth().sent + queue.depth().failed < raws.length) await new Promise((r) => setTimeout(r, 2));
    const totalMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const endedAt = Date.now();
    await worker.stop();
    await handoff.close();
    const sent = queue.depth().sent;
    const outcomes: SendOutcome[] = ids.map((_, i) => ({ ms: totalMs / raws.length, ok: i < sent }));
    const result: WorkerResult = {
      phase: spec.phase,
      kind: spec.kind,
      totalMs,
      startedAt,
      endedAt,
      bytes: raws[0]?.length ?? 0,
      outcomes,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`handoff-worker: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
