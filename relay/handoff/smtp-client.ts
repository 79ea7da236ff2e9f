import * as net from "node:net";
import { StringDecoder } from "node:string_decoder";
import { HandoffError } from "./types";

/**
 * A lean SMTP client made for one job: handing raw, already-composed messages to the loopback Postfix smtpd (no TLS,
 * no AUTH). Written by hand instead of nodemailer's SMTPConnection because a CPU profile of the relay put
 * SMTPConnection (one write and one round trip per command, the body through a Transform stream) at ~17-20% of the
 * relay's CPU, ~0.5 ms per message; this client pipelines MAIL + RCPT + DATA in one write and the body in another,
 * or, when the server offers CHUNKING (Postfix does), MAIL + RCPT + BDAT and the body in a single write.
 * Every error it throws is a HandoffError: permanent iff the deciding reply is a 5xx.
 */

export interface SmtpClientOptions {
  readonly host: string;
  readonly port: number;
  /** A connect, or any reply, not complete within this many ms fails (temporary). */
  readonly timeoutMs: number;
}

/** One reply: its code and its full text (lines joined with "\n", codes included), as `SMTP <text>` reports it. */
interface Reply {
  readonly code: number;
  readonly text: string;
}

export interface SmtpSendResult {
  /** The final reply after the body ("250 2.0.0 Ok: queued as ..."). */
  readonly response: string;
  /** Recipients refused while at least one was accepted. */
  readonly rejected: number;
}

/**
 * Refuses, before anything is written, an envelope address that could end or split an SMTP command (CR, LF), end
 * the address early ("<", ">") or be cut short by the server (NUL). The doors validate addresses too: this is
 * defence in depth for every caller of the hand-off.
 */
export function assertEnvelopeAddresses(addresses: readonly string[]): void {
  for (const a of addresses) {
    if (/[\r\n\0<>]/.test(a))
      throw new HandoffError(
        `refusing envelope address ${JSON.stringify(a)}: CR, LF, NUL, "<" and ">" would break the SMTP command`,
        true,
      );
  }
}

/** A connected loopback socket with TCP_NODELAY, or the connect error (refused, timed out). */
export function connectNoDelay(
  opts: Pick<SmtpClientOptions, "host" | "port" | "timeoutMs">,
  cb: (err: Error | null, socket?: { connection: net.Socket }) => void,
): void {
  // Nagle on (node's default) made the final "." of DATA wait for the delayed ACK of the body: ~40 ms per message.
  const socket = net.connect({ host: opts.host, port: opts.port, noDelay: true });
  const timer = setTimeout(
    () => socket.destroy(new Error(`connect ${opts.host}:${opts.port} timed out after ${opts.timeoutMs} ms`)),
    opts.timeoutMs,
  );
  const onError = (err: Error): void => {
    clearTimeout(timer);
    cb(err);
  };
  socket.once("error", onError);
  socket.once("connect", () => {
    clearTimeout(timer);
    socket.removeListener("error", onError);
    socket.setKeepAlive(true);
    cb(null, { connection: socket });
  });
}

const CRLF = Buffer.from("\r\n");
const DOT = Buffer.from(".");
const DOT_END = Buffer.from(".\r\n");
const CRLF_DOT_END = Buffer.from("\r\n.\r\n");
const NON_ASCII = /[\u0080-\uffff]/;

/**
 * The body as it goes on the wire after 354: bare LF made CRLF (as nodemailer's DataStream did; Postfix's
 * smtpd_forbid_bare_newline relies on it), a "." that starts a line doubled (RFC 5321 4.5.2), ending in CRLF, then
 * the terminating ".\r\n". One buffer, so the body and the dot leave in one write.
 */
export function dataBlock(raw: string | Buffer): Buffer {
  const body = wireLines(raw, true);
  if (body.length === 0) return DOT_END;
  return Buffer.concat([body, endsCrlf(body) ? DOT_END : CRLF_DOT_END]);
}

/**
 * The body as one BDAT chunk carries it (RFC 3030): bare LF made CRLF and ending in CRLF, as for DATA, but no dot is
 * doubled and no final dot is sent: the chunk's length ends it.
 */
