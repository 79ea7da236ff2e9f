// The delivery store as it was before compact storage (main at 7e3ab94, everything in memory): the oracle the
// new store is compared with, and the writer of old-format journals for the migration test. Not used by the relay.
import { createHash } from "node:crypto";
import { constants as fsc, promises as fs } from "node:fs";
import * as path from "node:path";
import { isHardBounce, type LogFact } from "../../../relay/events/postfix-log";
import type { LogPosition } from "../../../relay/events/log-tail";

export type RecipientState = "pending" | "delivered" | "deferred" | "bounced" | "expired";
export type DeliveryState = "handed_off" | "delivered" | "partially_delivered" | "deferred" | "bounced" | "expired";
export const DELIVERY_STATES: readonly DeliveryState[] = [
  "handed_off",
  "delivered",
  "partially_delivered",
  "deferred",
  "bounced",
  "expired",
];

export interface RecipientRecord {
  address: string;
  state: RecipientState;
  dsn?: string;
  reply?: string;
  relay?: string;
  /** Time of the last event (ms). */
  at?: number;
  /** Delivery attempts Postfix logged for this recipient. */
  attempts: number;
  /** Deferred only: when Postfix will try again, estimated from its backoff rule (see nextRetryEstimate). */
  retryEstimateAt?: number;
}

export interface MessageDelivery {
  readonly id: string;
  caller?: string;
  handedOffAt?: number;
  queueIds: string[];
  recipients: RecipientRecord[];
  updatedAt: number;
}

/** One outcome for one recipient: what metrics, suppression and webhooks act on. `id` is the same after a replay. */
export interface DeliveryEvent {
  readonly id: string;
  readonly messageId: string;
  readonly caller?: string;
  readonly recipient: string;
  readonly state: Exclude<RecipientState, "pending">;
  readonly dsn?: string;
  readonly reply?: string;
  readonly at: number;
  readonly attempts: number;
  readonly retryEstimateAt?: number;
  readonly handedOffAt?: number;
  readonly hard?: boolean;
}

type JournalRecord =
  | { t: "h"; id: string; caller: string; qid?: string; to: string[]; at?: number }
  | { t: "q"; qid: string; id: string }
  | {
      t: "r";
      id: string;
      rcpt: string;
      st: Exclude<RecipientState, "pending">;
      dsn?: string;
      reply?: string;
      relay?: string;
      at: number;
      retry?: number;
    }
  | { t: "x"; qid: string }
  | { t: "m"; m: MessageDelivery }
  | { t: "p"; ino: number; off: number };

export interface PostfixBackoff {
  readonly minimalSeconds: number;
  readonly maximalSeconds: number;
}
/** Postfix's defaults (minimal_backoff_time 300s, maximal_backoff_time 4000s). */
export const POSTFIX_DEFAULT_BACKOFF: PostfixBackoff = { minimalSeconds: 300, maximalSeconds: 4000 };

/** qmgr defers a message for its age, clamped to [minimal_backoff_time, maximal_backoff_time]; the log does not say. */
export function nextRetryEstimate(at: number, ageSeconds: number, b: PostfixBackoff): number {
  return at + Math.min(Math.max(ageSeconds, b.minimalSeconds), b.maximalSeconds) * 1000;
}

/** The message's state from its recipients': every recipient final decides it, any deferred one keeps it deferred. */
export function aggregateState(recipients: readonly RecipientRecord[]): DeliveryState {
  const n = (s: RecipientState): number => recipients.filter((r) => r.state === s).length;
  if (recipients.length === 0) return "handed_off";
  if (n("deferred") > 0) return "deferred";
  if (n("pending") > 0) return n("delivered") > 0 ? "partially_delivered" : "handed_off";
  if (n("delivered") === recipients.length) return "delivered";
  if (n("delivered") > 0) return "partially_delivered";
  return n("bounced") > 0 ? "bounced" : "expired";
}

const FINAL: ReadonlySet<RecipientState> = new Set(["delivered", "bounced", "expired"]);
const COMPACT_BYTES = 16 * 1024 * 1024;

