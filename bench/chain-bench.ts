// npm run bench:chain — the whole chain, end to end: a second process POSTs N messages (~4 KB text+HTML) to the bundled
// relay at CONCURRENCY concurrent; the relay (its own process) queues them and hands them to a real Postfix + OpenDKIM
// built from the files cloud-init/ renders for prod (testkit/postfix-instance.ts), all inside a network
// namespace this script creates; Postfix relays to a recipient MX (smtp-sink) that writes every message to disk.
// Measures: accepted req/s; delivered signed msgs/s from the first request to the last message captured; p50/p99
// 202-to-capture; relay peak RSS; lost / duplicated / unsigned (DKIM verified with mailauth on a sample). In the same
// run: the limit (the same Postfix + OpenDKIM fed by smtp-source with 1, 4 and 8 sessions, fastest kept) and the seed
// design (OpenDKIM on inet:8891, milter_default_action=accept, a serial worker spawning sendmail per message).
// Scaling: the relay started on a queue pre-filled with BENCH_SCALING_SIZES jobs (plus the measured ones, due first);
// the cost per message of handing off the first BENCH_SCALING_MESSAGES through the same Postfix + OpenDKIM, in wall
// ms and relay CPU ms, at each size (draining 100,000 at ~100 msg/s would take a quarter of an hour).
// Needs root, postfix, opendkim, smtp-sink, smtp-source, ip and ss; prints `skipped: <reason>` otherwise. The machine's
// own Postfix is never touched; everything started here is stopped, also on Ctrl-C.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { RELAY_NODE_FLAGS } from "../cloud-init/systemd";
import { composeMessage } from "../relay/mime";
import { buildConfig } from "../testkit/node-config";
import { INSTANCE_TOOLS, netnsUnavailable, PostfixInstance } from "../testkit/postfix-instance";
import { missing, tool } from "../testkit/real-tools";
import { Sink, verifySample, type Captured } from "./chain-mx";
import { machineCpu, procCpu, scaling, scalingVerdict } from "./chain-scaling";
import { sampleJobFile } from "./queue-prefill.mjs";
import { UNTHROTTLED_RELAY_ENV } from "./unthrottled-env.mjs";

const N = Number(process.env.BENCH_MESSAGES ?? 3000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 20);
const LIMIT_N = Number(process.env.BENCH_LIMIT_MESSAGES ?? N);
const SEED_N = Number(process.env.BENCH_SEED_MESSAGES ?? N);
const SAMPLE = Number(process.env.BENCH_DKIM_SAMPLE ?? 50);
// Messages between the warm-up and the measured chain, while V8 still compiles the hot path (TurboFan, on its own
// threads): 0 measures right after the 100-message warm-up, as before 2026-12-06.
const TIERUP_N = Number(process.env.BENCH_TIERUP_MESSAGES ?? 3000);
const SESSIONS = [1, 4, 8];
// Jobs pending behind the measured ones when the relay starts; BENCH_SCALING_SIZES=0 skips the phase.
const SCALING_SIZES = (process.env.BENCH_SCALING_SIZES ?? "1000,10000,100000")
  .split(",")
  .map(Number)
  .filter((n) => n > 0);
const SCALING_MESSAGES = Number(process.env.BENCH_SCALING_MESSAGES ?? 2000);
const SCALING_WARMUP = 100; // handed off before the measured window opens (JIT, SMTP connections)
const DRAIN_TIMEOUT_MS = Number(process.env.BENCH_DRAIN_TIMEOUT_MS ?? 900_000);
const TOKEN = "chain-bench-token-0123456789abcdefghijklmnop";
const FROM = "noreply@example.com";
const TO = "someone@example.org";
const SINK = "127.0.0.1:2626";
const repo = path.resolve(__dirname, "..");
// BENCH_RELAY_BUNDLE=FILE runs another build of the relay (e.g. an older commit's, for an A/B in one sitting).
const bundle = process.env.BENCH_RELAY_BUNDLE
  ? path.resolve(process.env.BENCH_RELAY_BUNDLE)
  : path.join(repo, "relay/dist/relay.js");
