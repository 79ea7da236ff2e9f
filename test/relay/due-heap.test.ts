import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DueHeap } from "../../relay/storage/due-heap";

describe("DueHeap: the next due slot, with removal and re-keying", () => {
  it("pops slots in key order whatever the mix of pushes, removals and key changes (checked against a sorted list)", () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("push" as const), slot: fc.nat(200), key: fc.integer({ min: 0, max: 1000 }) }),
      fc.record({ kind: fc.constant("remove" as const), slot: fc.nat(200) }),
      fc.record({ kind: fc.constant("pop" as const) }),
    );
    fc.assert(
      fc.property(fc.array(op, { minLength: 300, maxLength: 1000 }), (ops) => {
        const key = new Map<number, number>();
        const order = new Map<number, number>();
        let arrivals = 0;
        const heap = new DueHeap((a, b) => {
          const x = key.get(a) as number;
          const y = key.get(b) as number;
          return x < y || (x === y && (order.get(a) as number) < (order.get(b) as number));
        });
        const model = new Set<number>();
        const least = (): number | undefined =>
          [...model].sort(
            (a, b) =>
              (key.get(a) as number) - (key.get(b) as number) || (order.get(a) as number) - (order.get(b) as number),
          )[0];
        for (const o of ops) {
          if (o.kind === "push") {
            key.set(o.slot, o.key); // re-keys the slot if it is already in the heap
            order.set(o.slot, arrivals++);
            heap.push(o.slot);
            model.add(o.slot);
          } else if (o.kind === "remove") {
            heap.remove(o.slot);
            model.delete(o.slot);
          } else {
            const want = least();
            expect(heap.pop()).toBe(want ?? -1);
            if (want !== undefined) model.delete(want);
          }
          expect(heap.size).toBe(model.size);
          expect(heap.peek()).toBe(least() ?? -1);
        }
      }),
      { numRuns: 40 },
    );
  });

  it("a slot that is not in the heap is neither found nor removed", () => {
    const heap = new DueHeap((a, b) => a < b);
    heap.push(3);
    heap.remove(1000);
    expect(heap.has(1000)).toBe(false);
    expect(heap.pop()).toBe(3);
    expect(heap.pop()).toBe(-1);
  });
});
