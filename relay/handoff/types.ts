/** One message as the worker hands it to Postfix. */
export interface HandoffMessage {
  readonly id: string;
  /** Envelope sender: the From address, so SPF/DMARC align strictly. */
  readonly from: string;
  /** Every To, Cc and Bcc address (Bcc exists only here, never in a header). */
  readonly to: readonly string[];
  readonly raw: string | Buffer;
}

export interface HandoffResult {
  /** Postfix's queue id, when the hand-off learns it (SMTP does, sendmail does not). */
  readonly queueId?: string;
  /** Recipients Postfix refused while accepting the others (SMTP only). */
  readonly rejectedRecipients?: number;
}

/** A failed hand-off. Permanent failures go to failed/ at once; the rest are retried with backoff. */
export class HandoffError extends Error {
  readonly permanent: boolean;
  constructor(message: string, permanent = false) {
    super(message);
    this.name = "HandoffError";
    this.permanent = permanent;
  }
}

export interface Handoff {
  readonly kind: "sendmail" | "smtp";
  send(msg: HandoffMessage): Promise<HandoffResult>;
  /**
   * The fast path's send: on a pooled connection that is free now, or that frees up within `waitMs` (0: only one free
   * now). Undefined, or a promise of undefined, when nothing was sent: the caller queues the message. Absent on
   * hand-offs without a pool (sendmail).
   */
  trySend?(msg: HandoffMessage, waitMs?: number): Promise<HandoffResult | undefined> | undefined;
  /** Resolves when a hand-off is currently possible (for /ready). */
  check(): Promise<void>;
  close(): Promise<void>;
}

/** Refuses an address sendmail (or anything getopt-based) could read as an option. */
export function assertNotOption(addresses: readonly string[]): void {
  for (const a of addresses) {
    if (a === "" || a.startsWith("-"))
      throw new HandoffError(`refusing address "${a}": it would be read as a command-line option`, true);
  }
}
