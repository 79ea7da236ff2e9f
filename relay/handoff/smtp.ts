import * as net from "node:net";
import nodemailer from "nodemailer";
import type SMTPPool from "nodemailer/lib/smtp-pool";
import { assertNotOption, HandoffError, type Handoff, type HandoffMessage, type HandoffResult } from "./types";

export interface SmtpOptions {
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  readonly maxConnections?: number;
}

/** Postfix ends DATA with "250 2.0.0 Ok: queued as 4XyZ12abc"; the id is what `postqueue -p` and the mail log show. */
export function parsePostfixQueueId(response: string | undefined): string | undefined {
  return response ? /queued as ([0-9A-Za-z]+)/.exec(response)?.[1] : undefined;
}

/**
 * Hands a message to Postfix's smtpd on loopback through a pooled nodemailer connection. Guarantee: a 250 after DATA
 * means cleanup wrote the message into Postfix's incoming queue after the milter (OpenDKIM) accepted it; with the
 * milter down and `milter_default_action = tempfail`, Postfix answers 451 and the job stays pending.
 */
export class SmtpHandoff implements Handoff {
  readonly kind = "smtp" as const;
  private transport: nodemailer.Transporter<SMTPPool.SentMessageInfo>;
  private lastCheck: { at: number; error?: Error } | null = null;

  constructor(private readonly opts: SmtpOptions) {
    this.transport = SmtpHandoff.createPool(opts);
  }

  private static createPool(opts: SmtpOptions): nodemailer.Transporter<SMTPPool.SentMessageInfo> {
    return nodemailer.createTransport({
      pool: true,
      host: opts.host,
      port: opts.port,
      secure: false,
      ignoreTLS: true, // loopback: STARTTLS adds nothing and a snakeoil certificate would fail verification
      maxConnections: opts.maxConnections ?? 2,
      name: "localhost",
      connectionTimeout: opts.timeoutMs,
      greetingTimeout: opts.timeoutMs,
      socketTimeout: opts.timeoutMs,
      logger: false,
      // nodemailer leaves Nagle on: the final "." of DATA then waits for the delayed ACK of the body (~40 ms per
      // message on loopback, measured). The pool connects through this socket factory with TCP_NODELAY instead.
      getSocket: (_o: unknown, cb: (err: Error | null, socket?: { connection: net.Socket }) => void) => connectNoDelay(opts, cb),
    } as SMTPPool.Options);
  }

  /**
   * A fresh pool. nodemailer's pool keeps a resource whose getSocket() failed as busy forever, so after
   * maxConnections refused connects (Postfix stopped) every later send would wait for ever: seen in the rehearsal.
   */
  private resetPool(): void {
    const old = this.transport;
    this.transport = SmtpHandoff.createPool(this.opts);
    old.close();
  }

  async send(msg: HandoffMessage): Promise<HandoffResult> {
    assertNotOption([msg.from, ...msg.to]);
    let info: SMTPPool.SentMessageInfo;
    let timer: NodeJS.Timeout | undefined;
    // Every socket step has its own timeout; this one bounds the whole send, so no pool state can stall the worker.
    const limitMs = this.opts.timeoutMs * 3;
    const overall = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error(`hand-off did not settle within ${limitMs} ms`), { stalled: true })), limitMs);
    });
    try {
      info = await Promise.race([this.transport.sendMail({ envelope: { from: msg.from, to: [...msg.to] }, raw: msg.raw }), overall]);
    } catch (err) {
      const e = err as Error & { responseCode?: number; response?: string };
      // No SMTP reply (refused, reset, timed out, stalled): the pool may hold dead resources; start a fresh one.
      if (typeof e.responseCode !== "number") this.resetPool();
      const permanent = typeof e.responseCode === "number" && e.responseCode >= 500 && e.responseCode < 600;
      throw new HandoffError(e.response ? `SMTP ${e.response}` : e.message, permanent);
    } finally {
      clearTimeout(timer);
    }
    // Recipients refused while others were accepted: the message is queued for the rest, and a retry would duplicate it.
    const rejected = info.rejected?.length ?? 0;
    return { ...withQueueId(info.response), ...(rejected > 0 ? { rejectedRecipients: rejected } : {}) };
  }

  /** Opens (or reuses) a connection and says EHLO; cached for 5 s so /ready polling stays cheap. */
  async check(): Promise<void> {
    const now = Date.now();
    if (!this.lastCheck || now - this.lastCheck.at > 5000) {
      try {
        await this.transport.verify();
        this.lastCheck = { at: now };
      } catch (err) {
        this.lastCheck = { at: now, error: err as Error };
      }
    }
    if (this.lastCheck.error) throw this.lastCheck.error;
  }

  async close(): Promise<void> {
    this.transport.close();
  }
}

/** A connected loopback socket with TCP_NODELAY, or the connect error (refused, timed out). */
export function connectNoDelay(
  opts: Pick<SmtpOptions, "host" | "port" | "timeoutMs">,
  cb: (err: Error | null, socket?: { connection: net.Socket }) => void,
): void {
  const socket = net.connect({ host: opts.host, port: opts.port, noDelay: true });
  const timer = setTimeout(() => socket.destroy(new Error(`connect ${opts.host}:${opts.port} timed out after ${opts.timeoutMs} ms`)), opts.timeoutMs);
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
