/**
 * Collections for entries that live briefly: a message in flight, a change not yet written, a hand-off running.
 *
 * Why not a plain Map or Set held by a long-lived object: V8 reallocates a Map's table when it grows, when it shrinks
 * (fewer than a quarter full) and when deleted entries have filled it. It allocates the new table in the generation
 * the old one is in. A Map that outlives two scavenges is in the old generation, so each set/delete cycle of a
 * long-lived Map allocates there directly, and only a full collection frees it. Measured (`npm run bench:gc`,
 * docs/benchmarks.md): such tables were most of the old generation's direct growth per request.
 *
 * These start a new, young table whenever they empty, and after `REBUILD_AFTER` deletes (copying what is left), so
 * their tables die young or are promoted once. A delete may start a new table: an iteration begun before it goes on
 * over the old one, so delete only the entry in hand while iterating.
 */

/**
 * Deletes after which a collection that never empties starts a new table (or its size, if larger: the copy then
 * costs at most one insert per delete).
 */
export const REBUILD_AFTER = 64;

export class TransientMap<K, V> {
  private map = new Map<K, V>();
  private deletes = 0;

  get size(): number {
    return this.map.size;
  }

  get(key: K): V | undefined {
    return this.map.get(key);
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  set(key: K, value: V): this {
    this.map.set(key, value);
    return this;
  }

  delete(key: K): boolean {
    if (!this.map.delete(key)) return false;
    if (this.map.size === 0) {
      this.map = new Map();
      this.deletes = 0;
    } else if (++this.deletes >= Math.max(REBUILD_AFTER, this.map.size)) {
      this.map = new Map(this.map);
      this.deletes = 0;
    }
    return true;
  }

  clear(): void {
    this.map = new Map();
    this.deletes = 0;
  }

  keys(): IterableIterator<K> {
    return this.map.keys();
  }

  values(): IterableIterator<V> {
    return this.map.values();
  }

  entries(): IterableIterator<[K, V]> {
    return this.map.entries();
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.map.entries();
  }
}

export class TransientSet<T> {
  private set = new Set<T>();
  private deletes = 0;

  get size(): number {
    return this.set.size;
  }

  has(value: T): boolean {
    return this.set.has(value);
  }

  add(value: T): this {
    this.set.add(value);
    return this;
  }

  delete(value: T): boolean {
    if (!this.set.delete(value)) return false;
    if (this.set.size === 0) {
      this.set = new Set();
      this.deletes = 0;
    } else if (++this.deletes >= Math.max(REBUILD_AFTER, this.set.size)) {
      this.set = new Set(this.set);
      this.deletes = 0;
    }
    return true;
  }

  clear(): void {
    this.set = new Set();
    this.deletes = 0;
  }

  values(): IterableIterator<T> {
    return this.set.values();
  }

  [Symbol.iterator](): IterableIterator<T> {
    return this.set.values();
  }
}
