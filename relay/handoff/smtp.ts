import * as net from "node:net";
import SMTPConnection from "nodemailer/lib/smtp-connection";
import { assertNotOption, HandoffError, type Handoff, type HandoffMessage, type HandoffResult } from "./types";

export interface SmtpOptions {
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  /** Connections kept open to Postfix; the worker hands off at most this many messages at once. */
  readonly maxConnections?: number;
}

/** Postfix ends DATA with "250 2.0.0 Ok: queued as 4XyZ12abc"; the id is what `postqueue -p` and the mail log show. */
export function parsePostfixQueueId(response: string | undefined): string | undefined {
  return response ? /queued as ([0-9A-Za-z]+)/.exec(response)?.[1] : undefined;
}

/** Messages per connection before it is closed and a new one opened (nodemailer's pool does the same, at 100). */
const MESSAGES_PER_CONNECTION = 100;

interface Connection {
  readonly smtp: SMTPConnection;
  messages: number;
  /** The server closed it, or it failed: never handed out again. */
  dead: boolean;
  /** Fails the message in flight: SMTPConnection reports a socket error or close by event, not to send()'s callback. */
  failInFlight: ((err: Error) => void) | null;
}

/**
 * Hands a message to Postfix's smtpd on loopback. Guarantee: a 250 after DATA means cleanup wrote the message into
 * Postfix's incoming queue after the milter (OpenDKIM) accepted it; with the milter down and
 * `milter_default_action = tempfail`, Postfix answers 451 and the job stays pending.
 *
 * A small pool of nodemailer SMTPConnection objects, not nodemailer's Mail transport: the transport runs every raw
 * message through its plugin pipeline and a MimeNode (boundary and Message-ID from crypto.randomBytes, header
 * normalising, stream plumbing): bench/handoff-cpu-bench.ts measured 0.65-1.0 ms of CPU per
 * message for it on Debian's Node 18 against 0.37 ms for this class. A connection that fails is closed, never reused.
 */
export class SmtpHandoff implements Handoff {
  readonly kind = "smtp" as const;
  private readonly opts: SmtpOptions;
  private readonly max: number;
  private readonly idle: Connection[] = [];
  private readonly waiting: ((c: Connection | Error) => void)[] = [];
  private open = 0;
  private closed = false;
  private lastCheck: { at: number; error?: Error } | null = null;

  constructor(opts: SmtpOptions) {
    this.opts = opts;
    this.max = Math.max(1, opts.maxConnections ?? 2);
  }

  async send(msg: HandoffMessage): Promise<HandoffResult> {
    assertNotOption([msg.from, ...msg.to]);
    return this.sendOn(await this.acquire(), msg);
  }

  /**
   * The fast path's hand-off: on a connection that is open and idle now. With none idle but some open, a new one is
   * opened in the background (if the pool has room) for later messages and this one is queued: a request does not
   * wait for a connect, a greeting and an EHLO while other connections exist (bench:relay's open loop measured a
   * ~100 ms p99 when every connection the pool recycled was reopened inside a request).
   */
  trySend(msg: HandoffMessage): Promise<HandoffResult> | undefined {
    if (this.closed || this.waiting.length > 0) return undefined;
    const idle = this.idle.pop();
    if (!idle) {
      if (this.open >= this.max) return undefined;
      // A cold pool (the first message after a start or after Postfix closed them all) connects inline: nothing is
      // open that would take a queued message sooner.
      if (this.open > 0) {
        this.warmOne();
        return undefined;
      }
    }
    try {
      assertNotOption([msg.from, ...msg.to]);
    } catch (err) {
      if (idle) this.release(idle);
      return Promise.reject(err);
    }
    return (idle ? Promise.resolve(idle) : this.openOne()).then((conn) => this.sendOn(conn, msg));
  }

  /** Opens one more pooled connection and leaves it idle (or hands it to a waiting send()); a failure is dropped. */
  private warmOne(): void {
    this.openOne().then(
      (conn) => this.release(conn),
      () => undefined, // openOne() freed its place; the worker's own send() will report the error
    );
  }

  private async sendOn(conn: Connection, msg: HandoffMessage): Promise<HandoffResult> {
    let info: SMTPConnection.SentMessageInfo;
    try {
      info = await new Promise<SMTPConnection.SentMessageInfo>((resolve, reject) => {
        conn.failInFlight = reject;
        conn.smtp.send({ from: msg.from, to: [...msg.to] }, msg.raw, (err, i) => (err ? reject(err) : resolve(i)));
      });
    } catch (err) {
      this.discard(conn);
      throw toHandoffError(err);
    } finally {
      conn.failInFlight = null;
    }
    conn.messages++;
    this.release(conn);
    // Recipients refused while others were accepted: the message is queued for the rest, and a retry would duplicate
    // it.
    const rejected = info.rejected?.length ?? 0;
    return { ...withQueueId(info.response), ...(rejected > 0 ? { rejectedRecipients: rejected } : {}) };
  }

