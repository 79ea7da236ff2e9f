import { promises as fs } from "node:fs";
import * as path from "node:path";
import pino, { type Logger } from "pino";
import { buildApp } from "./app";
import { loadConfig, type RelayConfig } from "./config";
import { createHandoff } from "./handoff";
import { RelayMetrics } from "./metrics";
import { LoadStopped, QueueStore } from "./queue";
import { QueueWorker } from "./worker";

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: "mail-relay" },
    // Belt and braces: nothing logs these, and if something ever does, pino blanks them.
    redact: { paths: ["authorization", "*.authorization", "headers.authorization", "token", "raw", "body", "*.raw", "*.body"], censor: "[redacted]" },
  });
}

export const PID_FILE = "relay.pid";

export interface RunningRelay {
  readonly address: string;
  close(): Promise<void>;
}

/** Loads the config, recovers the queue, listens (before the queue's index is loaded), and shuts down cleanly on SIGTERM/SIGINT. */
export async function startServer(env: NodeJS.ProcessEnv, opts: { installSignalHandlers?: boolean } = {}): Promise<RunningRelay> {
  const config: RelayConfig = loadConfig(env);
  const log = createLogger(config.logLevel);
  const queue = new QueueStore({
    root: config.queueRoot,
    maxAttempts: config.maxAttempts,
    retryBaseMs: config.retryBaseMs,
    retryMaxMs: config.retryMaxMs,
    minFreeBytes: config.minFreeBytes,
    sentRetentionMs: config.sentRetentionMs,
  });
  // The door opens before the queue's files are read: the index fills in the background (GET /health shows how far).
  const recovery = await queue.recover();
  log.info(recovery, "queue opened; its files are read into the index once the relay listens");

  const handoff = createHandoff(config.handoff, config.handoffTimeoutMs, config.handoffConcurrency);
  const metrics = new RelayMetrics(queue);
  const worker = new QueueWorker({ queue, handoff, log, metrics, concurrency: config.handoffConcurrency });
  const app = await buildApp({ config, queue, handoff, log, metrics, onEnqueued: () => worker.wake() });

  // Timeouts: a slow client cannot hold a socket forever; keep-alive outlives cloudflared's 90 s idle pool.
  app.server.requestTimeout = 30_000;
  app.server.headersTimeout = 15_000;
  app.server.keepAliveTimeout = 95_000;

  const address = await app.listen({ host: config.listen.host, port: config.listen.port });
  const pidFile = path.join(config.queueRoot, PID_FILE);
  await fs.writeFile(pidFile, `${process.pid}\n`, { mode: 0o600 });
  let closing: Promise<void> | null = null;
  const load = queue.loadIndex();
  // The worker starts once every waiting job is indexed: earlier, it could hand off a new job before an older one.
  load.jobsIndexed.then(
    () => {
      if (!closing) worker.start();
    },
    () => undefined, // reported through load.loaded below
  );
  load.loaded.then(
    (report) => {
      log.info({ ...report, unreadable: report.unreadable.length }, "queue index loaded");
      for (const f of report.unreadable) log.error({ file: f }, "unreadable queue file left in place; inspect it with `relay.js queue`");
    },
    (err: Error) => {
      if (err instanceof LoadStopped) return;
      // Same outcome as a failed start before: systemd restarts the relay.
      log.fatal({ err: err.message }, "could not read the queue into the index");
      void close().finally(() => {
        if (opts.installSignalHandlers !== false) process.exit(1);
      });
    },
  );
  log.info({ address, handoff: config.handoff.kind, callers: config.tokens.map((t) => t.name), allowedFrom: config.allowedFrom.size }, "mail-relay listening");

  const prune = setInterval(() => {
    queue.prune().catch((err: Error) => log.warn({ err: err.message }, "prune failed"));
  }, 3_600_000);
  prune.unref();

  const close = (): Promise<void> => {
    closing ??= (async () => {
      log.info("shutting down: no new requests; finishing the jobs in hand");
      clearInterval(prune);
      queue.stopLoading(); // a keyed request waiting for the index gets 503 instead of holding app.close()
      // Node 18's server.close() leaves keep-alive sockets open (cloudflared holds them ~90 s): close them as soon as
      // they go idle, so in-flight requests still finish their fsync and answer; after 10 s close everything.
      const idle = setInterval(() => app.server.closeIdleConnections(), 100);
      const hard = setTimeout(() => app.server.closeAllConnections(), 10_000);
      try {
        await app.close(); // stops accepting, waits for in-flight requests
      } finally {
        clearInterval(idle);
        clearTimeout(hard);
      }
      await worker.stop(); // every job in hand is handed off or written back to pending/
      await handoff.close();
      await fs.rm(pidFile, { force: true });
      log.info("stopped");
    })();
    return closing;
  };

  if (opts.installSignalHandlers !== false) {
    for (const sig of ["SIGTERM", "SIGINT"] as const) {
      process.once(sig, () => {
        close().then(
          () => process.exit(0),
          (err: Error) => {
            log.error({ err: err.message }, "unclean shutdown");
            process.exit(1);
          },
        );
      });
    }
  }
  return { address, close };
}
