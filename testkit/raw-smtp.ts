// A raw SMTP client that writes exactly the bytes it is given (smuggling tests need bytes no SMTP library would send)
// and reads whole replies. Used by the SMTP ingress tests (test/relay/) and bench/smtp-ingress-bench.ts.
import * as net from "node:net";
import * as tls from "node:tls";

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
  async login(ca: string, user: string, password: string): Promise<string> {
    await this.starttls(ca);
    return this.cmd(`AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString("base64")}`);
  }

  close(): void {
    this.socket.destroy();
  }
}