  /** Opens a connection and says EHLO (then QUIT); cached for 5 s so /ready polling stays cheap. */
  async check(): Promise<void> {
    const now = Date.now();
    if (!this.lastCheck || now - this.lastCheck.at > 5000) {
      try {
        const c = await this.connect();
        c.smtp.quit();
        this.lastCheck = { at: now };
      } catch (err) {
        this.lastCheck = { at: now, error: err as Error };
      }
    }
    if (this.lastCheck.error) throw this.lastCheck.error;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.idle.splice(0)) c.smtp.quit();
    for (const w of this.waiting.splice(0)) w(new HandoffError("the SMTP hand-off is closing"));
  }

  private async acquire(): Promise<Connection> {
    if (this.closed) throw new HandoffError("the SMTP hand-off is closing");
    const c = this.idle.pop();
    if (c) return c; // idle connections that die leave the list at once (connect(): onGone)
    if (this.open < this.max) return this.openOne();
    const handed = await new Promise<Connection | Error>((resolve) => this.waiting.push(resolve));
    if (handed instanceof Error) throw handed;
    return handed;
  }

  /** A new pooled connection (counted against max until it is discarded). */
  private async openOne(): Promise<Connection> {
    this.open++;
    try {
      return await this.connect();
    } catch (err) {
      this.open--;
      this.handToWaiter();
      throw err;
    }
  }

  private release(conn: Connection): void {
    if (conn.dead || conn.messages >= MESSAGES_PER_CONNECTION || this.closed) {
      if (!conn.dead) conn.smtp.quit();
      this.discard(conn);
      return;
    }
    const w = this.waiting.shift();
    if (w) w(conn);
    else this.idle.push(conn);
  }

  /** Closes a connection that is in use (not idle) and frees its place in the pool. */
  private discard(conn: Connection): void {
    if (!conn.dead) {
      conn.dead = true;
      conn.smtp.close();
    }
    this.open--;
    this.handToWaiter();
  }

  /** A request waits while every connection is busy; when one is discarded, a new one is opened for it. */
  private handToWaiter(): void {
    if (this.closed || this.open >= this.max) return;
    const w = this.waiting.shift();
    if (w) this.openOne().then(w, (err: Error) => w(toHandoffError(err)));
  }

  /** TCP_NODELAY socket (see connectNoDelay), greeting and EHLO; the connection dies when the server closes it. */
  private connect(): Promise<Connection> {
    return new Promise((resolve, reject) => {
      connectNoDelay(this.opts, (err, socket) => {
        if (err || !socket) return reject(toHandoffError(err ?? new Error("no socket")));
        const smtp = new SMTPConnection({
          connection: socket.connection,
          secure: false,
          ignoreTLS: true, // loopback: STARTTLS adds nothing and a snakeoil certificate would fail verification
          name: "localhost",
          connectionTimeout: this.opts.timeoutMs,
          greetingTimeout: this.opts.timeoutMs,
          socketTimeout: this.opts.timeoutMs,
          logger: false,
        });
        const conn: Connection = { smtp, messages: 0, dead: false, failInFlight: null };
        let settled = false;
        const onGone = (e: Error): void => {
          conn.dead = true;
          if (!settled) {
            settled = true;
            reject(toHandoffError(e));
            return;
          }
          conn.failInFlight?.(e);
          const i = this.idle.indexOf(conn);
          if (i >= 0) {
            // Postfix closed an idle connection (smtpd_timeout): it leaves the pool.
            this.idle.splice(i, 1);
            this.open--;
            this.handToWaiter();
          }
        };
        smtp.on("error", onGone);
        smtp.on("end", () => onGone(new Error("the SMTP connection closed")));
        smtp.connect(() => {
          settled = true;
          resolve(conn);
        });
      });
    });
  }
}

/** 5xx is permanent (failed/ at once); 4xx, timeouts and connection errors are retried. */
function toHandoffError(err: unknown): HandoffError {
  if (err instanceof HandoffError) return err;
  const e = err as Error & { responseCode?: number; response?: string };
  const permanent = typeof e.responseCode === "number" && e.responseCode >= 500 && e.responseCode < 600;
  return new HandoffError(e.response ? `SMTP ${e.response}` : e.message, permanent);
}

/** A connected loopback socket with TCP_NODELAY, or the connect error (refused, timed out). */
export function connectNoDelay(
  opts: Pick<SmtpOptions, "host" | "port" | "timeoutMs">,
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

function withQueueId(response: string | undefined): HandoffResult {
  const queueId = parsePostfixQueueId(response);
  return queueId !== undefined ? { queueId } : {};
}
