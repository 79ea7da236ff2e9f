// npm run bench:handoff — the relay's two hand-offs (relay/handoff/smtp.ts and relay/handoff/sendmail.ts) against a
// real Postfix + OpenDKIM built from the files cloud-init/ renders, in a network namespace this script creates (the
// same instance as test/cloud-init/postfix-instance.real.test.ts, from testkit/postfix-instance.ts: only
// instance paths moved to a scratch dir, next hop = a local smtp-sink). Prints, per hand-off: messages/s, p50/p99 ms
// per hand-off, time until every message is DKIM-signed at the sink; then, with OpenDKIM stopped, what each hand-off
// reports and whether anything leaves unsigned; then whether the held mail goes out signed once OpenDKIM is back.
// First, the relay's own QueueStore + QueueWorker + SmtpHandoff at k = 1, 2, 4, 8 hand-offs at once
// (BENCH_ONLY=concurrency runs only that phase): the figures behind RELAY_HANDOFF_CONCURRENCY's default. Needs root,
// postfix, opendkim, smtp-sink and ip; skips otherwise.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { buildConfig } from "../testkit/node-config";
import { INSTANCE_TOOLS, netnsUnavailable, PostfixInstance } from "../testkit/postfix-instance";
import { missing, tool } from "../testkit/real-tools";
import type { SendOutcome, WorkerResult, WorkerSpec } from "./handoff-worker";

const N = Number(process.env.BENCH_MESSAGES ?? 300);
const DOWN_N = Number(process.env.BENCH_DOWN_MESSAGES ?? 20);
const DRAIN_TIMEOUT_MS = Number(process.env.BENCH_DRAIN_TIMEOUT_MS ?? 120_000);
/** How long to watch the sink while OpenDKIM is down (nothing may arrive). */
const DOWN_WATCH_MS = Number(process.env.BENCH_DOWN_WATCH_MS ?? 10_000);
/** pickup rescans maildrop/ every 60 s (master.cf wakeup), so held sendmail mail can take that long after a restart. */
const RECOVERY_TIMEOUT_MS = Number(process.env.BENCH_RECOVERY_TIMEOUT_MS ?? 180_000);
const HANDOFF_TIMEOUT_MS = 30_000;
/** Concurrency levels for the queue + worker phase (QueueWorker concurrency = SmtpHandoff connections). */
const LEVELS = (process.env.BENCH_HANDOFF_LEVELS ?? "1,2,4,8")
  .split(",")
  .map(Number)
  .filter((k) => k > 0);
