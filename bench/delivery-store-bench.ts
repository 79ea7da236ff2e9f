// npm run bench:deliveries — the delivery tracker at 1,000,000 retained messages, against issue 23's targets:
//   tracker + index memory per retained message <= 64 B (1,000,000 retained add <= 64 MB to RSS)
//   GET /messages/:id and GET /messages?state=… p99 <= 5 ms at 1,000,000 retained
//   start-to-door with 100,000 jobs pending and 1,000,000 messages retained <= 2 s
// 1. Records BENCH_RETAINED (1,000,000) hand-offs through DeliveryStore's own hand-off and log-fact paths (real
//    journal, fsync'd, in waves of BENCH_WAVE concurrent hand-offs, as the worker's concurrent hand-offs
//    group-commit), each with one recipient: 90% delivered, 5% deferred, 4% bounced, 1% still handed_off; then
//    closes the store.
// 2. A fresh process opens that store (as a restart does) and prints the RSS, V8 heap and typed-array bytes it added
//    per retained message, and the store's own get/list latency (no HTTP).
// 3. The bundled relay (npm run build) starts on that QUEUE_ROOT with BENCH_PENDING (100,000) jobs pre-filled: time to
//    GET /health 200 and POST /send 202, then GET /messages/:id and GET /messages?state=… over HTTP, p50/p99.
// Memory figures do not depend on the machine's load; time figures do, and are printed with the load average.
// Knobs: BENCH_RETAINED, BENCH_PENDING (0 skips phase 3), BENCH_WAVE (1000), BENCH_RELAY_NODE (e.g. Debian's Node 18).
import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { SMTPServer } from "smtp-server";
import { RELAY_NODE_FLAGS } from "../cloud-init/systemd";
import { DeliveryStore, type DeliveryState } from "../relay/storage/delivery-store";
import type { LogFact } from "../relay/events/postfix-log";
import { prefillQueue, type JobFile } from "./queue-prefill.mjs";
import { UNTHROTTLED_RELAY_ENV } from "./unthrottled-env.mjs";

const N = Number(process.env.BENCH_RETAINED ?? process.env.BENCH_MESSAGES ?? 1_000_000);
const PENDING = Number(process.env.BENCH_PENDING ?? 100_000);
const WAVE = Number(process.env.BENCH_WAVE ?? 1000);
const DOMAIN = "mail.example.com";
const CALLER = "bench";
const TOKEN = "bench-token-0123456789abcdefghijklmnopqrstuvwxyz";
const RETENTION_MS = 7 * 86_400_000;
const repo = path.resolve(__dirname, "..");
const load = (): string =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
const progress = (m: string): void => void process.stderr.write(`bench: ${m} (load ${load()})\n`);
const line = (k: string, v: string): void => console.log(`${k.padEnd(58)} ${v}`);
const verdict = (ok: boolean): string => (ok ? "met" : "MISSED");
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
};

function outcome(i: number): "sent" | "deferred" | "bounced" | undefined {
  const r = i % 100;
  if (r < 90) return "sent";
  if (r < 95) return "deferred";
  if (r < 99) return "bounced";
  return undefined;
}

