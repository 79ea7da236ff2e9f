// Test helpers for the SMTP ingress: an in-process ingress on 127.0.0.1:0 over a real queue. The certificate is
// testkit/self-signed-cert.ts, the raw SMTP client testkit/raw-smtp.ts.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import type { RelayConfig } from "../../relay/config";
import { QueueStore } from "../../relay/queue";
import { SmtpIngress, type SmtpIngressDeps } from "../../relay/smtp-ingress";
import { selfSignedCert } from "../../testkit/self-signed-cert";
import { captureLog, queueOptions, testConfig } from "./fixtures";

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
