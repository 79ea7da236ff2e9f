// The floor under the accept path's latency: the relay's own durable write (DurableWriter: temp file, fsync, rename,
// directory fsync) of a job-sized file, alone, offered at a fixed rate like bench:relay's open loop, on the disk the
// queue lives on. Whatever p99 this prints, POST /send (which does this write before answering 202) cannot beat.
// Run: npx tsx bench/durable-write-bench.ts   (BENCH_RATE 300/s, BENCH_SECONDS 10, BENCH_BYTES 6000, BENCH_DIR;
// BENCH_LATENCIES_OUT=FILE also writes every write's latency in ms, one per line: bench:relay pools them over rounds)
import { randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DurableWriter } from "../relay/storage/durable-write";

const RATE = Number(process.env.BENCH_RATE ?? 300);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const BYTES = Number(process.env.BENCH_BYTES ?? 6000);
// Default: beside the repo (the same filesystem as bench:relay's queues), not /tmp (often tmpfs: no real fsync).
const BASE = process.env.BENCH_DIR ?? path.join(__dirname, "..", ".cache");

async function main(): Promise<void> {
  mkdirSync(BASE, { recursive: true });
  const root = mkdtempSync(path.join(BASE, "durable-write-bench-"));
  try {
    for (const d of ["tmp", "pending"]) mkdirSync(path.join(root, d));
    const writer = new DurableWriter(path.join(root, "tmp"));
    const data = "x".repeat(BYTES);
    const n = RATE * SECONDS;
    const lat: number[] = [];
    const t0 = performance.now();
    const all: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const due = t0 + (i * 1000) / RATE;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const start = performance.now();
      all.push(
        writer.write(path.join(root, "pending"), `${randomUUID()}.json`, data).then(() => {
          lat.push(performance.now() - start);
        }),
      );
    }
    await Promise.all(all);
    lat.sort((a, b) => a - b);
    const out = process.env.BENCH_LATENCIES_OUT;
    if (out) writeFileSync(out, lat.map((l) => l.toFixed(3)).join("\n") + "\n");
    const q = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] as number;
    console.log(
      "durable write (temp file + fsync + rename + directory fsync) of " +
        `${BYTES} bytes at ${RATE}/s for ${SECONDS} s on ${BASE}, ` +
        `node ${process.version}, 1-min load ${(os.loadavg()[0] as number).toFixed(2)}`,
    );
    console.log(
      `  p50 / p99 / max (ms): ${q(0.5).toFixed(1)} / ${q(0.99).toFixed(1)} / ` +
        `${(lat[lat.length - 1] as number).toFixed(1)}`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
