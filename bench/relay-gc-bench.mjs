// npm run bench:gc — what V8's garbage collector does for the relay per message, in the open loop of bench:relay:
//   allocated and promoted bytes per request, the old generation's growth per request (promotion and what V8
//   allocates there directly), young (scavenge) and full collections, their pauses.
// Why (issue 23): the open loop's p99 is made of collection pauses. Allocation per request sets how often the young
// generation is collected; what survives it and then dies, and the hidden classes a request makes, set how often a
// full collection runs. The figures are V8's own (--trace-gc-nvp lines on the relay's stdout), so they count the
// same on a loaded machine; the latency line is as noisy as the machine. It then splits the requests at or over the
// p99 by the collections they were in flight during (full, scavenge, neither), beside the same split of all requests.
// The relay runs as its own process with its systemd unit's node flags (V8's heap limit), hands off to a loopback
// SMTP sink in a process of its own (bench/relay-sink.mjs), and keeps its queue in BENCH_WORK_ROOT (default the
// repo's .cache/).
// Knobs: BENCH_GC_WARMUP (3000 requests one at a time, so V8 has compiled the hot path), BENCH_GC_REQUESTS (4500),
// BENCH_OPEN_RATE (300), BENCH_RELAY_NODE, BENCH_RELAY_NODE_ARGS, BENCH_RELAY_BUNDLE (another build, for an A/B).
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { RELAY_NODE_FLAGS } from "../cloud-init/systemd.ts";
import { BENCH_PAYLOAD, BENCH_TOKEN, relayBundle, startSink } from "./relay-fixture.mjs";
import { UNTHROTTLED_RELAY_ENV } from "./unthrottled-env.mjs";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bundle = relayBundle(repo);
const WARMUP = Number(process.env.BENCH_GC_WARMUP ?? 3000);
const N = Number(process.env.BENCH_GC_REQUESTS ?? 4500);
const RATE = Number(process.env.BENCH_OPEN_RATE ?? 300);
const TOKEN = BENCH_TOKEN;
const relayNode = process.env.BENCH_RELAY_NODE ?? process.execPath;
const nodeArgs = [
  ...RELAY_NODE_FLAGS,
  "--trace-gc-nvp",
  ...(process.env.BENCH_RELAY_NODE_ARGS ?? "").split(" ").filter(Boolean),
];
const progress = (m) => process.stderr.write(`bench:gc: ${m}\n`);

if (!fs.existsSync(bundle)) {
  console.error(`${bundle} is missing: run npm run build (npm run bench:gc does)`);
  process.exit(1);
}

const sink = await startSink();

const workRoot = process.env.BENCH_WORK_ROOT ?? path.join(repo, ".cache");
fs.mkdirSync(workRoot, { recursive: true });
const queueRoot = fs.mkdtempSync(path.join(workRoot, "gc-bench-"));
const child = spawn(relayNode, [...nodeArgs, bundle], {
  env: {
    PATH: process.env.PATH,
    ...(process.env.LD_LIBRARY_PATH ? { LD_LIBRARY_PATH: process.env.LD_LIBRARY_PATH } : {}),
    RELAY_LISTEN: "127.0.0.1:0",
    SMTP_RELAY_TOKEN: `bench=${TOKEN}`,
    RELAY_ALLOWED_FROM: "noreply@example.com",
    QUEUE_ROOT: queueRoot,
    RELAY_HANDOFF: `smtp://127.0.0.1:${sink.port}`,
    ...UNTHROTTLED_RELAY_ENV,
    LOG_LEVEL: "info",
  },
  stdio: ["ignore", "pipe", "inherit"],
});
const stop = () => {
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
};
process.on("exit", stop);

// The relay's stdout: JSON log lines (the first one names its address) and V8's --trace-gc-nvp lines. Only the GC
// lines are kept, each with the phase it came in.
let phase = "start";
const gcLines = [];
let port;
let rest = "";
await new Promise((resolve, reject) => {
  child.on("exit", (code) => reject(new Error(`the relay exited with ${code} before it listened`)));
  child.stdout.on("data", (chunk) => {
    const lines = (rest + chunk).split("\n");
    rest = lines.pop();
    for (const l of lines) {
      if (port === undefined) {
        const m = /"address":"http:\/\/127\.0\.0\.1:(\d+)"/.exec(l);
        if (m) {
          port = Number(m[1]);
          resolve();
        }
      }
      if (/ gc=\S+ /.test(l) || l.startsWith("pause=")) gcLines.push({ phase, line: l, at: performance.now() });
    }
  });
});

