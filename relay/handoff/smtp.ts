import { assertEnvelopeAddresses, SmtpClient } from "./smtp-client";
import { assertNotOption, HandoffError, type Handoff, type HandoffMessage, type HandoffResult } from "./types";

export { connectNoDelay } from "./smtp-client";

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

/** Messages per connection before it is closed and a new one opened (as nodemailer's pool did, at 100). */
const MESSAGES_PER_CONNECTION = 100;

interface Connection {
  readonly client: SmtpClient;
  messages: number;
  /** The server closed it, or it failed: never handed out again. */
  dead: boolean;
}

/**
 * Hands a message to Postfix's smtpd on loopback. Guarantee: a 250 after DATA means cleanup wrote the message into
 * Postfix's incoming queue after the milter (OpenDKIM) accepted it; with the milter down and
 * `milter_default_action = tempfail`, Postfix answers 451 and the job stays pending.
 *
 * A small pool of our own pipelining SmtpClient connections (./smtp-client.ts): nodemailer's Mail transport ran every
 * raw message through its plugin pipeline and a MimeNode, and its SMTPConnection made one write and one round trip
 * per command (bench/handoff-cpu-bench.ts has the figures). A connection that fails is closed, never reused.
 */
export class SmtpHandoff implements Handoff {
  readonly kind = "smtp" as const;
  private readonly opts: SmtpOptions;
  private readonly max: number;
  private readonly idle: Connection[] = [];
  private readonly waiting: ((c: Connection | Error) => void)[] = [];
  private open = 0;
  /** Of `open`, the connections still connecting (TCP, greeting, EHLO). */
  private connecting = 0;
  private closed = false;
  private lastCheck: { at: number; error?: Error } | null = null;

  constructor(opts: SmtpOptions) {
    this.opts = opts;
    this.max = Math.max(1, opts.maxConnections ?? 2);
  }

  async send(msg: HandoffMessage): Promise<HandoffResult> {
    assertEnvelope(msg);
    return this.sendOn(await this.acquire(), msg);
  }

  /**
   * The fast path's hand-off. On an idle connection at once; on a cold pool (nothing open, nobody waiting) over a
   * connection opened inline. Otherwise the message joins the pool's line (the same first-come line the worker's
   * send() waits in) for at most `waitMs`, and one more connection is opened in the background if the pool has room:
   * a request does not wait for a connect, a greeting and an EHLO while other connections exist (bench:relay's open
   * loop measured a ~100 ms p99 when every connection the pool recycled was reopened inside a request).
   *
   * Resolves undefined when nothing was sent: no connection came within `waitMs`, the pool is closing, or a
   * connection opened meanwhile failed; undefined at once with `waitMs` 0 and no idle connection, or when no
   * connection is up yet (all still connecting: they may take a connect, a greeting and an EHLO each). The caller
   * then queues the message. A refused message rejects, as send() does.
   */
  trySend(msg: HandoffMessage, waitMs = 0): Promise<HandoffResult | undefined> | undefined {
    if (this.closed) return undefined;
    try {
      assertEnvelope(msg);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.waiting.length === 0) {
      const idle = this.idle.pop();
      if (idle) return this.sendOn(idle, msg);
      // A cold pool connects inline: nothing is open that would take the message sooner.
      if (this.open === 0) return this.openOne().then((conn) => this.sendOn(conn, msg));
    }
    if (this.open < this.max) this.warmOne();
    // Only a connection that is up frees within a message's time; one still connecting may take a connect, a
    // greeting and an EHLO (~100 ms against a server that looks up the client's name): with none up (a cold pool
    // under a burst) the message is queued rather than held for it.
    if (waitMs <= 0 || this.open - this.connecting === 0) return undefined;
    return this.waitFor(waitMs).then((conn) => (conn ? this.sendOn(conn, msg) : undefined));
  }

