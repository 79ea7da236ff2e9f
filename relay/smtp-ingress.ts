// The SMTP ingress: for apps that can only send over SMTP with a username and password (Gitea, Grafana, Nextcloud,
// Keycloak). It listens on loopback (cloudflared's tcp:// route reaches it through Access), speaks SMTP through
// smtp-server, and is a thin adapter around relay/admission, the same rules /send applies (the caller's sender list,
// canonical addresses, the recipient and size limits, forbidden headers, the author fields, the relay's Message-ID,
// the suppression list, the caller's quotas), plus the caller's token and a per-caller rate limit; the same durable
// queue, so "250" means the job is fsync'd and GET /messages/:id knows it.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import type { Logger } from "pino";
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerAuthentication,
  type SMTPServerDataStream,
  type SMTPServerSession,
} from "smtp-server";
import { Admission } from "./admission";
import { makeAuthenticator } from "./app";
import { ConfigError, type RelayConfig, type SmtpIngressConfig } from "./config";
import { GENERIC_5XX, RelayError, SMTP_REPLY } from "./errors";
import type { RelayMetrics } from "./metrics";
import type { Job, QueueStore } from "./storage";
import { DataScanner, prepareRawMessage, smtpContentHash, SmtpRefusal } from "./smtp-message";
import type { SuppressionList } from "./storage";
import { sha256 } from "./validate";
import { TransientMap } from "./transient";

/** Connections at once: each may hold up to RELAY_MAX_MESSAGE_BYTES in memory while its DATA arrives. */
export const SMTP_MAX_CLIENTS = 32;
/**
 * Failed AUTH attempts on one connection before it is closed (smtp-server does not count AUTH as an unauthenticated
 * command).
 */
export const SMTP_MAX_AUTH_FAILURES = 3;
/**
 * Connections not yet authenticated at once: the rest of SMTP_MAX_CLIENTS stays for clients that have authenticated,
 * so idle unauthenticated connections cannot take every slot.
 */
export const SMTP_MAX_UNAUTHENTICATED = 8;
/** A connection that has not authenticated this long after it connected is closed (421); STARTTLS + AUTH take ~1 s. */
export const SMTP_AUTH_DEADLINE_MS = 20_000;

/** What the relay uses of smtp-server's connection objects (not in its typings). */
interface ConnectionHandle {
  readonly id: string;
  send(code: number, text: string): void;
  close(): void;
}

export interface SmtpIngressDeps {
  readonly config: Pick<
    RelayConfig,
    | "tokens"
    | "allowedFrom"
    | "callerFrom"
    | "quotas"
    | "messageIdDomain"
    | "rateLimitPerMin"
    | "maxMessageBytes"
    | "maxRecipients"
  > & {
    readonly smtpIngress: Omit<SmtpIngressConfig, "tlsKeyFile" | "tlsCertFile">;
  };
  /** PEM key and certificate for STARTTLS (readSmtpTls reads them from the files the deploy step pushes). */
  readonly tls: { readonly key: string; readonly cert: string };
  readonly queue: Pick<QueueStore, "accept">;
  /** The admission policy /send uses too (one quota budget per caller); built from config when absent. */
  readonly admission?: Admission;
  readonly suppressions?: SuppressionList;
  readonly log: Logger;
  readonly clock?: { now(): number };
  readonly metrics?: RelayMetrics;
  /** Called after a job is durable in pending/ (the worker's wake-up). */
  readonly onEnqueued?: () => void;
  /** SMTP_AUTH_DEADLINE_MS unless a test shortens it. */
  readonly authDeadlineMs?: number;
}

