import { createHash, randomUUID } from "node:crypto";
import * as fsSync from "node:fs";
import { constants as fsc, promises as fs } from "node:fs";
import * as path from "node:path";
import { callbackFs } from "./callback-fs";
import { isJobId } from "./job";
import { widen } from "./columns";
import { PackedKeyMap, uuidToWords, wordsToUuid } from "./packed-key-map";
import { SlotCache } from "./slot-cache";
import { TransientMap } from "../transient";
import { isHardBounce, type LogFact } from "../events/postfix-log";
import type { LogPosition } from "../events/log-tail";
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

/**
 * One line of the journal. "m" is a message's whole state (the latest one wins); "q"/"x" tie and untie a Postfix
 * queue id; "p" is the log position and ends a tracker batch; "e" ends any other append; "j" (first line) names the
 * journal, so a checkpoint is only ever used with the file it was taken from. "h" and "r" are the deltas journals
 * written before compact storage used (read and migrated at open, never written).
 */
type JournalRecord =
  | { t: "j"; id: string }
  | { t: "m"; m: MessageDelivery }
  | { t: "q"; qid: string; id: string }
  | { t: "x"; qid: string }
  | { t: "p"; ino: number; off: number }
  | { t: "e" }
  | { t: "h"; id: string; caller: string; qid?: string; to: string[]; at?: number }
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
    };

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
const FREE = 0;
const STATE_CODE: Record<DeliveryState, number> = {
  handed_off: 1,
  delivered: 2,
  partially_delivered: 3,
  deferred: 4,
  bounced: 5,
  expired: 6,
};
const CHECKPOINT_MAGIC = "MRDS0002";
/** The order is summarised per block of 256 positions: which states and callers (mod 24) it may hold. */
const BLOCK_SHIFT = 8;
const BLOCK_SIZE = 1 << BLOCK_SHIFT;
const BLOCK_MASK = BLOCK_SIZE - 1;
const CHECKPOINT_BLOCK = 65_536;
const LONG_RECORD = 0xffff;
/**
 * Messages parsed from the journal (or just written) kept for repeated reads: GET /messages/:id polled by a caller,
 * and Postfix's log lines about a message handed off moments ago. Direct-mapped by slot (slot-cache.ts).
 */
const CACHE_MESSAGES = 512;
const SCAN_CHUNK = 4 * 1024 * 1024;

export interface DeliveryStoreOptions {
  messageIdDomain: string;
  retentionMs: number;
  backoff?: PostfixBackoff;
  now?: () => number;
  /** A checkpoint of the index is written after the journal grew this much (default 32 MiB), and at close. */
  checkpointBytes?: number;
  /** Compaction runs once the journal passes this size and twice its live records (default 64 MiB). */
  compactBytes?: number;
}

/**
 * A deep copy. Through Object.assign, not `{ ...m }`: V8 gives an object cloned by a leading spread a map of its own
 * (detached from every transition tree), so each field later added to it (handedOffAt at the hand-off, dsn on an
 * event) made a new hidden class, per message: garbage in V8's map and old spaces, which only a full collection frees
 * (issue 23; V8's --log-maps over bench:relay's open loop). Object.assign({}, x) shares x's map.
 */
function cloneMessage(m: MessageDelivery): MessageDelivery {
  return Object.assign({}, m, {
    queueIds: [...m.queueIds],
    recipients: m.recipients.map((r) => Object.assign({}, r)),
  });
}

