// The kill -9 crash test (issue 23): the bundled relay is killed at random moments under load, restarted on the same
// QUEUE_ROOT, and every request that did not get a 202 is retried as a careful client would (same Idempotency-Key,
// same body). A fake Postfix (an smtp-server on 127.0.0.1) answers 250 with its own queue id, sometimes slowly,
// sometimes 451. At the end the relay drains and every message is counted at the fake: lost, duplicated, and whether
// each duplicate lies in the documented window (docs/operations.md: between Postfix's 250 and the relay's record).
// Only the HTTP API, the environment and the SMTP hand-off are used, never the queue's files, so the same test runs
// against any storage design. Used by test/relay/kill9.crash.test.ts and `npm run crash` (bench/crash.ts).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { SMTPServer } from "smtp-server";
import { RELAY_NODE_FLAGS } from "../cloud-init/systemd";
import { UNTHROTTLED_RELAY_ENV } from "./unthrottled-env.mjs";

export const CRASH_BUNDLE = path.resolve(__dirname, "../relay/dist/relay.js");
const TOKEN = "crash-test-token-0123456789abcdefghijklmnop";
const FROM = "noreply@example.com";

export interface CrashOptions {
  readonly rounds: number;
  /** Scratch directory: the queue (kept across every round) lives in it. */
  readonly dir: string;
  readonly bundle?: string;
  /** Concurrent clients, each sending one request at a time. */
  readonly clients?: number;
  /** The kill lands this long after the relay listens: uniform in [min, max] ms. */
  readonly killAfterMs?: readonly [number, number];
  /** Share of rounds killed while the relay is still starting (recovering its queue), before it listens. */
  readonly killDuringStartShare?: number;
  /** A duplicate is in the window when its first 250 came at most this long before a kill (see classify). */
  readonly windowMs?: number;
  /** The fake Postfix: share of DATA answered 451, share answered 250 only after slowMs (uniform 0..slowMs). */
  readonly refuseShare?: number;
  readonly slowShare?: number;
  readonly slowMs?: number;
  readonly handoffConcurrency?: number;
  readonly seed?: number;
  /** The drain gives up when the relay has made no progress for this long (default 20 s). */
  readonly drainStallMs?: number;
  /** Extra relay environment (e.g. to try another setting); the crash test's own variables win. */
  readonly relayEnv?: Record<string, string>;
  readonly progress?: (line: string) => void;
}

/** One message as the fake Postfix took it: a 250 was sent for it (or for a relay that had died by then). */
export interface SinkCopy {
  readonly marker: string;
  readonly messageId: string;
  readonly queueId: string;
  /** When the final "." of DATA arrived (performance.now()). */
  readonly dotAt: number;
  /** When the fake answered 250. */
  readonly acceptedAt: number;
}

export interface Kill {
  readonly round: number;
  /** When SIGKILL was sent, and when the relay's exit was seen (performance.now()). */
  readonly killAt: number;
  readonly deadAt: number;
}

/** A message the relay answered 202 for, and what GET /messages/:id said of it after the drain. */
export interface AcceptedMessage {
  readonly marker: string;
  readonly id: string;
  readonly round: number;
  /** When the 202 came (performance.now()). */
  readonly at: number;
  readonly postfixQueueId?: string;
  readonly state?: string;
}

export interface Duplicate {
  readonly marker: string;
  readonly id: string;
  readonly copies: readonly SinkCopy[];
  /** The copy the relay recorded (its postfixQueueId), else the last one. */
  readonly kept: SinkCopy;
  /** For each other copy: the kill whose window holds it, or why it is beyond the window. */
  readonly verdicts: readonly ({ inWindow: true; kill: Kill; gapMs: number } | { inWindow: false; why: string })[];
  readonly inWindow: boolean;
}

export interface Classified {
  readonly lost: readonly AcceptedMessage[];
  readonly duplicates: readonly Duplicate[];
  readonly inWindow: readonly Duplicate[];
  readonly beyond: readonly Duplicate[];
  /** Markers the fake got that the relay never answered 202 for. */
  readonly unaccepted: readonly string[];
}