const relayNode = process.env.BENCH_RELAY_NODE ?? process.execPath;
// The unit's node flags first (V8's heap limit), then BENCH_RELAY_NODE_ARGS (a later flag wins).
const relayNodeArgs = [...RELAY_NODE_FLAGS, ...(process.env.BENCH_RELAY_NODE_ARGS ?? "").split(" ").filter(Boolean)];
const progress = (s: string): void =>
  void process.stderr.write(
    `[bench:chain] ${s} (load ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")})\n`,
  );
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const skip = missing("bench:chain", {
  tools: [...INSTANCE_TOOLS, "smtp-source", "ss"],
  root: true,
  check: () => netnsUnavailable(`mrcbprobe${process.pid}`),
});
if (skip) {
  console.log(`skipped: ${skip}`);
  process.exit(0);
}
const IP = tool("ip") as string;
mkdirSync(path.join(repo, ".cache"), { recursive: true }); // queue roots: the disk a real QUEUE_ROOT is on

// ---------------------------------------------------------------- everything this script starts, and its clean-up

const cfg = buildConfig({ ipv6: false });
const instances: PostfixInstance[] = [];
const children = new Set<ChildProcess>();
const scratch: string[] = [];
let cleanedUp = false;

/** Synchronous and idempotent: also runs from the exit and signal handlers. */
function cleanUp(): void {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const c of children) c.kill("SIGKILL");
  for (const i of instances) i.stop();
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
}
process.on("exit", cleanUp);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    progress(`${sig}: cleaning up`);
    cleanUp();
    process.exit(130);
  });
}

function track(c: ChildProcess): ChildProcess {
  children.add(c);
  c.on("exit", () => children.delete(c));
  return c;
}

// ---------------------------------------------------------------- the relay and its client, inside the namespace

interface Relay {
  readonly child: ChildProcess;
  readonly url: string;
  readonly queueRoot: string;
  peakRssMb(): number;
  stop(): Promise<void>;
}

async function startRelay(inst: PostfixInstance, env: Record<string, string>, root?: string): Promise<Relay> {
  const queueRoot = root ?? mkdtempSync(path.join(repo, ".cache", "chain-queue-"));
  scratch.push(queueRoot);
  const child = track(
    spawn(IP, ["netns", "exec", inst.ns, relayNode, ...relayNodeArgs, bundle], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        ...(process.env.LD_LIBRARY_PATH ? { LD_LIBRARY_PATH: process.env.LD_LIBRARY_PATH } : {}),
        RELAY_LISTEN: "127.0.0.1:2525",
        SMTP_RELAY_TOKEN: `bench=${TOKEN}`,
        RELAY_ALLOWED_FROM: FROM,
        RELAY_MESSAGE_ID_DOMAIN: "mail.example.com",
        QUEUE_ROOT: queueRoot,
        ...UNTHROTTLED_RELAY_ENV,
        LOG_LEVEL: "warn",
        MAIL_CONFIG: inst.etc, // sendmail/postdrop of this instance, never the host's /etc/postfix
        // The delivery tracker follows this instance's log, as it follows Postfix's maillog_file on a host: its
        // parsing runs on the same cores as everything else and belongs in the figures.
        RELAY_POSTFIX_LOG: path.join(inst.base, "maillog"),
        ...env,
      },
      stdio: ["ignore", "pipe", "inherit"],
    }),
  );
  child.stdout?.resume();
  // `ip netns exec` execs the command: the pid is node's.
  const url = "http://127.0.0.1:2525";
  for (let i = 0; ; i++) {
    const r = inst.inNs("curl", ["-fsS", "--max-time", "1", `${url}/health`]);
    if (r.status === 0) break;
    if (child.exitCode !== null || i > 300) throw new Error(`the relay did not start (exit ${child.exitCode})`);
    await sleep(100);
  }
  return {
    child,
    url,
    queueRoot,
    peakRssMb: () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))?.[1]) / 1024,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

interface ClientResult {
  readonly firstAt: number;
  readonly lastAt: number;
  readonly accepted: [string, number][];
  readonly refused: number;
  /** 202s with "state":"handed_off" (the fast path); undefined from a relay without one. */
  readonly handedOff?: number;
  /** The client process's CPU time (ms); undefined from an older client. */
  readonly cpuMs?: number;
}

