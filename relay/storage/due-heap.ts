/**
 * Min-heap of integer slots (see JobIndex), ordered by the caller's `less`. Each slot's position is tracked, so a slot
 * can be removed or re-keyed in O(log n) and the heap never holds stale entries. Hand-written because no heap
 * package is a dependency; typed arrays keep it at 8 bytes per slot.
 */
export class DueHeap {
  private heap = new Int32Array(64);
  private pos = new Int32Array(64).fill(-1);
  private n = 0;
  private readonly less: (a: number, b: number) => boolean;

  constructor(less: (a: number, b: number) => boolean) {
    this.less = less;
  }

  get size(): number {
    return this.n;
  }

  has(slot: number): boolean {
    return slot < this.pos.length && (this.pos[slot] as number) >= 0;
  }

  /** The least slot, or -1 when empty. */
  peek(): number {
    return this.n > 0 ? (this.heap[0] as number) : -1;
  }

  /** Adds a slot, or moves it to its place if its key changed while it was in the heap. */
  push(slot: number): void {
    if (this.has(slot)) {
      this.update(slot);
      return;
    }
    this.reserve(slot);
    const i = this.n++;
    this.heap[i] = slot;
    this.pos[slot] = i;
    this.up(i);
  }

  /** Removes and returns the least slot, or -1 when empty. */
  pop(): number {
    if (this.n === 0) return -1;
    const top = this.heap[0] as number;
    this.removeAt(0);
    return top;
  }

  remove(slot: number): void {
    if (this.has(slot)) this.removeAt(this.pos[slot] as number);
  }

  /** Restores the order after the slot's key changed. */
  update(slot: number): void {
    if (!this.has(slot)) return;
    const i = this.pos[slot] as number;
    if (!this.up(i)) this.down(i);
  }

  private removeAt(i: number): void {
    const slot = this.heap[i] as number;
    const last = this.heap[--this.n] as number;
    this.pos[slot] = -1;
    if (i === this.n) return;
    this.heap[i] = last;
    this.pos[last] = i;
    if (!this.up(i)) this.down(i);
  }

  /** Moves the entry at i towards the root; true when it moved. */
  private up(i: number): boolean {
    const h = this.heap;
    const slot = h[i] as number;
    const start = i;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p] as number;
      if (!this.less(slot, parent)) break;
      h[i] = parent;
      this.pos[parent] = i;
      i = p;
    }
    h[i] = slot;
    this.pos[slot] = i;
    return i !== start;
  }

  private down(i: number): void {
    const h = this.heap;
    const slot = h[i] as number;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= this.n) break;
      const r = l + 1;
      const c = r < this.n && this.less(h[r] as number, h[l] as number) ? r : l;
      const child = h[c] as number;
      if (!this.less(child, slot)) break;
      h[i] = child;
      this.pos[child] = i;
      i = c;
    }
    h[i] = slot;
    this.pos[slot] = i;
  }

  private reserve(slot: number): void {
    if (this.n >= this.heap.length) {
      const h = new Int32Array(this.heap.length * 2);
      h.set(this.heap);
      this.heap = h;
    }
    if (slot >= this.pos.length) {
      const p = new Int32Array(Math.max(this.pos.length * 2, slot + 1)).fill(-1);
      p.set(this.pos);
      this.pos = p;
    }
  }
}
