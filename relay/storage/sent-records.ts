import { PackedKeyMap, uuidToWords } from "./packed-key-map";
import { Interner, widen } from "./columns";
import { isJobId, type SentRecord } from "./job";

/** Bytes of a Postfix queue id kept inline; a longer one (none seen: long ids are 15 characters) goes to a Map. */
const QID_BYTES = 16;

/**
 * The hand-off records of the retention period, in typed-array columns (as the job index and the idempotency keys):
 * id -> caller, createdAt, handedOffAt, attempts, recipients, Postfix queue id. About 64 bytes per record and nothing
 * on the V8 heap, so a million retained records cost ~64 MB and no garbage-collector work. The idempotency key of a
 * record lives in IdempotencyKeys (24 h) and in the log line; status lookups do not need it.
 */
export class SentRecords {
  private readonly keys = new PackedKeyMap(4);
  private readonly probe = new Uint32Array(4);
  /** NaN marks a free slot. */
  private handed = new Float64Array(0);
  private created = new Float64Array(0);
  private attempts = new Uint16Array(0);
  private recipients = new Uint32Array(0);
  private caller = new Uint16Array(0);
  private qidLen = new Uint8Array(0);
  private qid = new Uint8Array(0);
  private readonly callers = new Interner();
  private readonly longQid = new Map<number, string>();

  get size(): number {
    return this.keys.size;
  }

  has(id: string): boolean {
    return this.slot(id) >= 0;
  }

  /** Adds or replaces the record of rec.id. */
  set(rec: SentRecord): void {
    if (!isJobId(rec.id)) return;
    uuidToWords(rec.id, this.probe);
    const s = this.keys.add(this.probe);
    if (s >= this.handed.length) this.grow();
    this.handed[s] = rec.handedOffAt;
    this.created[s] = rec.createdAt;
    this.attempts[s] = Math.min(rec.attempts, 0xffff);
    this.recipients[s] = rec.recipientCount;
    this.caller[s] = this.callers.code(rec.caller);
    this.longQid.delete(s);
    const q = rec.postfixQueueId;
    if (q === undefined) this.qidLen[s] = 0;
    else if (q.length <= QID_BYTES && /^[\x21-\x7e]*$/.test(q)) {
      this.qidLen[s] = q.length + 1; // 0 = none, n + 1 = n bytes
      for (let i = 0; i < q.length; i++) this.qid[s * QID_BYTES + i] = q.charCodeAt(i);
    } else {
      this.qidLen[s] = 0xff;
      this.longQid.set(s, q);
    }
  }

  get(id: string): Omit<SentRecord, "idempotency"> | undefined {
    const s = this.slot(id);
    if (s < 0) return undefined;
    const n = this.qidLen[s] as number;
    const postfixQueueId =
      n === 0
        ? undefined
        : n === 0xff
          ? this.longQid.get(s)
          : String.fromCharCode(...this.qid.subarray(s * QID_BYTES, s * QID_BYTES + n - 1));
    return {
      id,
      caller: this.callers.name(this.caller[s] as number),
      createdAt: this.created[s] as number,
      handedOffAt: this.handed[s] as number,
      attempts: this.attempts[s] as number,
      recipientCount: this.recipients[s] as number,
      ...(postfixQueueId !== undefined ? { postfixQueueId } : {}),
    };
  }

  delete(id: string): void {
    if (!isJobId(id)) return;
    uuidToWords(id, this.probe);
    const s = this.keys.delete(this.probe);
    if (s >= 0) this.free(s);
  }

  /** Forgets the records handed off at or before `cutoff`; returns how many. */
  forgetBefore(cutoff: number): number {
    let n = 0;
    for (let s = 0; s < this.handed.length; s++) {
      const at = this.handed[s] as number;
      if (Number.isNaN(at) || at > cutoff) continue;
      for (let i = 0; i < 4; i++) this.probe[i] = this.keys.word(s, i);
      this.keys.delete(this.probe);
      this.free(s);
      n++;
    }
    return n;
  }

  private free(s: number): void {
    this.handed[s] = Number.NaN;
    this.longQid.delete(s);
  }

  private slot(id: string): number {
    if (!isJobId(id)) return -1;
    uuidToWords(id, this.probe);
    return this.keys.get(this.probe);
  }

  private grow(): void {
    const n = this.keys.capacity;
    const used = this.handed.length;
    this.handed = widen(this.handed, n).fill(Number.NaN, used);
    this.created = widen(this.created, n);
    this.attempts = widen(this.attempts, n);
    this.recipients = widen(this.recipients, n);
    this.caller = widen(this.caller, n);
    this.qidLen = widen(this.qidLen, n);
    this.qid = widen(this.qid, n * QID_BYTES);
  }
}