async function post(inst: PostfixInstance, relay: Relay, n: number, phase: string): Promise<ClientResult> {
  const spec = JSON.stringify({ url: relay.url, n, concurrency: CONCURRENCY, phase });
  // The token goes in the environment, never in argv (where every user's ps sees it).
  const child = track(
    spawn(IP, ["netns", "exec", inst.ns, process.execPath, path.join(__dirname, "chain-client.mjs"), spec], {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, CHAIN_BENCH_TOKEN: TOKEN },
    }),
  );
  let out = "";
  child.stdout?.on("data", (c: Buffer) => (out += c.toString("utf8")));
  const code = await new Promise<number | null>((r) => child.on("close", (c) => r(c)));
  if (code !== 0) throw new Error(`chain client exited ${code}`);
  return JSON.parse(out.trim().split("\n").pop() as string) as ClientResult;
}

interface ChainFigures {
  readonly acceptedPerSec: number;
  readonly endToEndPerSec: number;
  readonly p50: number;
  readonly p99: number;
  readonly lost: number;
  readonly duplicated: number;
  readonly unsignedHeaders: number;
  readonly captured: Captured[];
  readonly accepted: number;
  readonly seconds: number;
  /** The client's CPU per message (ms). */
  readonly clientCpuMs: number;
  /** The whole machine's busy CPU per delivered message (ms), first request to last capture, and its busy share. */
  readonly machineCpuMs: number;
  readonly machineBusy: number;
}

/** Posts n messages of a phase and waits until they are all captured (or the timeout). */
async function chain(inst: PostfixInstance, sink: Sink, relay: Relay, n: number, phase: string): Promise<ChainFigures> {
  const m0 = machineCpu();
  const c = await post(inst, relay, n, phase);
  progress(
    `  ${phase}: ${c.accepted.length}/${n} accepted in ${((c.lastAt - c.firstAt) / 1000).toFixed(1)} s ` +
      `(${c.handedOff ?? 0} handed off during the request); waiting for them at the recipient MX`,
  );
  const got = await sink.wait(phase, c.accepted.length);
  const m1 = machineCpu();
  await sleep(2000); // a duplicate would arrive now
  const all = sink.of(phase);
  const acceptedAt = new Map(c.accepted);
  const firstCapture = new Map<string, Captured>();
  for (const m of all)
    if (!firstCapture.has(m.id) || (firstCapture.get(m.id) as Captured).at > m.at) firstCapture.set(m.id, m);
  const lat = [...firstCapture.values()]
    .filter((m) => acceptedAt.has(m.id))
    .map((m) => m.at - (acceptedAt.get(m.id) as number))
    .sort((a, b) => a - b);
  const q = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? NaN;
  const last = Math.max(...got.map((m) => m.at));
  const signed = [...firstCapture.values()].filter((m) => m.signed).length;
  return {
    acceptedPerSec: c.accepted.length / ((c.lastAt - c.firstAt) / 1000),
    endToEndPerSec: signed / ((last - c.firstAt) / 1000),
    p50: q(0.5),
    p99: q(0.99),
    lost: c.accepted.filter(([id]) => !firstCapture.has(id)).length + c.refused,
    duplicated: all.length - firstCapture.size,
    unsignedHeaders: all.filter((m) => !m.signed).length,
    captured: [...firstCapture.values()],
    accepted: c.accepted.length,
    seconds: (last - c.firstAt) / 1000,
    clientCpuMs: (c.cpuMs ?? NaN) / n,
    machineCpuMs: (m1.busy - m0.busy) / n,
    machineBusy: (m1.busy - m0.busy) / (m1.all - m0.all),
  };
}

/**
 * What GET /messages/:id says of a captured message once the tracker has read Postfix's log: "delivered" shows that
 * the log parsing ran during the chain, as on a host. Waits up to 10 s.
 */
