// npx tsx --expose-gc bench/queue-bench.ts — the queue at 100,000 pending jobs: how long the background index load
// takes, the index's memory per job (V8 heap and typed arrays, with and without idempotency keys), and claim cost at
// that depth compared with a queue of 1,000 (a readdir per job would make the first ~100x slower).
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { QueueStore, type Job } from "../relay/storage/queue";
import { sha256 } from "../relay/validate";

const DEPTH = Number(process.env.BENCH_DEPTH ?? 100_000);
const CLAIMS = 1000;
const base = path.resolve(__dirname, "..", ".cache");

/** V8 heap and ArrayBuffer memory in use, after full GCs when node runs with --expose-gc (buffers are freed lazily). */
async function memory(): Promise<{ heap: number; buffers: number }> {
  for (let i = 0; i < 3; i++) {
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((r) => setTimeout(r, 50));
  }
  const m = process.memoryUsage();
  return { heap: m.heapUsed, buffers: m.arrayBuffers };
}

async function measure(
  depth: number,
  keyed: boolean,
): Promise<{ loadMs: number; claimMs: number; heapPerJob: number; buffersPerJob: number }> {
  const root = mkdtempSync(path.join(base, "qbench-"));
  try {
    const opts = {
      root,
      maxAttempts: 8,
      retryBaseMs: 30_000,
      retryMaxMs: 3_600_000,
      minFreeBytes: 0,
      sentRetentionMs: 86_400_000,
    };
    await new QueueStore(opts).open();
    const now = Date.now();
    for (let i = 0; i < depth; i++) {
      const j: Job = {
        id: randomUUID(),
        caller: "bench",
        createdAt: now,
        attempts: 1,
        nextAttemptAt: now - depth + i,
        lastError: "connect ECONNREFUSED 127.0.0.1:25",
        envelope: { from: "noreply@example.com", to: ["u@example.net"] },
        subject: "s",
        recipientDomains: ["example.net"],
        tags: [],
        raw: "x".repeat(2500),
        ...(keyed ? { idempotency: { keyHash: sha256(`bench\n${i}`), bodyHash: sha256(String(i)) } } : {}),
      };
      writeFileSync(path.join(root, "pending", `${j.id}.json`), JSON.stringify(j));
    }
    const before = await memory();
    const q = new QueueStore(opts);
    const t0 = process.hrtime.bigint();
    await q.open();
    const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const after = await memory();
    const t1 = process.hrtime.bigint();
    for (let i = 0; i < CLAIMS; i++) if (!(await q.claimNext())) throw new Error("queue ran dry");
    return {
      loadMs,
      heapPerJob: (after.heap - before.heap) / depth,
      buffersPerJob: (after.buffers - before.buffers) / depth,
      claimMs: Number(process.hrtime.bigint() - t1) / 1e6 / CLAIMS,
    };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

(async () => {
  const small = await measure(CLAIMS, false);
  const big = await measure(DEPTH, false);
  const keyed = await measure(DEPTH, true);
  const mb = (perJob: number): string => ((perJob * DEPTH) / 1024 / 1024).toFixed(1);
  console.log(`queue bench on node ${process.version}, 1-min load ${os.loadavg()[0]?.toFixed(2)}`);
  console.log(
    `queue at ${CLAIMS} pending:   index loaded in ${small.loadMs.toFixed(0)} ms; ` +
      `claim ${small.claimMs.toFixed(3)} ms/job`,
  );
  console.log(
    `queue at ${DEPTH} pending: index loaded in ${big.loadMs.toFixed(0)} ms; ` +
      `claim ${big.claimMs.toFixed(3)} ms/job (${(big.claimMs / small.claimMs).toFixed(2)}x the small queue)`,
  );
  if ((globalThis as { gc?: unknown }).gc) {
    console.log(
      `index at ${DEPTH} pending: ${mb(big.heapPerJob)} MB of V8 heap + ${mb(big.buffersPerJob)} MB of typed ` +
        `arrays (${big.heapPerJob.toFixed(0)} + ${big.buffersPerJob.toFixed(0)} bytes per job)`,
    );
    console.log(
      `with an idempotency key on every job: ${mb(keyed.heapPerJob)} MB + ${mb(keyed.buffersPerJob)} MB ` +
        `(${keyed.heapPerJob.toFixed(0)} + ${keyed.buffersPerJob.toFixed(0)} bytes per job); ` +
        `loaded in ${keyed.loadMs.toFixed(0)} ms`,
    );
  } else {
    console.log(
      "(run with node --expose-gc, e.g. npx tsx --expose-gc bench/queue-bench.ts, to also print the index's memory)",
    );
  }
})();
