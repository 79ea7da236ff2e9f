/**
 * A fixed-size, direct-mapped cache of objects by slot number: entry `slot % size` holds the last object stored for
 * any slot that maps there. Lookups check both the slot and the object's id, so a slot freed and handed to another
 * message never returns the old message.
 *
 * Why not an LRU Map: a Map kept in LRU order deletes and re-adds an entry on every store. Once the Map is in V8's old
 * generation, the tables it reallocates as deleted entries fill it are allocated there directly (see ../transient.ts);
 * measured, that was old-generation growth on every hand-off. This cache's two arrays are allocated once.
 *
 * Slots are handed out in order, so the last `size` messages a store created map to different entries; slots reused
 * after retention may collide, which costs a read from the journal, never a wrong answer.
 */
export class SlotCache<T extends { readonly id: string }> {
  private readonly slots: Int32Array;
  private readonly values: (T | undefined)[];
  private readonly mask: number;

  /** `size` must be a power of two. */
  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1 || (size & (size - 1)) !== 0)
      throw new Error(`SlotCache: size must be a power of two, got ${size}`);
    this.slots = new Int32Array(size).fill(-1);
    this.values = new Array<T | undefined>(size).fill(undefined);
    this.mask = size - 1;
  }

  get(slot: number, id: string): T | undefined {
    const i = slot & this.mask;
    if (this.slots[i] !== slot) return undefined;
    const v = this.values[i];
    return v !== undefined && v.id === id ? v : undefined;
  }

  set(slot: number, value: T): void {
    const i = slot & this.mask;
    this.slots[i] = slot;
    this.values[i] = value;
  }

  delete(slot: number): void {
    const i = slot & this.mask;
    if (this.slots[i] !== slot) return;
    this.slots[i] = -1;
    this.values[i] = undefined;
  }

  clear(): void {
    this.slots.fill(-1);
    this.values.fill(undefined);
  }
}
