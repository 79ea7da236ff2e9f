import { promises as fs } from "node:fs";
import * as path from "node:path";
import pino, { type Logger } from "pino";
import { Admission } from "./admission";
import { buildApp } from "./app";
import { loadConfig, type RelayConfig } from "./config";
import { createHandoff } from "./handoff";
import { RelayMetrics } from "./metrics";
import { DeliveryStore, LoadStopped, QueueStore, SuppressionList, WebhookOutbox, type Job } from "./storage";
import { LogTail } from "./events/log-tail";
import { DeliveryTracker } from "./events/tracker";
import { FastPath } from "./fast-path";
import { readSmtpTls, SmtpIngress } from "./smtp-ingress";
import { deliveryPayload, suppressedPayload } from "./webhooks/payload";
import { QueueWorker } from "./worker";

/** Keys whose values never reach a log line, at the top level of a logged object or one level down. */
export const REDACTED_LOG_KEYS = ["authorization", "token", "raw", "body"] as const;
const LOG_CENSOR = "[redacted]";

/**
 * The logged object with each nested object that holds a redacted key replaced by a copy (same prototype) whose
 * value is the censor; the object itself when nothing matches, so a log call allocates nothing for this. pino's own
 * wildcard paths ("*.raw") did the same one level down, but cloned and re-serialised every value of every line:
 * 8% of the relay's allocation per request (bench:relay, sampling heap profile, issue 23).
 */
export function censorNested(obj: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const key in obj) {
    const value = obj[key];
    if (value === null || typeof value !== "object" || Array.isArray(value)) continue;
    if (!REDACTED_LOG_KEYS.some((k) => Object.hasOwn(value, k))) continue;
    // own enumerable properties, on the same prototype; an Error's message and stack are not enumerable
    const copy: Record<string, unknown> = Object.assign(Object.create(Object.getPrototypeOf(value) as object), value);
    if (value instanceof Error) Object.assign(copy, { message: value.message, stack: value.stack });
    for (const k of REDACTED_LOG_KEYS) if (Object.hasOwn(value, k)) copy[k] = LOG_CENSOR;
    (out ??= { ...obj })[key] = copy;
  }
  return out ?? obj;
}

/** The relay's logger: JSON lines to stdout (journald), or to `destination` (tests). */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: "mail-relay" },
    // Belt and braces: nothing logs these, and if something ever does, pino blanks them (top-level keys, through
    // its redact paths) and censorNested does one level down (e.g. { job: { raw } }, { headers: { authorization } }).
    redact: { paths: [...REDACTED_LOG_KEYS], censor: LOG_CENSOR },
    formatters: { log: censorNested },
  };
  return destination ? pino(options, destination) : pino(options);
}

export const PID_FILE = "relay.pid";

export interface RunningRelay {
  readonly address: string;
  /** smtp://host:port when the SMTP ingress is on. */
  readonly smtpAddress?: string;
  close(): Promise<void>;
}

/**
 * Loads the config, recovers the queue, listens (before the queue's index is loaded), and shuts down cleanly on
 * SIGTERM/SIGINT.
 */
