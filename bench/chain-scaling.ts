// bench:chain's scaling phase: the relay's hand-off with a backlog of 1k / 10k / 100k jobs queued behind the measured
// ones, and the verdict "cost per message flat within 20%".
import type { ChildProcess } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { PostfixInstance } from "../testkit/postfix-instance";
import type { Sink } from "./chain-mx";
import { prefillQueue, type JobFile } from "./queue-prefill.mjs";

/**
 * Hand-off records written so far: complete lines of the relay's record log (relay/storage/sent-log.ts), read
 * incrementally so polling every 20 ms does not reread the file.
 */
function recordCounter(root: string): () => number {
  const file = path.join(root, "sent.log");
  let offset = 0;
  let lines = 0;
  return () => {
    let fd: number;
    try {
      fd = openSync(file, "r");
    } catch {
      return lines;
    }
    try {
      const buf = Buffer.alloc(1 << 16);
      for (let n = readSync(fd, buf, 0, buf.length, offset); n > 0; n = readSync(fd, buf, 0, buf.length, offset)) {
        for (let i = 0; i < n; i++) if (buf[i] === 10) lines++;
        offset += n;
      }
    } finally {
      closeSync(fd);
    }
    return lines;
  };
}

export interface ScalePoint {
  readonly size: number;
  readonly wallMs: number;
  readonly userMs: number;
  readonly sysMs: number;
  readonly captured: number;
  readonly handedOff: number;
  readonly unsigned: number;
  readonly duplicated: number;
  readonly load: number;
}

/** /proc's clock tick (USER_HZ = 100) in ms. */
const TICK_MS = 10;

/**
 * utime + stime of a process in ms (/proc/PID/stat), or of one of its threads (/proc/PID/task/TID/stat; the main
 * thread's TID is the PID).
 */
export function procCpu(pid: number, tid?: number): { user: number; sys: number } {
  const file = tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`;
  const f = (readFileSync(file, "utf8").split(") ")[1] as string).split(" ");
  return { user: Number(f[11]) * TICK_MS, sys: Number(f[12]) * TICK_MS };
}

/** The whole machine's CPU time in ms (/proc/stat): busy (everything but idle and iowait) and all. */
export function machineCpu(): { busy: number; all: number } {
  const f = (readFileSync("/proc/stat", "utf8").split("\n")[0] as string).trim().split(/\s+/).slice(1, 9).map(Number);
  const all = f.reduce((a, b) => a + b, 0);
  return { busy: (all - (f[3] as number) - (f[4] as number)) * TICK_MS, all: all * TICK_MS };
}

export interface ScalingRun {
  readonly inst: PostfixInstance;
  readonly sink: Sink;
  /** The relay's job file for the chain's message. */
  readonly template: JobFile;
  readonly sizes: readonly number[];
  readonly warmup: number;
  readonly messages: number;
  readonly drainTimeoutMs: number;
  /** Where the queues go (the repo's .cache: the filesystem the relay's queue would use). */
  readonly scratchDir: string;
  readonly startRelay: (inst: PostfixInstance, root: string) => Promise<ScalingRelay>;
  readonly progress: (s: string) => void;
}

export interface ScalingRelay {
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * For each size: a queue of `warmup` + `messages` jobs due first, then `size` more, all the relay's own
 * job file (bench/queue-prefill.mjs) for the chain's message; the relay starts on it and hands the backlog to Postfix.
 * The window opens at the `warmup`-th hand-off record in sent/ and closes `messages` records later: its
 * wall time and the relay's CPU time, per message. Then the relay stops and every message it handed off must reach
 * the MX, signed, once.
 */
export async function scaling(r: ScalingRun): Promise<ScalePoint[]> {
  const { inst, sink, template, warmup, messages } = r;
  const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));
  const out: ScalePoint[] = [];
  for (const [i, size] of r.sizes.entries()) {
    const phase = `scale${i}-${size}`; // one phase per run: a size may be listed twice
    const total = warmup + messages + size;
    r.progress(`scaling: pre-filling ${total} jobs (${size} behind the ${warmup + messages} measured)`);
    const root = mkdtempSync(path.join(r.scratchDir, "chain-scale-"));
    prefillQueue(root, total, {
      ...template,
      raw: template.raw.replace(/^X-Bench-Phase: *\S+/m, `X-Bench-Phase: ${phase}`),
    });
    const relay = await r.startRelay(inst, root);
    const pid = relay.child.pid as number;
    const records = recordCounter(root);
    const waitFor = async (n: number): Promise<void> => {
      const end = Date.now() + r.drainTimeoutMs;
      while (records() < n) {
        if (Date.now() > end || relay.child.exitCode !== null)
          throw new Error(`scaling ${size}: ${records()}/${n} handed off`);
        await sleep(20);
      }
    };
    await waitFor(warmup);
    const t0 = performance.now();
    const cpu0 = procCpu(pid);
    await waitFor(warmup + messages);
    const t1 = performance.now();
    const cpu1 = procCpu(pid);
    const load = os.loadavg()[0] as number;
    await relay.stop();
    const handedOff = records();
    const got = await sink.wait(phase, handedOff);
    await sleep(2000); // a duplicate would arrive now
    const all = sink.of(phase);
    const ids = new Set(all.map((m) => m.id));
    rmSync(root, { recursive: true, force: true });
    const p: ScalePoint = {
      size,
      wallMs: (t1 - t0) / messages,
      userMs: (cpu1.user - cpu0.user) / messages,
      sysMs: (cpu1.sys - cpu0.sys) / messages,
      captured: got.length,
      handedOff,
      unsigned: all.filter((m) => !m.signed).length,
      duplicated: all.length - ids.size,
      load,
    };
    r.progress(`  ${phase}: ${p.wallMs.toFixed(2)} ms/msg wall, ${(p.userMs + p.sysMs).toFixed(2)} ms/msg relay CPU`);
    out.push(p);
  }
  return out;
}

/** The largest size's cost per message against the smallest's; a size listed twice counts as its mean. */
export function scalingVerdict(
  points: readonly ScalePoint[],
): { small: number; big: number; wall: number; cpu: number; met: boolean } | undefined {
  const sizes = [...new Set(points.map((p) => p.size))].sort((a, b) => a - b);
  if (sizes.length < 2) return undefined;
  const mean = (size: number, f: (p: ScalePoint) => number): number => {
    const at = points.filter((p) => p.size === size);
    return at.reduce((sum, p) => sum + f(p), 0) / at.length;
  };
  const small = sizes[0] as number;
  const big = sizes[sizes.length - 1] as number;
  const wall = mean(big, (p) => p.wallMs) / mean(small, (p) => p.wallMs);
  const cpu = mean(big, (p) => p.userMs + p.sysMs) / mean(small, (p) => p.userMs + p.sysMs);
  const clean = points.every((p) => p.captured === p.handedOff && p.unsigned === 0 && p.duplicated === 0);
  return { small, big, wall, cpu, met: wall <= 1.2 && cpu <= 1.2 && clean };
}
