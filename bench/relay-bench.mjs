// npm run bench:relay — the bundled relay as its own process, measured against issue 11's targets:
//   open loop at 300 req/s: p99 <= the durable write's p99 at the same rate, measured in the same run, + 5 ms
//   (issue 23; the floor is bench/durable-write-bench.ts on the same filesystem, in rounds that alternate with the
//   open loop's, and both p99s are taken over all rounds: a disk stall lands in either as the clock falls; the
//   counted rounds follow one open-loop round that warms the relay's JIT and is not counted)
//   peak RSS <= 200 MB at saturation (a closed loop of BENCH_CONCURRENCY requests always in flight)
//   RSS with 100,000 jobs queued within 40 MB of RSS with 1,000 queued
//   start-to-door (GET /health answers and POST /send is accepted) <= 2 s with 100,000 jobs pending
// Hand-off: a loopback SMTP sink in a process of its own (bench/relay-sink.mjs; no discard mode exists in the relay's
// production config).
// The targets are defined on Debian's Node 18 (BENCH_RELAY_NODE=.cache/node18/usr/bin/node, see .ci/node18.sh).
import { execFileSync, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { RELAY_NODE_FLAGS } from "../cloud-init/systemd.ts";
import { prefillQueue, sampleJobFile } from "./queue-prefill.mjs";
import { BENCH_PAYLOAD, BENCH_TOKEN, relayBundle, startSink, startWakeProbe } from "./relay-fixture.mjs";
import { UNTHROTTLED_RELAY_ENV } from "./unthrottled-env.mjs";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bundle = relayBundle(repo);
const TOTAL = Number(process.env.BENCH_REQUESTS ?? 5000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50);
// Open loop: requests started at a fixed rate whatever the answers, so latency is measured below saturation (a closed
// loop at 50 in flight always saturates: its latency is 50 / throughput).
const OPEN_RATE = Number(process.env.BENCH_OPEN_RATE ?? 300);
const OPEN_SECONDS = Number(process.env.BENCH_OPEN_SECONDS ?? 10);
// Rounds of (open loop, floor), alternating. This VM's disk stalls for 30-180 ms a few times a minute; with one round
// each, whichever phase a stall landed in lost the verdict (2026-12-05/06: the floor's p99 ranged 5.5-18.4 ms between
// runs minutes apart, the relay's 10.5-39 ms). Alternating rounds give both phases the same disk weather.
const OPEN_ROUNDS = Number(process.env.BENCH_OPEN_ROUNDS ?? 3);
// One open-loop round before the counted ones, at the same rate, not counted (0 leaves it out). The warm-up and the
// closed loop above do not tier up the paths a lone request takes: with --trace-opt, V8 still finished ~70
// optimisations in the first counted round (43 in its first 2 s) against ~12 and ~8 in the next two, the relay's
// event-loop delay p99 in those 2 s read 4.6-5.3 ms against 2.0-3.6 later, and round 1 had the worst p99 in 9 of 12
// runs, a 30 s pause before it changing nothing (2026-12-08, docs/benchmarks.md). The target is the relay's latency
// at 300 req/s, not its JIT's warm-up, so the counted rounds start warm; the warm-up round's figures are printed.
const OPEN_WARMUP_SECONDS = Number(process.env.BENCH_OPEN_WARMUP_SECONDS ?? OPEN_SECONDS);
// Queue depths for the start-to-door phases (0 skips them).
const DOOR_SMALL = Number(process.env.BENCH_DOOR_SMALL ?? 1000);
const DOOR_BIG = Number(process.env.BENCH_DOOR_BIG ?? 100_000);
const TOKEN = BENCH_TOKEN;
// Same filesystem as a real QUEUE_ROOT would be on (not tmpfs): under the repo's .cache/. BENCH_WORK_ROOT=DIR puts
// the queues elsewhere: a diagnostic, e.g. /dev/shm takes the disk out to show the relay's own tail (GC, CPU); the
// verdicts printed are then not the target's, and the report says so.
const workRoot = process.env.BENCH_WORK_ROOT ?? path.join(repo, ".cache");
fs.mkdirSync(workRoot, { recursive: true });
const work = fs.mkdtempSync(path.join(workRoot, "bench-"));
const loadavg = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
const progress = (m) => process.stderr.write(`bench: ${m} (load ${loadavg()})\n`);

if (!fs.existsSync(bundle)) {
  console.error(`missing ${bundle}: run npm run build`);
  process.exit(1);
}

// --- loopback SMTP sink that answers like Postfix ---
const sink = await startSink();
const sinkPort = sink.port;

// --- the relay, as a separate process ---
// The unit's node flags first (V8's heap limit), then BENCH_RELAY_NODE_ARGS (a later flag wins).
const nodeArgs = [...RELAY_NODE_FLAGS, ...(process.env.BENCH_RELAY_NODE_ARGS ?? "").split(" ").filter(Boolean)];
// BENCH_RELAY_NODE=path runs the relay on another node binary (e.g. Debian 12's Node 18, the one the host runs).
const relayNode = process.env.BENCH_RELAY_NODE ?? process.execPath;
const running = new Set();

/**
 * Starts the bundle on a queue root. Its stdout (JSON log) is scanned for the lines in `watch` (regexes) until each has
 * been seen, then drained unread, so the bench spends no CPU on log lines while it measures. BENCH_RELAY_LOG=FILE
 * keeps the main relay's stdout (JSON logs, or V8 traces with BENCH_RELAY_NODE_ARGS=--trace-gc).
 */
function startRelay(queueRoot, { port = 0, keepLog = false, watch = [] } = {}) {
  const t0 = performance.now();
  const child = spawn(relayNode, [...nodeArgs, bundle], {
    env: {
      PATH: process.env.PATH,
      RELAY_LISTEN: `127.0.0.1:${port}`,
      SMTP_RELAY_TOKEN: `bench=${TOKEN}`,
      RELAY_ALLOWED_FROM: "noreply@example.com",
      QUEUE_ROOT: queueRoot,
      RELAY_HANDOFF: `smtp://127.0.0.1:${sinkPort}`,
      ...UNTHROTTLED_RELAY_ENV,
      LOG_LEVEL: "info",
      ...Object.fromEntries(
        ["UV_THREADPOOL_SIZE", "MALLOC_ARENA_MAX", "LD_LIBRARY_PATH", "RELAY_HANDOFF_CONCURRENCY", "RELAY_FAST_PATH"]
          .filter((k) => process.env[k])
          .map((k) => [k, process.env[k]]),
      ),
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  running.add(child);
  child.on("exit", () => running.delete(child));
  if (keepLog && process.env.BENCH_RELAY_LOG) child.stdout.pipe(fs.createWriteStream(process.env.BENCH_RELAY_LOG));
  const seen = watch.map(() => undefined);
  const waiters = watch.map(() => []);
  let head = "";
  const onData = (c) => {
    head += c.toString();
    watch.forEach((re, i) => {
      const m = seen[i] === undefined ? re.exec(head) : null;
      if (m) {
        seen[i] = { ms: performance.now() - t0, match: m };
        for (const w of waiters[i]) w(seen[i]);
      }
    });
    if (seen.every((s) => s !== undefined)) {
      child.stdout.off("data", onData);
      if (!(keepLog && process.env.BENCH_RELAY_LOG)) child.stdout.resume();
      head = "";
    } else if (head.length > 1e6) {
      head = head.slice(-1e5);
    }
  };
  child.stdout.on("data", onData);
  return {
    child,
    t0,
    /** { ms from spawn, regex match } once the i-th watched log line has appeared. */
    seen: (i) => (seen[i] !== undefined ? Promise.resolve(seen[i]) : new Promise((r) => waiters[i].push(r))),
    stop: () =>
      new Promise((r) => {
        if (child.exitCode !== null || child.signalCode !== null) return r();
        child.on("exit", r);
        child.kill("SIGTERM");
      }),
  };
}

const payload = BENCH_PAYLOAD;

/** utime and stime of a process in ms (from /proc/PID/stat, clock ticks of 10 ms). */
function procCpu(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return { user: Number(f[11]) * 10, sys: Number(f[12]) * 10 };
}

/** VmRSS and VmHWM of a process in MB. */
function procMem(pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return { rss: Number(/VmRSS:\s+(\d+)/.exec(s)[1]) / 1024, hwm: Number(/VmHWM:\s+(\d+)/.exec(s)[1]) / 1024 };
}

function request(port, method, urlPath, agent, body) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const headers = body
      ? {
          authorization: `Bearer ${TOKEN}`,
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
        }
      : {};
    const req = http.request({ host: "127.0.0.1", port, path: urlPath, method, agent, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode, text, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** p50, p99 and max of a list of latencies (ms); sorts it. */
function latencies(lat) {
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  return { p50: q(0.5), p99: q(0.99), max: lat[lat.length - 1] };
}

/** The path a 202 names: "handed_off" (to the sink during the request) or "queued" (the job file). */
const pathOf = (r) => /"state":"(\w+)"/.exec(r.text)?.[1] ?? String(r.status);
/** Counts of each path, e.g. { handed_off: 4990, queued: 10 }. */
function countPaths(paths, r) {
  const k = pathOf(r);
  paths[k] = (paths[k] ?? 0) + 1;
}

async function closedLoop(port, agent, n) {
  const lat = [];
  const paths = {};
  let accepted = 0;
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < n) {
        next++;
        const r = await request(port, "POST", "/send", agent, payload);
        lat.push(r.ms);
        countPaths(paths, r);
        if (r.status === 202) accepted++;
      }
    }),
  );
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return { accepted, secs, rps: accepted / secs, paths, ...latencies(lat) };
}

/**
 * Starts requests at `rate` per second for `seconds` (at most CONCURRENCY in flight; later starts count as late).
 * Returns the figures and the latencies (`lat`, sorted) for pooling over rounds; trace lines go to `trace` (an array).
 */
async function openLoop(port, agent, rate, seconds, round, trace) {
  const lat = [];
  const paths = {};
  let inFlight = 0;
  let late = 0;
  let accepted = 0;
  const total = Math.round(rate * seconds);
  const t0 = performance.now();
  const pending = [];
  // BENCH_OPEN_TRACE=FILE: one line per request, "start-ms latency-ms state round epoch-ms" (state: queued or
  // handed_off; start-ms into that round; epoch-ms the start on the wall clock, to line up with other recordings), to
  // see when the slow ones come and which path they took.
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    if (inFlight >= CONCURRENCY) {
      late++;
      while (inFlight >= CONCURRENCY) await new Promise((r) => setImmediate(r));
    }
    inFlight++;
    const started = performance.now();
    pending.push(
      request(port, "POST", "/send", agent, payload).then((r) => {
        inFlight--;
        lat.push(performance.now() - started); // from the request's start, not its due time
        trace?.push(
          `${(started - t0).toFixed(1)} ${(performance.now() - started).toFixed(2)} ` +
            `${pathOf(r)} ${round} ${(performance.timeOrigin + started).toFixed(1)}`,
        );
        countPaths(paths, r);
        if (r.status === 202) accepted++;
      }),
    );
  }
  await Promise.all(pending);
  return { total, accepted, late, lat, paths, ...latencies(lat) };
}

const countPending = (root) => fs.readdirSync(path.join(root, "pending")).length;
async function drain(root) {
  for (let i = 0; i < 600 && countPending(root) > 0; i++) await new Promise((r) => setTimeout(r, 100));
  return countPending(root);
}

// ---------------------------------------------------------------- throughput, latency, peak RSS

const mainRoot = path.join(work, "queue");
progress(`relay on ${relayNode}`);
const main = startRelay(mainRoot, { keepLog: true, watch: [/"address":"(http:\/\/127\.0\.0\.1:\d+)"/] });
const port = Number(new URL((await main.seen(0)).match[1]).port);

const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
// The job file the relay writes for this payload: the template of the pre-filled queues below.
const sampler = sampleJobFile(mainRoot);
progress("warm-up: 300 requests (JIT, pooled connections)");
await closedLoop(port, agent, 300);
const template = sampler.stop();
await drain(mainRoot);

progress(`closed loop: ${TOTAL} requests at ${CONCURRENCY} concurrent (saturation)`);
const cpu0 = procCpu(main.child.pid);
const self0 = process.cpuUsage();
const sinkCpu0 = procCpu(sink.pid);
const closed = await closedLoop(port, agent, TOTAL);
const cpu1 = procCpu(main.child.pid);
const self1 = process.cpuUsage(self0);
const sinkCpu1 = procCpu(sink.pid);
const peak = procMem(main.child.pid).hwm;
progress("draining the queue");
const leftAfterClosed = await drain(mainRoot);

/**
 * The floor under the open loop: the relay's durable write alone (bench/durable-write-bench.ts) at the same rate and
 * for as long, on the same filesystem, right after each open-loop round. POST /send answers after this write; its
 * p99 + 5 ms is the target (issue 23). Returns { lat (sorted), p50, p99, max } or undefined when it could not run.
 */
function durableFloor() {
  const out = path.join(work, "floor-latencies.txt");
  const r = spawnSync(process.execPath, ["--import", "tsx", path.join(repo, "bench/durable-write-bench.ts")], {
    cwd: repo,
    encoding: "utf8",
    env: {
      ...process.env,
      BENCH_RATE: String(OPEN_RATE),
      BENCH_SECONDS: String(OPEN_SECONDS),
      BENCH_DIR: work,
      BENCH_LATENCIES_OUT: out,
    },
  });
  if (r.status !== 0 || !fs.existsSync(out)) {
    process.stderr.write(`bench: durable-write floor failed: ${r.stderr}\n`);
    return undefined;
  }
  const lat = fs.readFileSync(out, "utf8").trim().split("\n").map(Number);
  fs.rmSync(out);
  return { lat, ...latencies(lat) };
}

/** The pooled figures of several rounds (each with a sorted `lat`). */
function pooled(rounds) {
  const lat = rounds.flatMap((r) => r.lat);
  return { ...latencies(lat), n: lat.length };
}

const rounds = [];
const trace = process.env.BENCH_OPEN_TRACE ? [] : undefined;
let openWarmup;
if (OPEN_RATE > 0 && OPEN_WARMUP_SECONDS > 0) {
  progress(`open loop warm-up, not counted: ${OPEN_RATE} req/s for ${OPEN_WARMUP_SECONDS} s`);
  openWarmup = await openLoop(port, agent, OPEN_RATE, OPEN_WARMUP_SECONDS, 0, undefined);
  await drain(mainRoot);
}
// A witness of the machine's stalls in each phase (bench/wake-probe.mjs): the floor meets a stall once per write,
// the relay's requests meet it at every step and then queue behind each other, so the verdict alone cannot tell a
// stalled minute from a slower relay.
const probe = OPEN_RATE > 0 ? await startWakeProbe() : undefined;
for (let i = 1; OPEN_RATE > 0 && i <= OPEN_ROUNDS; i++) {
  progress(`open loop, round ${i}/${OPEN_ROUNDS}: ${OPEN_RATE} req/s for ${OPEN_SECONDS} s`);
  await probe?.phase("relay");
  const relay = await openLoop(port, agent, OPEN_RATE, OPEN_SECONDS, i, trace);
  await probe?.phase(null);
  await drain(mainRoot);
  progress(`durable-write floor, round ${i}/${OPEN_ROUNDS}: ${OPEN_RATE}/s for ${OPEN_SECONDS} s`);
  await probe?.phase("floor");
  const floorRound = durableFloor();
  await probe?.phase(null);
  rounds.push({ relay, floor: floorRound, load: loadavg() });
}
const stalls = await probe?.report();
probe?.close();
if (trace) fs.writeFileSync(process.env.BENCH_OPEN_TRACE, trace.join("\n") + "\n");
const open =
  rounds.length > 0
    ? {
        ...pooled(rounds.map((r) => r.relay)),
        total: rounds.reduce((n, r) => n + r.relay.total, 0),
        accepted: rounds.reduce((n, r) => n + r.relay.accepted, 0),
        late: rounds.reduce((n, r) => n + r.relay.late, 0),
        paths: rounds.reduce((all, r) => {
          for (const [k, v] of Object.entries(r.relay.paths)) all[k] = (all[k] ?? 0) + v;
          return all;
        }, {}),
      }
    : undefined;
const floor = rounds.length > 0 && rounds.every((r) => r.floor) ? pooled(rounds.map((r) => r.floor)) : undefined;
const leftAfterOpen = await drain(mainRoot);
const loadAfterMain = loadavg();
await main.stop();
agent.destroy();

// ---------------------------------------------------------------- start-to-door and RSS with a queue

/**
 * Starts the relay on a queue of `n` jobs and measures: spawn -> first GET /health 200, spawn -> first POST /send 202
 * (sent as soon as /health answered), whether /health still said the index was loading, spawn -> "queue index loaded"
 * in its log, and VmRSS 2 s after that (the worker hands the backlog to the sink meanwhile, in both runs alike).
 */
async function door(n) {
  const root = path.join(work, `door-${n}`);
  progress(`start-to-door: pre-filling ${n} jobs`);
  prefillQueue(root, n, template);
  const doorPort = 20000 + Math.floor(Math.random() * 20000);
  const relay = startRelay(root, { port: doorPort, watch: [/"address":"http/, /"msg":"queue index loaded"/] });
  const fresh = () => new http.Agent({ keepAlive: false });
  let health;
  for (;;) {
    try {
      health = await request(doorPort, "GET", "/health", fresh());
      if (health.status === 200) break;
    } catch {
      // not listening yet
    }
    if (relay.child.exitCode !== null) throw new Error(`relay exited ${relay.child.exitCode}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const healthMs = performance.now() - relay.t0;
  const send = await request(doorPort, "POST", "/send", fresh(), payload);
  const sendMs = performance.now() - relay.t0;
  const loadedMs = (await relay.seen(1)).ms;
  await new Promise((r) => setTimeout(r, 2000));
  const mem = procMem(relay.child.pid);
  await relay.stop();
  fs.rmSync(root, { recursive: true, force: true });
  return {
    n,
    healthMs,
    sendMs,
    sendStatus: send.status,
    loading: /queue index loading/.test(health.text),
    loadedMs,
    ...mem,
  };
}

const doors = [];
if (DOOR_SMALL > 0 && DOOR_BIG > 0 && template) {
  doors.push(await door(DOOR_SMALL));
  doors.push(await door(DOOR_BIG));
}
const sunk = await sink.sunk();
sink.close();
fs.rmSync(work, { recursive: true, force: true });

// ---------------------------------------------------------------- report

const relayVersion = execFileSync(relayNode, ["--version"], { env: { ...process.env } })
  .toString()
  .trim();
const relayCpu = { user: (cpu1.user - cpu0.user) / TOTAL, sys: (cpu1.sys - cpu0.sys) / TOTAL };
const benchCpu =
  ((self1.user + self1.system) / 1000 + (sinkCpu1.user - sinkCpu0.user) + (sinkCpu1.sys - sinkCpu0.sys)) / TOTAL;
const cores = os.availableParallelism?.() ?? os.cpus().length;
const line = (k, v) => console.log(`${k.padEnd(52)} ${v}`);
console.log(
  `\nrelay benchmark: bundled relay on node ${relayVersion} ${nodeArgs.join(" ")}, ` +
    `SMTP hand-off to a loopback sink; ${cores} cores`,
);
if (!relayVersion.startsWith("v18."))
  console.log(`(the targets are defined on Debian's Node 18: BENCH_RELAY_NODE=.cache/node18/usr/bin/node)`);
line(
  `closed loop: ${TOTAL} POST /send at ${CONCURRENCY} concurrent`,
  `${closed.accepted}/${TOTAL} accepted in ${closed.secs.toFixed(2)} s = ${closed.rps.toFixed(0)} req/s`,
);
line(
  "closed loop latency p50 / p99 / max (ms)",
  `${closed.p50.toFixed(1)} / ${closed.p99.toFixed(1)} / ${closed.max.toFixed(1)}`,
);
/** "4990 handed off during the request, 10 queued" (and any other status the 202s did not name). */
const pathFig = (paths) =>
  [
    `${paths.handed_off ?? 0} handed off during the request`,
    `${paths.queued ?? 0} queued`,
    ...Object.entries(paths)
      .filter(([k]) => k !== "handed_off" && k !== "queued")
      .map(([k, v]) => `${v} answered ${k}`),
  ].join(", ");
line("closed loop paths (the 202's state)", pathFig(closed.paths));
line("relay peak RSS (VmHWM) at saturation", `${peak.toFixed(1)} MB`);
const fig = (f) => `${f.p50.toFixed(1)} / ${f.p99.toFixed(1)} / ${f.max.toFixed(1)}`;
if (openWarmup)
  line(
    "open loop warm-up round, not counted: p50 / p99 / max",
    `${fig(openWarmup)} ms (BENCH_OPEN_WARMUP_SECONDS=0 leaves it out)`,
  );
rounds.forEach((r, i) =>
  line(
    `open loop round ${i + 1}: relay | floor p50 / p99 / max`,
    `${fig(r.relay)} | ${r.floor ? fig(r.floor) : "did not run"} ms (load ${r.load})`,
  ),
);
if (open) {
  line(
    `open loop at ${OPEN_RATE} req/s, ${rounds.length} rounds: p50 / p99 / max`,
    `${fig(open)} ms (${open.accepted}/${open.total} accepted, ${open.late} started late)`,
  );
  line("open loop paths (the 202's state)", pathFig(open.paths));
}
line(
  "handed off to the sink (all phases)",
  `${sunk} (pending left after draining: ${leftAfterClosed} after the closed loop, ` +
    `${leftAfterOpen} after the open loop)`,
);
line(
  "relay CPU per request at saturation: user / sys (ms)",
  `${relayCpu.user.toFixed(3)} / ${relayCpu.sys.toFixed(3)}`,
);
line("bench client + sink CPU per request (ms)", benchCpu.toFixed(3));
line(`CPU ceiling on ${cores} cores (req/s)`, (cores / ((relayCpu.user + relayCpu.sys + benchCpu) / 1000)).toFixed(0));
if (floor)
  line(
    `durable write alone at ${OPEN_RATE}/s, ${rounds.length} rounds: p50 / p99 / max`,
    `${fig(floor)} ms (${floor.n} writes)`,
  );
const stallFig = (p) =>
  p ? `${p.p99.toFixed(1)} / ${p.max.toFixed(1)} ms, ${p.over5} over 5 ms late (${p.stalledMs.toFixed(0)} ms)` : "-";
if (stalls)
  line(
    "idle probe's wake-ups, open loop | floor: p99 / max late",
    `${stallFig(stalls.relay)} | ${stallFig(stalls.floor)}`,
  );
line("machine load (1/5/15 min) after the main relay", loadAfterMain);
for (const d of doors) {
  line(
    `start-to-door with ${d.n} jobs pending (ms)`,
    `/health ${d.healthMs.toFixed(0)}, /send ${d.sendStatus} ${d.sendMs.toFixed(0)}` +
      `${d.loading ? " (index still loading)" : ""}; index loaded ${d.loadedMs.toFixed(0)}`,
  );
  line(
    `RSS with ${d.n} jobs queued (2 s after the index loaded)`,
    `${d.rss.toFixed(1)} MB (VmHWM ${d.hwm.toFixed(1)} MB)`,
  );
}
line("machine load (1/5/15 min) at the end", loadavg());

console.log("\ntargets:");
if (process.env.BENCH_WORK_ROOT)
  console.log(
    `(BENCH_WORK_ROOT=${process.env.BENCH_WORK_ROOT}: a diagnostic run; ` +
      "the targets are read with the queues on the repo's disk)",
  );
const verdict = (ok) => (ok ? "met" : "MISSED");
if (open)
  line(
    `  open loop at ${OPEN_RATE} req/s: p99 <= durable-write p99 + 5 ms`,
    floor
      ? `${verdict(open.p99 <= floor.p99 + 5)} (${open.p99.toFixed(1)} ms vs ${floor.p99.toFixed(1)} + 5 ms)`
      : "not judged (the durable-write floor did not run)",
  );
line("  peak RSS <= 200 MB at saturation", `${verdict(peak <= 200)} (${peak.toFixed(1)} MB)`);
if (doors.length === 2) {
  const [small, big] = doors;
  const delta = big.rss - small.rss;
  line(
    `  RSS with ${big.n} queued within 40 MB of ${small.n} queued`,
    `${verdict(delta <= 40)} (+${delta.toFixed(1)} MB)`,
  );
  const doorMs = Math.max(big.healthMs, big.sendMs);
  line(
    `  start-to-door <= 2 s with ${big.n} pending`,
    `${verdict(doorMs <= 2000 && big.sendStatus === 202)} (${(doorMs / 1000).toFixed(2)} s)`,
  );
} else {
  line("  RSS and start-to-door with a queue", "not measured (BENCH_DOOR_SMALL/BENCH_DOOR_BIG = 0)");
}
for (const c of running) c.kill("SIGTERM");