async function trackedState(inst: PostfixInstance, id: string | undefined): Promise<string> {
  if (id === undefined) return "no message captured";
  let state = "no answer";
  for (let i = 0; i < 20; i++) {
    // The token goes on stdin (-H @-), never in argv.
    const r = inst.inNs(
      "curl",
      ["-sS", "--max-time", "2", "-H", "@-", `http://127.0.0.1:2525/messages/${id}`],
      `authorization: Bearer ${TOKEN}\n`,
    );
    try {
      state = String((JSON.parse(r.stdout) as { message?: { state?: string } }).message?.state);
    } catch {
      state = `unreadable answer: ${r.stdout.slice(0, 80)}`;
    }
    if (state === "delivered") break;
    await sleep(500);
  }
  return state;
}

// ---------------------------------------------------------------- the limit: smtp-source into the same Postfix

interface LimitRun {
  readonly sessions: number;
  readonly perSec: number;
  readonly signed: number;
  /** The whole machine's busy CPU per message (ms, smtp-source included) and its busy share. */
  readonly machineCpuMs: number;
  readonly machineBusy: number;
}

async function limit(inst: PostfixInstance, sink: Sink): Promise<LimitRun[]> {
  const out: LimitRun[] = [];
  for (const s of SESSIONS) {
    const phase = `limit-s${s}`;
    // The relay's own composition of the same ~4 KB text+HTML message; smtp-source adds CRLF to each line itself.
    const raw = await composeMessage(
      {
        from: { email: FROM, name: "Chain bench" },
        to: [{ email: TO }],
        cc: [],
        bcc: [],
        replyTo: [],
        subject: "Your receipt",
        text: "Thanks for your order. ".repeat(60),
        html: `<p>${"Thanks for your <b>order</b>. ".repeat(60)}</p>`,
        attachments: [],
        headers: { "X-Bench-Phase": phase },
        tags: [],
      },
      { messageId: `<${randomUUID()}@mail.example.com>`, date: new Date() },
    );
    const file = path.join(inst.base, `${phase}.eml`);
    writeFileSync(file, raw.toString("utf8").replace(/\r\n/g, "\n"));
    progress(`limit: smtp-source, ${s} session(s), ${LIMIT_N} messages`);
    const t0 = Date.now();
    const m0 = machineCpu();
    const child = track(
      spawn(
        IP,
        [
          "netns",
          "exec",
          inst.ns,
          tool("smtp-source") as string,
          "-s",
          String(s),
          "-m",
          String(LIMIT_N),
          "-F",
          file,
          "-f",
          FROM,
          "-t",
          TO,
          "127.0.0.1:25",
        ],
        { stdio: "ignore" },
      ),
    );
    await new Promise((r) => child.on("close", r));
    const got = await sink.wait(phase, LIMIT_N);
    const m1 = machineCpu();
    const last = Math.max(...got.map((m) => m.at));
    out.push({
      machineCpuMs: (m1.busy - m0.busy) / LIMIT_N,
      machineBusy: (m1.busy - m0.busy) / (m1.all - m0.all),
      sessions: s,
      perSec: got.filter((m) => m.signed).length / ((last - t0) / 1000),
      signed: got.filter((m) => m.signed).length,
    });
  }
  return out;
}

// ---------------------------------------------------------------- the run

/** A phase's relay CPU per message (ms): user and sys of the whole process, and its main thread's user + sys. */
interface PhaseCpu {
  readonly user: number;
  readonly sys: number;
  readonly main: number;
}

const newSink = (dir: string): Sink => new Sink(dir, cfg.host.dkimSelector, { timeoutMs: DRAIN_TIMEOUT_MS, progress });