const payload = BENCH_PAYLOAD;
const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
const send = () =>
  new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        path: "/send",
        method: "POST",
        agent,
        headers: {
          authorization: `Bearer ${TOKEN}`,
          "content-type": "application/json",
          "content-length": Buffer.byteLength(payload),
        },
      },
      (res) => {
        res.resume();
        res.on("end", () =>
          res.statusCode === 202 ? resolve(performance.now() - t0) : reject(new Error(`HTTP ${res.statusCode}`)),
        );
      },
    );
    req.on("error", reject);
    req.end(payload);
  });

progress(`relay on ${relayNode} ${nodeArgs.join(" ")}; warm-up: ${WARMUP} requests one at a time`);
phase = "warmup";
for (let i = 0; i < WARMUP; i++) await send();
// The relay's memory after the warm-up, from its own /metrics (prom-client's process metrics, loopback only): V8's
// large-object space holds the bundle's source (2.8 MB as one byte per character, twice that as two).
const metricsText = await new Promise((resolve, reject) => {
  http
    .get({ host: "127.0.0.1", port, path: "/metrics" }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve(body));
    })
    .on("error", reject);
});
const metric = (name) => Number(new RegExp(`^${name} ([\\d.e+]+)`, "m").exec(metricsText)?.[1] ?? NaN);
const memory = {
  heap: metric("relay_nodejs_heap_size_used_bytes"),
  largeObjects: metric('relay_nodejs_heap_space_size_used_bytes\\{space="large_object"\\}'),
  rss: metric("relay_process_resident_memory_bytes"),
};
progress(`open loop: ${N} requests at ${RATE}/s`);
phase = "open";
const lat = [];
// Each request as [start, end] on this process's clock, for the attribution below.
const spans = [];
const pending = [];
const t0 = performance.now();
for (let i = 0; i < N; i++) {
  const wait = t0 + (i * 1000) / RATE - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const start = performance.now();
  pending.push(
    send().then((ms) => {
      lat.push(ms);
      spans.push([start, start + ms]);
    }),
  );
}
await Promise.all(pending);
phase = "after";
const version = await new Promise((resolve) => {
  const v = spawn(relayNode, ["--version"], { env: process.env });
  let out = "";
  v.stdout.on("data", (c) => (out += c));
  v.on("exit", () => resolve(out.trim()));
});
stop();
await new Promise((r) => child.once("exit", r));
sink.close();
fs.rmSync(queueRoot, { recursive: true, force: true });

// --trace-gc-nvp: "pause=... gc=s ... allocated=... promoted=..." (s: scavenge; ms/mc: a full collection).
const field = (l, k) => Number(new RegExp(`(?:^| )${k}=([\\d.]+)`).exec(l)?.[1] ?? NaN);
// The open loop's collections: each a trace line and when it reached this process.
const openGc = gcLines.filter((g) => g.phase === "open");
const scavengeGc = openGc.filter((g) => / gc=s /.test(g.line));
const fullGc = openGc.filter((g) => / gc=(ms|mc|mmc) /.test(g.line));
const open = openGc.map((g) => g.line);
const scavenges = scavengeGc.map((g) => g.line);
const fulls = fullGc.map((g) => g.line);
const sum = (ls, k) => ls.reduce((n, l) => n + (Number.isFinite(field(l, k)) ? field(l, k) : 0), 0);
const allocated = sum(open, "allocated");
const promoted = sum(scavenges, "promoted");
const pauses = (ls) => ls.map((l) => field(l, "pause")).sort((a, b) => a - b);
const q = (a, p) => (a.length === 0 ? NaN : a[Math.min(a.length - 1, Math.floor(p * a.length))]);
const sPauses = pauses(scavenges);
const fPauses = pauses(fulls);
lat.sort((a, b) => a - b);
const seconds = N / RATE;
const line = (k, v) => console.log(`${k.padEnd(58)} ${v}`);
const kb = (b) => `${(b / 1024).toFixed(2)} KB`;
const mb = (b) => `${(b / 1048576).toFixed(1)} MB`;

console.log(`\nGC benchmark: bundled relay on node ${version} ${nodeArgs.join(" ")}, ${N} POST /send at ${RATE}/s`);
line(
  "after the warm-up: V8 heap used, of it large objects; RSS",
  `${mb(memory.heap)}, ${mb(memory.largeObjects)}; ${mb(memory.rss)}`,
);
// The old generation's growth between consecutive scavenges with no full collection between them: what scavenges
// promoted, and what V8 allocated there directly (pretenured allocation sites, whose objects it has seen survive,
// hidden classes, code, large objects), which the promoted figure does not count. The per-request figure divides by
// the requests those intervals spanned.
// Node 18's lines give the survivors left in the young generation (semi_space_copied); Node 20's do not, so there the
// figure includes the change in survivors between the first and last scavenge of each stretch (small and unbiased).
const oldAfter = (l) =>
  field(l, "total_size_after") - (Number.isFinite(field(l, "semi_space_copied")) ? field(l, "semi_space_copied") : 0);
