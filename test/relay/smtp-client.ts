// Test helpers for the SMTP ingress: an in-process ingress on 127.0.0.1:0 over a real queue. The certificate is
// testkit/self-signed-cert.ts, the raw SMTP client testkit/raw-smtp.ts.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import type { RelayConfig } from "../../relay/config";
import { QueueStore } from "../../relay/storage/queue";
import { SmtpIngress, type SmtpIngressDeps } from "../../relay/smtp-ingress";
import { afterEach, expect } from "vitest";
import { RawSmtp } from "../../testkit/raw-smtp";
import { selfSignedCert } from "../../testkit/self-signed-cert";
import { captureLog, queueOptions, testConfig, TOKEN_APP } from "./fixtures";

export interface RunningIngress {
  readonly ingress: SmtpIngress;
  readonly port: number;
  readonly queue: QueueStore;
  readonly root: string;
  readonly lines: string[];
  close(): Promise<void>;
}

/** An ingress over a real QueueStore in a temp dir (or the queue a test gives), listening on 127.0.0.1:0. */
export async function startIngress(
  opts: {
    config?: Partial<RelayConfig>;
    queue?: SmtpIngressDeps["queue"];
    now?: () => number;
    authDeadlineMs?: number;
  } = {},
): Promise<RunningIngress> {
  const root = mkdtempSync(path.join(tmpdir(), "smtp-ingress-"));
  const queue = new QueueStore(queueOptions(root));
  await queue.open();
  const { log, lines } = captureLog();
  const config = testConfig({ queueRoot: root, ...opts.config });
  const ingress = new SmtpIngress({
    config: { ...config, smtpIngress: { listen: { host: "127.0.0.1", port: 0 }, hostname: "smtp-relay.example.com" } },
    tls: selfSignedCert(),
    queue: opts.queue ?? queue,
    log,
    ...(opts.now ? { clock: { now: opts.now } } : {}),
    ...(opts.authDeadlineMs !== undefined ? { authDeadlineMs: opts.authDeadlineMs } : {}),
  });
  const url = await ingress.listen("127.0.0.1", 0);
  return {
    ingress,
    port: Number(new URL(url).port),
    queue,
    root,
    lines,
    close: async () => {
      await ingress.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** A CRLF message from header lines and body lines. */
export function crlfMessage(headers: string[], body: string[] = ["hello"]): string {
  return [...headers, "", ...body].join("\r\n") + "\r\n";
}

/**
 * For a test file (call it at the top level: it registers the afterEach): ingresses and logged-in raw clients, and
 * anything else a test hands to `closeLater`, closed after each test, clients before their listener.
 */
export function ingressClosedAfterEach(): {
  ingress(opts?: Parameters<typeof startIngress>[0]): Promise<RunningIngress>;
  loggedIn(r: RunningIngress, user?: string, password?: string): Promise<RawSmtp>;
  closeLater<T extends { close(): unknown }>(o: T): T;
} {
  const open: { close(): unknown }[] = [];
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.close();
  });
  const closeLater = <T extends { close(): unknown }>(o: T): T => {
    open.push(o);
    return o;
  };
  return {
    closeLater,
    ingress: async (opts = {}) => closeLater(await startIngress(opts)),
    loggedIn: async (r, user = "app", password = TOKEN_APP) => {
      const { client } = await RawSmtp.connect(r.port);
      closeLater(client);
      expect(await client.login(selfSignedCert().cert, user, password)).toMatch(/^235 /);
      return client;
    },
  };
}
