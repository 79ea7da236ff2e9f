// Test helpers for the SMTP ingress: a self-signed certificate made by openssl (as @pulumi/tls makes one for the host)
// and an in-process ingress on 127.0.0.1:0 over a real queue. The raw SMTP client is testkit/raw-smtp.ts.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import type { RelayConfig } from "../../relay/config";
import { QueueStore } from "../../relay/queue";
import { SmtpIngress, type SmtpIngressDeps } from "../../relay/smtp-ingress";
import { captureLog, queueOptions, testConfig } from "./fixtures";

export const haveOpenssl = (() => {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

let cached: { key: string; cert: string } | undefined;
/**
 * An ECDSA P-256 self-signed certificate for smtp-relay.example.com, localhost and 127.0.0.1 (one per test process).
 */
export function selfSignedCert(): { key: string; cert: string } {
  if (cached) return cached;
  const dir = mkdtempSync(path.join(tmpdir(), "smtp-cert-"));
  try {
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        path.join(dir, "key.pem"),
        "-out",
        path.join(dir, "cert.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=smtp-relay.example.com",
        "-addext",
        "subjectAltName=DNS:smtp-relay.example.com,DNS:localhost,IP:127.0.0.1",
      ],
      { stdio: "ignore" },
    );
    cached = {
      key: readFileSync(path.join(dir, "key.pem"), "utf8"),
      cert: readFileSync(path.join(dir, "cert.pem"), "utf8"),
    };
    return cached;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

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
  opts: { config?: Partial<RelayConfig>; queue?: SmtpIngressDeps["queue"]; now?: () => number } = {},
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