export function chunkBlock(raw: string | Buffer): Buffer {
  const body = wireLines(raw, false);
  return body.length === 0 || endsCrlf(body) ? body : Buffer.concat([body, CRLF]);
}

function endsCrlf(b: Buffer): boolean {
  return b.length >= 2 && b[b.length - 2] === 0x0d && b[b.length - 1] === 0x0a;
}

/** The body with every bare LF made CRLF and, for DATA (`dotStuff`), a "." that starts a line doubled. */
function wireLines(raw: string | Buffer, dotStuff: boolean): Buffer {
  const buf = typeof raw === "string" ? Buffer.from(raw, "utf8") : raw;
  let clean = buf.length === 0 || !dotStuff || buf[0] !== 0x2e;
  for (let i = buf.indexOf(0x0a); clean && i >= 0; i = buf.indexOf(0x0a, i + 1)) {
    if (i === 0 || buf[i - 1] !== 0x0d || (dotStuff && buf[i + 1] === 0x2e)) clean = false;
  }
  return clean ? buf : normalise(buf, dotStuff);
}

function normalise(buf: Buffer, dotStuff: boolean): Buffer {
  const parts: Buffer[] = [];
  let start = 0;
  if (dotStuff && buf[0] === 0x2e) parts.push(DOT);
  for (let i = buf.indexOf(0x0a); i >= 0; i = buf.indexOf(0x0a, i + 1)) {
    if (i === 0 || buf[i - 1] !== 0x0d) {
      parts.push(buf.subarray(start, i), CRLF);
      start = i + 1;
    }
    if (dotStuff && buf[i + 1] === 0x2e) {
      parts.push(buf.subarray(start, i + 1), DOT);
      start = i + 1;
    }
  }
  parts.push(buf.subarray(start));
  return Buffer.concat(parts);
}

/** A reply's error: permanent iff 5xx; the text keeps the `SMTP <reply>` form the worker logs and the docs show. */
function replyError(r: Reply): HandoffError {
  return new HandoffError(`SMTP ${r.text}`, r.code >= 500 && r.code < 600);
}

export class SmtpClient {
  private readonly socket: net.Socket;
  private readonly timeoutMs: number;
  private readonly decoder = new StringDecoder("utf8");
  private pending = "";
  private lines: string[] = [];
  /** Replies that arrived before anyone read them (pipelined replies in one TCP read). */
  private readonly early: Reply[] = [];
  private readonly readers: { resolve: (r: Reply) => void; reject: (e: Error) => void }[] = [];
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  /** Replies owed by the server for what was written (the greeting first); any other reply is unasked for. */
  private owed = 1;
  /** Closes a connection idle for timeoutMs, as nodemailer's socketTimeout did; one timer, re-armed lazily. */
  private idleTimer: NodeJS.Timeout | null = null;
  private idleSince = 0;
  private failure: HandoffError | null = null;
  private extensions = new Set<string>();
  /** Called once when the connection dies (server closed it, error, timeout, or we closed it). */
  onGone: ((err: HandoffError) => void) | null = null;