async function main(): Promise<void> {
  const load0 = os.loadavg();
  const relayVersion = spawnVersion();

  progress(`prod design: Postfix + OpenDKIM (unix socket, milter_default_action=tempfail) in netns mrcb${process.pid}`);
  // One instance, one rendered main.cf for the limit and the chain alike: both OpenDKIM milters (RSA, Ed25519) and
  // everything else the host runs; only the sink next hop (no MTA-STS lookup for it) differs from the host.
  const prod = new PostfixInstance(`mrcb${process.pid}`, "chain-bench-");
  instances.push(prod);
  await prod.start({ host: cfg.host, dkimPrivateKeyPem: cfg.secrets.dkimPrivateKeyPem, sink: SINK, sinkBacklog: 256 });
  const prodSink = newSink(prod.sinkDir);

  const limits = await limit(prod, prodSink);
  const best = limits.reduce((a, b) => (b.perSec > a.perSec ? b : a));

  // BENCH_HANDOFF_CONCURRENCY=N passes RELAY_HANDOFF_CONCURRENCY to the relay (its pool size; default: the relay's).
  const handoffConcurrency = process.env.BENCH_HANDOFF_CONCURRENCY;
  progress(
    `relay (${relayVersion}, SMTP hand-off, RELAY_HANDOFF_CONCURRENCY ${handoffConcurrency ?? "default"}) : ` +
      `warm-up 100${TIERUP_N > 0 ? `, tier-up ${TIERUP_N}` : ""}, then ${N} at ${CONCURRENCY} concurrent`,
  );
  const relay = await startRelay(prod, handoffConcurrency ? { RELAY_HANDOFF_CONCURRENCY: handoffConcurrency } : {});
  const sampler = sampleJobFile(relay.queueRoot); // the relay's job file for this message: the scaling phase's template
  await chain(prod, prodSink, relay, 100, "chain-warmup");
  const template = sampler.stop();
  const pid = relay.child.pid as number;
  // The relay's CPU over a phase, per message: the whole process, and its main thread (the event loop: HTTP,
  // compose, SMTP client, records); the rest is V8's compiler and GC helper threads and libuv's pool (fsyncs).
  const cpuOver = async <T>(n: number, phase: () => Promise<T>): Promise<{ out: T; cpu: PhaseCpu }> => {
    const p0 = procCpu(pid);
    const t0 = procCpu(pid, pid);
    const out = await phase();
    const p1 = procCpu(pid);
    const t1 = procCpu(pid, pid);
    return {
      out,
      cpu: {
        user: (p1.user - p0.user) / n,
        sys: (p1.sys - p0.sys) / n,
        main: (t1.user + t1.sys - t0.user - t0.sys) / n,
      },
    };
  };
  const tierUp =
    TIERUP_N > 0
      ? (await cpuOver(TIERUP_N, () => chain(prod, prodSink, relay, TIERUP_N, "chain-tierup"))).cpu
      : undefined;
  // Everything the relay process did for the N messages: accept, hand-off, record (journal).
  const { out: run, cpu: relayCpuMs } = await cpuOver(N, () => chain(prod, prodSink, relay, N, "chain"));
  const peakRss = relay.peakRssMb();
  const tracked = await trackedState(prod, run.captured[run.captured.length - 1]?.id);
  await relay.stop();
  const dkim = await verifySample(run.captured, SAMPLE, {
    privateKeyPem: cfg.secrets.dkimPrivateKeyPem,
    selector: cfg.host.dkimSelector,
  });
  if (SCALING_SIZES.length > 0 && !template)
    throw new Error("no job file seen during the warm-up: no scaling template");
  const scale = template
    ? await scaling({
        inst: prod,
        sink: prodSink,
        template,
        sizes: SCALING_SIZES,
        warmup: SCALING_WARMUP,
        messages: SCALING_MESSAGES,
        drainTimeoutMs: DRAIN_TIMEOUT_MS,
        scratchDir: path.join(repo, ".cache"),
        startRelay: (inst, root) => startRelay(inst, {}, root),
        progress,
      })
    : [];
  prod.stop();

  progress(
    `seed design: OpenDKIM on inet:8891, milter_default_action=accept, serial sendmail hand-off; ${SEED_N} messages`,
  );
  const seedInst = new PostfixInstance(`mrcs${process.pid}`, "chain-seed-");
  instances.push(seedInst);
  const milter = "inet:127.0.0.1:8891";
  await seedInst.start({
    host: cfg.host,
    dkimPrivateKeyPem: cfg.secrets.dkimPrivateKeyPem,
    sink: SINK,
    sinkBacklog: 256,
    opendkimInetPort: 8891,
    postconf: [`smtpd_milters=${milter}`, `non_smtpd_milters=${milter}`, "milter_default_action=accept"],
  });
  const seedSink = newSink(seedInst.sinkDir);
  const seedRelay = await startRelay(seedInst, {
    RELAY_HANDOFF: "sendmail",
    SENDMAIL_PATH: tool("sendmail") as string,
    RELAY_HANDOFF_CONCURRENCY: "1",
  });
  const seed = await chain(seedInst, seedSink, seedRelay, SEED_N, "seed");
  await seedRelay.stop();
  seedInst.stop();

  const unsigned = run.unsignedHeaders + (dkim.checked - dkim.passed);
  const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : "n/a");
  const f2 = (x: number): string => x.toFixed(2);
  const line = (k: string, v: string): void => console.log(`${k.padEnd(52)} ${v}`);
  console.log("");
  console.log(
    `chain benchmark: ${N} POST /send (~4 KB text+HTML) at ${CONCURRENCY} concurrent -> ` +
      `bundled relay (node ${relayVersion} ${relayNodeArgs.join(" ")}) -> ` +
      "Postfix + OpenDKIM (rendered prod config) -> recipient MX (smtp-sink to disk), in a private netns",
  );
  line(
    "machine",
    `${os.cpus().length} CPUs; 1/5/15-min load ${load0.map((l) => l.toFixed(2)).join(" ")} at start, ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")} at the end`,
  );
  line("accepted requests/s", `${f1(run.acceptedPerSec)} (${run.accepted}/${N} accepted)`);
  line(
    "delivered signed msgs/s, first request to last capture",
    `${f1(run.endToEndPerSec)} (${run.captured.length} in ${f1(run.seconds)} s)`,
  );
  line("202-to-capture p50 / p99 (ms)", `${f1(run.p50)} / ${f1(run.p99)}`);
  line("relay peak RSS (VmHWM)", `${f1(peakRss)} MB`);
  const relayMs = relayCpuMs.user + relayCpuMs.sys;
  const cpuFigures = (c: PhaseCpu): string =>
    `${f2(c.user + c.sys)} ms (user ${f2(c.user)} / sys ${f2(c.sys)}; main thread ${f2(c.main)}, ` +
    `other threads ${f2(c.user + c.sys - c.main)})`;
  if (tierUp)
    line(`relay CPU per message while V8 tiers up (${TIERUP_N} msgs)`, `${cpuFigures(tierUp)}; not in the verdicts`);
  line(
    "relay CPU per message (accept + hand-off + record)",
    `${cpuFigures(relayCpuMs)}; /proc/PID/stat, 10 ms ticks, the ${N} measured messages` +
      (tierUp ? "" : " right after a 100-message warm-up"),
  );
  line("delivery tracker: last captured message's state", tracked);
  line(
    "DKIM verified (mailauth) on a sample",
    `${dkim.passed}/${dkim.checked} pass; ${run.unsignedHeaders} of all captured lack the example.com signature`,
  );
  for (const l of limits)
    line(
      `limit: smtp-source, ${l.sessions} session(s)`,
      `${f1(l.perSec)} signed msgs/s (${l.signed}/${LIMIT_N} signed); machine CPU ${f2(l.machineCpuMs)} ms/msg, ` +
        `${(100 * l.machineBusy).toFixed(0)}% busy`,
    );
  // Where the chain's CPU goes, against the limit's: on 2 busy cores the ratio is about limit CPU / chain CPU.
  const mta = run.machineCpuMs - relayCpuMs.user - relayCpuMs.sys - run.clientCpuMs;
  line(
    "machine CPU per message: chain = relay + client + rest",
    `${f2(run.machineCpuMs)} ms = ${f2(relayMs)} + ${f2(run.clientCpuMs)} + ${f2(mta)} ` +
      `(${(100 * run.machineBusy).toFixed(0)}% busy); best limit ${f2(best.machineCpuMs)} ms ` +
      `(${(100 * best.machineBusy).toFixed(0)}% busy)`,
  );
  // The issue's title says "at most a quarter of the host's CPU per message": the 2.4 ms target was set where the
  // limit cost ~9.5 ms of machine CPU per message. On a slower or faster machine this share is the comparable
  // figure; the absolute verdict stays in the targets line.
  const share = relayMs / best.machineCpuMs;
  line(
    "relay CPU / the best limit's machine CPU per message",
    `${share.toFixed(2)} (${f2(relayMs)} / ${f2(best.machineCpuMs)} ms): ` +
      `<= 0.25 ${share <= 0.25 ? "met" : "MISSED"} (same run; the 2.4 ms target read on this machine)`,
  );
  // Two figures from within one phase each, for reading a verdict on a machine whose speed moves between phases
  // (issue 23: on one VM the relay's CPU per message ran 1.26-2.31 ms in one sitting, in step with the limit's).
  // The first compares the relay with the chain's own CPU in the same seconds; the second the chain's MTA work with
  // the whole limit, measured later (that VM: 0.66-0.91 in the runs that met the ratio, 1.00-1.08 in the two that
  // missed it, where the relay's share of its own phase still read 0.17).
  line(
    "relay CPU / the chain's own machine CPU per message",
    `${(relayMs / run.machineCpuMs).toFixed(2)} (${f2(relayMs)} / ${f2(run.machineCpuMs)} ms, the same phase)`,
  );
  line(
    "rest (Postfix, OpenDKIM, MX) / the best limit's CPU",
    `${(mta / best.machineCpuMs).toFixed(2)} (${f2(mta)} / ${f2(best.machineCpuMs)} ms; the same MTA work, two phases)`,
  );
  line(
    "seed design: inet milter, accept, serial sendmail",
    `${f1(seed.endToEndPerSec)} signed msgs/s (${seed.captured.length}/${SEED_N}, ${seed.unsignedHeaders} unsigned, ` +
      `p50 / p99 202-to-capture ${f1(seed.p50)} / ${f1(seed.p99)} ms)`,
  );
  for (const p of scale)
    line(
      `scaling: ${p.size} pending, hand-off of ${SCALING_MESSAGES}`,
      `wall ${f2(p.wallMs)} ms/msg (${f1(1000 / p.wallMs)} msg/s), ` +
        `relay CPU ${f2(p.userMs + p.sysMs)} ms/msg (user ${f2(p.userMs)} / sys ${f2(p.sysMs)}); ` +
        `at MX ${p.captured}/${p.handedOff}, ${p.unsigned} unsigned, ${p.duplicated} duplicated; ` +
        `1-min load ${f2(p.load)}`,
    );
  // A size listed more than once (e.g. 100000,1000,100000,1000, to cancel the machine's drift) counts as its mean.
  const v = scalingVerdict(scale);
  if (v)
    line(
      `scaling: cost per message, ${v.big} vs ${v.small} pending`,
      `wall ${f2(v.wall)}x, relay CPU ${f2(v.cpu)}x: flat within 20% ${v.met ? "met" : "MISSED"}`,
    );
  console.log(
    `targets: relay/limit >= 0.8 ${run.endToEndPerSec / best.perSec >= 0.8 ? "met" : "MISSED"}; ` +
      `relay/seed >= 5 ${run.endToEndPerSec / seed.endToEndPerSec >= 5 ? "met" : "MISSED"}; ` +
      `lost/duplicated/unsigned all 0 ${run.lost + run.duplicated + unsigned === 0 ? "met" : "MISSED"}; ` +
      `relay CPU/msg <= 2.4 ms ${relayMs <= 2.4 ? "met" : "MISSED"} ` +
      `(${f2(relayMs)}); relay peak RSS <= 160 MB ${peakRss <= 160 ? "met" : "MISSED"} ` +
      `(${f1(peakRss)})`,
  );
  console.log(`chain: ${f1(run.endToEndPerSec)} signed msgs/s end to end`);
  console.log(`ratio relay/limit: ${(run.endToEndPerSec / best.perSec).toFixed(2)}x`);
  console.log(`ratio relay/seed: ${(run.endToEndPerSec / seed.endToEndPerSec).toFixed(2)}x`);
  console.log(`lost ${run.lost} duplicated ${run.duplicated} unsigned ${unsigned}`);
}

function spawnVersion(): string {
  return spawnSync(relayNode, ["--version"], { encoding: "utf8", env: process.env }).stdout.trim();
}

main()
  .catch((err: unknown) => {
    console.error(`bench:chain failed: ${(err as Error).stack ?? String(err)}`);
    for (const i of instances) {
      const log = i.maillog();
      if (log) console.error(`last maillog lines (${i.ns}):\n${log.split("\n").slice(-15).join("\n")}`);
    }
    process.exitCode = 1;
  })
  .finally(() => {
    progress("cleaning up");
    cleanUp();
  });
