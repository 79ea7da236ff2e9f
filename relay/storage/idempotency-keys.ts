import { hexToWords, PackedKeyMap, uuidToWords, wordsToUuid } from "./packed-key-map";
import { isJobId } from "./job";

/** The message an idempotency key created, and whether a body hash matches the first use's. */
export interface KeyUse {
  readonly id: string;
  readonly createdAt: number;
  readonly sameBody: boolean;
}

/**
 * Idempotency keys in use: key hash -> the message it created, the body's hash and when. One entry per keyed job or
 * hand-off record of the last 24 h, kept in typed arrays (hashes and ids as binary words; bench/queue-bench.ts prints
 * the bytes per job, none of them on the V8 heap). Hashes are the relay's own lowercase hex SHA-256 (validate.ts
 * sha256); a value that is not one (a damaged file) is not remembered and never matches.
 */
export class IdempotencyKeys {
  private readonly keys = new PackedKeyMap(8);
  private readonly probe = new Uint32Array(12);
  private body = new Uint32Array(0);
  private ids = new Uint32Array(0);
  private created = new Float64Array(0);

  get size(): number {
    return this.keys.size;
  }

  lookup(keyHash: string, bodyHash: string): KeyUse | undefined {
    if (!hexToWords(keyHash, this.probe)) return undefined;
    const s = this.keys.get(this.probe);
    if (s < 0) return undefined;
    const sameBody =
      hexToWords(bodyHash, this.probe) && this.body.subarray(s * 8, s * 8 + 8).every((w, i) => w === this.probe[i]);
    const id = this.ids.subarray(s * 4, s * 4 + 4);
    return {
      id: wordsToUuid(id[0] as number, id[1] as number, id[2] as number, id[3] as number),
      createdAt: this.created[s] as number,
      sameBody,
    };
  }

  remember(keyHash: string, bodyHash: string, id: string, createdAt: number): void {
    if (!isJobId(id) || !hexToWords(bodyHash, this.probe) || !hexToWords(keyHash, this.probe)) return;
    const s = this.keys.add(this.probe);
    if (s >= this.created.length) this.grow();
    hexToWords(bodyHash, this.body, s * 8);
    uuidToWords(id, this.ids, s * 4);
    this.created[s] = createdAt;
  }

  /** Forgets keys first used at or before `cutoff` (ms since epoch). */
  forgetBefore(cutoff: number): void {
    const old: number[] = [];
    this.each((s) => {
      if ((this.created[s] as number) <= cutoff) old.push(s);
    });
    for (const s of old) {
      for (let i = 0; i < 8; i++) this.probe[i] = this.keys.word(s, i);
      this.keys.delete(this.probe);
      this.created[s] = Number.NaN;
    }
  }

  /** Calls fn with every live slot. */
  private each(fn: (slot: number) => void): void {
    for (let s = 0; s < this.created.length; s++) if (!Number.isNaN(this.created[s] as number)) fn(s);
  }

  private grow(): void {
    const n = this.keys.capacity;
    const body = new Uint32Array(n * 8);
    body.set(this.body);
    this.body = body;
    const ids = new Uint32Array(n * 4);
    ids.set(this.ids);
    this.ids = ids;
    const created = new Float64Array(n).fill(Number.NaN);
    created.set(this.created);
    this.created = created;
  }
}