  private constructor(socket: net.Socket, timeoutMs: number) {
    this.socket = socket;
    this.timeoutMs = timeoutMs;
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (e) => this.fail(new HandoffError(e.message)));
    socket.on("end", () => this.fail(new HandoffError("the SMTP connection closed")));
    socket.on("close", () => this.fail(new HandoffError("the SMTP connection closed")));
  }

  /** Connects (TCP_NODELAY), reads the 220 greeting and says EHLO localhost (HELO if EHLO is refused). */
  static connect(opts: SmtpClientOptions): Promise<SmtpClient> {
    return new Promise((resolve, reject) => {
      connectNoDelay(opts, (err, s) => {
        if (err || !s) return reject(new HandoffError((err ?? new Error("no socket")).message));
        const c = new SmtpClient(s.connection, opts.timeoutMs);
        c.greet().then(
          () => resolve(c),
          (e: HandoffError) => {
            c.close();
            // A refused session (421/554 greeting) is about the connection, not the message: retried.
            reject(new HandoffError(e.message));
          },
        );
      });
    });
  }

  get dead(): boolean {
    return this.failure !== null;
  }

  /** The EHLO keywords the server offered (upper case), e.g. PIPELINING, 8BITMIME, SMTPUTF8. */
  get offered(): ReadonlySet<string> {
    return this.extensions;
  }

  private async greet(): Promise<void> {
    this.busy = true;
    const greeting = await this.read();
    if (greeting.code !== 220) throw replyError(greeting);
    this.command("EHLO localhost\r\n");
    let ehlo = await this.read();
    if (ehlo.code >= 500) {
      this.command("HELO localhost\r\n");
      ehlo = await this.read();
    } else {
      for (const line of ehlo.text.split("\n").slice(1)) {
        const keyword = /^\d{3}[ -]([A-Za-z0-9][A-Za-z0-9-]*)/.exec(line)?.[1];
        if (keyword) this.extensions.add(keyword.toUpperCase());
      }
    }
    if (ehlo.code !== 250) throw replyError(ehlo);
    this.markIdle();
  }

  private markIdle(): void {
    this.busy = false;
    this.idleSince = Date.now();
    if (!this.idleTimer) this.idleTimer = setTimeout(this.onIdleTimer, this.timeoutMs).unref();
  }

  private readonly onIdleTimer = (): void => {
    this.idleTimer = null;
    if (this.failure || this.busy) return; // busy: markIdle() re-arms it
    const left = this.idleSince + this.timeoutMs - Date.now();
    if (left > 0) this.idleTimer = setTimeout(this.onIdleTimer, left).unref();
    else this.quit();
  };

  /**
   * One transaction. With PIPELINING and CHUNKING (Postfix offers both): MAIL, every RCPT, `BDAT <n> LAST` and the
   * body in one write, then the replies in order: one write and one round trip per message. With PIPELINING alone:
   * MAIL, every RCPT and DATA in one write, then after 354 the body and the final dot in one more. Some recipients
   * refused: sent to the rest, `rejected` counts them. All refused: a HandoffError (over DATA no body is sent; over
   * BDAT the server reads the chunk and drops it). Any error leaves the connection unusable: the caller discards it.
   */
  async send(from: string, to: readonly string[], raw: string | Buffer): Promise<SmtpSendResult> {
    if (this.failure) throw this.failure;
    if (to.length === 0) throw new HandoffError("no recipients", true);
    assertEnvelopeAddresses([from, ...to]);
    this.busy = true;
    // As nodemailer did: SMTPUTF8 when an address is not ASCII and the server offers it. BODY=8BITMIME was never
    // sent (nodemailer only adds it when asked to) and Postfix accepts 8-bit bodies without it.
    const utf8 = this.extensions.has("SMTPUTF8") && (NON_ASCII.test(from) || to.some((r) => NON_ASCII.test(r)));
    const mail = `MAIL FROM:<${from}>${utf8 ? " SMTPUTF8" : ""}\r\n`;
    let rejected = 0;
    let refusal: Reply | null = null;
    const onRcpt = (r: Reply): void => {
      if (r.code >= 200 && r.code < 300) return;
      rejected++;
      // One 4xx among the refusals makes "all refused" temporary: a retry may get through.
      if (!refusal || refusal.code >= 500) refusal = r;
    };
    const pipelining = this.extensions.has("PIPELINING");
    // A V8 profile of the relay under bench:chain put the second write (the body after 354) and its round trip at
    // ~9% of the main thread's wall time (issue 23; the woken peer preempting the relay, mostly): BDAT needs no 354,
    // so the whole transaction is one write.
    const chunk = pipelining && this.extensions.has("CHUNKING") ? chunkBlock(raw) : undefined;
    /** After the envelope: BDAT's final reply, or DATA's 354. */
    let last: Reply;
    if (pipelining) {
      let cmds = mail;
      for (const r of to) cmds += `RCPT TO:<${r}>\r\n`;
      this.command(
        chunk ? Buffer.concat([Buffer.from(`${cmds}BDAT ${chunk.length} LAST\r\n`, "utf8"), chunk]) : `${cmds}DATA\r\n`,
        to.length + 2,
      );
      const m = await this.read();
      if (m.code < 200 || m.code >= 300) throw replyError(m);
      for (let i = 0; i < to.length; i++) onRcpt(await this.read());
      last = await this.read();
      // Postfix answers the pipelined DATA or BDAT with 554 (no valid recipients) when every RCPT was refused: the
      // RCPTs' replies decide.
      if (rejected === to.length) throw replyError(refusal!);
    } else {
      this.command(mail);
      const m = await this.read();
      if (m.code < 200 || m.code >= 300) throw replyError(m);
      for (const r of to) {
        this.command(`RCPT TO:<${r}>\r\n`);
        onRcpt(await this.read());
      }
      if (rejected === to.length) throw replyError(refusal!);
      this.command("DATA\r\n");
      last = await this.read();
    }
    let final = last;
    if (!chunk) {
      if (last.code !== 354) throw replyError(last);
      this.command(dataBlock(raw));
      final = await this.read();
    }
    if (final.code < 200 || final.code >= 300) throw replyError(final);
    this.markIdle();
    return { response: final.text, rejected };
  }

  /** Says QUIT and closes our side without waiting for the 221. */
  quit(): void {
    if (this.failure) return;
    this.socket.end("QUIT\r\n");
    this.fail(new HandoffError("the SMTP connection was closed by the relay"));
  }

  /** Closes at once (a failed or abandoned connection). */
  close(): void {
    this.fail(new HandoffError("the SMTP connection was closed by the relay"));
    this.socket.destroy();
  }

  /** Writes commands (or the body) that the server answers with `replies` replies. */
  private command(text: string | Buffer, replies = 1): void {
    this.owed += replies;
    this.socket.write(text);
  }

  private read(): Promise<Reply> {
    const r = this.early.shift();
    if (r) return Promise.resolve(r);
    if (this.failure) return Promise.reject(this.failure);
    if (!this.timer)
      this.timer = setTimeout(() => {
        this.fail(new HandoffError(`no SMTP reply within ${this.timeoutMs} ms: timed out`));
        this.socket.destroy();
      }, this.timeoutMs);
    return new Promise((resolve, reject) => this.readers.push({ resolve, reject }));
  }

  private onData(chunk: Buffer): void {
    this.pending += this.decoder.write(chunk);
    let nl: number;
    while ((nl = this.pending.indexOf("\n")) >= 0) {
      const line = this.pending.charCodeAt(nl - 1) === 13 ? this.pending.slice(0, nl - 1) : this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + 1);
      this.lines.push(line);
      if (line.charCodeAt(3) === 45 /* "-" */) continue; // a multi-line reply goes on
      const code = Number(line.slice(0, 3));
      const reply: Reply = { code: Number.isInteger(code) ? code : 0, text: this.lines.join("\n") };
      this.lines = [];
      this.deliver(reply);
    }
    // A reply that never ends its line must not grow without bound.
    if (this.pending.length > 64 * 1024) {
      this.fail(new HandoffError("the SMTP server sent a reply line longer than 64 KiB"));
      this.socket.destroy();
    }
  }

  private deliver(reply: Reply): void {
    if (this.failure) return;
    if (this.owed === 0) {
      // Unasked for, e.g. Postfix's "421 4.4.2 ... timeout" before it hangs up on an idle session.
      this.fail(replyError(reply));
      this.socket.destroy();
      return;
    }
    this.owed--;
    const reader = this.readers.shift();
    if (reader) {
      if (this.readers.length === 0 && this.timer) {
        clearTimeout(this.timer);
        this.timer = null;
      } else this.timer?.refresh();
      reader.resolve(reply);
    } else this.early.push(reply); // pipelined replies that came in one read
  }

  private fail(err: HandoffError): void {
    if (this.failure) return;
    this.failure = err;
    if (this.timer) clearTimeout(this.timer);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.timer = null;
    this.idleTimer = null;
    for (const r of this.readers.splice(0)) r.reject(err);
    this.onGone?.(err);
  }
}