/**
 * What happened to each handed-off message, per recipient, from Postfix's log. Kept as an append-only journal
 * (QUEUE_ROOT/events/deliveries.jsonl): every batch of log lines is appended together with the log position after
 * it, in one write + fsync, so the position never runs ahead of the events and no event is applied twice after a
 * restart. Replayed at open; compacted at open when it grows past 16 MiB.
 */
export class DeliveryStore {
  readonly dir: string;
  private readonly file: string;
  private readonly messages = new Map<string, MessageDelivery>();
  private readonly byQueueId = new Map<string, string>();
  private pos: LogPosition | undefined;
  private fd: fs.FileHandle | null = null;

  constructor(
    root: string,
    private readonly opts: {
      messageIdDomain: string;
      retentionMs: number;
      backoff?: PostfixBackoff;
      now?: () => number;
    },
  ) {
    this.dir = path.join(root, "events");
    this.file = path.join(this.dir, "deliveries.jsonl");
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  get position(): LogPosition | undefined {
    return this.pos;
  }

  async open(): Promise<{ messages: number; torn: boolean }> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    let text = "";
    try {
      text = await fs.readFile(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    this.messages.clear();
    this.byQueueId.clear();
    this.pos = undefined;
    let torn = false;
    // A batch whose position record is missing (torn by a crash) is dropped: its lines are read again.
    let batch: JournalRecord[] = [];
    let validBytes = 0;
    let offset = 0;
    for (const line of text.split("\n")) {
      const lineBytes = Buffer.byteLength(line, "utf8") + 1;
      offset += lineBytes;
      if (line === "") continue;
      let rec: JournalRecord;
      try {
        rec = JSON.parse(line) as JournalRecord;
      } catch {
        torn = true;
        break;
      }
      batch.push(rec);
      if (rec.t === "p" || rec.t === "h") {
        for (const r of batch) this.applyRecord(r);
        batch = [];
        validBytes = Math.min(offset, Buffer.byteLength(text, "utf8"));
      }
    }
    if (batch.length > 0) torn = true;
    const cutoff = this.now() - this.opts.retentionMs;
    for (const [id, m] of this.messages) if (m.updatedAt < cutoff) this.forget(id);
    if (torn || Buffer.byteLength(text, "utf8") > COMPACT_BYTES) await this.rewrite(validBytes);
    this.fd = await fs.open(this.file, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o600);
    return { messages: this.messages.size, torn };
  }

  async close(): Promise<void> {
    await this.fd?.close();
    this.fd = null;
  }

  private forget(id: string): void {
    const m = this.messages.get(id);
    if (!m) return;
    for (const q of m.queueIds) if (this.byQueueId.get(q) === id) this.byQueueId.delete(q);
    this.messages.delete(id);
  }

  /** Writes a snapshot (one "m" record per message + the position) and swaps it in atomically. */
  private async rewrite(_validBytes: number): Promise<void> {
    const lines: string[] = [];
    for (const m of this.messages.values()) lines.push(JSON.stringify({ t: "m", m }));
    if (this.pos) lines.push(JSON.stringify({ t: "p", ino: this.pos.inode, off: this.pos.offset }));
    else lines.push(JSON.stringify({ t: "p", ino: 0, off: 0 }));
    const tmp = `${this.file}.tmp`;
    const fh = await fs.open(tmp, "w", 0o600);
    try {
      await fh.writeFile(lines.map((l) => `${l}\n`).join(""));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, this.file);
    const d = await fs.open(this.dir, "r");
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }

  private ensure(id: string): MessageDelivery {
    let m = this.messages.get(id);
    if (!m) {
      m = { id, queueIds: [], recipients: [], updatedAt: this.now() };
      this.messages.set(id, m);
    }
    return m;
  }

  private applyRecord(r: JournalRecord): void {
    switch (r.t) {
      case "h": {
        const m = this.ensure(r.id);
        m.caller = r.caller;
        if (r.at !== undefined) {
          m.handedOffAt = r.at;
          m.updatedAt = Math.max(m.updatedAt, r.at);
        }
        if (r.qid !== undefined && !m.queueIds.includes(r.qid)) m.queueIds.push(r.qid);
        if (r.qid !== undefined) this.byQueueId.set(r.qid, r.id);
        for (const a of r.to)
          if (!m.recipients.some((x) => x.address.toLowerCase() === a.toLowerCase()))
            m.recipients.push({ address: a, state: "pending", attempts: 0 });
        return;
      }
      case "q": {
        const m = this.ensure(r.id);
        if (!m.queueIds.includes(r.qid)) m.queueIds.push(r.qid);
        this.byQueueId.set(r.qid, r.id);
        return;
      }
      case "r": {
        const m = this.ensure(r.id);
        let rc = m.recipients.find((x) => x.address.toLowerCase() === r.rcpt.toLowerCase());
        if (!rc) {
          rc = { address: r.rcpt, state: "pending", attempts: 0 };
          m.recipients.push(rc);
        }
        rc.state = r.st;
        if (r.st !== "expired") rc.attempts++;
        if (r.dsn !== undefined) rc.dsn = r.dsn;
        if (r.reply !== undefined) rc.reply = r.reply;
        if (r.relay !== undefined) rc.relay = r.relay;
        rc.at = r.at;
        if (r.retry !== undefined) rc.retryEstimateAt = r.retry;
        else delete rc.retryEstimateAt;
        m.updatedAt = Math.max(m.updatedAt, r.at);
        return;
      }
      case "x":
        this.byQueueId.delete(r.qid);
        return;
      case "m": {
        this.messages.set(r.m.id, r.m);
        for (const q of r.m.queueIds) this.byQueueId.set(q, r.m.id);
        return;
      }
      case "p":
        this.pos = { inode: r.ino, offset: r.off };
        return;
      default: {
        const never: never = r;
        throw new Error(`unknown journal record ${JSON.stringify(never)}`);
      }
    }
  }

  private async append(records: readonly JournalRecord[], sync = true): Promise<void> {
    if (!this.fd) throw new Error("delivery store is not open");
    await this.fd.write(records.map((r) => `${JSON.stringify(r)}\n`).join(""));
    if (sync) await this.fd.sync();
  }

  /**
   * The worker's hand-off: who sent it, to whom, and (after Postfix's 250) when and Postfix's queue id. Called once
   * before the hand-off without `at` and without fsync, so events Postfix logs within milliseconds already know
   * their caller (a crash leaves the job in processing/, and it is written again at the retry); and once after.
   */
  async recordHandoff(h: {
    id: string;
    caller: string;
    postfixQueueId?: string;
    to: readonly string[];
    at?: number;
  }): Promise<void> {
    const rec: JournalRecord = {
      t: "h",
      id: h.id,
      caller: h.caller,
      to: [...h.to],
      ...(h.at !== undefined ? { at: h.at } : {}),
      ...(h.postfixQueueId !== undefined ? { qid: h.postfixQueueId } : {}),
    };
    await this.append([rec], h.at !== undefined);
    this.applyRecord(rec);
  }

  /** Our message id from a Message-ID `<uuid@messageIdDomain>`, or undefined for mail that is not the relay's. */
  private ourId(messageId: string): string | undefined {
    const m = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})@(.+)$/.exec(messageId);
    return m && (m[2] as string).toLowerCase() === this.opts.messageIdDomain.toLowerCase()
      ? (m[1] as string)
      : undefined;
  }