/**
 * Counts the messages at the fake Postfix against the ones the relay accepted. A duplicate is in the documented
 * window only when every copy but the one the relay recorded was
 *  - taken by the fake (final ".") before a killed relay died, and answered 250 at most windowMs before that kill
 *    (so the relay may not have written its record yet), and
 *  - not after the recorded copy (a copy sent after the relay recorded the message was sent despite a record).
 * Anything else is beyond the window.
 */
export function classify(
  accepted: readonly AcceptedMessage[],
  copies: readonly SinkCopy[],
  kills: readonly Kill[],
  windowMs: number,
): Classified {
  const byMarker = new Map<string, SinkCopy[]>();
  for (const c of copies) byMarker.set(c.marker, [...(byMarker.get(c.marker) ?? []), c]);
  const lost: AcceptedMessage[] = [];
  const duplicates: Duplicate[] = [];
  for (const a of accepted) {
    const got = (byMarker.get(a.marker) ?? []).sort((x, y) => x.acceptedAt - y.acceptedAt);
    if (got.length === 0) lost.push(a);
    if (got.length < 2) continue;
    const kept = got.find((c) => c.queueId === a.postfixQueueId) ?? (got[got.length - 1] as SinkCopy);
    const verdicts = got
      .filter((c) => c !== kept)
      .map((c): Duplicate["verdicts"][number] => {
        if (c.acceptedAt > kept.acceptedAt)
          return { inWindow: false, why: `sent again after the relay recorded queue id ${kept.queueId}` };
        const kill = kills.find((k) => c.dotAt <= k.deadAt && c.acceptedAt >= k.killAt - windowMs);
        if (kill) return { inWindow: true, kill, gapMs: Math.max(0, kill.killAt - c.acceptedAt) };
        const before = kills.filter((k) => k.killAt >= c.acceptedAt)[0];
        return {
          inWindow: false,
          why: before
            ? `its 250 came ${Math.round(before.killAt - c.acceptedAt)} ms before the next kill (round ${before.round})`
            : "no kill followed its 250",
        };
      });
    duplicates.push({
      marker: a.marker,
      id: a.id,
      copies: got,
      kept,
      verdicts,
      inWindow: verdicts.every((v) => v.inWindow),
    });
  }
  const acceptedMarkers = new Set(accepted.map((a) => a.marker));
  return {
    lost,
    duplicates,
    inWindow: duplicates.filter((d) => d.inWindow),
    beyond: duplicates.filter((d) => !d.inWindow),
    unaccepted: [...byMarker.keys()].filter((m) => !acceptedMarkers.has(m)),
  };
}

/** A small seeded PRNG (mulberry32), so a run's choices can be repeated with CRASH_SEED. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The fake Postfix: records every message it answers 250 for, by the X-Crash-Marker the test put in it. */
export class FakePostfix {
  readonly copies: SinkCopy[] = [];
  refused = 0;
  slowed = 0;
  private next = 0;
  private server?: SMTPServer;
  constructor(
    private readonly random: () => number,
    private readonly behaviour: { refuseShare: number; slowShare: number; slowMs: number },
  ) {}

  async listen(): Promise<number> {
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS", "AUTH"],
      logger: false,
      onData: (stream, _session, callback) => {
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        // 'end' only when the final "." arrived: a relay killed mid-DATA leaves a destroyed stream, nothing taken.
        stream.on("end", () => this.answer(Buffer.concat(chunks).toString("latin1"), callback));
      },
    });
    server.on("error", () => undefined); // a killed relay resets its connections: expected here
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return (server.server.address() as AddressInfo).port;
  }

  private answer(text: string, callback: (err?: Error | null, message?: string) => void): void {
    const dotAt = performance.now();
    const r = this.random();
    const { refuseShare, slowShare, slowMs } = this.behaviour;
    if (r < refuseShare) {
      this.refused++;
      const err = Object.assign(new Error("4.3.0 fake Postfix: try again later"), { responseCode: 451 });
      return callback(err);
    }
    const take = () => {
      const queueId = `C${(this.next++).toString(36).toUpperCase().padStart(7, "0")}`;
      const marker = /^X-Crash-Marker: *(\S+)/im.exec(text)?.[1];
      const messageId = /^Message-ID: *<([^>]+)>/im.exec(text)?.[1] ?? "";
      if (marker) this.copies.push({ marker, messageId, queueId, dotAt, acceptedAt: performance.now() });
      callback(null, `2.0.0 Ok: queued as ${queueId}`);
    };
    if (r < refuseShare + slowShare) {
      this.slowed++;
      setTimeout(take, this.random() * slowMs);
    } else take();
  }

  close(): Promise<void> {
    const server = this.server;
    return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }
}

