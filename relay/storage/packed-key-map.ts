import { randomBytes } from "node:crypto";

/**
 * A hash map from fixed-size binary keys (`words` uint32 each: a UUID is 4, a SHA-256 is 8) to dense slot numbers,
 * kept entirely in typed arrays: nothing per entry lives on the V8 heap, so 100,000 entries never make the garbage
 * collector grow its young generation (100,000 surviving strings and Map entries did, and V8 kept it grown).
 * Open addressing, linear probing, backward-shift deletion. Freed slots are reused.
 */
export class PackedKeyMap {
  readonly words: number;
  private keys: Uint32Array;
  /** slot + 1 per bucket; 0 = empty. Twice as many buckets as slots (a power of two): probes stay short. */
  private buckets: Int32Array;
  private mask: number;
  private readonly free: number[] = [];
  private used = 0;
  private live = 0;
  /**
   * Per-process secret mixed into the hash, so chosen keys (idempotency keys come from callers) cannot collide on
   * purpose.
   */
  private readonly seed = randomBytes(4).readUInt32LE(0);

  /** `initialSlots` must be a power of two. */
  constructor(words: number, initialSlots = 1024) {
    this.words = words;
    this.keys = new Uint32Array(initialSlots * words);
    this.buckets = new Int32Array(initialSlots * 2);
    this.mask = this.buckets.length - 1;
  }

  get size(): number {
    return this.live;
  }

  /** Slots this map can hand out before it grows; owners size their per-slot arrays to it. */
  get capacity(): number {
    return this.keys.length / this.words;
  }

  /** Forgets every entry (keeps the memory). */
  clear(): void {
    this.buckets.fill(0);
    this.free.length = 0;
    this.used = 0;
    this.live = 0;
  }

  /**
   * Makes room for `n` slots in one step (loading a known count at once): growing by doubling would free each smaller
   * array, and glibc keeps freed blocks of that size in the process (RSS) instead of returning them.
   */
  reserve(n: number): void {
    let cap = this.capacity;
    while (cap < n) cap *= 2;
    if (cap !== this.capacity) this.resize(cap);
  }

  /** The slot of `key` (its first `words` words from `off`), or -1. */
  get(key: Uint32Array, off = 0): number {
    for (let b = this.home(key, off); ; b = (b + 1) & this.mask) {
      const s = (this.buckets[b] as number) - 1;
      if (s < 0) return -1;
      if (this.equals(s, key, off)) return s;
    }
  }

  /** The slot of `key`, adding it when absent. */
  add(key: Uint32Array, off = 0): number {
    const found = this.get(key, off);
    if (found >= 0) return found;
    if (this.free.length === 0 && this.used === this.capacity) this.grow();
    const s = this.free.pop() ?? this.used++;
    this.keys.set(key.subarray(off, off + this.words), s * this.words);
    let b = this.home(key, off);
    while (this.buckets[b] !== 0) b = (b + 1) & this.mask;
    this.buckets[b] = s + 1;
    this.live++;
    return s;
  }

  /**
   * Adds `n` keys (`words` each, back to back in `keys`) that are known to be absent and distinct, at consecutive
   * slots, without looking each up first (loading a checkpoint). Returns the first slot.
   */
  addFresh(keys: Uint32Array, n: number): number {
    if (this.free.length > 0) throw new Error("addFresh needs a map without freed slots");
    this.reserve(this.used + n);
    const first = this.used;
    this.keys.set(keys.subarray(0, n * this.words), first * this.words);
    for (let i = 0; i < n; i++) {
      const s = first + i;
      let b = this.home(this.keys, s * this.words);
      while (this.buckets[b] !== 0) b = (b + 1) & this.mask;
      this.buckets[b] = s + 1;
    }
    this.used += n;
    this.live += n;
    return first;
  }

  /** Removes `key`; returns its former slot, or -1 when absent. */
  delete(key: Uint32Array, off = 0): number {
    let b = this.home(key, off);
    for (; ; b = (b + 1) & this.mask) {
      const s = (this.buckets[b] as number) - 1;
      if (s < 0) return -1;
      if (this.equals(s, key, off)) break;
    }
    const slot = (this.buckets[b] as number) - 1;
    // Backward shift: pull later entries of the probe run into the hole, so lookups never stop early.
    let hole = b;
    for (let j = (b + 1) & this.mask; this.buckets[j] !== 0; j = (j + 1) & this.mask) {
      const h = this.home(this.keys, ((this.buckets[j] as number) - 1) * this.words);
      if (((j - h) & this.mask) >= ((j - hole) & this.mask)) {
        this.buckets[hole] = this.buckets[j] as number;
        hole = j;
      }
    }
    this.buckets[hole] = 0;
    this.free.push(slot);
    this.live--;
    return slot;
  }

  /** Word i of the key stored in `slot`. */
  word(slot: number, i: number): number {
    return this.keys[slot * this.words + i] as number;
  }

  private equals(slot: number, key: Uint32Array, off: number): boolean {
    const base = slot * this.words;
    for (let i = 0; i < this.words; i++) if (this.keys[base + i] !== key[off + i]) return false;
    return true;
  }

  private home(key: Uint32Array, off: number): number {
    let h = ((key[off] as number) ^ this.seed ^ Math.imul(key[off + 1] as number, 0x9e3779b1)) >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) & this.mask;
  }

  /** Doubles the slots and the buckets, and re-places every entry. */
  private grow(): void {
    this.resize(this.capacity * 2);
  }

  private resize(slots: number): void {
    const keys = new Uint32Array(slots * this.words);
    keys.set(this.keys);
    this.keys = keys;
    const old = this.buckets;
    this.buckets = new Int32Array(slots * 2);
    this.mask = this.buckets.length - 1;
    for (const v of old) {
      if (v === 0) continue;
      let b = this.home(this.keys, (v - 1) * this.words);
      while (this.buckets[b] !== 0) b = (b + 1) & this.mask;
      this.buckets[b] = v;
    }
  }
}

const HEX8 = /^[0-9a-f]{8}$/;

/** A job id (lowercase UUID, checked by the caller) as 4 words into `out`. */
export function uuidToWords(id: string, out: Uint32Array, off = 0): void {
  out[off] = parseInt(id.slice(0, 8), 16);
  out[off + 1] = parseInt(id.slice(9, 13) + id.slice(14, 18), 16);
  out[off + 2] = parseInt(id.slice(19, 23) + id.slice(24, 28), 16);
  out[off + 3] = parseInt(id.slice(28, 36), 16);
}

export function wordsToUuid(w0: number, w1: number, w2: number, w3: number): string {
  const h = (w: number): string => w.toString(16).padStart(8, "0");
  const a = h(w1);
  const b = h(w2);
  return `${h(w0)}-${a.slice(0, 4)}-${a.slice(4)}-${b.slice(0, 4)}-${b.slice(4)}${h(w3)}`;
}

/** A lowercase hex SHA-256 as 8 words into `out`; false (nothing written) for anything else. */
export function hexToWords(hex: string, out: Uint32Array, off = 0): boolean {
  if (hex.length !== 64) return false;
  for (let i = 0; i < 8; i++) {
    const part = hex.slice(i * 8, i * 8 + 8);
    if (!HEX8.test(part)) return false;
    out[off + i] = parseInt(part, 16);
  }
  return true;
}