  /**
   * Turns the facts of one batch of log lines into journal records and events, applied in memory. Call commit()
   * with the records and the position after the batch once the events' side effects are durable.
   */
  plan(
    facts: readonly { fact: LogFact; line: number }[],
    after: LogPosition,
  ): { records: JournalRecord[]; events: DeliveryEvent[] } {
    const records: JournalRecord[] = [];
    const events: DeliveryEvent[] = [];
    const backoff = this.opts.backoff ?? POSTFIX_DEFAULT_BACKOFF;
    const emit = (m: MessageDelivery, rcpt: RecipientRecord, line: number): void => {
      const state = rcpt.state as DeliveryEvent["state"];
      const id = createHash("sha256")
        .update(`${m.id}\n${rcpt.address}\n${state}\n${after.inode}:${after.offset}:${line}`)
        .digest("hex")
        .slice(0, 32);
      events.push({
        id,
        messageId: m.id,
        ...(m.caller !== undefined ? { caller: m.caller } : {}),
        recipient: rcpt.address,
        state,
        ...(rcpt.dsn !== undefined ? { dsn: rcpt.dsn } : {}),
        ...(rcpt.reply !== undefined ? { reply: rcpt.reply } : {}),
        at: rcpt.at ?? this.now(),
        attempts: rcpt.attempts,
        ...(rcpt.retryEstimateAt !== undefined ? { retryEstimateAt: rcpt.retryEstimateAt } : {}),
        ...(m.handedOffAt !== undefined ? { handedOffAt: m.handedOffAt } : {}),
        ...(state === "bounced" && rcpt.dsn !== undefined ? { hard: isHardBounce(rcpt.dsn) } : {}),
      });
    };
    const push = (r: JournalRecord): void => {
      records.push(r);
      this.applyRecord(r);
    };
    for (const { fact, line } of facts) {
      switch (fact.kind) {
        case "message-id": {
          const id = this.ourId(fact.messageId);
          // Issue 19: only for a message the relay handed off, and never over a queue id already tied to one.
          if (id !== undefined && this.messages.has(id) && !this.byQueueId.has(fact.queueId))
            push({ t: "q", qid: fact.queueId, id });
          break;
        }
        case "recipient": {
          const id = this.byQueueId.get(fact.queueId);
          if (id === undefined) break;
          const st = fact.status === "sent" ? "delivered" : fact.status;
          const retry = st === "deferred" ? nextRetryEstimate(fact.at, fact.delaySeconds, backoff) : undefined;
          push({
            t: "r",
            id,
            rcpt: fact.recipient,
            st,
            dsn: fact.dsn,
            reply: fact.reply,
            relay: fact.relay,
            at: fact.at,
            ...(retry !== undefined ? { retry } : {}),
          });
          const m = this.messages.get(id) as MessageDelivery;
          emit(
            m,
            m.recipients.find((x) => x.address.toLowerCase() === fact.recipient.toLowerCase()) as RecipientRecord,
            line,
          );
          break;
        }
        case "expired": {
          const id = this.byQueueId.get(fact.queueId);
          if (id === undefined) break;
          const m = this.messages.get(id) as MessageDelivery;
          for (const rc of m.recipients.filter((x) => !FINAL.has(x.state))) {
            push({
              t: "r",
              id,
              rcpt: rc.address,
              st: "expired",
              ...(rc.dsn !== undefined ? { dsn: rc.dsn } : {}),
              ...(rc.reply !== undefined ? { reply: rc.reply } : {}),
              at: fact.at,
            });
            emit(m, rc, line);
          }
          break;
        }
        case "removed":
          if (this.byQueueId.has(fact.queueId)) push({ t: "x", qid: fact.queueId });
          break;
        default: {
          const never: never = fact;
          throw new Error(`unknown fact ${JSON.stringify(never)}`);
        }
      }
    }
    return { records, events };
  }

