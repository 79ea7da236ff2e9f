import { SMTPServer } from "smtp-server";
import { afterEach } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import pino, { type Logger } from "pino";
import { Writable } from "node:stream";
import { buildApp } from "../../relay/app";
import { callerToken, DEFAULT_QUOTAS, type RelayConfig } from "../../relay/config";
import { defaultMaxMessageBytes } from "../../relay/host-contract";
import type { Handoff } from "../../relay/handoff/types";
import { RelayMetrics } from "../../relay/metrics";
import { QueueStore, type QueueOptions } from "../../relay/storage/queue";

export const TOKEN_APP = "app-token-0123456789abcdefghijklmnopqrstuv";
export const TOKEN_BILLING = "billing-token-0123456789abcdefghijklmnopqrs";
export const ALLOWED_FROM = "noreply@example.com";

export function tempDir(prefix = "relay-test-"): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A pino logger that keeps every line, so tests can check what is (and is not) logged. */
export function captureLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(
        ...chunk
          .toString("utf8")
          .split("\n")
          .filter((l) => l !== ""),
      );
      cb();
    },
  });
  return { log: pino({ level: "debug" }, stream), lines };
}

export function testConfig(over: Partial<RelayConfig> = {}): RelayConfig {
  const c: Omit<RelayConfig, "maxMessageBytes"> = {
    listen: { host: "127.0.0.1", port: 0 },
    tokens: [callerToken("app", TOKEN_APP), callerToken("billing", TOKEN_BILLING)],
    allowedFrom: new Set([ALLOWED_FROM, "support@example.com"]),
    callerFrom: new Map(),
    quotas: DEFAULT_QUOTAS,
    messageIdDomain: "mail.example.com",
    queueRoot: "/nonexistent",
    maxAttempts: 3,
    retryBaseMs: 1000,
    retryMaxMs: 8000,
    handoffTimeoutMs: 5000,
    handoff: { kind: "sendmail", path: "/bin/true" },
    handoffConcurrency: 1,
    fastPath: true,
    fastPathWaitMs: 1000,
    rateLimitPerMin: 1000,
    bodyLimitBytes: 64 * 1024,
    maxRecipients: 5,
    minFreeBytes: 0,
    sentRetentionMs: 7 * 24 * 3_600_000,
    logLevel: "debug",
    ...over,
  };
  return { ...c, maxMessageBytes: over.maxMessageBytes ?? defaultMaxMessageBytes(c.bodyLimitBytes) };
}

export function queueOptions(root: string, over: Partial<QueueOptions> = {}): QueueOptions {
  return {
    root,
    maxAttempts: 3,
    retryBaseMs: 1000,
    retryMaxMs: 8000,
    minFreeBytes: 0,
    sentRetentionMs: 7 * 24 * 3_600_000,
    ...over,
  };
}

export const okHandoff: Handoff = {
  kind: "sendmail",
  send: async () => ({}),
  check: async () => undefined,
  close: async () => undefined,
};

export async function makeApp(
  opts: { config?: Partial<RelayConfig>; handoff?: Pick<Handoff, "check">; root?: string; now?: () => number } = {},
) {
  const tmp = opts.root ? { dir: opts.root, cleanup: () => undefined } : tempDir();
  const queue = new QueueStore(queueOptions(tmp.dir, opts.now ? { now: opts.now } : {}));
  await queue.open();
  const { log, lines } = captureLog();
  const config = testConfig({ queueRoot: tmp.dir, ...opts.config });
  const metrics = new RelayMetrics(queue, false);
  const app = await buildApp({
    config,
    queue,
    handoff: opts.handoff ?? okHandoff,
    log,
    metrics,
    ...(opts.now ? { clock: { now: opts.now } } : {}),
  });
  return {
    app,
    queue,
    lines,
    root: tmp.dir,
    close: async () => {
      await app.close();
      tmp.cleanup();
    },
  };
}

export type TestApp = Awaited<ReturnType<typeof makeApp>>;

/**
 * For a test file: a makeApp whose apps are closed after each test. Call it at the top level of the file (it
 * registers the afterEach).
 */
export function appsClosedAfterEach(): (opts?: Parameters<typeof makeApp>[0]) => Promise<TestApp> {
  const open: TestApp[] = [];
  afterEach(async () => {
    while (open.length) await open.pop()?.close();
  });
  return async (opts = {}) => {
    const a = await makeApp(opts);
    open.push(a);
    return a;
  };
}

export function validBody(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    to: "user@example.net",
    from: { email: ALLOWED_FROM, name: "Example Support" },
    subject: "Your request has been received",
    text: "Plain text body",
    ...over,
  };
}

export function auth(token = TOKEN_APP): Record<string, string> {
  return { authorization: `Bearer ${token}`, "content-type": "application/json" };
}

/**
 * A fake Postfix (smtp-server on 127.0.0.1, a free port) that keeps every message it receives and answers DATA with
 * `250 2.0.0 Ok: queued as <queueId>`.
 */
export async function fakePostfix(queueId: string): Promise<{ server: SMTPServer; port: number; received: string[] }> {
  const received: string[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    onData(stream, _session, cb) {
      let data = "";
      stream.on("data", (c: Buffer) => (data += c.toString()));
      stream.on("end", () => {
        received.push(data);
        cb(null, `2.0.0 Ok: queued as ${queueId}`);
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { server, port: (server.server.address() as { port: number }).port, received };
}
