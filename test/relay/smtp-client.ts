// Test helpers for the SMTP ingress: a self-signed certificate made by openssl (as @pulumi/tls makes one for the host),
// an in-process ingress on 127.0.0.1:0 over a real queue, and a raw SMTP client that writes exactly the bytes a test
// gives it (smuggling tests need bytes no SMTP library would send).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import * as tls from "node:tls";
import type { RelayConfig } from "../../relay/config";
import { QueueStore } from "../../relay/queue";
import { SmtpIngress, type SmtpIngressDeps } from "../../relay/smtp-ingress";
import { captureLog, queueOptions, testConfig, TOKEN_APP } from "./fixtures";

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

/** A raw SMTP client: `cmd` writes one line and reads one reply; `send` writes raw bytes. */
export class RawSmtp {
  private socket: net.Socket | tls.TLSSocket;
  private buffer = "";
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.attach(socket);
  }

  private attach(s: net.Socket | tls.TLSSocket): void {
    s.on("data", (d: Buffer) => {
      this.buffer += d.toString("latin1");
      this.wakeAll();
    });
    s.on("close", () => {
      this.closed = true;
      this.wakeAll();
    });
    s.on("error", () => undefined);
  }

  private wakeAll(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  static async connect(port: number): Promise<{ client: RawSmtp; greeting: string }> {
    const socket = net.connect({ host: "127.0.0.1", port });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => resolve());
      socket.once("error", reject);
    });
    const client = new RawSmtp(socket);
    return { client, greeting: await client.reply() };
  }

  /** The next complete reply (all its lines), or "" when the connection closed first. Rejects after `ms`. */
  async reply(ms = 5000): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = /^(?:\d{3}-[^\r\n]*\r\n)*\d{3}(?: [^\r\n]*)?\r\n/.exec(this.buffer);
      if (m) {
        this.buffer = this.buffer.slice(m[0].length);
        return m[0].trimEnd();
      }
      if (this.closed) return "";
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no SMTP reply within ${ms} ms; buffered: ${JSON.stringify(this.buffer)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  send(bytes: string | Buffer): void {
    this.socket.write(typeof bytes === "string" ? Buffer.from(bytes, "utf8") : bytes);
  }

  async cmd(line: string, ms?: number): Promise<string> {
    this.send(`${line}\r\n`);
    return this.reply(ms);
  }

  /** EHLO, STARTTLS, the TLS handshake (trusting `ca`), EHLO again; returns the second EHLO reply. */
  async starttls(ca: string): Promise<string> {
    await this.cmd("EHLO client.example");
    const r = await this.cmd("STARTTLS");
    if (!r.startsWith("220")) throw new Error(`STARTTLS refused: ${r}`);
    const plain = this.socket as net.Socket;
    plain.removeAllListeners("data");
    plain.removeAllListeners("close");
    const secure = tls.connect({ socket: plain, ca, servername: "localhost" });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", () => resolve());
      secure.once("error", reject);
    });
    this.socket = secure;
    this.attach(secure);
    return this.cmd("EHLO client.example");
  }

  /** STARTTLS, then AUTH PLAIN as `user`. */
  async login(ca: string, user = "app", password = TOKEN_APP): Promise<string> {
    await this.starttls(ca);
    return this.cmd(`AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString("base64")}`);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A CRLF message from header lines and body lines. */
export function crlfMessage(headers: string[], body: string[] = ["hello"]): string {
  return [...headers, "", ...body].join("\r\n") + "\r\n";
}
