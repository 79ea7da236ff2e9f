// npm run bench:relay — accepted requests/s, p50/p99 latency and peak RSS of the bundled relay at 50 concurrent
// requests, next to this disk's physical limit (a bare write+fsync+rename+dir-fsync loop). Hand-off: a loopback SMTP
// sink inside this process (no discard mode exists in the relay's production config).
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { SMTPServer } from "smtp-server";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bundle = path.join(repo, "relay/dist/relay.js");
const TOTAL = Number(process.env.BENCH_REQUESTS ?? 5000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50);
const DISK_SECONDS = Number(process.env.BENCH_DISK_SECONDS ?? 5);
// Optional open-loop phase: requests started at a fixed rate whatever the answers, so latency is measured at a
// load below saturation (a closed loop at 50 in flight always saturates: its latency is 50 / throughput).
const OPEN_RATE = Number(process.env.BENCH_OPEN_RATE ?? 0);
const OPEN_SECONDS = Number(process.env.BENCH_OPEN_SECONDS ?? 5);
const TOKEN = "bench-token-0123456789abcdefghijklmnopqrstuvwxyz";
// Same filesystem as a real QUEUE_ROOT would be on (not tmpfs): under the repo's .cache/.
fs.mkdirSync(path.join(repo, ".cache"), { recursive: true });
const work = fs.mkdtempSync(path.join(repo, ".cache", "bench-"));

if (!fs.existsSync(bundle)) {
  console.error(`missing ${bundle}: run npm run build`);
  process.exit(1);
}

// --- loopback SMTP sink that answers like Postfix ---
let sunk = 0;
const sink = new SMTPServer({
  authOptional: true,
  disabledCommands: ["STARTTLS", "AUTH"],
  logger: false,
  onData(stream, _s, cb) {
    stream.resume();
    stream.on("end", () => cb(null, `2.0.0 Ok: queued as B${(++sunk).toString(36).toUpperCase()}`));
  },
});
await new Promise((r) => sink.listen(0, "127.0.0.1", r));
const sinkPort = sink.server.address().port;

// --- the relay, as a separate process ---
const nodeArgs = (process.env.BENCH_RELAY_NODE_ARGS ?? "").split(" ").filter(Boolean);
// BENCH_RELAY_NODE=path runs the relay on another node binary (e.g. Debian 12's Node 18, the one the host runs).
const relayNode = process.env.BENCH_RELAY_NODE ?? process.execPath;
const relay = spawn(relayNode, [...nodeArgs, bundle], {
  env: {
    PATH: process.env.PATH,
    RELAY_LISTEN: "127.0.0.1:0",
    SMTP_RELAY_TOKEN: `bench=${TOKEN}`,
    RELAY_ALLOWED_FROM: "noreply@example.com",
    QUEUE_ROOT: path.join(work, "queue"),
    RELAY_HANDOFF: `smtp://127.0.0.1:${sinkPort}`,
    RELAY_RATE_LIMIT_PER_MIN: "100000000",
    RELAY_MIN_FREE_BYTES: "0",
    LOG_LEVEL: "info",
    ...Object.fromEntries(["UV_THREADPOOL_SIZE", "MALLOC_ARENA_MAX", "LD_LIBRARY_PATH"].filter((k) => process.env[k]).map((k) => [k, process.env[k]])),
  },
  stdio: ["ignore", "pipe", "inherit"],
});
// The relay's stdout (its JSON log) is read only until it says where it listens; after that it is drained without
// being looked at, so the bench does not spend CPU scanning log lines while it measures.
// BENCH_RELAY_LOG=FILE keeps the relay's stdout (JSON logs, or V8 traces with BENCH_RELAY_NODE_ARGS=--trace-gc).
if (process.env.BENCH_RELAY_LOG) relay.stdout.pipe(fs.createWriteStream(process.env.BENCH_RELAY_LOG));
const url = await new Promise((resolve, reject) => {
  let head = "";
  const onData = (c) => {
    head += c.toString();
    const m = /"address":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(head);
    if (m) {
      relay.stdout.off("data", onData);
      if (!process.env.BENCH_RELAY_LOG) relay.stdout.resume();
      resolve(m[1]);
    } else if (head.length > 1e6) {
      reject(new Error("the relay did not log its listening address"));
    }
  };
  relay.stdout.on("data", onData);
  relay.on("exit", (code) => reject(new Error(`relay exited ${code}`)));
});
const { port } = new URL(url);

