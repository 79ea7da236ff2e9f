// npm run crash: the kill -9 crash test (bench/crash-run.ts) with more rounds than the vitest run
// (test/relay/kill9.crash.test.ts). CRASH_ROUNDS (default 100), CRASH_SEED, CRASH_WINDOW_MS (default 500),
// CRASH_CLIENTS (default 8), CRASH_BUNDLE (default relay/dist/relay.js), CRASH_KEEP_DIR=1 keeps the queue directory.
// Exits 1 when a message is lost, duplicated beyond the window, or a 202'd request's retry gets another id.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { runCrashTest } from "./crash-run";

function intEnv(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === "") return fallback;
  if (!/^\d+$/.test(v)) {
    console.error(`crash: ${name} must be a whole number, got "${v}"`);
    process.exit(2);
  }
  return Number(v);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), "relay-crash-"));
  try {
    const report = await runCrashTest({
      rounds: intEnv("CRASH_ROUNDS", 100),
      dir,
      bundle: process.env.CRASH_BUNDLE || undefined,
      clients: intEnv("CRASH_CLIENTS", 8),
      windowMs: intEnv("CRASH_WINDOW_MS", 500),
      seed: process.env.CRASH_SEED ? intEnv("CRASH_SEED", 0) : undefined,
      progress: (line) => console.log(line),
    });
    console.log(report.summary);
    for (const line of report.details) console.log(line);
    const failed =
      report.classified.lost.length > 0 ||
      report.classified.beyond.length > 0 ||
      report.replayMismatches.length > 0 ||
      report.unexpected.length > 0 ||
      report.never202 > 0;
    process.exitCode = failed ? 1 : 0;
  } finally {
    if (process.env.CRASH_KEEP_DIR === "1") console.log(`  kept ${dir} (CRASH_KEEP_DIR=1)`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

void main();