  /** A place in the pool's line that gives up after `ms`: undefined then, or when the pool fails or closes. */
  private waitFor(ms: number): Promise<Connection | undefined> {
    return new Promise((resolve) => {
      const waiter = (c: Connection | Error): void => {
        clearTimeout(timer);
        resolve(c instanceof Error ? undefined : c);
      };
      const timer = setTimeout(() => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
        resolve(undefined);
      }, ms);
      this.waiting.push(waiter);
    });
  }

  /** Opens one more pooled connection and leaves it idle (or hands it to a waiting send()); a failure is dropped. */
  private warmOne(): void {
    this.openOne().then(
      (conn) => this.release(conn),
      () => undefined, // openOne() freed its place; the worker's own send() will report the error
    );
  }

  private async sendOn(conn: Connection, msg: HandoffMessage): Promise<HandoffResult> {
    let sent: { response: string; rejected: number };
    try {
      sent = await conn.client.send(msg.from, msg.to, msg.raw);
    } catch (err) {
      this.discard(conn);
      throw toHandoffError(err);
    }
    conn.messages++;
    this.release(conn);
    // Recipients refused while others were accepted: the message is queued for the rest, and a retry would duplicate
    // it.
    return { ...withQueueId(sent.response), ...(sent.rejected > 0 ? { rejectedRecipients: sent.rejected } : {}) };
  }

  /** Opens a connection and says EHLO (then QUIT); cached for 5 s so /ready polling stays cheap. */
  async check(): Promise<void> {
    const now = Date.now();
    if (!this.lastCheck || now - this.lastCheck.at > 5000) {
      try {
        const c = await this.connect();
        c.client.quit();
        this.lastCheck = { at: now };
      } catch (err) {
        this.lastCheck = { at: now, error: err as Error };
      }
    }
    if (this.lastCheck.error) throw this.lastCheck.error;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.idle.splice(0)) c.client.quit();
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
    this.connecting++;
    try {
      const conn = await this.connect();
      this.connecting--;
      return conn;
    } catch (err) {
      this.connecting--;
      this.open--;
      this.handToWaiter();
      throw err;
    }
  }

  private release(conn: Connection): void {
    if (conn.dead || this.closed || (conn.messages >= MESSAGES_PER_CONNECTION && this.retire(conn))) {
      if (!conn.dead) conn.client.quit();
      this.discard(conn);
      return;
    }
    const w = this.waiting.shift();
    if (w) w(conn);
    else this.idle.push(conn);
  }

  /**
   * Whether a connection that has sent its MESSAGES_PER_CONNECTION may close now. Not while it is the only one up and
   * the pool has room: its successor is opened first and it keeps serving meanwhile (up to twice the count), so the
   * pool is never left with nothing up (bench:relay's open loop: the next request waited ~100 ms for a connect and
   * the 30 after it were queued, each time the lone connection was renewed).
   */
  private retire(conn: Connection): boolean {
    if (conn.messages >= 2 * MESSAGES_PER_CONNECTION || this.open - this.connecting > 1) return true;
    if (this.connecting > 0) return false; // its successor is on the way
    if (this.open >= this.max) return true; // no room for a successor (a pool of one)
    this.warmOne();
    return false;
  }

  /** Closes a connection that is in use (not idle) and frees its place in the pool. */
  private discard(conn: Connection): void {
    conn.dead = true;
    conn.client.close();
    this.open--;
    this.handToWaiter();
  }

  /**
   * A connection left the pool while someone waits: a new one is opened and joins the line like any freed
   * connection, so it serves whoever is first when it is ready, and a connection that frees sooner (another
   * message finished) is not held back for it. A waiter does not wait for a connect, greeting and EHLO when another
   * connection frees first (bench:relay's open loop: the pool renews each connection after 100 messages). If the
   * connect fails, the first waiter gets the error (the worker's send() reports it; the fast path queues).
   */
  private handToWaiter(): void {
    if (this.closed || this.open >= this.max || this.waiting.length === 0) return;
    this.openOne().then(
      (conn) => this.release(conn),
      (err: Error) => this.waiting.shift()?.(toHandoffError(err)),
    );
  }

  /** TCP_NODELAY socket (see connectNoDelay), greeting and EHLO; the connection dies when the server closes it. */
  private async connect(): Promise<Connection> {
    const client = await SmtpClient.connect(this.opts);
    const conn: Connection = { client, messages: 0, dead: client.dead };
    client.onGone = () => {
      conn.dead = true;
      const i = this.idle.indexOf(conn);
      if (i >= 0) {
        // Postfix closed an idle connection (smtpd_timeout): it leaves the pool.
        this.idle.splice(i, 1);
        this.open--;
        this.handToWaiter();
      }
    };
    return conn;
  }
}

/**
 * Refuses a message whose envelope could be read as an option or break an SMTP command, before it takes (or waits
 * for) a pooled connection: a refusal inside the client would cost a healthy connection (sendOn discards on error).
 */
function assertEnvelope(msg: HandoffMessage): void {
  const addresses = [msg.from, ...msg.to];
  assertNotOption(addresses);
  assertEnvelopeAddresses(addresses);
}

/** 5xx is permanent (failed/ at once); 4xx, timeouts and connection errors are retried. */
function toHandoffError(err: unknown): HandoffError {
  if (err instanceof HandoffError) return err;
  return new HandoffError((err as Error).message);
}

function withQueueId(response: string | undefined): HandoffResult {
  const queueId = parsePostfixQueueId(response);
  return queueId !== undefined ? { queueId } : {};
}