/** Phase 1: N hand-offs and their log facts through the store's API. Returns the ids. */
async function build(root: string): Promise<string[]> {
  const store = new DeliveryStore(root, { messageIdDomain: DOMAIN, retentionMs: RETENTION_MS });
  await store.open();
  const ids: string[] = [];
  const t0 = performance.now();
  for (let start = 0; start < N; start += WAVE) {
    const n = Math.min(WAVE, N - start);
    const wave = Array.from({ length: n }, (_, k) => ({
      i: start + k,
      id: randomUUID(),
      qid: `4Z${(start + k).toString(36).toUpperCase().padStart(9, "0")}`,
    }));
    const at = Date.now();
    await Promise.all(
      wave.map((w) =>
        store.recordHandoff({ id: w.id, caller: CALLER, postfixQueueId: w.qid, to: [`user${w.i}@example.net`], at }),
      ),
    );
    const facts: { fact: LogFact; line: number }[] = [];
    for (const w of wave) {
      ids.push(w.id);
      const st = outcome(w.i);
      facts.push({
        fact: { kind: "message-id", queueId: w.qid, messageId: `${w.id}@${DOMAIN}`, at },
        line: facts.length,
      });
      if (st === undefined) continue;
      facts.push({
        fact: {
          kind: "recipient",
          queueId: w.qid,
          recipient: `user${w.i}@example.net`,
          status: st,
          dsn: st === "sent" ? "2.0.0" : st === "deferred" ? "4.4.1" : "5.1.1",
          relay: "mx.example.net[198.51.100.25]:25",
          delaySeconds: 0.4,
          reply:
            st === "sent"
              ? "250 2.0.0 Ok: queued as 4ZxYz1Abc2"
              : st === "deferred"
                ? "connect to mx.example.net[198.51.100.25]:25: Connection timed out"
                : "550 5.1.1 <user@example.net>: Recipient address rejected: User unknown",
          at,
        },
        line: facts.length,
      });
      if (st !== "deferred") facts.push({ fact: { kind: "removed", queueId: w.qid, at }, line: facts.length });
    }
    const after = { inode: 1, offset: start + n };
    const { records } = store.plan(facts, after);
    await store.commit(records, after);
    if ((start / WAVE) % 100 === 99) progress(`recorded ${start + n} of ${N}`);
  }
  const ms = performance.now() - t0;
  await store.close();
  const journal = fs.statSync(path.join(root, "events", "deliveries.jsonl")).size;
  const idx = fs.statSync(path.join(root, "events", "deliveries.idx")).size;
  line(
    `recorded ${N} hand-offs + their log facts (waves of ${WAVE})`,
    `${(ms / 1000).toFixed(1)} s (${((ms * 1000) / N).toFixed(0)} us per message, fsync per wave); load ${load()}`,
  );
  line(
    "on disk: journal / checkpoint",
    `${(journal / 1048576).toFixed(0)} MB (${(journal / N).toFixed(0)} B per message) / ` +
      `${(idx / 1048576).toFixed(1)} MB (${(idx / N).toFixed(0)} B per message)`,
  );
  return ids;
}

/** Phase 2, in a fresh process: what opening the store adds to memory, and its own query latency. */
async function measure(root: string, idsFile: string): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run with --expose-gc");
  // The ids as one buffer (37 bytes a line), not 1,000,000 strings: those would make this process's own garbage
  // collections (and so the latencies measured here) slower than the relay's.
  const idBuf = fs.readFileSync(idsFile);
  const count = Math.floor((idBuf.length + 1) / 37);
  const idAt = (k: number): string => idBuf.toString("latin1", k * 37, k * 37 + 36);
  const mem = (): NodeJS.MemoryUsage => {
    gc();
    gc();
    return process.memoryUsage();
  };
  const m0 = mem();
  const store = new DeliveryStore(root, { messageIdDomain: DOMAIN, retentionMs: RETENTION_MS });
  const t0 = performance.now();
  const opened = await store.open();
  const openMs = performance.now() - t0;
  const m1 = mem();
  // Warm-up (not measured): the first calls compile.
  for (let k = 0; k < 500; k++) {
    store.get(idAt(k % count));
    store.list(CALLER, { limit: 51, since: Date.now() - 3_600_000, state: "delivered" });
  }
  const get: number[] = [];
  for (let k = 0; k < 20_000; k++) {
    const id = idAt(Math.floor(Math.random() * count));
    const t = performance.now();
    const d = store.get(id);
    get.push(performance.now() - t);
    if (!d || d.caller !== CALLER) throw new Error(`message ${id} not found after the restart`);
  }
  const list: Record<string, number[]> = {};
  for (const state of ["delivered", "deferred", "bounced", "handed_off", "expired", undefined] as const) {
    const xs: number[] = (list[state ?? "(any)"] = []);
    for (let k = 0; k < 300; k++) {
      const since = Date.now() - Math.random() * 3_600_000;
      const t = performance.now();
      store.list(CALLER, { limit: 51, since, ...(state ? { state: state as DeliveryState } : {}) });
      xs.push(performance.now() - t);
    }
  }
  const per = (a: number, b: number): string => `${((b - a) / opened.messages).toFixed(1)} B`;
  process.stdout.write(
    JSON.stringify({
      messages: opened.messages,
      checkpoint: opened.checkpoint,
      openMs,
      rssMb: (m1.rss - m0.rss) / 1048576,
      rssPer: (m1.rss - m0.rss) / opened.messages,
      heapPer: per(m0.heapUsed, m1.heapUsed),
      heapTotalPer: per(m0.heapTotal, m1.heapTotal),
      arrayPer: per(m0.arrayBuffers, m1.arrayBuffers),
      getP50: pct(get, 50),
      getP99: pct(get, 99),
      list: Object.fromEntries(Object.entries(list).map(([k, xs]) => [k, [pct(xs, 50), pct(xs, 99)]])),
      load: load(),
    }),
  );
  await store.close();
}