interface Relay {
  readonly child: ChildProcess;
  /** Resolves with the HTTP address once the relay listens, undefined if it died first. */
  readonly listening: Promise<string | undefined>;
  readonly exited: Promise<number>;
  output(): string;
}

function startRelay(bundle: string, env: Record<string, string>): Relay {
  const child = spawn(process.execPath, [...RELAY_NODE_FLAGS, bundle], { env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const keep = (c: Buffer) => (out = (out + c.toString()).slice(-20_000)); // the log's tail, for an error message
  child.stderr?.on("data", keep);
  child.stdout?.on("data", keep);
  const exited = new Promise<number>((resolve) => child.once("exit", () => resolve(performance.now())));
  const listening = new Promise<string | undefined>((resolve) => {
    let found = false;
    const onData = () => {
      const m = /"address":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(out);
      if (!m || found) return;
      found = true;
      child.stdout?.off("data", onData);
      resolve(m[1]);
    };
    child.stdout?.on("data", onData);
    void exited.then(() => resolve(undefined));
    // A relay that never says where it listens is stopped; the caller reports its log.
    setTimeout(() => found || child.kill("SIGKILL"), 20_000).unref();
  });
  return { child, listening, exited, output: () => out.slice(-4000) };
}

interface Request {
  readonly marker: string;
  readonly key: string;
  readonly body: string;
  id?: string;
  round?: number;
  at?: number;
}

type Outcome = { status: number; id?: string; replayed: boolean; text: string } | { error: string };

async function post(url: string, req: Request): Promise<Outcome> {
  try {
    const res = await fetch(`${url}/send`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", "idempotency-key": req.key },
      body: req.body,
      signal: AbortSignal.timeout(15_000),
    });
    const text = await res.text();
    let id: string | undefined;
    try {
      id = (JSON.parse(text) as { id?: string }).id;
    } catch {
      id = undefined;
    }
    return { status: res.status, id, replayed: res.headers.get("idempotent-replayed") === "true", text };
  } catch (e) {
    return { error: String((e as Error).cause ?? e) };
  }
}

export interface CrashReport {
  readonly rounds: number;
  readonly messages: number;
  readonly accepted: number;
  readonly classified: Classified;
  readonly kills: readonly Kill[];
  /** Requests that got no 202 at first and were sent again. */
  readonly retried: number;
  /** Retries of 202'd requests: how many were answered, and which returned another id than the first 202. */
  readonly replaysChecked: number;
  readonly replayMismatches: readonly string[];
  /** Answers a careful client cannot retry (4xx other than the ones a crash explains). */
  readonly unexpected: readonly string[];
  /** Requests still without a 202 when the drain gave up. */
  readonly never202: number;
  readonly refused: number;
  readonly slowed: number;
  readonly windowMs: number;
  readonly handoffConcurrency: number;
  /** The most in-window duplicates one kill caused (docs/operations.md: at most RELAY_HANDOFF_CONCURRENCY). */
  readonly maxDuplicatesPerKill: number;
  /** The largest time from a duplicate's first 250 to the kill that cut its record. */
  readonly maxGapMs: number;
  readonly seed: number;
  readonly summary: string;
  readonly details: readonly string[];
}

/** Runs the crash test; never throws for what it finds (the caller asserts on the report). */
export async function runCrashTest(o: CrashOptions): Promise<CrashReport> {
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
  const random = seededRandom(seed);
  const clients = o.clients ?? 8;
  const [killMin, killMax] = o.killAfterMs ?? [30, 1000];
  const windowMs = o.windowMs ?? 500;
  const concurrency = o.handoffConcurrency ?? 4;
  const progress = o.progress ?? (() => undefined);
  const sink = new FakePostfix(random, {
    refuseShare: o.refuseShare ?? 0.08,
    slowShare: o.slowShare ?? 0.15,
    slowMs: o.slowMs ?? 150,
  });
  const port = await sink.listen();
  mkdirSync(o.dir, { recursive: true });
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    ...UNTHROTTLED_RELAY_ENV,
    ...o.relayEnv,
    RELAY_LISTEN: "127.0.0.1:0",
    SMTP_RELAY_TOKEN: `app=${TOKEN}`,
    RELAY_ALLOWED_FROM: FROM,
    RELAY_MESSAGE_ID_DOMAIN: "mail.example.com",
    QUEUE_ROOT: path.join(o.dir, "queue"),
    RELAY_HANDOFF: `smtp://127.0.0.1:${port}`,
    RELAY_HANDOFF_CONCURRENCY: String(concurrency),
    RELAY_POSTFIX_LOG: "off",
    // A 451 is retried within the run, and no message runs out of attempts.
    QUEUE_RETRY_BASE_MS: "50",
    QUEUE_RETRY_MAX_MS: "400",
    QUEUE_MAX_ATTEMPTS: "100",
    SENDMAIL_TIMEOUT_MS: "5000",
  };
  const bundle = o.bundle ?? CRASH_BUNDLE;

  const runStart = performance.now();
  const all: Request[] = [];
  const toRetry: Request[] = [];
  const kills: Kill[] = [];
  const unexpected: string[] = [];
  const replayMismatches: string[] = [];
  let replaysChecked = 0;
  let retried = 0;

  const newRequest = (): Request => {
    const n = all.length;
    const marker = `m${seed.toString(36)}-${n}`;
    const req: Request = {
      marker,
      key: `crash-${seed}-${n}`,
      body: JSON.stringify({
        from: FROM,
        to: `user${n % 7}@example.net`,
        subject: `crash test ${marker}`,
        text: `message ${n} of the crash test`,
        headers: { "X-Crash-Marker": marker },
      }),
    };
    all.push(req);
    return req;
  };

  /** Sends one request; a 202 settles it (a replay must repeat the first id), anything retryable queues it again. */
  const send = async (url: string, req: Request, round: number, replay: boolean): Promise<boolean> => {
    const r = await post(url, req);
    if ("status" in r && r.status === 202 && r.id) {
      if (req.id === undefined) {
        req.id = r.id;
        req.round = round;
        req.at = performance.now();
      } else {
        replaysChecked++;
        if (r.id !== req.id || !r.replayed)
          replayMismatches.push(
            `${req.marker} (round ${round}): first 202 id ${req.id}, retry answered ${r.id} (replayed: ${r.replayed})`,
          );
      }
      return true;
    }
    if ("status" in r && r.status < 500)
      unexpected.push(`${req.marker} (round ${round}): ${r.status} ${r.text.slice(0, 200)}`);
    else if (!replay) {
      toRetry.push(req);
    }
    return false;
  };

  /** Clients send (retries first, then new messages) until stop() says so. */
  const load = async (url: string, round: number, stop: () => boolean, newOnes: boolean): Promise<void> => {
    const accepted = all.filter((r) => r.id !== undefined);
    const replays = Array.from({ length: Math.min(5, accepted.length) }, () => {
      return accepted[Math.floor(random() * accepted.length)] as Request;
    });
    const work = async (): Promise<void> => {
      while (!stop()) {
        const replay = replays.shift();
        if (replay) {
          await send(url, replay, round, true);
          continue;
        }
        const again = toRetry.shift();
        if (again) retried++;
        const req = again ?? (newOnes ? newRequest() : undefined);
        if (!req) return;
        if (!(await send(url, req, round, false)) && !newOnes) await new Promise((r) => setTimeout(r, 50));
      }
    };
    await Promise.all(Array.from({ length: clients }, work));
  };

  for (let round = 1; round <= o.rounds; round++) {
    const relay = startRelay(bundle, env);
    let killed = false;
    let killAt = 0;
    const kill = () => {
      if (killed) return;
      killed = true;
      killAt = performance.now();
      relay.child.kill("SIGKILL");
    };
    let timer: NodeJS.Timeout;
    if (random() < (o.killDuringStartShare ?? 0.1)) timer = setTimeout(kill, random() * 150);
    const url = await relay.listening;
    if (url && !killed) {
      timer = setTimeout(kill, killMin + random() * (killMax - killMin));
      await load(url, round, () => killed, true);
    }
    const deadAt = await relay.exited;
    clearTimeout(timer!);
    if (!killed) {
      unexpected.push(`round ${round}: the relay exited by itself before the kill:\n${relay.output()}`);
      break;
    }
    kills.push({ round, killAt, deadAt });
    if (round % 10 === 0) progress(`  round ${round}: ${all.length} messages, ${toRetry.length} to retry`);
  }

  // The drain: one more start, every request retried until 202, then wait until the relay has handed everything off.
  const relay = startRelay(bundle, env);
  const url = await relay.listening;
  const accepted: AcceptedMessage[] = [];
  if (!url) unexpected.push(`the drain's relay did not start:\n${relay.output()}`);
  else {
    // Waits while the relay makes progress: a backlog of thousands drains at the relay's own pace.
    const stall = o.drainStallMs ?? 20_000;
    let lastProgress = performance.now();
    let retryLeft = toRetry.length;
    while (toRetry.length > 0 && performance.now() - lastProgress < stall) {
      await load(url, o.rounds + 1, () => toRetry.length === 0, false);
      if (toRetry.length < retryLeft) lastProgress = performance.now();
      retryLeft = toRetry.length;
      if (toRetry.length > 0) await new Promise((r) => setTimeout(r, 100));
    }
    const ids = all.filter((r) => r.id !== undefined);
    // First until the fake has every accepted message (cheap: no requests to the relay), then the relay's word.
    // One set, grown as copies arrive: the fake Postfix shares this event loop, and a loop blocked for seconds
    // would answer 250 after the relay's SMTP timeout (a duplicate this test would have caused itself).
    const atSink = new Set<string>();
    let counted = 0;
    const missingAtSink = () => {
      for (; counted < sink.copies.length; counted++) atSink.add((sink.copies[counted] as SinkCopy).marker);
      return ids.filter((r) => !atSink.has(r.marker)).length;
    };
    let told = performance.now();
    let missing = missingAtSink();
    lastProgress = performance.now();
    while (missing > 0 && performance.now() - lastProgress < stall) {
      await new Promise((r) => setTimeout(r, 200));
      const now = missingAtSink();
      if (now < missing) lastProgress = performance.now();
      missing = now;
      if (performance.now() - told > 5000) {
        progress(`  drain: ${missing} of ${ids.length} not at the fake yet`);
        told = performance.now();
      }
    }
    const status = new Map<string, { state?: string; postfixQueueId?: string }>();
    const inQueue = (s?: string) => s === undefined || s === "queued" || s === "sending";
    lastProgress = performance.now();
    let left = ids.length;
    while (left > 0 && performance.now() - lastProgress < stall) {
      const todo = ids.filter((r) => inQueue(status.get(r.marker)?.state));
      for (let i = 0; i < todo.length; i += 16) {
        await Promise.all(
          todo.slice(i, i + 16).map(async (r) => {
            const res = await fetch(`${url}/messages/${r.id}`, { headers: { authorization: `Bearer ${TOKEN}` } });
            const m = ((await res.json()) as { message?: { state?: string; postfixQueueId?: string } }).message;
            status.set(r.marker, { state: m?.state ?? `HTTP ${res.status}`, postfixQueueId: m?.postfixQueueId });
          }),
        );
      }
      const now = ids.filter((r) => inQueue(status.get(r.marker)?.state)).length;
      if (now < left) lastProgress = performance.now();
      left = now;
      if (left > 0) await new Promise((r) => setTimeout(r, 500));
    }
    for (const r of ids)
      accepted.push({
        marker: r.marker,
        id: r.id as string,
        round: r.round as number,
        at: r.at as number,
        ...status.get(r.marker),
      });
    relay.child.kill("SIGTERM");
    const t = setTimeout(() => relay.child.kill("SIGKILL"), 30_000);
    await relay.exited;
    clearTimeout(t);
  }
  await new Promise((r) => setTimeout(r, 300)); // a hand-off answered after SIGTERM is counted too
  await sink.close();

  const classified = classify(accepted, sink.copies, kills, windowMs);
  const summary =
    `crash test: ${o.rounds} rounds, ${all.length} messages, 202'd ${accepted.length}, ` +
    `lost ${classified.lost.length}, duplicated ${classified.duplicates.length} ` +
    `(in the Postfix-250→record window ${classified.inWindow.length}, beyond it ${classified.beyond.length})`;
  const perKill = new Map<number, number>();
  let maxGap = 0;
  for (const d of classified.inWindow)
    for (const v of d.verdicts)
      if (v.inWindow) {
        perKill.set(v.kill.round, (perKill.get(v.kill.round) ?? 0) + 1);
        maxGap = Math.max(maxGap, v.gapMs);
      }
  const at = (t: number) => `${Math.round(t - runStart)} ms into the run`;
  const details = [
    `  seed ${seed}; ${kills.length} kills, ${retried} retries of requests without a 202, ` +
      `idempotent replays of 202'd requests: ${replaysChecked} checked, ${replayMismatches.length} with another id`,
    `  fake Postfix: ${sink.copies.length} messages taken (250), ${sink.refused} answered 451, ${sink.slowed} slow; ` +
      `hand-off concurrency ${concurrency}; window: a 250 at most ${windowMs} ms before a kill; ` +
      `in-window duplicates per kill: max ${Math.max(0, ...perKill.values())}; ` +
      `largest 250→kill gap ${Math.round(maxGap)} ms`,
    ...classified.lost.map(
      (a) => `  LOST ${a.marker} id ${a.id} (202 in round ${a.round}, ${at(a.at)}; now ${a.state ?? "unknown"})`,
    ),
    ...classified.beyond.map(
      (d) =>
        `  DUPLICATE BEYOND THE WINDOW ${d.marker} id ${d.id}: copies ${d.copies
          .map((c) => `${c.queueId} (Message-ID ${c.messageId}, 250 at ${at(c.acceptedAt)})`)
          .join(", ")}; recorded ${d.kept.queueId}; ${d.verdicts
          .map((v) => (v.inWindow ? `in window of round ${v.kill.round}` : v.why))
          .join("; ")}; kills at ${kills
          .filter((k) => d.copies.some((c) => Math.abs(k.killAt - c.acceptedAt) < 5000))
          .map((k) => `${at(k.killAt)} (round ${k.round})`)
          .join("; ")}`,
    ),
    ...classified.unaccepted.map((m) => `  AT THE FAKE BUT NEVER 202'd ${m}`),
    ...replayMismatches.map((m) => `  IDEMPOTENCY ${m}`),
    ...unexpected.map((u) => `  UNEXPECTED ${u}`),
    ...toRetry.map((r) => `  NEVER 202'd ${r.marker} after every retry`),
  ];
  return {
    rounds: o.rounds,
    messages: all.length,
    accepted: accepted.length,
    classified,
    kills,
    retried,
    replaysChecked,
    replayMismatches,
    unexpected,
    never202: toRetry.length,
    refused: sink.refused,
    slowed: sink.slowed,
    windowMs,
    handoffConcurrency: concurrency,
    maxDuplicatesPerKill: Math.max(0, ...perKill.values()),
    maxGapMs: maxGap,
    seed,
    summary,
    details,
  };
}