let oldGrowth = 0;
let grownOver = 0;
const isScavenge = new Set(scavengeGc);
for (let i = 1; i < openGc.length; i++) {
  if (!isScavenge.has(openGc[i - 1]) || !isScavenge.has(openGc[i])) continue;
  const [a, b] = [openGc[i - 1].line, openGc[i].line];
  const grew = oldAfter(b) - oldAfter(a);
  if (!Number.isFinite(grew) || !Number.isFinite(field(b, "allocated"))) continue;
  oldGrowth += grew;
  grownOver += field(b, "allocated");
}
// Requests the measured intervals spanned, from the bytes allocated in them (allocation per request is steady).
const oldGrowthPerRequest = grownOver > 0 ? oldGrowth / (grownOver / (allocated / N)) : NaN;
const promotedPerRequest = promoted / N;

line("allocated per request", kb(allocated / N));
line("promoted to the old generation per request (scavenges)", kb(promotedPerRequest));
line(
  "old generation growth per request (promoted + allocated there directly)",
  `${kb(oldGrowthPerRequest)} (directly: ${kb(oldGrowthPerRequest - promotedPerRequest)})`,
);
line(
  "young collections (scavenges): count, per second",
  `${scavenges.length}, ${(scavenges.length / seconds).toFixed(1)}/s`,
);
line(
  "  their pauses p50 / max (ms)",
  `${q(sPauses, 0.5).toFixed(2)} / ${(sPauses[sPauses.length - 1] ?? NaN).toFixed(2)}`,
);
const sWork = scavenges.map((l) => field(l, "scavenge")).sort((a, b) => a - b);
line(
  "  their scavenge phase p50 / max (ms; the rest of a pause is mostly waiting for a CPU)",
  `${q(sWork, 0.5).toFixed(2)} / ${(sWork[sWork.length - 1] ?? NaN).toFixed(2)}`,
);
line("full collections: count, per second", `${fulls.length}, ${(fulls.length / seconds).toFixed(2)}/s`);
line("  their pauses (ms)", fPauses.length > 0 ? fPauses.map((p) => p.toFixed(1)).join(" ") : "none");
line(
  "request latency p50 / p99 / max (ms; as noisy as the machine)",
  `${q(lat, 0.5).toFixed(1)} / ${q(lat, 0.99).toFixed(1)} / ${lat[lat.length - 1].toFixed(1)}`,
);

// Which collections the slowest requests met. A collection's window ends when its trace line reaches this process
// (just after its pause) and starts its pause earlier; a full collection's window also holds its incremental marking
// (incremental_walltime_duration), when V8 marks beside the relay's thread, on a 2-core machine beside the relay
// itself. A request "met" a window it was in flight for. The share of all requests that met one is printed beside
// the share of the slowest, so a window that merely covers much of the run is not mistaken for a cause.
const windows = (gcs, withMarking) =>
  gcs.map((g) => {
    const marking = withMarking ? field(g.line, "incremental_walltime_duration") || 0 : 0;
    return [g.at - field(g.line, "pause") - marking, g.at];
  });
const fullWindows = windows(fullGc, true);
const scavengeWindows = windows(scavengeGc, false);
const met = (span, ws) => ws.some(([a, b]) => span[0] < b && span[1] > a);
const p99 = q(lat, 0.99);
const slow = spans.filter((sp) => sp[1] - sp[0] >= p99);
const share = (list, pred) => {
  const n = list.filter(pred).length;
  return `${n} (${((100 * n) / list.length).toFixed(1)}%)`;
};
line("requests at or over the p99: count", `${slow.length}`);
line(
  "  in flight during a full collection (with its marking)",
  `${share(slow, (sp) => met(sp, fullWindows))}; of all requests ${share(spans, (sp) => met(sp, fullWindows))}`,
);
line(
  "  in flight during a scavenge (and no full collection)",
  `${share(slow, (sp) => !met(sp, fullWindows) && met(sp, scavengeWindows))}; of all requests ` +
    share(spans, (sp) => !met(sp, fullWindows) && met(sp, scavengeWindows)),
);
line(
  "  during neither (the machine, the disk, the relay's own work)",
  share(slow, (sp) => !met(sp, fullWindows) && !met(sp, scavengeWindows)),
);