function request(
  port: number,
  method: string,
  url: string,
  agent: http.Agent,
  body?: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method,
        path: url,
        agent,
        headers: {
          authorization: `Bearer ${TOKEN}`,
          ...(body ? { "content-type": "application/json", "content-length": Buffer.byteLength(body) } : {}),
        },
      },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const payload = JSON.stringify({
  to: ["user@example.net"],
  from: { email: "noreply@example.com", name: "Bench" },
  subject: "Your receipt #12345",
  text: "Thanks for your order. ".repeat(40),
  html: `<p>${"Thanks for your <b>order</b>. ".repeat(40)}</p>`,
});

function vmRss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** Phase 3: the bundled relay on the 1,000,000-message store with PENDING jobs queued. */
async function door(root: string, ids: string[]): Promise<Record<string, number | string>> {
  const bundle = path.join(repo, "relay/dist/relay.js");
  if (!fs.existsSync(bundle)) throw new Error(`missing ${bundle}: run npm run build`);
  const sink = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    onData(stream, _s, cb) {
      stream.resume();
      stream.on("end", () => cb(null));
    },
  });
  sink.on("error", () => undefined);
  await new Promise<void>((r) => sink.listen(0, "127.0.0.1", r));
  const sinkPort = (sink.server.address() as { port: number }).port;
  const relayNode = process.env.BENCH_RELAY_NODE ?? process.execPath;
  const start = (queueRoot: string, port: number, handoffPort = sinkPort): ReturnType<typeof spawn> =>
    spawn(relayNode, [...RELAY_NODE_FLAGS, bundle], {
      env: {
        PATH: process.env.PATH,
        RELAY_LISTEN: `127.0.0.1:${port}`,
        SMTP_RELAY_TOKEN: `${CALLER}=${TOKEN}`,
        RELAY_ALLOWED_FROM: "noreply@example.com",
        QUEUE_ROOT: queueRoot,
        RELAY_HANDOFF: `smtp://127.0.0.1:${handoffPort}`,
        ...UNTHROTTLED_RELAY_ENV,
        LOG_LEVEL: "warn",
        ...(process.env.LD_LIBRARY_PATH ? { LD_LIBRARY_PATH: process.env.LD_LIBRARY_PATH } : {}),
      },
      stdio: ["ignore", "ignore", "inherit"],
    });
  const stop = (c: ReturnType<typeof spawn>): Promise<void> =>
    new Promise((r) => {
      if (c.exitCode !== null || c.signalCode !== null) return r();
      c.on("exit", () => r());
      c.kill("SIGTERM");
    });
  const waitHealth = async (c: ReturnType<typeof spawn>, port: number, t0: number): Promise<number> => {
    for (;;) {
      try {
        const h = await request(port, "GET", "/health", new http.Agent({ keepAlive: false }));
        if (h.status === 200) return performance.now() - t0;
      } catch {
        // not listening yet
      }
      if (c.exitCode !== null) throw new Error(`relay exited ${c.exitCode}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  try {
    // A job file written by the relay itself, as the template of the pre-filled queue.
    const sampleRoot = path.join(path.dirname(root), "sample");
    const port0 = 20000 + Math.floor(Math.random() * 20000);
    // Hand-off to a closed port: the job stays queued.
    const c0 = start(sampleRoot, port0, 1);
    await waitHealth(c0, port0, performance.now());
    const sent = await request(port0, "POST", "/send", new http.Agent({ keepAlive: false }), payload);
    const sampleId = (JSON.parse(sent.text) as { id: string }).id;
    // The worker moves the job between directories as it retries the closed port: read it wherever it is now.
    let template: JobFile | undefined;
    for (let tries = 0; !template && tries < 50; tries++) {
      for (const d of ["pending", "processing", "failed"]) {
        try {
          template = JSON.parse(fs.readFileSync(path.join(sampleRoot, d, `${sampleId}.json`), "utf8")) as JobFile;
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        }
      }
    }
    await stop(c0);
    if (!template) throw new Error("no job file to copy for the pre-filled queue");
    progress(`pre-filling ${PENDING} jobs`);
    prefillQueue(root, PENDING, template);
    const port = 20000 + Math.floor(Math.random() * 20000);
    const loadAtStart = load();
    const t0 = performance.now();
    const c = start(root, port);
    const healthMs = await waitHealth(c, port, t0);
    const send = await request(port, "POST", "/send", new http.Agent({ keepAlive: false }), payload);
    const sendMs = performance.now() - t0;
    await stop(c);
    // The queries run on a second start without the backlog: with 100,000 jobs being handed off in the same process,
    // their latency would be the worker's, not the tracker's. (It also reads the checkpoint the first start wrote.)
    for (const d of ["pending", "failed", "processing"])
      fs.rmSync(path.join(root, d), { recursive: true, force: true });
    const t1 = performance.now();
    const c2 = start(root, port);
    const restartMs = await waitHealth(c2, port, t1);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    // Warm-up (not measured): the routes' first calls compile.
    for (let k = 0; k < 300; k++) {
      await request(port, "GET", `/messages/${ids[k % ids.length] as string}`, agent);
      await request(port, "GET", `/messages?state=delivered&limit=50`, agent);
    }
    const get: number[] = [];
    for (let k = 0; k < 2000; k++) {
      const id = ids[Math.floor(Math.random() * ids.length)] as string;
      const t = performance.now();
      const r = await request(port, "GET", `/messages/${id}`, agent);
      get.push(performance.now() - t);
      if (r.status !== 200) throw new Error(`GET /messages/${id}: ${r.status} ${r.text.slice(0, 200)}`);
    }
    const lists: number[] = [];
    for (let k = 0; k < 200; k++)
      for (const state of ["delivered", "deferred", "bounced", "handed_off", "expired"]) {
        const t = performance.now();
        const r = await request(port, "GET", `/messages?state=${state}&limit=50`, agent);
        lists.push(performance.now() - t);
        if (r.status !== 200) throw new Error(`GET /messages?state=${state}: ${r.status}`);
      }
    const rss = vmRss(c2.pid as number);
    agent.destroy();
    await stop(c2);
    return {
      healthMs,
      sendMs,
      restartMs,
      sendStatus: send.status,
      getP50: pct(get, 50),
      getP99: pct(get, 99),
      listP50: pct(lists, 50),
      listP99: pct(lists, 99),
      rss,
      loadAtStart,
      loadEnd: load(),
    };
  } finally {
    sink.close();
  }
}

async function main(): Promise<void> {
  if (process.argv[2] === "measure") return measure(process.argv[3] as string, process.argv[4] as string);
  fs.mkdirSync(path.join(repo, ".cache"), { recursive: true });
  // Same filesystem as a real QUEUE_ROOT (not tmpfs): under the repo's .cache/.
  // BENCH_STORE=DIR keeps the recorded store there and reuses it on the next run (skips phase 1).
  const keep = process.env.BENCH_STORE ? path.resolve(process.env.BENCH_STORE) : undefined;
  const work = keep ?? fs.mkdtempSync(path.join(repo, ".cache", "bench-deliveries-"));
  const root = path.join(work, "root");
  const idsFile = path.join(work, "ids.txt");
  try {
    console.log(
      `delivery tracker bench: ${N} retained messages (caller ${CALLER}, 1 recipient each), node ${process.version}, ` +
        `${os.availableParallelism?.() ?? os.cpus().length} cores, load ${load()} at start`,
    );
    let ids: string[];
    if (keep && fs.existsSync(idsFile)) {
      ids = fs.readFileSync(idsFile, "utf8").split("\n").filter(Boolean);
      line("store reused (BENCH_STORE)", `${ids.length} messages recorded by an earlier run`);
    } else {
      fs.mkdirSync(work, { recursive: true });
      ids = await build(root);
      fs.writeFileSync(idsFile, ids.join("\n"));
    }
    progress("opening the store in a fresh process");
    const child = spawnSync(
      process.execPath,
      [...process.execArgv, "--expose-gc", __filename, "measure", root, idsFile],
      { encoding: "utf8", maxBuffer: 1 << 20, stdio: ["ignore", "pipe", "inherit"] },
    );
    if (child.status !== 0) throw new Error(`measure process failed (${child.status})`);
    const m = JSON.parse(child.stdout) as {
      messages: number;
      checkpoint: boolean;
      openMs: number;
      rssMb: number;
      rssPer: number;
      heapPer: string;
      heapTotalPer: string;
      arrayPer: string;
      getP50: number;
      getP99: number;
      list: Record<string, [number, number]>;
      load: string;
    };
    line(
      `store opened in a fresh process (${m.checkpoint ? "from its checkpoint" : "whole journal read"})`,
      `${m.messages} messages in ${m.openMs.toFixed(0)} ms; load ${m.load}`,
    );
    line(
      "memory added by opening it: RSS / V8 heap used (reserved) / typed arrays",
      `${m.rssMb.toFixed(1)} MB = ${m.rssPer.toFixed(1)} B per message / ${m.heapPer} (${m.heapTotalPer}) / ` +
        `${m.arrayPer}`,
    );
    line("store.get(id) p50 / p99, no HTTP (ms)", `${m.getP50.toFixed(3)} / ${m.getP99.toFixed(3)}`);
    for (const [state, [p50, p99]] of Object.entries(m.list))
      line(`store.list(state=${state}, since, 51) p50 / p99 (ms)`, `${p50.toFixed(3)} / ${p99.toFixed(3)}`);
    const d = PENDING > 0 ? await door(root, ids) : undefined;
    if (d) {
      line(
        `relay start with ${PENDING} pending + ${N} retained (ms)`,
        `/health ${Number(d.healthMs).toFixed(0)}, /send ${d.sendStatus} ${Number(d.sendMs).toFixed(0)}; ` +
          `load ${d.loadAtStart} at start`,
      );
      line(
        `relay restart with 0 pending + ${N} retained (ms)`,
        `/health ${Number(d.restartMs).toFixed(0)}; the queries below run on it`,
      );
      line(
        "HTTP GET /messages/:id p50 / p99 (ms)",
        `${Number(d.getP50).toFixed(2)} / ${Number(d.getP99).toFixed(2)} (2000 requests, 1 connection)`,
      );
      line(
        "HTTP GET /messages?state=…&limit=50 p50 / p99 (ms)",
        `${Number(d.listP50).toFixed(2)} / ${Number(d.listP99).toFixed(2)} (5 states x 200); load ${d.loadEnd}`,
      );
      line("relay RSS after the queries", `${Number(d.rss).toFixed(1)} MB`);
    }
    console.log("\ntargets:");
    line(
      `  memory per retained message <= 64 B (RSS at ${m.messages})`,
      `${verdict(m.rssPer <= 64)} (${m.rssPer.toFixed(1)} B; ${m.rssMb.toFixed(1)} MB)`,
    );
    if (d) {
      const getP99 = Number(d.getP99);
      const listP99 = Number(d.listP99);
      line(`  GET /messages/:id p99 <= 5 ms at ${N}`, `${verdict(getP99 <= 5)} (${getP99.toFixed(2)} ms)`);
      line(`  GET /messages?state=… p99 <= 5 ms at ${N}`, `${verdict(listP99 <= 5)} (${listP99.toFixed(2)} ms)`);
      const doorMs = Math.max(Number(d.healthMs), Number(d.sendMs));
      line(
        `  start-to-door <= 2 s with ${PENDING} pending + ${N} retained`,
        `${verdict(doorMs <= 2000 && d.sendStatus === 202)} (${(doorMs / 1000).toFixed(2)} s)`,
      );
    }
  } finally {
    if (!keep) fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