const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
const payload = JSON.stringify({
  to: ["user@example.net"],
  from: { email: "noreply@example.com", name: "Bench" },
  subject: "Your receipt #12345",
  text: "Thanks for your order. ".repeat(40),
  html: `<p>${"Thanks for your <b>order</b>. ".repeat(40)}</p>`,
});

/** utime and stime of a process in ms (from /proc/PID/stat, clock ticks of 10 ms). */
function procCpu(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return { user: Number(f[11]) * 10, sys: Number(f[12]) * 10 };
}

function post() {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = http.request(
      { host: "127.0.0.1", port, path: "/send", method: "POST", agent, headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", "content-length": Buffer.byteLength(payload) } },
      (res) => {
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

/** p50, p99 and max of a list of latencies (ms). */
function latencies(lat) {
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  return { p50: q(0.5), p99: q(0.99), max: lat[lat.length - 1] };
}

async function run(n) {
  const lat = [];
  let accepted = 0;
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < n) {
        next++;
        const r = await post();
        lat.push(r.ms);
        if (r.status === 202) accepted++;
      }
    }),
  );
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return { accepted, secs, rps: accepted / secs, ...latencies(lat) };
}

/** Starts requests at `rate` per second for `seconds` (at most CONCURRENCY in flight; later starts count as late). */
async function openLoop(rate, seconds) {
  const lat = [];
  let inFlight = 0;
  let late = 0;
  let accepted = 0;
  const total = Math.round(rate * seconds);
  const t0 = performance.now();
  const pending = [];
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
      post().then((r) => {
        inFlight--;
        lat.push(performance.now() - started); // from the request's start, not its due time
        if (r.status === 202) accepted++;
      }),
    );
  }
  await Promise.all(pending);
  return { total, accepted, late, ...latencies(lat) };
}

// --- the disk's physical limit: the relay's durable-write sequence (temp file, write, fsync, rename, directory
// fsync), bare and serial in one loop. Measured before and after the relay's run, because this disk is shared and
// its speed drifts; the target is judged against the faster of the two.
function diskLoop(size, seconds) {
  const diskDir = fs.mkdtempSync(path.join(work, "disk-"));
  const tmpDir = fs.mkdtempSync(path.join(work, "disk-tmp-"));
  const buf = Buffer.alloc(size, 120);
  let files = 0;
  const dEnd = Date.now() + seconds * 1000;
  const d0 = process.hrtime.bigint();
  while (Date.now() < dEnd) {
    const tmp = path.join(tmpDir, `f${files}`);
    const fd = fs.openSync(tmp, "wx", 0o600);
    fs.writeSync(fd, buf);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, path.join(diskDir, `f${files}.json`));
    const dfd = fs.openSync(diskDir, "r");
    fs.fsyncSync(dfd);
    fs.closeSync(dfd);
    files++;
  }
  // The files stay until the very end: deleting thousands of files just before the relay's run would make ext4's
  // inode allocator skip them as "recently deleted" for the next minutes, slowing the relay's own file creation.
  return files / (Number(process.hrtime.bigint() - d0) / 1e9);
}

