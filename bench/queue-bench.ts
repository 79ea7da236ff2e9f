// npx tsx bench/queue-bench.ts — the queue at 100,000 pending jobs: index rebuild time at startup, and claim cost at
// that depth compared with a queue of 1,000 (a readdir per job would make the first ~100x slower).
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { QueueStore, type Job } from "../relay/queue";

const DEPTH = Number(process.env.BENCH_DEPTH ?? 100_000);
const CLAIMS = 1000;
const base = path.resolve(__dirname, "..", ".cache");

/** V8 heap in use, after a full GC when node runs with --expose-gc (the script re-runs itself that way). */
function heapMb(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

async function measure(depth: number): Promise<{ rebuildMs: number; claimMs: number; indexMb: number }> {
  const root = mkdtempSync(path.join(base, "qbench-"));
  try {
    const opts = { root, maxAttempts: 8, retryBaseMs: 30_000, retryMaxMs: 3_600_000, minFreeBytes: 0, sentRetentionMs: 86_400_000 };
    await new QueueStore(opts).open();
    const now = Date.now();
    for (let i = 0; i < depth; i++) {
      const j: Job = { id: randomUUID(), caller: "bench", createdAt: now, attempts: 0, nextAttemptAt: now - depth + i, envelope: { from: "noreply@example.com", to: ["u@example.net"] }, subject: "s", recipientDomains: ["example.net"], tags: [], raw: "x".repeat(2500) };
      writeFileSync(path.join(root, "pending", `${j.id}.json`), JSON.stringify(j));
    }
    const heap0 = heapMb();
    const q = new QueueStore(opts);
    const t0 = process.hrtime.bigint();
    await q.open();
    const rebuildMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const indexMb = heapMb() - heap0;
    const t1 = process.hrtime.bigint();
    for (let i = 0; i < CLAIMS; i++) if (!(await q.claimNext())) throw new Error("queue ran dry");
    return { rebuildMs, indexMb, claimMs: Number(process.hrtime.bigint() - t1) / 1e6 / CLAIMS };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

(async () => {
  const small = await measure(CLAIMS);
  const big = await measure(DEPTH);
  console.log(`queue at ${CLAIMS} pending:   index rebuilt in ${small.rebuildMs.toFixed(0)} ms; claim ${small.claimMs.toFixed(3)} ms/job`);
  console.log(`queue at ${DEPTH} pending: index rebuilt in ${big.rebuildMs.toFixed(0)} ms; claim ${big.claimMs.toFixed(3)} ms/job (${(big.claimMs / small.claimMs).toFixed(2)}x the small queue)`);
  if ((globalThis as { gc?: unknown }).gc) console.log(`in-memory index at ${DEPTH} pending: ${big.indexMb.toFixed(1)} MB of V8 heap (${((big.indexMb * 1024 * 1024) / DEPTH).toFixed(0)} bytes per job)`);
  else console.log("(run with node --expose-gc, e.g. npx tsx --expose-gc bench/queue-bench.ts, to also print the index's heap size)");
})();