export async function startServer(
  env: NodeJS.ProcessEnv,
  opts: { installSignalHandlers?: boolean } = {},
): Promise<RunningRelay> {
  const config: RelayConfig = loadConfig(env);
  const log = createLogger(config.logLevel);
  const suppressions = new SuppressionList(config.queueRoot);
  log.info({ entries: await suppressions.open() }, "suppression list opened");
  const queue = new QueueStore({
    root: config.queueRoot,
    maxAttempts: config.maxAttempts,
    retryBaseMs: config.retryBaseMs,
    retryMaxMs: config.retryMaxMs,
    minFreeBytes: config.minFreeBytes,
    sentRetentionMs: config.sentRetentionMs,
  });
  // One admission policy for both doors: the same rules, one quota budget per caller, the suppression check.
  const admission = new Admission(config, { suppressions });
  // The door opens before the queue's files are read: the index fills in the background (GET /health shows how far).
  const recovery = await queue.recover();
  log.info(recovery, "queue opened; its files are read into the index once the relay listens");

  const handoff = createHandoff(config.handoff, config.handoffTimeoutMs, config.handoffConcurrency);
  const metrics = new RelayMetrics(queue);
  const outbox = new WebhookOutbox(config.queueRoot);
  await outbox.open();
  const deliveries = new DeliveryStore(config.queueRoot, {
    messageIdDomain: config.messageIdDomain,
    retentionMs: config.sentRetentionMs,
  });
  log.info(await deliveries.open(), "delivery journal opened");
  const tracker = config.postfixLog
    ? new DeliveryTracker({
        store: deliveries,
        tail: new LogTail(config.postfixLog),
        log,
        metrics,
        beforeCommit: async (events) => {
          for (const e of events) {
            // Outbox first: written before the batch's log position is, and keyed by the event's id (replay-safe).
            const hook = e.caller !== undefined ? config.webhooks?.get(e.caller) : undefined;
            if (hook && e.caller !== undefined && hook.events.has(e.state))
              await outbox.add(e.id, e.caller, deliveryPayload(e));
            if (e.state !== "bounced" || !e.hard || !config.autoSuppress) continue;
            const added = await suppressions.add({
              email: e.recipient,
              reason: "hard_bounce",
              origin: "automatic",
              messageId: e.messageId,
              ...(e.caller !== undefined ? { caller: e.caller } : {}),
              ...(e.dsn !== undefined ? { dsn: e.dsn } : {}),
              ...(e.reply !== undefined ? { reply: e.reply } : {}),
            });
            if (added)
              log.info({ id: e.messageId, caller: e.caller, dsn: e.dsn }, "recipient suppressed after a hard bounce");
            // A replay after a crash finds the address already suppressed: the outbox write is keyed, so send it
            // anyway.
            if (hook && e.caller !== undefined && hook.events.has("suppressed"))
              await outbox.add(`${e.id}-suppressed`, e.caller, suppressedPayload(e));
          }
        },
      })
    : undefined;
  const tracking = {
    beforeHandoff: (job: Job) => deliveries.recordHandoff({ id: job.id, caller: job.caller, to: job.envelope.to }),
    onHandedOff: (job: Job, qid: string | undefined, at: number) =>
      deliveries.recordHandoff({
        id: job.id,
        caller: job.caller,
        to: job.envelope.to,
        at,
        ...(qid !== undefined ? { postfixQueueId: qid } : {}),
      }),
  };
  const worker = new QueueWorker({
    queue,
    handoff,
    log,
    metrics,
    concurrency: config.handoffConcurrency,
    ...tracking,
  });
  // The synchronous fast path (SMTP hand-off only: it needs the pool): both doors hand a message to Postfix inside the
  // request when nothing is due before it and a pooled connection is free within RELAY_FAST_PATH_WAIT_MS
  // (docs/operations.md#the-fast-path).
  if (config.fastPath)
    queue.setFastPath(
      new FastPath({
        handoff,
        log,
        metrics,
        degraded: () => worker.isDegraded(),
        waitMs: config.fastPathWaitMs,
        ...tracking,
      }),
    );
  const app = await buildApp({
    config,
    queue,
    handoff,
    log,
    metrics,
    deliveries,
    suppressions,
    admission,
    onEnqueued: () => worker.wake(),
  });
  const smtp = config.smtpIngress;
  const smtpIngress = smtp
    ? new SmtpIngress({
        config: Object.assign({}, config, { smtpIngress: smtp }),
        tls: readSmtpTls(smtp),
        queue,
        admission,
        log,
        metrics,
        onEnqueued: () => worker.wake(),
      })
    : undefined;

  // Timeouts: a slow client cannot hold a socket forever; keep-alive outlives cloudflared's 90 s idle pool.
  app.server.requestTimeout = 30_000;
  app.server.headersTimeout = 15_000;
  app.server.keepAliveTimeout = 95_000;

  // SMTP first: the deploy step's health check polls HTTP, so a healthy /health means both listeners are up.
  const smtpAddress = smtpIngress && smtp ? await smtpIngress.listen(smtp.listen.host, smtp.listen.port) : undefined;
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
      log.info(Object.assign({}, report, { unreadable: report.unreadable.length }), "queue index loaded");
      for (const f of report.unreadable)
        log.error({ file: f }, "unreadable queue file left in place; inspect it with `relay.js queue`");
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
  tracker?.start();
  log.info(
    {
      address,
      smtpAddress,
      handoff: config.handoff.kind,
      callers: [...new Set(config.tokens.map((t) => t.name))],
      allowedFrom: config.allowedFrom.size,
    },
    "mail-relay listening",
  );

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
        // Both listeners stop accepting and wait for what is in flight (HTTP requests, SMTP transactions).
        await Promise.all([app.close(), smtpIngress?.close()]);
      } finally {
        clearInterval(idle);
        clearTimeout(hard);
      }
      await worker.stop(); // every job in hand is handed off or written back to pending/
      await tracker?.stop(); // the batch in hand is committed, or read again at the next start
      await deliveries.close();
      await handoff.close();
      await queue.close();
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
  return { address, ...(smtpAddress ? { smtpAddress } : {}), close };
}