const progress = (m) => process.stderr.write(`bench: ${m}\n`);
let jobSize = 0;
const pendingDir = path.join(work, "queue", "pending");
const sampler = setInterval(() => {
  for (const f of fs.readdirSync(pendingDir).slice(0, 1)) {
    try {
      jobSize = Math.max(jobSize, fs.statSync(path.join(pendingDir, f)).size);
    } catch {}
  }
}, 20);
progress("warm-up: 300 requests (JIT, pooled connections, job file size)");
await run(300);
const drain = async () => {
  for (let i = 0; i < 600 && fs.readdirSync(pendingDir).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  return fs.readdirSync(pendingDir).length;
};
await drain();
if (!jobSize) jobSize = 4096;
progress(`disk loop before the run (${DISK_SECONDS} s, ${jobSize}-byte files)`);
const diskBefore = diskLoop(jobSize, DISK_SECONDS);

progress(`timed run: ${TOTAL} requests at ${CONCURRENCY} concurrent`);
const cpu0 = procCpu(relay.pid);
const self0 = process.cpuUsage();
const result = await run(TOTAL);
const cpu1 = procCpu(relay.pid);
const self1 = process.cpuUsage(self0);
clearInterval(sampler);
const status = fs.readFileSync(`/proc/${relay.pid}/status`, "utf8");
const hwmKb = Number(/VmHWM:\s+(\d+)/.exec(status)[1]);

// Let the worker drain, so the disk loop below does not compete with it.
progress("draining the queue");
let leftPending = await drain();
let open;
if (OPEN_RATE > 0) {
  progress(`open loop: ${OPEN_RATE} req/s for ${OPEN_SECONDS} s`);
  open = await openLoop(OPEN_RATE, OPEN_SECONDS);
  leftPending = await drain();
}
progress(`disk loop after the run (${DISK_SECONDS} s)`);
const diskAfter = diskLoop(jobSize, DISK_SECONDS);
relay.kill("SIGTERM");
await new Promise((r) => relay.on("exit", r));
agent.destroy();
sink.close();
fs.rmSync(work, { recursive: true, force: true });

const relayVersion = `node ${execFileSync(relayNode, ["--version"], { env: { ...process.env } }).toString().trim()}`;
const diskRate = Math.max(diskBefore, diskAfter);
const ratio = result.rps / diskRate;
const rssMb = hwmKb / 1024;
const relayCpu = { user: (cpu1.user - cpu0.user) / TOTAL, sys: (cpu1.sys - cpu0.sys) / TOTAL };
const benchCpu = (self1.user + self1.system) / 1000 / TOTAL;
const cores = os.availableParallelism?.() ?? os.cpus().length;
const line = (k, v) => console.log(`${k.padEnd(48)} ${v}`);
console.log(`\nrelay benchmark: ${TOTAL} POST /send at ${CONCURRENCY} concurrent, bundled relay on ${relayVersion}, SMTP hand-off to a loopback sink`);
line("accepted (202)", `${result.accepted}/${TOTAL} in ${result.secs.toFixed(2)} s`);
line("accepted requests/s", result.rps.toFixed(0));
line("latency p50 / p99 / max (ms)", `${result.p50.toFixed(1)} / ${result.p99.toFixed(1)} / ${result.max.toFixed(1)}`);
line("relay peak RSS (VmHWM)", `${rssMb.toFixed(1)} MB`);
line("handed off to the sink (warm-up + runs)", `${sunk} (pending left after drain: ${leftPending})`);
line("job file size used for the disk loop", `${jobSize} bytes`);
line("disk limit before / after the run (files/s)", `${diskBefore.toFixed(0)} / ${diskAfter.toFixed(0)}`);
line("ratio relay / faster disk limit", `${ratio.toFixed(2)}x`);
if (open) {
  line(`open loop at ${OPEN_RATE} req/s: p50 / p99 / max (ms)`, `${open.p50.toFixed(1)} / ${open.p99.toFixed(1)} / ${open.max.toFixed(1)} (${open.accepted}/${open.total} accepted, ${open.late} started late)`);
}
console.log("\nwhere the time goes:");
line("relay CPU per request: user / sys (ms)", `${relayCpu.user.toFixed(3)} / ${relayCpu.sys.toFixed(3)}`);
line("bench client + sink CPU per request (ms)", benchCpu.toFixed(3));
line(`CPU ceiling on ${cores} cores (req/s)`, (cores / ((relayCpu.user + relayCpu.sys + benchCpu) / 1000)).toFixed(0));
line(`needed for p99 < 50 ms at ${CONCURRENCY} in flight`, `> ${(CONCURRENCY / 0.05).toFixed(0)} req/s (Little's law: mean latency = in flight / rate)`);
console.log("\ntargets:");
line("  >= 0.5x disk limit", ratio >= 0.5 ? "met" : "MISSED");
line("  <= 100 MB RSS", rssMb <= 100 ? "met" : "MISSED");
line("  p99 < 50 ms at 50 concurrent", result.p99 < 50 ? "met" : "MISSED");
