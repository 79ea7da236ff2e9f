import { Interner, widen } from "./columns";
import { DueHeap } from "./due-heap";
import { isJobId } from "./job";
import { PackedKeyMap, uuidToWords, wordsToUuid } from "./packed-key-map";

export type IndexedState = "pending" | "processing" | "failed";

/** What the index keeps of a job: enough for the worker's order and for GET /messages/:id, not the message. */
export interface IndexedJob {
  readonly id: string;
  readonly state: IndexedState;
  readonly attempts: number;
  readonly nextAttemptAt: number;
  readonly createdAt: number;
  readonly caller: string;
  readonly lastError?: string;
}

const FREE = 0;
const STATE_CODE = { pending: 1, processing: 2, failed: 3 } as const;
const STATE_OF = [undefined, "pending", "processing", "failed"] as const;
/** Distinct error texts kept shared: an outage gives 100,000 jobs the same few lastError strings. */
const MAX_INTERNED_ERRORS = 1000;
const RARE_ERROR = 0xffff;

/**
 * The in-memory index of every job in pending/, processing/ and failed/, with the due order of the pending ones.
 * Column-wise in typed arrays, ids as 16 binary bytes (PackedKeyMap): no object per job on the V8 heap (before: an
 * entry object, a heap item and the id string, 259 bytes per job; 100,000 such survivors also make V8 grow its young
 * generation for good). bench/queue-bench.ts prints the bytes per job; bench:relay the RSS at 1,000 and 100,000 jobs.
 */
export class JobIndex {
  private readonly ids = new PackedKeyMap(4);
  private readonly key = new Uint32Array(4);
  private state = new Uint8Array(0);
  private attempts = new Uint32Array(0);
  private caller = new Uint32Array(0);
  private nextAt = new Float64Array(0);
  private created = new Float64Array(0);
  /** Arrival order of each pending entry: ties in nextAttemptAt go oldest first. */
  private order = new Float64Array(0);
  /** lastError as a code into errorTexts (0 = none); texts past MAX_INTERNED_ERRORS go to rareErrors. */
  private errorCode = new Uint16Array(0);
  private readonly errorTexts: string[] = [""];
  private readonly errorCodes = new Map<string, number>();
  private readonly rareErrors = new Map<number, string>();
  private nextOrder = 0;
  private readonly callers = new Interner();
  private readonly due = new DueHeap((a, b) => {
    const x = this.nextAt[a] as number;
    const y = this.nextAt[b] as number;
    return x < y || (x === y && (this.order[a] as number) < (this.order[b] as number));
  });
  readonly counts = { pending: 0, processing: 0, failed: 0 };

  get size(): number {
    return this.ids.size;
  }

  has(id: string): boolean {
    return this.slot(id) >= 0;
  }

  get(id: string): IndexedJob | undefined {
    const s = this.slot(id);
    if (s < 0) return undefined;
    const code = this.errorCode[s] as number;
    const err = code === RARE_ERROR ? this.rareErrors.get(s) : code === 0 ? undefined : this.errorTexts[code];
    return {
      id,
      state: STATE_OF[this.state[s] as number] as IndexedState,
      attempts: this.attempts[s] as number,
      nextAttemptAt: this.nextAt[s] as number,
      createdAt: this.created[s] as number,
      caller: this.callers.name(this.caller[s] as number),
      ...(err !== undefined ? { lastError: err } : {}),
    };
  }

  /** Adds the job or replaces what the index knew of it. A pending job joins the due order as the newest arrival. */
  put(job: Omit<IndexedJob, "state">, state: IndexedState): void {
    if (!isJobId(job.id)) throw new Error(`not a job id: ${JSON.stringify(job.id)}`);
    uuidToWords(job.id, this.key);
    const s = this.ids.add(this.key);
    if (s >= this.state.length) this.grow();
    const prev = this.state[s] as number;
    if (prev !== FREE) this.counts[STATE_OF[prev] as IndexedState]--;
    this.state[s] = STATE_CODE[state];
    this.counts[state]++;
    this.attempts[s] = job.attempts;
    this.caller[s] = this.callers.code(job.caller);
    this.nextAt[s] = job.nextAttemptAt;
    this.created[s] = job.createdAt;
    this.setError(s, job.lastError);
    if (state === "pending") {
      this.order[s] = this.nextOrder++;
      this.due.push(s);
    } else {
      this.due.remove(s);
    }
  }

  /** pending -> processing (taken by the worker): leaves the due order. False when the job is not pending. */
  markProcessing(id: string): boolean {
    const s = this.slot(id);
    if (s < 0 || this.state[s] !== STATE_CODE.pending) return false;
    this.due.remove(s);
    this.state[s] = STATE_CODE.processing;
    this.counts.pending--;
    this.counts.processing++;
    return true;
  }

  /** processing -> pending with its old place in the due order (a claim that could not move the file). */
  unmarkProcessing(id: string): void {
    const s = this.slot(id);
    if (s < 0 || this.state[s] !== STATE_CODE.processing) return;
    this.state[s] = STATE_CODE.pending;
    this.counts.processing--;
    this.counts.pending++;
    this.due.push(s);
  }

  delete(id: string): void {
    if (!isJobId(id)) return;
    uuidToWords(id, this.key);
    const s = this.ids.delete(this.key);
    if (s < 0) return;
    this.counts[STATE_OF[this.state[s] as number] as IndexedState]--;
    this.due.remove(s);
    this.setError(s, undefined);
    this.state[s] = FREE;
  }

  /** The pending job due first, or undefined when nothing is pending. */
  peekDue(): { id: string; at: number } | undefined {
    const s = this.due.peek();
    if (s < 0) return undefined;
    const w = (i: number): number => this.ids.word(s, i);
    return { id: wordsToUuid(w(0), w(1), w(2), w(3)), at: this.nextAt[s] as number };
  }

  private slot(id: string): number {
    if (!isJobId(id)) return -1;
    uuidToWords(id, this.key);
    return this.ids.get(this.key);
  }

  /** Per-slot columns follow the id map's capacity. */
  private grow(): void {
    const n = this.ids.capacity;
    this.state = widen(this.state, n);
    this.attempts = widen(this.attempts, n);
    this.caller = widen(this.caller, n);
    this.nextAt = widen(this.nextAt, n);
    this.created = widen(this.created, n);
    this.order = widen(this.order, n);
    this.errorCode = widen(this.errorCode, n);
  }

  private setError(s: number, text: string | undefined): void {
    if (this.errorCode[s] === RARE_ERROR) this.rareErrors.delete(s);
    if (text === undefined) {
      this.errorCode[s] = 0;
      return;
    }
    let code = this.errorCodes.get(text);
    if (code === undefined && this.errorTexts.length < MAX_INTERNED_ERRORS) {
      code = this.errorTexts.length;
      this.errorTexts.push(text);
      this.errorCodes.set(text, code);
    }
    if (code === undefined) this.rareErrors.set(s, text);
    this.errorCode[s] = code ?? RARE_ERROR;
  }
}