  /** Appends the batch's records and the position after it in one write + fsync. */
  async commit(records: readonly JournalRecord[], after: LogPosition): Promise<void> {
    const p: JournalRecord = { t: "p", ino: after.inode, off: after.offset };
    await this.append([...records, p]);
    this.applyRecord(p);
  }

  get(id: string): MessageDelivery | undefined {
    return this.messages.get(id);
  }

  /** The caller's handed-off messages in a state, oldest first, from `since` (ms), after `cursor` (exclusive). */
  list(
    caller: string,
    q: { state?: DeliveryState; since?: number; after?: { at: number; id: string }; limit: number },
  ): MessageDelivery[] {
    const out: MessageDelivery[] = [];
    for (const m of this.messages.values()) {
      if (m.caller !== caller || m.handedOffAt === undefined) continue;
      if (q.since !== undefined && m.handedOffAt < q.since) continue;
      if (q.state !== undefined && aggregateState(m.recipients) !== q.state) continue;
      if (q.after && (m.handedOffAt < q.after.at || (m.handedOffAt === q.after.at && m.id <= q.after.id))) continue;
      out.push(m);
    }
    out.sort((a, b) => (a.handedOffAt as number) - (b.handedOffAt as number) || (a.id < b.id ? -1 : 1));
    return out.slice(0, q.limit);
  }
}