function sameAddress(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

function applyHandoff(
  m: MessageDelivery,
  h: { caller: string; postfixQueueId?: string; to: readonly string[]; at?: number },
): void {
  m.caller = h.caller;
  if (h.at !== undefined) {
    m.handedOffAt = h.at;
    m.updatedAt = Math.max(m.updatedAt, h.at);
  }
  if (h.postfixQueueId !== undefined && !m.queueIds.includes(h.postfixQueueId)) m.queueIds.push(h.postfixQueueId);
  for (const a of h.to)
    if (!m.recipients.some((x) => sameAddress(x.address, a)))
      m.recipients.push({ address: a, state: "pending", attempts: 0 });
}

function applyOutcome(m: MessageDelivery, r: Extract<JournalRecord, { t: "r" }>): RecipientRecord {
  let rc = m.recipients.find((x) => sameAddress(x.address, r.rcpt));
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
  return rc;
}

interface Append {
  readonly lines: readonly string[];
  readonly sync: boolean;
  /** Called with each line's offset once the lines are written (and fsync'd when `sync`), before anything else runs. */
  readonly written: (offsets: readonly number[]) => void;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

/**
 * What happened to each handed-off message, per recipient, from Postfix's log.
 *
 * Durable form: an append-only journal (QUEUE_ROOT/events/deliveries.jsonl) of whole-message records; every batch of
 * log lines is appended together with the log position after it, in one write + fsync, so the position never runs
 * ahead of the events and no event is applied twice after a restart. Appends that arrive while one is being written
 * go out together in the next write (group commit).
 *
 * In memory, per retained message, only typed columns (~55 bytes at 1,000,000 retained, `npm run bench:deliveries`):
 * the id (PackedKeyMap), caller, aggregate state, hand-off and update times, and where the message's latest record
 * is in the journal; plus the hand-off order for GET /messages. The message itself is read from the journal by
 * offset (a few hundred bytes, from the page cache) and a few hundred are cached. A checkpoint of the columns
 * (events/deliveries.idx) lets a start read only the journal's tail; without one (or with one for another journal)
 * the whole journal is read. The journal is compacted in the background once it passes twice its live records;
 * messages not updated for `retentionMs` are dropped then and every minute.
 */
export class DeliveryStore {
  readonly dir: string;
  private readonly file: string;
  private readonly checkpointFile: string;
  private readonly ids = new PackedKeyMap(4);
  private readonly key = new Uint32Array(4);
  private readonly orderKey = new Uint32Array(4);
  private handedAt = new Float64Array(0);
  private recordAt = new Float64Array(0);
  /** Last update, whole seconds (retention needs no more). */
  private updated = new Uint32Array(0);
  /** Bytes of the latest record; LONG_RECORD: 65,535 or more, found by reading up to its newline. */
  private recordLen = new Uint16Array(0);
  private callerOf = new Uint16Array(0);
  private stateOf = new Uint8Array(0);
  /** Slots of the handed-off messages by (handedOffAt, id): GET /messages pages through it. */
  private order = new Int32Array(0);
  private orderLen = 0;
  private blockMask = new Uint32Array(64);
  private callers: string[] = [""];
  private callerCodes = new Map<string, number>();
  private byQueueId = new TransientMap<string, string>();
  /** Changed by plan() and not yet written by commit(): memory runs ahead of the journal until then. */
  private readonly dirty = new TransientMap<string, MessageDelivery>();
  /** Written or being written, newest first in lookups: what the journal says (or will once the write lands). */
  private readonly inflight = new TransientMap<string, MessageDelivery>();
  private readonly cache = new SlotCache<MessageDelivery>(CACHE_MESSAGES);
  private ahead = false;
  private liveBytes = 0;
  private pos: LogPosition | undefined;
  private journalId = "";
  private legacy = false;
  private fd: number | null = null;
  private size = 0;
  private checkpointedSize = 0;
  private pending: Append[] = [];
  private writing = false;
  private idle: (() => void)[] = [];
  private maintaining: Promise<void> | null = null;
  private closing = false;
  private lastEviction = 0;

  constructor(
    root: string,
    private readonly opts: DeliveryStoreOptions,
  ) {
    this.dir = path.join(root, "events");
    this.file = path.join(this.dir, "deliveries.jsonl");
    this.checkpointFile = path.join(this.dir, "deliveries.idx");
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  get position(): LogPosition | undefined {
    return this.pos;
  }

  /** Messages retained (tracked and not yet dropped for age). */
  get retained(): number {
    return this.ids.size;
  }

  async open(): Promise<{ messages: number; torn: boolean; checkpoint: boolean }> {
    await this.close();
    this.closing = false;
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    this.reset();
    const fd = fsSync.openSync(this.file, fsc.O_RDWR | fsc.O_APPEND | fsc.O_CREAT, 0o600);
    this.fd = fd;
    this.size = fsSync.fstatSync(fd).size;
    if (this.size === 0) {
      this.journalId = randomUUID();
      const line = Buffer.from(`${JSON.stringify({ t: "j", id: this.journalId })}\n`);
      fsSync.writeSync(fd, line);
      fsSync.fsyncSync(fd);
      await syncDir(this.dir);
      this.size = line.length;
    }
    const first = this.readFirstLine();
    this.legacy = first?.t !== "j";
    this.journalId = first?.t === "j" ? first.id : "";
    const from = this.legacy ? 0 : this.loadCheckpoint();
    const checkpoint = from > 0;
    const { validBytes, torn } = this.scan(from);
    if (torn) {
      fsSync.ftruncateSync(fd, validBytes);
      fsSync.fsyncSync(fd);
      this.size = validBytes;
    }
    this.evict();
    if (this.legacy || this.dirty.size > 0) {
      // A journal of deltas (written before compact storage): rewritten once as whole-message records.
      await this.compact();
    }
    this.lastEviction = this.now();
    return { messages: this.ids.size, torn, checkpoint };
  }

  async close(): Promise<void> {
    if (this.fd === null) return;
    this.closing = true;
    await this.maintaining;
    await this.lock();
    try {
      if (!this.ahead && this.dirty.size === 0 && this.size > this.checkpointedSize) await this.checkpoint();
    } finally {
      fsSync.closeSync(this.fd);
      this.fd = null;
      this.unlock();
    }
  }

  private reset(): void {
    this.ids.clear();
    this.handedAt = new Float64Array(0);
    this.recordAt = new Float64Array(0);
    this.updated = new Uint32Array(0);
    this.recordLen = new Uint16Array(0);
    this.callerOf = new Uint16Array(0);
    this.stateOf = new Uint8Array(0);
    this.order = new Int32Array(0);
    this.orderLen = 0;
    this.blockMask = new Uint32Array(64);
    this.callers = [""];
    this.callerCodes = new Map();
    this.byQueueId = new TransientMap();
    this.dirty.clear();
    this.inflight.clear();
    this.cache.clear();
    this.ahead = false;
    this.liveBytes = 0;
    this.pos = undefined;
    this.pending = [];
    this.checkpointedSize = 0;
  }

  // ---- columns ----

  private slotOf(id: string): number {
    if (!isJobId(id)) return -1;
    uuidToWords(id, this.key);
    return this.ids.get(this.key);
  }

  private addSlot(id: string): number {
    uuidToWords(id, this.key);
    const s = this.ids.add(this.key);
    if (s >= this.stateOf.length) this.growColumns();
    if (this.stateOf[s] === FREE) {
      this.stateOf[s] = STATE_CODE.handed_off;
      this.handedAt[s] = Number.NaN;
      this.recordAt[s] = -1;
      this.recordLen[s] = 0;
      this.callerOf[s] = 0;
      this.updated[s] = 0;
    }
    return s;
  }

  private growColumns(): void {
    const n = this.ids.capacity;
    this.handedAt = widen(this.handedAt, n);
    this.recordAt = widen(this.recordAt, n);
    this.updated = widen(this.updated, n);
    this.recordLen = widen(this.recordLen, n);
    this.callerOf = widen(this.callerOf, n);
    this.stateOf = widen(this.stateOf, n);
    this.order = widen(this.order, n);
  }

  private idOf(slot: number): string {
    const w = (i: number): number => this.ids.word(slot, i);
    return wordsToUuid(w(0), w(1), w(2), w(3));
  }

  private callerCode(caller: string | undefined): number {
    if (caller === undefined) return 0;
    let c = this.callerCodes.get(caller);
    if (c === undefined) {
      if (this.callers.length >= 0xffff) throw new Error("delivery store: more than 65,534 distinct callers");
      c = this.callers.length;
      this.callers.push(caller);
      this.callerCodes.set(caller, c);
    }
    return c;
  }

  /** (handedAt, id) of `slot` before (at, id as words in `key`)? Hex order of a UUID is the order of its words. */
  private before(slot: number, at: number, key: Uint32Array): boolean {
    const x = this.handedAt[slot] as number;
    if (x !== at) return x < at;
    for (let w = 0; w < 4; w++) {
      const a = this.ids.word(slot, w);
      const b = key[w] as number;
      if (a !== b) return a < b;
    }
    return false;
  }

  /** First position in the order whose (handedAt, id) is not before (at, key). */
  private lowerBound(at: number, key: Uint32Array): number {
    let lo = 0;
    let hi = this.orderLen;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.before(this.order[mid] as number, at, key)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Position of a handed-off slot in the order, or -1. */
  private positionOf(slot: number): number {
    const at = this.handedAt[slot] as number;
    if (Number.isNaN(at)) return -1;
    const key = this.orderKey;
    for (let w = 0; w < 4; w++) key[w] = this.ids.word(slot, w);
    const i = this.lowerBound(at, key);
    return i < this.orderLen && this.order[i] === slot ? i : -1;
  }

  /** The bits a slot sets in its order block's mask: its state, and its caller (mod 24). */
  private bits(slot: number): number {
    return ((1 << (this.stateOf[slot] as number)) | (1 << (8 + ((this.callerOf[slot] as number) % 24)))) >>> 0;
  }

  private markBlock(pos: number): void {
    const b = pos >>> BLOCK_SHIFT;
    if (b >= this.blockMask.length) {
      const m = new Uint32Array(Math.max(64, this.blockMask.length * 2, b + 1));
      m.set(this.blockMask);
      this.blockMask = m;
    }
    this.blockMask[b] = ((this.blockMask[b] as number) | this.bits(this.order[pos] as number)) >>> 0;
  }

  /** Recomputes every block mask (after a bulk change of the order). */
  private rebuildMasks(): void {
    this.blockMask = new Uint32Array(Math.max(64, (this.orderLen >>> BLOCK_SHIFT) + 1));
    for (let i = 0; i < this.orderLen; i++) this.markBlock(i);
  }

  private orderRemove(slot: number): void {
    const i = this.positionOf(slot);
    if (i < 0) return;
    this.order.copyWithin(i, i + 1, this.orderLen);
    this.orderLen--;
    // Each later block's first entry moved into the block before it.
    for (let b = (i >>> BLOCK_SHIFT) + 1; b << BLOCK_SHIFT <= this.orderLen; b++)
      this.markBlock((b << BLOCK_SHIFT) - 1);
  }

  private orderInsert(slot: number): void {
    const at = this.handedAt[slot] as number;
    const key = this.orderKey;
    for (let w = 0; w < 4; w++) key[w] = this.ids.word(slot, w);
    // Hand-offs arrive nearly in time order: look from the end first.
    let i = this.orderLen;
    if (i > 0 && !this.before(this.order[i - 1] as number, at, key)) i = this.lowerBound(at, key);
    if (this.orderLen >= this.order.length) this.growColumns();
    this.order.copyWithin(i + 1, i, this.orderLen);
    this.order[i] = slot;
    this.orderLen++;
    this.markBlock(i);
    // Each later block's last entry moved into the block after it.
    for (let b = (i >>> BLOCK_SHIFT) + 1; b << BLOCK_SHIFT < this.orderLen; b++) this.markBlock(b << BLOCK_SHIFT);
  }

  /** Sets the columns from a message's state (everything but where its record is). */
  private index(slot: number, m: MessageDelivery): void {
    const state = STATE_CODE[aggregateState(m.recipients)];
    const caller = this.callerCode(m.caller);
    const changed = state !== this.stateOf[slot] || caller !== this.callerOf[slot];
    this.stateOf[slot] = state;
    this.callerOf[slot] = caller;
    this.updated[slot] = Math.max(this.updated[slot] as number, Math.ceil(m.updatedAt / 1000));
    const at = m.handedOffAt ?? Number.NaN;
    const was = this.handedAt[slot] as number;
    if (at === was || (Number.isNaN(at) && Number.isNaN(was))) {
      if (changed && !Number.isNaN(at)) {
        const i = this.positionOf(slot);
        if (i >= 0) this.markBlock(i);
      }
      return;
    }
    this.orderRemove(slot);
    this.handedAt[slot] = at;
    if (!Number.isNaN(at)) this.orderInsert(slot);
  }

  private located(slot: number, off: number, len: number): void {
    if ((this.recordAt[slot] as number) >= 0) this.liveBytes -= this.recordLen[slot] as number;
    this.recordAt[slot] = off;
    this.recordLen[slot] = Math.min(len, LONG_RECORD);
    this.liveBytes += len;
  }

  /** Drops messages not updated within the retention (not those being written), and their queue ids. */
  private evict(): void {
    const cutoff = Math.floor((this.now() - this.opts.retentionMs) / 1000);
    let dropped = 0;
    for (let s = 0; s < this.stateOf.length; s++) {
      if (this.stateOf[s] === FREE || (this.updated[s] as number) >= cutoff) continue;
      const id = this.idOf(s);
      if (this.dirty.has(id) || this.inflight.has(id)) continue;
      if ((this.recordAt[s] as number) >= 0) this.liveBytes -= this.recordLen[s] as number;
      this.stateOf[s] = FREE;
      for (let w = 0; w < 4; w++) this.key[w] = this.ids.word(s, w);
      this.ids.delete(this.key);
      this.cache.delete(s);
      dropped++;
    }
    if (dropped === 0) return;
    let n = 0;
    for (let i = 0; i < this.orderLen; i++) {
      const s = this.order[i] as number;
      if (this.stateOf[s] !== FREE) this.order[n++] = s;
    }
    this.orderLen = n;
    this.rebuildMasks();
    for (const [q, id] of this.byQueueId) if (this.slotOf(id) < 0) this.byQueueId.delete(q);
  }

  // ---- reading records ----

  private readAt(off: number, len: number): Buffer {
    const buf = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const n = fsSync.readSync(this.fd as number, buf, got, len - got, off + got);
      if (n === 0) throw new Error(`delivery journal ends before the record at ${off}`);
      got += n;
    }
    return buf;
  }

  /** Length of a slot's record (liveBytes counts at most LONG_RECORD per record: it only decides compaction). */
  private lenOf(slot: number): number {
    const len = this.recordLen[slot] as number;
    if (len !== LONG_RECORD) return len;
    const off = this.recordAt[slot] as number;
    for (let n = 2 * LONG_RECORD; ; n *= 2) {
      const buf = Buffer.allocUnsafe(n);
      const got = fsSync.readSync(this.fd as number, buf, 0, n, off);
      const nl = buf.subarray(0, got).indexOf(10);
      if (nl >= 0) return nl;
      if (got < n) throw new Error(`delivery journal: the record at ${off} has no end`);
    }
  }

  /** What the journal says of the message (or will once a write in flight lands). */
  private committed(id: string, slot = this.slotOf(id)): MessageDelivery | undefined {
    const w = this.inflight.get(id) ?? (slot >= 0 ? this.cache.get(slot, id) : undefined);
    if (w) return w;
    if (slot < 0 || (this.recordAt[slot] as number) < 0 || this.fd === null) return undefined;
    const rec = JSON.parse(
      this.readAt(this.recordAt[slot] as number, this.lenOf(slot)).toString("utf8"),
    ) as JournalRecord;
    if (rec.t !== "m") throw new Error(`delivery journal: no message record at ${this.recordAt[slot]}`);
    this.cache.set(slot, rec.m);
    return rec.m;
  }

  private readFirstLine(): JournalRecord | undefined {
    const buf = Buffer.allocUnsafe(Math.min(4096, this.size));
    const n = fsSync.readSync(this.fd as number, buf, 0, buf.length, 0);
    const nl = buf.subarray(0, n).indexOf(10);
    if (nl < 0) return undefined;
    try {
      return JSON.parse(buf.subarray(0, nl).toString("utf8")) as JournalRecord;
    } catch {
      return undefined;
    }
  }

  /**
   * Reads the journal from `from` to its end, batch by batch. A batch whose end record ("p"/"e", or an old "h") is
   * missing was torn by a crash: it is dropped (its log lines are read again) and the file is cut there.
   */
  private scan(from: number): { validBytes: number; torn: boolean } {
    const fd = this.fd as number;
    let batch: { rec: JournalRecord; off: number; len: number }[] = [];
    let validBytes = from;
    let offset = from;
    let carry = Buffer.alloc(0);
    const chunk = Buffer.allocUnsafe(SCAN_CHUNK);
    for (;;) {
      const n = fsSync.readSync(fd, chunk, 0, chunk.length, offset + carry.length);
      if (n === 0) break;
      const data = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, n)]) : chunk.subarray(0, n);
      let start = 0;
      for (let nl = data.indexOf(10, start); nl >= 0; nl = data.indexOf(10, start)) {
        const lineOff = offset + start;
        const len = nl - start;
        start = nl + 1;
        if (len === 0) continue;
        let rec: JournalRecord;
        try {
          rec = JSON.parse(data.toString("utf8", lineOff - offset, lineOff - offset + len)) as JournalRecord;
        } catch {
          return { validBytes, torn: true };
        }
        batch.push({ rec, off: lineOff, len });
        if (rec.t === "p" || rec.t === "e" || rec.t === "h" || rec.t === "j") {
          for (const b of batch) this.replay(b.rec, b.off, b.len);
          batch = [];
          validBytes = lineOff + len + 1;
        }
      }
      offset += start;
      carry = Buffer.from(data.subarray(start));
    }
    return { validBytes, torn: batch.length > 0 || carry.length > 0 || validBytes < this.size };
  }

  /** Mutable copy of a message for a change not yet written; created when unknown. */
  private mutable(id: string): MessageDelivery {
    let m = this.dirty.get(id);
    if (!m) {
      const c = this.committed(id);
      m = c ? cloneMessage(c) : { id, queueIds: [], recipients: [], updatedAt: this.now() };
      this.dirty.set(id, m);
    }
    return m;
  }

  private replay(r: JournalRecord, off: number, len: number): void {
    switch (r.t) {
      case "j":
        return;
      case "m": {
        const s = this.addSlot(r.m.id);
        this.dirty.delete(r.m.id);
        this.cache.delete(s);
        this.index(s, r.m);
        this.located(s, off, len);
        if (this.legacy) for (const q of r.m.queueIds) this.byQueueId.set(q, r.m.id);
        return;
      }
      case "q":
        this.byQueueId.set(r.qid, r.id);
        if (this.legacy) {
          const m = this.mutable(r.id);
          if (!m.queueIds.includes(r.qid)) m.queueIds.push(r.qid);
          this.index(this.addSlot(r.id), m);
        }
        return;
      case "x":
        this.byQueueId.delete(r.qid);
        return;
      case "p":
        this.pos = { inode: r.ino, offset: r.off };
        return;
      case "e":
        return;
      case "h": {
        const m = this.mutable(r.id);
        applyHandoff(m, {
          caller: r.caller,
          to: r.to,
          ...(r.at !== undefined ? { at: r.at } : {}),
          ...(r.qid !== undefined ? { postfixQueueId: r.qid } : {}),
        });
        if (r.qid !== undefined) this.byQueueId.set(r.qid, r.id);
        this.index(this.addSlot(r.id), m);
        return;
      }
      case "r": {
        const m = this.mutable(r.id);
        applyOutcome(m, r);
        this.index(this.addSlot(r.id), m);
        return;
      }
      default: {
        const never: never = r;
        throw new Error(`unknown journal record ${JSON.stringify(never)}`);
      }
    }
  }

  // ---- appending (group commit) ----

  private append(lines: readonly string[], sync: boolean, written: Append["written"]): Promise<void> {
    if (this.fd === null) return Promise.reject(new Error("delivery store is not open"));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ lines, sync, written, resolve, reject });
      if (!this.writing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.writing = true;
    try {
      while (this.pending.length > 0 && this.fd !== null) {
        const batch = this.pending;
        this.pending = [];
        const text = Buffer.from(batch.map((b) => b.lines.map((l) => `${l}\n`).join("")).join(""));
        const fd = this.fd;
        try {
          callbackFs.writeAllSync(fd, text);
          if (batch.some((b) => b.sync)) await fdatasync(fd);
        } catch (err) {
          // Nothing half-written may stay in front of later appends: cut the file back to its last whole batch.
          try {
            fsSync.ftruncateSync(fd, this.size);
          } catch {
            // the next open() cuts it (a torn batch)
          }
          for (const b of batch) b.reject(err as Error);
          continue;
        }
        let off = this.size;
        for (const b of batch) {
          const offsets: number[] = [];
          for (const l of b.lines) {
            offsets.push(off);
            off += Buffer.byteLength(l) + 1;
          }
          b.written(offsets);
        }
        this.size = off;
        for (const b of batch) b.resolve();
      }
    } finally {
      this.writing = false;
      this.afterWrite();
    }
  }

  private afterWrite(): void {
    if (this.pending.length > 0 && this.fd !== null) {
      void this.flush();
      return;
    }
    const waiters = this.idle;
    this.idle = [];
    for (const w of waiters) w();
    this.maintain();
  }

  /** Waits until no append is being written and holds appends back until unlock(). */
  private async lock(): Promise<void> {
    while (this.writing) await new Promise<void>((resolve) => this.idle.push(resolve));
    this.writing = true;
  }

  private unlock(): void {
    this.writing = false;
    this.afterWrite();
  }

  // ---- the writers' interface ----

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
    if (!isJobId(h.id)) throw new Error(`delivery store: not a message id: ${JSON.stringify(h.id)}`);
    const base = this.committed(h.id);
    const m = base ? cloneMessage(base) : { id: h.id, queueIds: [], recipients: [], updatedAt: this.now() };
    applyHandoff(m, h);
    // A batch of log lines planned but not yet committed carries this hand-off too, so its record does not undo it.
    const ahead = this.dirty.get(h.id);
    if (ahead) applyHandoff(ahead, h);
    this.inflight.set(h.id, m);
    const lines = [
      ...(h.postfixQueueId !== undefined ? [JSON.stringify({ t: "q", qid: h.postfixQueueId, id: h.id })] : []),
      JSON.stringify({ t: "m", m }),
      '{"t":"e"}',
    ];
    try {
      await this.append(lines, h.at !== undefined, (offsets) => {
        const s = this.addSlot(h.id);
        // the committed view: a planned batch (ahead) is indexed when it commits
        this.index(s, m);
        this.located(s, offsets[lines.length - 2] as number, Buffer.byteLength(lines[lines.length - 2] as string));
        if (h.postfixQueueId !== undefined) this.byQueueId.set(h.postfixQueueId, h.id);
        if (this.inflight.get(h.id) === m) {
          this.inflight.delete(h.id);
          this.cache.set(s, m);
        }
      });
    } catch (err) {
      if (this.inflight.get(h.id) === m) this.inflight.delete(h.id);
      throw err;
    }
  }

  /** Our message id from a Message-ID `<uuid@messageIdDomain>`, or undefined for mail that is not the relay's. */
  private ourId(messageId: string): string | undefined {
    const m = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})@(.+)$/.exec(messageId);
    return m && (m[2] as string).toLowerCase() === this.opts.messageIdDomain.toLowerCase()
      ? (m[1] as string)
      : undefined;
  }

  /**
   * Turns the facts of one batch of log lines into journal records and events, applied in memory but not yet
   * visible: get() and list() show a change once commit() writes it. Call commit() with the records and the
   * position after the batch once the events' side effects are durable.
   */
  plan(
    facts: readonly { fact: LogFact; line: number }[],
    after: LogPosition,
  ): { records: JournalRecord[]; events: DeliveryEvent[] } {
    const records: JournalRecord[] = [];
    const events: DeliveryEvent[] = [];
    const touched = new Map<string, MessageDelivery>();
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
    const change = (id: string): MessageDelivery => {
      this.ahead = true;
      const m = this.mutable(id);
      touched.set(id, m);
      return m;
    };
    for (const { fact, line } of facts) {
      switch (fact.kind) {
        case "message-id": {
          // The sendmail hand-off's only link: trusted for a Message-ID the relay generated for a message it handed
          // off, and never over a queue id already tied to a message (the SMTP hand-off records its queue id).
          const id = this.ourId(fact.messageId);
          if (id === undefined || this.slotOf(id) < 0 || this.byQueueId.has(fact.queueId)) break;
          records.push({ t: "q", qid: fact.queueId, id });
          this.byQueueId.set(fact.queueId, id);
          const m = change(id);
          if (!m.queueIds.includes(fact.queueId)) m.queueIds.push(fact.queueId);
          break;
        }
        case "recipient": {
          const id = this.byQueueId.get(fact.queueId);
          if (id === undefined) break;
          const st = fact.status === "sent" ? "delivered" : fact.status;
          const retry = st === "deferred" ? nextRetryEstimate(fact.at, fact.delaySeconds, backoff) : undefined;
          const m = change(id);
          const rc = applyOutcome(m, {
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
          emit(m, rc, line);
          break;
        }
        case "expired": {
          const id = this.byQueueId.get(fact.queueId);
          if (id === undefined) break;
          const m = change(id);
          for (const rc of m.recipients.filter((x) => !FINAL.has(x.state))) {
            applyOutcome(m, {
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
          if (this.byQueueId.has(fact.queueId)) {
            records.push({ t: "x", qid: fact.queueId });
            this.byQueueId.delete(fact.queueId);
            this.ahead = true;
          }
          break;
        default: {
          const never: never = fact;
          throw new Error(`unknown fact ${JSON.stringify(never)}`);
        }
      }
    }
    for (const m of touched.values()) records.push({ t: "m", m });
    return { records, events };
  }

  /** Appends the batch's records and the position after it in one write + fsync. */
  async commit(records: readonly JournalRecord[], after: LogPosition): Promise<void> {
    const lines = [...records, { t: "p", ino: after.inode, off: after.offset }].map((r) => JSON.stringify(r));
    const messages = records.filter((r): r is Extract<JournalRecord, { t: "m" }> => r.t === "m").map((r) => r.m);
    for (const m of messages) this.inflight.set(m.id, m);
    try {
      await this.append(lines, true, (offsets) => {
        records.forEach((r, i) => {
          if (r.t !== "m") return;
          const s = this.addSlot(r.m.id);
          this.index(s, this.dirty.get(r.m.id) ?? r.m);
          this.located(s, offsets[i] as number, Buffer.byteLength(lines[i] as string));
          if (this.dirty.get(r.m.id) === r.m) this.dirty.delete(r.m.id);
          if (this.inflight.get(r.m.id) === r.m) {
            this.inflight.delete(r.m.id);
            // Written from an object that later changes may still touch: the cache keeps a copy.
            this.cache.set(s, cloneMessage(r.m));
          }
        });
        this.pos = { inode: after.inode, offset: after.offset };
        if (this.dirty.size === 0) this.ahead = false;
      });
    } catch (err) {
      for (const m of messages) if (this.inflight.get(m.id) === m) this.inflight.delete(m.id);
      throw err;
    }
  }

  // ---- the readers' interface ----

  /**
   * What is committed: a change plan() made becomes visible with commit(), after the tracker's side effects
   * (suppression, webhook outbox) are durable, so a caller that reads "bounced" finds the address suppressed.
   */
  get(id: string): MessageDelivery | undefined {
    const s = this.slotOf(id);
    if (s < 0) return undefined;
    return this.committed(id, s);
  }

  /** The caller's handed-off messages in a state, oldest first, from `since` (ms), after `cursor` (exclusive). */
  list(
    caller: string,
    q: { state?: DeliveryState; since?: number; after?: { at: number; id: string }; limit: number },
  ): MessageDelivery[] {
    const out: MessageDelivery[] = [];
    const code = this.callerCodes.get(caller);
    if (code === undefined) return out;
    const stateBit = q.state === undefined ? 0 : 1 << STATE_CODE[q.state];
    const want = q.state === undefined ? 0 : STATE_CODE[q.state];
    const need = (stateBit | (1 << (8 + (code % 24)))) >>> 0;
    const zero = new Uint32Array(4);
    let i = q.since !== undefined ? this.lowerBound(q.since, zero) : 0;
    const after = q.after;
    if (after) i = Math.max(i, this.lowerBound(after.at, zero));
    const order = this.order;
    const callerOf = this.callerOf;
    const stateOf = this.stateOf;
    let blockHits = 0;
    while (i < this.orderLen && out.length < q.limit) {
      const b = i >>> BLOCK_SHIFT;
      if ((i & BLOCK_MASK) === 0) {
        // A block whose mask lacks the caller or the state is skipped whole.
        if (((this.blockMask[b] as number) & need) >>> 0 !== need) {
          i += BLOCK_SIZE;
          continue;
        }
        blockHits = 0;
      }
      const s = order[i] as number;
      i++;
      if (callerOf[s] === code && (want === 0 || stateOf[s] === want)) {
        const id = this.idOf(s);
        if (!after || (this.handedAt[s] as number) !== after.at || id > after.id) {
          const m = this.committed(id, s);
          if (m) out.push(m);
          blockHits++;
        }
      }
      if ((i & BLOCK_MASK) === 0 && blockHits === 0) {
        // The mask said yes and nothing matched: its bits were stale (entries moved or changed state); recompute it.
        this.blockMask[b] = 0;
        for (let k = b << BLOCK_SHIFT; k < Math.min(this.orderLen, (b + 1) << BLOCK_SHIFT); k++) this.markBlock(k);
      }
    }
    return out;
  }

  // ---- checkpoint, compaction ----

  private maintain(): void {
    if (this.maintaining || this.closing || this.fd === null || this.ahead || this.dirty.size > 0) return;
    const now = this.now();
    const compactBytes = this.opts.compactBytes ?? 64 * 1024 * 1024;
    const checkpointBytes = this.opts.checkpointBytes ?? 32 * 1024 * 1024;
    let work: (() => Promise<void>) | undefined;
    if (this.size > compactBytes && this.size > 2 * this.liveBytes) work = () => this.compactNow();
    else if (this.size - this.checkpointedSize > checkpointBytes) work = () => this.lockedCheckpoint();
    if (now - this.lastEviction > 60_000) {
      this.lastEviction = now;
      this.evict();
    }
    if (!work) return;
    this.maintaining = work()
      .catch(() => {
        // Retried on a later append; the journal stays the truth meanwhile.
      })
      .finally(() => {
        this.maintaining = null;
      });
  }

  /**
   * The background checkpoint: the columns are copied into the temp file while appends are held back (synchronous
   * code, no await), then appends go on while the file is fsync'd and renamed into place. Holding them through the
   * fsyncs stalled every fast-path 202 for ~40 ms once per 32 MiB of journal (bench:relay's open loop). The file
   * says which journal offset it covers, so appends made meanwhile are simply replayed after it at start.
   */
  private async lockedCheckpoint(): Promise<void> {
    await this.lock();
    let written: WrittenCheckpoint | undefined;
    try {
      if (!this.ahead && this.dirty.size === 0 && this.fd !== null) written = this.writeCheckpoint();
    } finally {
      this.unlock();
    }
    if (written) await this.settleCheckpoint(written);
  }

  /** Live slots, handed-off ones first in their order (so loading needs no sort). */
  private liveSlots(): Int32Array {
    const out = new Int32Array(this.ids.size);
    out.set(this.order.subarray(0, this.orderLen));
    let n = this.orderLen;
    for (let s = 0; s < this.stateOf.length; s++)
      if (this.stateOf[s] !== FREE && Number.isNaN(this.handedAt[s] as number)) out[n++] = s;
    return out;
  }

  /**
   * Writes the columns (with appends held back, and nothing ahead of the journal) for the journal up to `size`:
   * temp file, fsync, rename, directory fsync. Blocks: [n][handedAt f64][recordAt f64][id 16 B][updated u32]
   * [recordLen u32][caller u16][state u8], padded to 8 bytes.
   */
  private async checkpoint(): Promise<void> {
    await this.settleCheckpoint(this.writeCheckpoint());
  }

  /** The synchronous half of a checkpoint: the columns as they are now, into the temp file (not yet fsync'd). */
  private writeCheckpoint(): WrittenCheckpoint {
    const slots = this.liveSlots();
    const header = Buffer.from(
      JSON.stringify({
        journal: this.journalId,
        covered: this.size,
        count: slots.length,
        ordered: this.orderLen,
        pos: this.pos ?? null,
        callers: this.callers,
        // One string ("qid id" lines), not an array of pairs: parsing 50,000 small arrays at start grew V8's young
        // generation for good.
        queueIds: [...this.byQueueId].map(([q, id]) => `${q} ${id}\n`).join(""),
      }),
    );
    const tmp = `${this.checkpointFile}.tmp`;
    const fd = fsSync.openSync(tmp, "w", 0o600);
    try {
      const head = Buffer.alloc(16);
      head.write(CHECKPOINT_MAGIC, 0, "latin1");
      head.writeUInt32LE(header.length, 8);
      fsSync.writeSync(fd, head);
      fsSync.writeSync(fd, header);
      const block = new ArrayBuffer(CHECKPOINT_BLOCK * 48);
      for (let start = 0; start < slots.length; start += CHECKPOINT_BLOCK) {
        const n = Math.min(CHECKPOINT_BLOCK, slots.length - start);
        const v = blockViews(block, n);
        for (let i = 0; i < n; i++) {
          const s = slots[start + i] as number;
          v.handedAt[i] = this.handedAt[s] as number;
          v.recordAt[i] = this.recordAt[s] as number;
          for (let w = 0; w < 4; w++) v.ids[i * 4 + w] = this.ids.word(s, w);
          v.updated[i] = this.updated[s] as number;
          v.recordLen[i] = this.recordLen[s] as number;
          v.caller[i] = this.callerOf[s] as number;
          v.state[i] = this.stateOf[s] as number;
        }
        fsSync.writeSync(fd, new Uint8Array(block, 0, v.bytes));
      }
    } catch (err) {
      fsSync.closeSync(fd);
      throw err;
    }
    return { fd, tmp, covered: this.size };
  }

  /** The asynchronous half: fsync the temp file, rename it into place, fsync the directory. */
  private async settleCheckpoint(w: WrittenCheckpoint): Promise<void> {
    try {
      await fdatasync(w.fd);
    } finally {
      fsSync.closeSync(w.fd);
    }
    await fs.rename(w.tmp, this.checkpointFile);
    await syncDir(this.dir);
    this.checkpointedSize = w.covered;
  }

  /** Loads the checkpoint if it belongs to this journal; returns the journal offset it covers (0 when none). */
  private loadCheckpoint(): number {
    let fd: number;
    try {
      fd = fsSync.openSync(this.checkpointFile, "r");
    } catch {
      return 0;
    }
    try {
      const head = Buffer.alloc(16);
      if (fsSync.readSync(fd, head, 0, 16, 0) !== 16 || head.toString("latin1", 0, 8) !== CHECKPOINT_MAGIC) return 0;
      const hlen = head.readUInt32LE(8);
      const hbuf = Buffer.alloc(hlen);
      if (fsSync.readSync(fd, hbuf, 0, hlen, 16) !== hlen) return 0;
      const h = JSON.parse(hbuf.toString("utf8")) as {
        journal: string;
        covered: number;
        count: number;
        ordered: number;
        pos: LogPosition | null;
        callers: string[];
        queueIds: string;
      };
      if (h.journal !== this.journalId || h.covered > this.size) return 0;
      this.ids.reserve(h.count);
      this.growColumns();
      let at = 16 + hlen;
      const block = new ArrayBuffer(CHECKPOINT_BLOCK * 48);
      for (let start = 0; start < h.count; start += CHECKPOINT_BLOCK) {
        const n = Math.min(CHECKPOINT_BLOCK, h.count - start);
        const v = blockViews(block, n);
        const got = fsSync.readSync(fd, new Uint8Array(block, 0, v.bytes), 0, v.bytes, at);
        if (got !== v.bytes) throw new Error("delivery checkpoint is short");
        at += v.bytes;
        // Whole columns at once (a fresh map hands out slots in order): a loop over doubles would allocate a number
        // per value until V8 optimises it, and V8 keeps its young generation grown after such a burst (tens of MB).
        const first = this.ids.addFresh(v.ids, n);
        this.handedAt.set(v.handedAt, first);
        this.recordAt.set(v.recordAt, first);
        this.updated.set(v.updated, first);
        for (let i = 0; i < n; i++) if ((v.recordLen[i] as number) > LONG_RECORD) v.recordLen[i] = LONG_RECORD;
        this.recordLen.set(v.recordLen, first);
        this.callerOf.set(v.caller, first);
        this.stateOf.set(v.state, first);
        for (let i = 0; i < n; i++) this.liveBytes += v.recordLen[i] as number;
      }
      for (let k = 0; k < h.ordered; k++) this.order[k] = k;
      this.orderLen = h.ordered;
      this.rebuildMasks();
      this.callers = h.callers;
      this.callerCodes = new Map(h.callers.map((c, i) => [c, i]));
      this.byQueueId = new TransientMap();
      for (let i = 0, nl = h.queueIds.indexOf("\n"); nl >= 0; i = nl + 1, nl = h.queueIds.indexOf("\n", i)) {
        const sp = h.queueIds.indexOf(" ", i);
        this.byQueueId.set(h.queueIds.slice(i, sp), h.queueIds.slice(sp + 1, nl));
      }
      this.pos = h.pos ?? undefined;
      this.checkpointedSize = h.covered;
      return h.covered;
    } catch {
      // A checkpoint that cannot be read is only slower: the whole journal is read instead.
      this.reset();
      return 0;
    } finally {
      fsSync.closeSync(fd);
    }
  }

  /**
   * Rewrites the journal with only each retained message's latest record, while appends go on: the records up to
   * the journal's end at the start are copied (in slices, yielding between them); then, with appends held back,
   * whatever was appended meanwhile is copied as it is, and the new file replaces the old (fsync, rename, directory
   * fsync). A crash before the rename leaves the old journal; after it, the new one is whole.
   */
  async compact(): Promise<void> {
    while (this.maintaining) await this.maintaining;
    const run = this.compactNow();
    this.maintaining = run.finally(() => {
      this.maintaining = null;
    });
    await run;
  }

  private async compactNow(): Promise<void> {
    this.evict();
    await this.lock();
    let locked = true;
    const tmp = `${this.file}.compact`;
    const out = fsSync.openSync(tmp, "w", 0o600);
    try {
      const E = this.size;
      const newId = randomUUID();
      const slots = this.liveSlots();
      const newAt = new Float64Array(this.stateOf.length).fill(-1);
      let w = 0;
      const put = (buf: Buffer): void => {
        let done = 0;
        while (done < buf.length) done += fsSync.writeSync(out, buf, done, buf.length - done, w + done);
        w += buf.length;
      };
      put(Buffer.from(`${JSON.stringify({ t: "j", id: newId })}\n`));
      // Messages changed by a legacy replay (or planned and not committed) are written from memory, in this lock.
      const fromMemory = new Map(this.dirty);
      this.dirty.clear();
      const queueIds = [...this.byQueueId];
      const pos = this.pos;
      this.unlock();
      locked = false;
      let sliceStart = performance.now();
      let n = 0;
      for (const s of slots) {
        if (this.closing && !this.legacy) throw new Error("closing");
        if (this.stateOf[s] === FREE) continue;
        const id = this.idOf(s);
        const mem = fromMemory.get(id);
        const off = this.recordAt[s] as number;
        if (!mem && (off < 0 || off >= E)) continue;
        const line = mem
          ? Buffer.from(`${JSON.stringify({ t: "m", m: mem })}\n`)
          : Buffer.concat([this.readAt(off, this.lenOf(s)), NEWLINE]);
        newAt[s] = w;
        if (mem) this.recordLen[s] = Math.min(line.length - 1, LONG_RECORD);
        put(line);
        if (++n % 1000 === 0) put(Buffer.from('{"t":"e"}\n'));
        if (performance.now() - sliceStart > 5) {
          await new Promise<void>((resolve) => setImmediate(resolve));
          sliceStart = performance.now();
        }
      }
      const tail: string[] = queueIds.map(([qid, id]) => JSON.stringify({ t: "q", qid, id }));
      tail.push(JSON.stringify(pos ? { t: "p", ino: pos.inode, off: pos.offset } : { t: "e" }));
      put(Buffer.from(tail.map((l) => `${l}\n`).join("")));
      await this.lock();
      locked = true;
      const base = w;
      for (let from = E; from < this.size;) {
        const buf = this.readAt(from, Math.min(SCAN_CHUNK, this.size - from));
        put(buf);
        from += buf.length;
      }
      await fdatasync(out);
      fsSync.closeSync(out);
      await fs.rename(tmp, this.file);
      await syncDir(this.dir);
      fsSync.closeSync(this.fd as number);
      this.fd = fsSync.openSync(this.file, fsc.O_RDWR | fsc.O_APPEND);
      this.liveBytes = 0;
      for (let s = 0; s < this.stateOf.length; s++) {
        if (this.stateOf[s] === FREE) continue;
        const off = this.recordAt[s] as number;
        if (off >= E) this.recordAt[s] = base + off - E;
        else if ((newAt[s] as number) >= 0) this.recordAt[s] = newAt[s] as number;
        else continue;
        this.liveBytes += this.recordLen[s] as number;
      }
      this.size = base + this.size - E;
      this.journalId = newId;
      this.legacy = false;
      this.cache.clear();
      this.checkpointedSize = 0;
      if (!this.ahead && this.dirty.size === 0) await this.checkpoint();
    } catch (err) {
      try {
        fsSync.closeSync(out);
      } catch {
        // already closed
      }
      await fs.rm(tmp, { force: true });
      throw err;
    } finally {
      if (locked) this.unlock();
    }
  }
}

const NEWLINE = Buffer.from("\n");

function blockViews(
  block: ArrayBuffer,
  n: number,
): {
  handedAt: Float64Array;
  recordAt: Float64Array;
  ids: Uint32Array;
  updated: Uint32Array;
  recordLen: Uint32Array;
  caller: Uint16Array;
  state: Uint8Array;
  bytes: number;
} {
  let o = 0;
  const handedAt = new Float64Array(block, o, n);
  o += 8 * n;
  const recordAt = new Float64Array(block, o, n);
  o += 8 * n;
  const ids = new Uint32Array(block, o, 4 * n);
  o += 16 * n;
  const updated = new Uint32Array(block, o, n);
  o += 4 * n;
  const recordLen = new Uint32Array(block, o, n);
  o += 4 * n;
  const caller = new Uint16Array(block, o, n);
  o += 2 * n;
  const state = new Uint8Array(block, o, n);
  o += n;
  return { handedAt, recordAt, ids, updated, recordLen, caller, state, bytes: (o + 7) & ~7 };
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsSync.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

/** A checkpoint written to its temp file for the journal up to `covered`, not yet durable nor in place. */
interface WrittenCheckpoint {
  readonly fd: number;
  readonly tmp: string;
  readonly covered: number;
}

async function syncDir(dir: string): Promise<void> {
  const d = await fs.open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