/** Reads the STARTTLS key and certificate; a missing, unreadable or mismatched pair is a ConfigError (exit 78). */
export function readSmtpTls(c: Pick<SmtpIngressConfig, "tlsKeyFile" | "tlsCertFile">): { key: string; cert: string } {
  const read = (variable: string, file: string): string => {
    try {
      return readFileSync(file, "utf8");
    } catch (err) {
      throw new ConfigError([
        { variable, message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` },
      ]);
    }
  };
  const key = read("RELAY_SMTP_TLS_KEY", c.tlsKeyFile);
  const cert = read("RELAY_SMTP_TLS_CERT", c.tlsCertFile);
  try {
    createSecureContext({ key, cert });
  } catch (err) {
    throw new ConfigError([
      {
        variable: "RELAY_SMTP_TLS_CERT",
        message: `the key and certificate do not make a TLS context: ${(err as Error).message}`,
      },
    ]);
  }
  return { key, cert };
}

/** Messages per caller per minute, in fixed windows, as @fastify/rate-limit counts /send (a separate budget). */
export class CallerRateWindow {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly max: number,
    private readonly windowMs = 60_000,
  ) {}

  /** Counts one message; returns how long to wait when the caller is over its budget. */
  take(caller: string, now: number): { ok: true } | { ok: false; retryInMs: number } {
    let w = this.windows.get(caller);
    if (!w || now - w.start >= this.windowMs || now < w.start) {
      w = { start: now, count: 0 };
      this.windows.set(caller, w);
    }
    if (w.count >= this.max) return { ok: false, retryInMs: w.start + this.windowMs - now };
    w.count++;
    return { ok: true };
  }
}

/** The SMTP reply for a relay error: its code from SMTP_REPLY; 4xx from a server-side failure stays generic. */
export function smtpRefusalFor(err: RelayError): SmtpRefusal {
  const r = SMTP_REPLY[err.code];
  const text =
    err.statusCode >= 500 ? (GENERIC_5XX[err.code as keyof typeof GENERIC_5XX] ?? GENERIC_5XX.internal) : err.message;
  return new SmtpRefusal(r.code, r.enhanced, err.code, text);
}

/** The loopback SMTP listener: AUTH (PLAIN, LOGIN) only after STARTTLS, then /send's rules, then the durable queue. */
export class SmtpIngress {
  readonly server: SMTPServer;
  private readonly deps: SmtpIngressDeps;
  private readonly authenticate: (authorization: string | undefined) => string | undefined;
  private readonly rate: CallerRateWindow;
  private readonly admission: Admission;
  private readonly authFailures = new Map<string, number>();
  /** Sessions not yet authenticated -> the timer that closes them at the auth deadline. */
  private readonly unauthenticated = new TransientMap<string, NodeJS.Timeout>();
  /** Per transaction (smtp-server makes a new envelope object for each): canonical recipient key -> address. */
  private readonly recipients = new WeakMap<object, Map<string, string>>();

  constructor(deps: SmtpIngressDeps) {
    this.deps = deps;
    const { config } = deps;
    this.authenticate = makeAuthenticator(config.tokens);
    this.rate = new CallerRateWindow(config.rateLimitPerMin);
    this.admission =
      deps.admission ?? new Admission(config, deps.suppressions ? { suppressions: deps.suppressions } : {});
    this.server = new SMTPServer({
      name: config.smtpIngress.hostname,
      banner: "mail-relay SMTP ingress",
      key: deps.tls.key,
      cert: deps.tls.cert,
      minVersion: "TLSv1.2",
      secure: false, // STARTTLS on the plain port; the tunnel carries raw TCP
      authMethods: ["PLAIN", "LOGIN"],
      authOptional: false,
      allowInsecureAuth: false, // AUTH answers 538 until STARTTLS: the token never crosses Cloudflare in clear
      size: config.maxMessageBytes, // advertised in EHLO, and a MAIL FROM SIZE= above it is refused
      hideSMTPUTF8: true, // envelope addresses are ASCII (IDN domains as punycode), as for /send
      disableReverseLookup: true, // the unit allows loopback only; the peer is always cloudflared
      maxClients: SMTP_MAX_CLIENTS,
      socketTimeout: 60_000,
      closeTimeout: 10_000,
      logger: false, // the relay logs its own lines, never a password
      onConnect: (session, cb) => this.onConnect(session, cb),
      onAuth: (auth, session, cb) => this.onAuth(auth, session, cb),
      onMailFrom: (address, session, cb) => this.onMailFrom(address, session, cb),
      onRcptTo: (address, session, cb) => this.onRcptTo(address, session, cb),
      onData: (stream, session, cb) => this.onData(stream, session, cb),
      onClose: (session) => {
        this.authFailures.delete(session.id);
        this.authenticated(session.id);
      },
    });
    // smtp-server emits every socket error (reset, TLS alert) here; unheard, one would end the process.
    this.server.on("error", (err: Error) =>
      deps.log.debug({ ingress: "smtp", err: err.message }, "smtp connection error"),
    );
  }

  private now(): number {
    return (this.deps.clock ?? Date).now();
  }

  private count(outcome: string): void {
    this.deps.metrics?.requests.inc({ route: "smtp", outcome });
  }

  private refuse(session: SMTPServerSession, err: unknown, stage: string): SmtpRefusal {
    let refusal: SmtpRefusal;
    if (err instanceof SmtpRefusal) refusal = err;
    else if (err instanceof RelayError) refusal = smtpRefusalFor(err);
    else refusal = smtpRefusalFor(new RelayError("internal", err instanceof Error ? err.message : String(err)));
    const fields = {
      ingress: "smtp",
      session: session.id,
      caller: session.user,
      stage,
      code: refusal.reason,
      reply: refusal.responseCode,
    };
    if (refusal.responseCode >= 500 || refusal.reason === "rate_limited") this.deps.log.info(fields, "smtp refused");
    else
      this.deps.log.error(
        Object.assign({}, fields, { err: err instanceof Error ? err.message : String(err) }),
        "smtp failed",
      );
    this.count(refusal.reason);
    return refusal;
  }

  private onConnect(session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    if (this.unauthenticated.size >= SMTP_MAX_UNAUTHENTICATED) {
      this.count("too_many_unauthenticated");
      return cb(
        new SmtpRefusal(
          421,
          "4.7.0",
          "too_many_unauthenticated",
          "too many connections waiting to authenticate; retry",
        ),
      );
    }
    const timer = setTimeout(() => {
      this.unauthenticated.delete(session.id);
      const connections = (this.server as unknown as { connections: Set<ConnectionHandle> }).connections;
      const conn = [...connections].find((c) => c.id === session.id);
      if (!conn) return;
      this.count("auth_timeout");
      this.deps.log.info({ ingress: "smtp", session: session.id }, "smtp closed: no authentication in time");
      conn.send(421, "4.7.0 authenticate within the first seconds of the connection; closing");
      conn.close();
    }, this.deps.authDeadlineMs ?? SMTP_AUTH_DEADLINE_MS);
    timer.unref();
    this.unauthenticated.set(session.id, timer);
    cb();
  }

  /** The session no longer counts as waiting to authenticate (it did, or it closed). */
  private authenticated(sessionId: string): void {
    const timer = this.unauthenticated.get(sessionId);
    if (timer) clearTimeout(timer);
    this.unauthenticated.delete(sessionId);
  }

  private onAuth(
    auth: SMTPServerAuthentication,
    session: SMTPServerSession,
    cb: (err: Error | null | undefined, res?: { user: string }) => void,
  ): void {
    // The relay's own token check (constant time over every token); the username must name the token's caller.
    const caller = this.authenticate(`Bearer ${auth.password ?? ""}`);
    if (caller !== undefined && caller === auth.username) {
      this.deps.log.info({ ingress: "smtp", session: session.id, caller, method: auth.method }, "smtp authenticated");
      this.authenticated(session.id);
      return cb(null, { user: caller });
    }
    const failures = (this.authFailures.get(session.id) ?? 0) + 1;
    this.authFailures.set(session.id, failures);
    this.deps.log.info(
      { ingress: "smtp", session: session.id, method: auth.method, failures },
      "smtp authentication failed",
    );
    this.count("unauthorized");
    if (failures >= SMTP_MAX_AUTH_FAILURES)
      return cb(
        new SmtpRefusal(421, "4.7.0", "unauthorized", "too many failed authentications; closing the connection"),
      );
    cb(
      new SmtpRefusal(
        535,
        "5.7.8",
        "unauthorized",
        "authentication failed: the username is the caller name, the password its relay token",
      ),
    );
  }

  private onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    try {
      const caller = session.user as string | undefined;
      // smtp-server already answers 530 before AUTH; this is the second lock.
      if (caller === undefined)
        throw new SmtpRefusal(530, "5.7.0", "unauthorized", "authenticate first (AUTH PLAIN or LOGIN after STARTTLS)");
      this.admission.sender(caller, address.address, "MAIL FROM");
      const r = this.rate.take(caller, this.now());
      if (!r.ok) {
        throw new RelayError(
          "rate_limited",
          `more than ${this.deps.config.rateLimitPerMin} messages per minute for this caller; ` +
            `retry in ${Math.ceil(r.retryInMs / 1000)} s`,
        );
      }
      cb();
    } catch (err) {
      cb(this.refuse(session, err, "MAIL"));
    }
  }

  private onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    try {
      let seen = this.recipients.get(session.envelope);
      if (!seen) this.recipients.set(session.envelope, (seen = new Map()));
      // A recipient again (in any spelling of the same mailbox) is not counted again.
      const canonical = this.admission.address(address.address, "RCPT TO");
      const key = canonical.toLowerCase();
      if (!seen.has(key)) this.admission.recipientCount(seen.size + 1, "RCPT TO");
      seen.set(key, canonical);
      cb();
    } catch (err) {
      cb(this.refuse(session, err, "RCPT"));
    }
  }

  private onData(
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    cb: (err: Error | null, message?: string) => void,
  ): void {
    const max = this.deps.config.maxMessageBytes;
    const scanner = new DataScanner();
    const chunks: Buffer[] = [];
    let kept = 0;
    let tooLarge = false;
    stream.on("data", (chunk: Buffer) => {
      scanner.push(chunk);
      if (tooLarge) return;
      if (kept + chunk.length > max) {
        tooLarge = true; // stop holding it; keep reading so the reply comes after the client's final "."
        chunks.length = 0;
        return;
      }
      chunks.push(chunk);
      kept += chunk.length;
    });
    stream.on("end", () => {
      this.accept(session, scanner, tooLarge, Buffer.concat(chunks, kept)).then(
        (reply) => cb(null, reply),
        (err: unknown) => cb(this.refuse(session, err, "DATA")),
      );
    });
  }

  /** Checks one message and makes it durable; resolves with the 250 text only after the job is fsync'd in pending/. */
  private async accept(
    session: SMTPServerSession,
    scanner: DataScanner,
    tooLarge: boolean,
    data: Buffer,
  ): Promise<string> {
    const { queue, log } = this.deps;
    const caller = session.user as string | undefined;
    const mailFrom = session.envelope.mailFrom;
    if (caller === undefined || mailFrom === false)
      throw new SmtpRefusal(530, "5.7.0", "unauthorized", "authenticate first");
    const smuggling = scanner.verdict();
    if (smuggling) throw smuggling;
    this.admission.size(tooLarge ? scanner.bytes : data.length, ", the SIZE in EHLO");
    const id = randomUUID();
    const createdAt = this.now();
    const message = prepareRawMessage(data, {
      admission: this.admission,
      caller,
      messageId: this.admission.messageId(id),
      date: new Date(createdAt),
    });
    const envelope = {
      from: this.admission.sender(caller, mailFrom.address, "MAIL FROM"),
      to: [...(this.recipients.get(session.envelope)?.values() ?? [])],
    };
    const recipientDomains = [...new Set(envelope.to.map((r) => r.slice(r.lastIndexOf("@") + 1)))];
    const job: Job = {
      id,
      caller,
      createdAt,
      attempts: 0,
      nextAttemptAt: createdAt,
      envelope,
      subject: message.subject.slice(0, 200),
      recipientDomains,
      tags: [],
      raw: message.raw,
      ...(message.idempotencyKey !== undefined
        ? {
            idempotency: {
              keyHash: sha256(`${caller}\n${message.idempotencyKey}`),
              bodyHash: smtpContentHash(envelope, message.clientText),
            },
          }
        : {}),
    };
    const result = await this.admission.admit(job, () => queue.accept(job));
    const outcome = result.duplicate ? "duplicate" : result.handedOff ? "handed_off" : "queued";
    this.count(result.duplicate ? "duplicate" : "accepted");
    log.info(
      {
        id: result.id,
        caller,
        ingress: "smtp",
        session: session.id,
        recipients: envelope.to.length,
        domains: recipientDomains,
        bytes: message.raw.length,
        outcome,
        ...(result.handedOff?.postfixQueueId !== undefined ? { postfixQueueId: result.handedOff.postfixQueueId } : {}),
      },
      result.duplicate ? "idempotent replay" : outcome === "handed_off" ? "handed off during the session" : "queued",
    );
    if (outcome === "queued") this.deps.onEnqueued?.();
    return `2.0.0 queued as ${result.id}${result.duplicate ? " (idempotent replay)" : ""}`;
  }

  /** Listens; resolves with "smtp://host:port". */
  listen(host: string, port: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.server.once("error", onError);
      this.server.listen(port, host, () => {
        this.server.server.removeListener("error", onError);
        const a = this.server.server.address() as { address: string; port: number };
        resolve(`smtp://${a.address.includes(":") ? `[${a.address}]` : a.address}:${a.port}`);
      });
    });
  }

  /**
   * Stops accepting; lets transactions in flight finish (their fsync and reply), then closes what is left after 10 s.
   */
  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