const QUEUE_N = Number(process.env.BENCH_QUEUE_MESSAGES ?? 500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
/** BENCH_ONLY=concurrency: only the queue + worker phase (skips smtp vs sendmail and OpenDKIM down). */
const ONLY = process.env.BENCH_ONLY ?? "";

const repo = path.resolve(__dirname, "..");
const FROM = "noreply@example.com";
const TO = "someone@example.org";
const SINK = "127.0.0.1:2626";
const progress = (s: string): void => void process.stderr.write(`[bench:handoff] ${s}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- requirements

const skip = missing("bench:handoff", {
  tools: INSTANCE_TOOLS,
  root: true,
  scratch: true,
  check: () => netnsUnavailable(`mrhbprobe${process.pid}`),
});
if (skip) {
  console.log(`skipped: ${skip}`);
  process.exit(0);
}
const IP = tool("ip") as string;
const SENDMAIL = tool("sendmail") as string;

// ---------------------------------------------------------------- the instance (testkit/postfix-instance.ts)

const cfg = buildConfig({ ipv6: false });
const inst = new PostfixInstance(`mrhb${process.pid}`, "handoff-bench-");
const { ns, base, etc, queueDir, sinkDir } = inst;
let worker: ChildProcess | undefined;
let cleanedUp = false;

/** Synchronous, idempotent: also runs from the exit and signal handlers. */
function cleanUp(): void {
  if (cleanedUp) return;
  cleanedUp = true;
  worker?.kill("SIGKILL");
  // BENCH_KEEP_MAILLOG=FILE keeps Postfix's log of the run (the scratch dir goes away).
  inst.stop(process.env.BENCH_KEEP_MAILLOG);
}
process.on("exit", cleanUp);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    progress(`${sig}: cleaning up`);
    cleanUp();
    process.exit(130);
  });
}

// ---------------------------------------------------------------- the sink

interface SinkFile {
  readonly phase: string;
  readonly signed: boolean;
  readonly mtimeMs: number;
}
const seen = new Map<string, SinkFile>();

/**
 * Reads new sink files; a file counts once its X-Bench-Phase line is there (DKIM-Signature, if any, comes before it).
 */
function scanSink(): void {
  for (const name of readdirSync(sinkDir)) {
    if (seen.has(name)) continue;
    const file = path.join(sinkDir, name);
    const text = readFileSync(file, "utf8");
    const phase = /^X-Bench-Phase: *(\S+)/im.exec(text)?.[1];
    if (!phase) continue; // still being written
    const sig = /^DKIM-Signature:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)/im.exec(text)?.[1] ?? "";
    const signed = /\bd=example\.com;/.test(sig) && new RegExp(`\\bs=${cfg.host.dkimSelector};`).test(sig);
    seen.set(name, { phase, signed, mtimeMs: statSync(file).mtimeMs });
  }
}

interface SinkCount {
  readonly total: number;
  readonly signed: number;
  readonly unsigned: number;
  /** Wall-clock time the last of this phase's messages was written at the sink. */
  readonly lastAt?: number;
}

function sinkCount(phase: string): SinkCount {
  scanSink();
  let total = 0;
  let signed = 0;
  let lastAt: number | undefined;
  for (const f of seen.values()) {
    if (f.phase !== phase) continue;
    total++;
    if (f.signed) signed++;
    lastAt = Math.max(lastAt ?? 0, f.mtimeMs);
  }
  return { total, signed, unsigned: total - signed, ...(lastAt !== undefined ? { lastAt } : {}) };
}

/** Waits until `want` messages of a phase are at the sink, or the timeout; never throws. */
async function waitAtSink(phase: string, want: number, timeoutMs: number): Promise<SinkCount & { timedOut: boolean }> {
  const end = Date.now() + timeoutMs;
  let c = sinkCount(phase);
  let lastReport = Date.now();
  while (c.total < want && Date.now() < end) {
    await sleep(100);
    c = sinkCount(phase);
    if (Date.now() - lastReport > 10_000) {
      progress(`  ${phase}: ${c.total}/${want} at the sink so far`);
      lastReport = Date.now();
    }
  }
  return { ...c, timedOut: c.total < want };
}

/** Files waiting in Postfix: maildrop/ (before cleanup and the milter) and the queues after it. */
function postfixBacklog(): { maildrop: number; queued: number } {
  const count = (dir: string): number => {
    if (!existsSync(dir)) return 0;
    let n = 0;
    for (const e of readdirSync(dir, { withFileTypes: true })) n += e.isDirectory() ? count(path.join(dir, e.name)) : 1;
    return n;
  };
  return {
    maildrop: count(path.join(queueDir, "maildrop")),
    queued: ["incoming", "active", "deferred", "hold"].reduce((n, d) => n + count(path.join(queueDir, d)), 0),
  };
}

// ---------------------------------------------------------------- the worker

async function handOff(
  kind: WorkerSpec["kind"],
  phase: string,
  count: number,
  concurrency?: number,
): Promise<WorkerResult> {
  const spec: WorkerSpec = {
    kind,
    phase,
    count,
    from: FROM,
    to: TO,
    sendmailPath: SENDMAIL,
    timeoutMs: HANDOFF_TIMEOUT_MS,
    ...(concurrency !== undefined ? { concurrency, queueBase: path.join(repo, ".cache") } : {}),
  };
  const args = [
    "netns",
    "exec",
    ns,
    process.execPath,
    "--import",
    "tsx",
    path.join(__dirname, "handoff-worker.ts"),
    JSON.stringify(spec),
  ];
  // MAIL_CONFIG points sendmail/postdrop at this instance (honoured for root), never at the host's /etc/postfix.
  const child = spawn(IP, args, {
    cwd: repo,
    env: { ...process.env, MAIL_CONFIG: etc },
    stdio: ["ignore", "pipe", "inherit"],
  });
  worker = child;
  let out = "";
  child.stdout?.on("data", (c: Buffer) => (out += c.toString("utf8")));
  const code = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
  worker = undefined;
  if (code !== 0) throw new Error(`handoff worker (${phase}) exited ${code}`);
  return JSON.parse(out.trim().split("\n").pop() as string) as WorkerResult;
}

// ---------------------------------------------------------------- figures

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}
const f1 = (n: number): string => (Number.isFinite(n) ? n.toFixed(1) : "n/a");
const f2 = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : "n/a");

interface ThroughputFigures {
  readonly kind: string;
  readonly sent: number;
  readonly ok: number;
  readonly perSec: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly over35ms: number;
  readonly atSink: number;
  readonly signed: number;
  readonly drainMs: number;
  readonly endToEndPerSec: number;
  readonly timedOut: boolean;
  readonly bytes: number;
}

async function throughput(kind: WorkerSpec["kind"]): Promise<ThroughputFigures> {
  progress(`handing off ${N} via ${kind}...`);
  const r = await handOff(kind, `${kind}-load`, N);
  const ok = r.outcomes.filter((o) => o.ok).length;
  progress(
    `  ${kind}: ${ok}/${N} accepted in ${f1(r.totalMs)} ms; waiting for all at the sink ` +
      `(timeout ${DRAIN_TIMEOUT_MS} ms)...`,
  );
  const s = await waitAtSink(`${kind}-load`, ok, DRAIN_TIMEOUT_MS);
  const lat = r.outcomes.map((o) => o.ms).sort((a, b) => a - b);
  const lastAt = s.lastAt ?? NaN;
  return {
    kind,
    sent: N,
    ok,
    perSec: (N / r.totalMs) * 1000,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    max: lat[lat.length - 1] ?? NaN,
    over35ms: lat.filter((ms) => ms > 35).length,
    atSink: s.total,
    signed: s.signed,
    drainMs: Math.max(0, lastAt - r.endedAt),
    endToEndPerSec: (s.total / (lastAt - r.startedAt)) * 1000,
    timedOut: s.timedOut,
    bytes: r.bytes,
  };
}

function summarizeErrors(outcomes: readonly SendOutcome[]): string {
  const byMsg = new Map<string, number>();
  for (const o of outcomes) if (!o.ok) byMsg.set(o.error ?? "?", (byMsg.get(o.error ?? "?") ?? 0) + 1);
  return [...byMsg].map(([m, n]) => `${n}× "${m.replace(/\s+/g, " ").slice(0, 120)}"`).join("; ") || "none";
}

async function main(): Promise<void> {
  const loadAtStart = os.loadavg()[0] as number;
  progress(`setting up Postfix + OpenDKIM in netns ${ns} (scratch ${base})...`);
  await inst.start({ host: cfg.host, dkimPrivateKeyPem: cfg.secrets.dkimPrivateKeyPem, sink: SINK, sinkBacklog: 64 });

  progress("warm-up: 5 via smtp, 5 via sendmail...");
  await handOff("smtp", "warmup-smtp", 5);
  await handOff("sendmail", "warmup-sendmail", 5);
  const w1 = await waitAtSink("warmup-smtp", 5, 30_000);
  const w2 = await waitAtSink("warmup-sendmail", 5, 90_000);
  if (w1.signed < 5 || w2.signed < 5)
    throw new Error(
      `warm-up: smtp ${w1.signed}/5 and sendmail ${w2.signed}/5 signed at the sink; ` +
        `the instance is not working (see ${path.join(base, "maillog")})`,
    );

  const levels = await concurrencyPhase();
  if (ONLY === "concurrency") {
    printLevels(levels, loadAtStart);
    return;
  }

  const smtp = await throughput("smtp");
  const sendmail = await throughput("sendmail");

  // ---- OpenDKIM down
  progress("stopping OpenDKIM...");
  await inst.stopOpendkim();
  progress(`handing off ${DOWN_N} via smtp with OpenDKIM down...`);
  const downSmtp = await handOff("smtp", "down-smtp", DOWN_N);
  progress(`handing off ${DOWN_N} via sendmail with OpenDKIM down...`);
  const downSendmail = await handOff("sendmail", "down-sendmail", DOWN_N);
  progress(`watching the sink for ${DOWN_WATCH_MS} ms (nothing may arrive)...`);
  await sleep(DOWN_WATCH_MS);
  const downSinkSmtp = sinkCount("down-smtp");
  const downSinkSendmail = sinkCount("down-sendmail");
  const backlog = postfixBacklog();

  // ---- OpenDKIM back
  progress("restarting OpenDKIM...");
  await inst.startOpendkim();
  const restartedAt = Date.now();
  const refused = downSmtp.outcomes.filter((o) => !o.ok).length;
  // The relay keeps SMTP-refused jobs pending and retries them; do the same once.
  progress(`retrying the ${refused} SMTP-refused messages...`);
  const retry = refused > 0 ? await handOff("smtp", "retry-smtp", refused) : undefined;
  const retryOk = retry?.outcomes.filter((o) => o.ok).length ?? 0;
  const retrySink = await waitAtSink("retry-smtp", retryOk, DRAIN_TIMEOUT_MS);
  const downSendmailOk = downSendmail.outcomes.filter((o) => o.ok).length;
  progress(
    `waiting for the ${downSendmailOk} sendmail messages held in maildrop (timeout ${RECOVERY_TIMEOUT_MS} ms; ` +
      `pickup rescans every 60 s)...`,
  );
  const recovered = await waitAtSink("down-sendmail", downSendmailOk, RECOVERY_TIMEOUT_MS);

  // ---- report
  const line = (t: ThroughputFigures): string =>
    `${t.kind.padEnd(9)} ${String(t.ok).padStart(4)}/${t.sent}  ${f1(t.perSec).padStart(7)} msg/s  ` +
    `p50 ${f2(t.p50).padStart(6)} ms  p99 ${f2(t.p99).padStart(6)} ms  max ${f2(t.max).padStart(7)} ms  ` +
    `>35ms ${String(t.over35ms).padStart(3)}  | at sink ${t.atSink}, ` +
    `DKIM-signed ${t.signed}${t.timedOut ? " (TIMED OUT)" : ""}, drain after last hand-off ${f1(t.drainMs)} ms, ` +
    `end-to-end ${f1(t.endToEndPerSec)} msg/s`;
  const codes = downSmtp.outcomes.map((o) => o.code).filter((c): c is number => c !== undefined);
  const refused4xx = codes.filter((c) => c >= 400 && c < 500).length;
  const sendmailExit0 = downSendmailOk;
  const unsignedLeaks =
    downSinkSmtp.total + downSinkSendmail.total + smtp.atSink - smtp.signed + sendmail.atSink - sendmail.signed;

  console.log("");
  console.log(
    `hand-off bench: real Postfix + OpenDKIM from the rendered configs, ${N} messages per hand-off ` +
      `(${smtp.bytes} bytes each, text+html), serial hand-offs`,
  );
  console.log(
    `  machine: ${os.cpus().length} CPUs, 1-min load average ${f2(loadAtStart)} at start ` +
      `and ${f2(os.loadavg()[0] as number)} at the end (other work on the machine skews these figures)`,
  );
  console.log(
    `  SMTP = relay/handoff/smtp.ts (pooled, maxConnections 2, TCP_NODELAY) -> 127.0.0.1:25; ` +
      `sendmail = relay/handoff/sendmail.ts (${SENDMAIL} -i -f FROM -- TO)`,
  );
  console.log(line(smtp));
  console.log(line(sendmail));
  console.log(`OpenDKIM stopped, ${DOWN_N} each:`);
  const p50Of = (o: readonly SendOutcome[]): string =>
    f2(
      percentile(
        o.map((x) => x.ms).sort((a, b) => a - b),
        50,
      ),
    );
  console.log(
    `  smtp:     ${downSmtp.outcomes.filter((o) => o.ok).length} accepted, ${refused} refused (${refused4xx} ` +
      `with a 4xx code), p50 ${p50Of(downSmtp.outcomes)} ms; errors: ${summarizeErrors(downSmtp.outcomes)}`,
  );
  console.log(
    `  sendmail: ${sendmailExit0} exited 0, ${DOWN_N - sendmailExit0} failed, ` +
      `p50 ${p50Of(downSendmail.outcomes)} ms; errors: ${summarizeErrors(downSendmail.outcomes)}`,
  );
  console.log(
    `  at the sink after ${DOWN_WATCH_MS} ms: smtp ${downSinkSmtp.total}, ` +
      `sendmail ${downSinkSendmail.total} (unsigned: ${downSinkSmtp.unsigned + downSinkSendmail.unsigned}); ` +
      `Postfix holds ${backlog.maildrop} in maildrop/, ${backlog.queued} in its queues`,
  );
  console.log(`OpenDKIM restarted:`);
  console.log(
    `  smtp retry of the ${refused} refused: ${retryOk} accepted, ${retrySink.signed}/${retryOk} DKIM-signed ` +
      `at the sink${retrySink.timedOut ? " (TIMED OUT)" : ""}`,
  );
  console.log(
    `  sendmail-held: ${recovered.signed}/${downSendmailOk} DKIM-signed at the sink (${recovered.unsigned} ` +
      `unsigned)${
        recovered.timedOut
          ? ` — TIMED OUT after ${RECOVERY_TIMEOUT_MS} ms`
          : `, last one ${f1((recovered.lastAt ?? NaN) - restartedAt)} ms after the restart`
      }`,
  );
  console.log(
    "unsigned messages that reached the sink in the whole run: " +
      `${unsignedLeaks + retrySink.unsigned + recovered.unsigned}`,
  );
  console.log(
    verdict(smtp, sendmail, { refused4xx, sendmailExit0, downAtSink: downSinkSmtp.total + downSinkSendmail.total }),
  );
  printLevels(levels, loadAtStart);
}

interface LevelRun {
  readonly k: number;
  readonly round: number;
  /** Jobs recorded by the relay's queue per second (enqueued first, so this is the worker alone). */
  readonly relayPerSec: number;
  /** From the first hand-off to the last message DKIM-signed at the sink. */
  readonly endToEndPerSec: number;
  readonly atSink: number;
  readonly signed: number;
}

/**
 * The relay's queue + worker + SMTP hand-off at each concurrency level, rounds in alternating order (drift cancels).
 */
async function concurrencyPhase(): Promise<LevelRun[]> {
  const runs: LevelRun[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const order = round % 2 === 1 ? LEVELS : [...LEVELS].reverse();
    for (const k of order) {
      const phase = `queue-k${k}-r${round}`;
      progress(`queue + worker, ${k} at once, round ${round}: ${QUEUE_N} messages...`);
      const r = await handOff("queue", phase, QUEUE_N, k);
      const s = await waitAtSink(phase, r.outcomes.filter((o) => o.ok).length, DRAIN_TIMEOUT_MS);
      runs.push({
        k,
        round,
        relayPerSec: (QUEUE_N / r.totalMs) * 1000,
        endToEndPerSec: (s.total / ((s.lastAt ?? NaN) - r.startedAt)) * 1000,
        atSink: s.total,
        signed: s.signed,
      });
    }
  }
  return runs;
}

function printLevels(runs: readonly LevelRun[], loadAtStart: number): void {
  if (runs.length === 0) return;
  console.log("");
  console.log(
    `relay queue + worker + SMTP hand-off (k hand-offs at once over k connections), ${QUEUE_N} messages per ` +
      `run, ${ROUNDS} rounds in alternating order; 1-min load ${f2(loadAtStart)} at ` +
      `start, ${f2(os.loadavg()[0] as number)} now`,
  );
  const mean = (k: number, f: (r: LevelRun) => number): number => {
    const xs = runs.filter((r) => r.k === k).map(f);
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  const base = mean(LEVELS[0] as number, (r) => r.endToEndPerSec);
  for (const k of LEVELS) {
    const each = runs
      .filter((r) => r.k === k)
      .map((r) => f1(r.endToEndPerSec))
      .join(", ");
    const signed = runs.filter((r) => r.k === k).reduce((n, r) => n + r.signed, 0);
    const total = runs.filter((r) => r.k === k).reduce((n, r) => n + r.atSink, 0);
    console.log(
      `  k=${String(k).padEnd(2)} end-to-end ${f1(mean(k, (r) => r.endToEndPerSec)).padStart(7)} msg/s ` +
        `(runs: ${each}), relay records ${f1(mean(k, (r) => r.relayPerSec)).padStart(7)} ` +
        `msg/s, ${f2(mean(k, (r) => r.endToEndPerSec) / base)}x k=${LEVELS[0]}; at sink ${total}, ` +
        `DKIM-signed ${signed}`,
    );
  }
}

function verdict(
  smtp: ThroughputFigures,
  sendmail: ThroughputFigures,
  down: { refused4xx: number; sendmailExit0: number; downAtSink: number },
): string {
  const faster = (a: number, b: number, an: string, bn: string): string =>
    a >= b ? `${an} ${f1(a / b)}× ${bn}` : `${bn} ${f1(b / a)}× ${an}`;
  const smtpTruthful = down.refused4xx === DOWN_N;
  const sendmailTruthful = down.sendmailExit0 === 0;
  const parts = [
    `hand-off rate: ${faster(smtp.perSec, sendmail.perSec, "smtp", "sendmail")}`,
    `end-to-end to signed at the sink: ${faster(smtp.endToEndPerSec, sendmail.endToEndPerSec, "smtp", "sendmail")}`,
    `with OpenDKIM down smtp reported failure for ${down.refused4xx}/${DOWN_N} and sendmail ` +
      `for ${DOWN_N - down.sendmailExit0}/${DOWN_N}`,
    `${down.downAtSink} left while it was down`,
  ];
  let pick: string;
  if (smtpTruthful && !sendmailTruthful) pick = "smtp (the only one whose success means signed-and-queued)";
  else if (sendmailTruthful && !smtpTruthful) pick = "sendmail (the only one that reported the failure)";
  else if (smtpTruthful && sendmailTruthful)
    pick =
      smtp.endToEndPerSec >= sendmail.endToEndPerSec
        ? "smtp (both truthful, smtp faster end-to-end)"
        : "sendmail (both truthful, sendmail faster end-to-end)";
  else pick = "neither reports failure truthfully — investigate";
  return `verdict: ${parts.join("; ")} => default: ${pick}`;
}

main()
  .catch((err: unknown) => {
    console.error(`bench:handoff failed: ${(err as Error).stack ?? String(err)}`);
    const log = inst.maillog();
    if (log) console.error(`last maillog lines:\n${log.split("\n").slice(-20).join("\n")}`);
    process.exitCode = 1;
  })
  .finally(() => {
    progress("cleaning up...");
    cleanUp();
  });
