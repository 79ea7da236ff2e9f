import { randomUUID } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { hexToWords, PackedKeyMap, uuidToWords, wordsToUuid } from "../../relay/storage/packed-key-map";
import { sha256 } from "../../relay/validate";

describe("PackedKeyMap: binary keys to slots, off the V8 heap", () => {
  it("agrees with a Map through any mix of adds, deletes and lookups, across growth (few distinct keys: long probe runs)", () => {
    const op = fc.record({ kind: fc.constantFrom("add", "delete", "get"), k: fc.nat(200), j: fc.nat(1) });
    fc.assert(
      fc.property(fc.array(op, { minLength: 1000, maxLength: 4000 }), (ops) => {
        const map = new PackedKeyMap(2, 16);
        const model = new Map<string, number>();
        const key = new Uint32Array(2);
        for (const o of ops) {
          key[0] = o.k;
          key[1] = o.j;
          const name = `${o.k}/${o.j}`;
          if (o.kind === "add") {
            const slot = map.add(key);
            if (model.has(name)) expect(slot).toBe(model.get(name));
            else expect([...model.values()]).not.toContain(slot); // a live slot is never handed out twice
            model.set(name, slot);
          } else if (o.kind === "delete") {
            expect(map.delete(key)).toBe(model.get(name) ?? -1);
            model.delete(name);
          } else {
            expect(map.get(key)).toBe(model.get(name) ?? -1);
          }
          expect(map.size).toBe(model.size);
        }
        for (const [name, slot] of model) {
          const [k, j] = name.split("/").map(Number) as [number, number];
          key[0] = k;
          key[1] = j;
          expect(map.get(key)).toBe(slot);
          expect([map.word(slot, 0), map.word(slot, 1)]).toEqual([k, j]);
        }
      }),
      { numRuns: 60 },
    );
  });

  it("100,000 UUIDs: every one is found after the map has grown, and deleted ones are gone", () => {
    const map = new PackedKeyMap(4);
    const ids = Array.from({ length: 100_000 }, () => randomUUID());
    const key = new Uint32Array(4);
    for (const id of ids) {
      uuidToWords(id, key);
      map.add(key);
    }
    for (const id of ids.slice(0, 50_000)) {
      uuidToWords(id, key);
      expect(map.delete(key)).toBeGreaterThanOrEqual(0);
    }
    expect(map.size).toBe(50_000);
    const wrong = ids.filter((id, i) => {
      uuidToWords(id, key);
      const slot = map.get(key);
      return i < 50_000
        ? slot !== -1
        : wordsToUuid(map.word(slot, 0), map.word(slot, 1), map.word(slot, 2), map.word(slot, 3)) !== id;
    });
    expect(wrong).toEqual([]);
  });

  it("UUIDs and hex SHA-256 hashes round-trip through words; anything else is not taken for a hash", () => {
    const w = new Uint32Array(8);
    for (const id of ["00000000-0000-4000-8000-000000000000", "ffffffff-ffff-4fff-bfff-ffffffffffff", randomUUID()]) {
      uuidToWords(id, w);
      expect(wordsToUuid(w[0] as number, w[1] as number, w[2] as number, w[3] as number)).toBe(id);
    }
    const h = sha256("app\norder-1234");
    expect(hexToWords(h, w)).toBe(true);
    expect(Array.from(w, (x) => x.toString(16).padStart(8, "0")).join("")).toBe(h);
    for (const bad of ["", h.slice(1), h.toUpperCase(), `${h.slice(0, 63)}g`, `${h}0`])
      expect(hexToWords(bad, w)).toBe(false);
  });
});
