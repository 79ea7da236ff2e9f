import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import ts from "typescript";
import { build } from "esbuild";
import { describe, expect, it } from "vitest";
import { REBUILD_AFTER, TransientMap, TransientSet } from "../../relay/transient";
import { SlotCache } from "../../relay/storage/slot-cache";
import { missing } from "../../testkit/real-tools";
import { haveNode18, NODE18 } from "./bundle-process";

const op = fc.oneof(
  fc.record({ kind: fc.constant("set" as const), k: fc.nat(40), v: fc.nat() }),
  fc.record({ kind: fc.constant("delete" as const), k: fc.nat(40) }),
  fc.record({ kind: fc.constant("get" as const), k: fc.nat(40) }),
  fc.record({ kind: fc.constant("clear" as const) }),
);

describe("TransientMap and TransientSet: a Map and a Set whose tables stay young", () => {
  it("a TransientMap agrees with a Map through any mix of sets, deletes, lookups and clears (rebuilds included)", () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 3 * REBUILD_AFTER * 4 }), (ops) => {
        const map = new TransientMap<number, number>();
        const model = new Map<number, number>();
        for (const o of ops) {
          if (o.kind === "set") {
            map.set(o.k, o.v);
            model.set(o.k, o.v);
          } else if (o.kind === "delete") expect(map.delete(o.k)).toBe(model.delete(o.k));
          else if (o.kind === "get") {
            expect(map.get(o.k)).toBe(model.get(o.k));
            expect(map.has(o.k)).toBe(model.has(o.k));
          } else {
            map.clear();
            model.clear();
          }
          expect(map.size).toBe(model.size);
        }
        // insertion order survives rebuilds, as a Map's does
        expect([...map]).toEqual([...model]);
        expect([...map.keys()]).toEqual([...model.keys()]);
        expect([...map.values()]).toEqual([...model.values()]);
        expect(new Map(map)).toEqual(model);
      }),
      { numRuns: 300 },
    );
  });

  it("a TransientSet agrees with a Set through any mix of adds, deletes, lookups and clears (rebuilds included)", () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 3 * REBUILD_AFTER * 4 }), (ops) => {
        const set = new TransientSet<number>();
        const model = new Set<number>();
        for (const o of ops) {
          if (o.kind === "set") {
            set.add(o.k);
            model.add(o.k);
          } else if (o.kind === "delete") expect(set.delete(o.k)).toBe(model.delete(o.k));
          else if (o.kind === "get") expect(set.has(o.k)).toBe(model.has(o.k));
          else {
            set.clear();
            model.clear();
          }
          expect(set.size).toBe(model.size);
        }
        expect([...set]).toEqual([...model]);
        expect([...set.values()]).toEqual([...model]);
      }),
      { numRuns: 300 },
    );
  });

  it("deleting the entry in hand while iterating visits every entry once", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.nat(10_000), { minLength: 0, maxLength: 5 * REBUILD_AFTER }), (keys) => {
        const map = new TransientMap<number, number>();
        for (const k of keys) map.set(k, k);
        const seen: number[] = [];
        for (const [k] of map) {
          seen.push(k);
          if (k % 3 !== 0) map.delete(k);
        }
        expect(seen).toEqual(keys);
        expect([...map.keys()]).toEqual(keys.filter((k) => k % 3 === 0));
      }),
      { numRuns: 200 },
    );
  });

  /**
   * The premise, on real V8 (both Node releases the relay runs on): a long-lived Map whose entries come and go
   * grows the old generation on every cycle; a TransientMap, a TransientSet and a SlotCache used the same way do not.
   * The script runs in a child with --expose-gc; it sums the increases of V8's old space over the cycles.
   */
  const script = async (): Promise<string> => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "transient-"));
    const entry = path.join(dir, "entry.ts");
    fs.writeFileSync(
      entry,
      `import * as v8 from "node:v8";
import { TransientMap, TransientSet } from ${JSON.stringify(path.resolve("relay/transient.ts"))};
import { SlotCache } from ${JSON.stringify(path.resolve("relay/storage/slot-cache.ts"))};
const gc = (globalThis as unknown as { gc: () => void }).gc;
const old = (): number => v8.getHeapSpaceStatistics().find((s) => s.space_name === "old_space")!.space_used_size;
const CYCLES = 50_000;
function measure(cycle: (i: number) => void): number {
  for (let i = 0; i < 2_000; i++) cycle(i); // the collections are promoted by now (gc twice below)
  gc();
  gc();
  let grew = 0;
  let last = old();
  for (let i = 0; i < CYCLES; i++) {
    cycle(i);
    const now = old();
    if (now > last) grew += now - last;
    last = now;
  }
  return grew / CYCLES;
}
const plain = new Map<number, number>();
const transient = new TransientMap<number, number>();
const plainSet = new Set<number>();
const transientSet = new TransientSet<number>();
// a hand-off's bookkeeping: a few entries in flight, then gone
const inFlight = (m: { set(k: number, v: number): unknown; delete(k: number): unknown }) => (i: number) => {
  for (let j = 0; j < 4; j++) m.set(i * 4 + j, j);
  for (let j = 0; j < 4; j++) m.delete(i * 4 + j);
};
// one never empty: each cycle adds one and removes the oldest of 8
const window = (m: { set(k: number, v: number): unknown; delete(k: number): unknown }) => (i: number) => {
  m.set(i, i);
  if (i >= 8) m.delete(i - 8);
};
const asMap = (s: { add(k: number): unknown; delete(k: number): unknown }) => ({
  set: (k: number) => s.add(k),
  delete: (k: number) => s.delete(k),
});
// a read cache of the last 512 messages: an LRU Map against the SlotCache
const lru = new Map<number, { id: string }>();
const slots = new SlotCache<{ id: string }>(512);
const VALUE = { id: "x" };
const out = {
  mapInFlight: measure(inFlight(plain)),
  transientInFlight: measure(inFlight(transient)),
  mapWindow: measure(window(plain)),
  transientWindow: measure(window(transient)),
  setWindow: measure(window(asMap(plainSet))),
  transientSetWindow: measure(window(asMap(transientSet))),
  lru: measure((i) => {
    lru.delete(i);
    lru.set(i, VALUE);
    if (lru.size > 512) lru.delete(lru.keys().next().value as number);
  }),
  slotCache: measure((i) => slots.set(i, VALUE)),
};
process.stdout.write(JSON.stringify(out));
`,
    );
    const out = path.join(dir, "probe.cjs");
    await build({
      entryPoints: [entry],
      bundle: true,
      platform: "node",
      format: "cjs",
      outfile: out,
      logLevel: "silent",
    });
    return out;
  };

  const runtimes = [
    { name: `this machine's node (${process.version})`, bin: process.execPath, env: {} as Record<string, string> },
    ...(haveNode18 ? [{ name: "Debian 12's node 18", bin: NODE18.bin, env: NODE18.env }] : []),
  ];
  const noNode18 = missing("the Node 18 variant of the young-table test", {
    check: () => (haveNode18 ? undefined : `${NODE18.bin} is missing; run bash .ci/node18.sh`),
  });
  if (noNode18) it.skip(`node 18: ${noNode18}`, () => undefined);
  for (const { name, bin, env } of runtimes) {
    it(`on ${name}: a long-lived Map's set/delete cycles grow the old generation; these grow it < 1/4 as much`, async () => {
      const probe = await script();
      const r = JSON.parse(
        execFileSync(bin, ["--expose-gc", probe], { env: { ...process.env, ...env }, encoding: "utf8" }),
      ) as Record<string, number>;
      console.log(`${name}: old-space growth per cycle (bytes) ${JSON.stringify(r)}`);
      // the premise: a plain Map (and the LRU) does grow it, by tens of bytes per cycle
      expect(r.mapInFlight).toBeGreaterThan(40);
      expect(r.mapWindow).toBeGreaterThan(10);
      expect(r.setWindow).toBeGreaterThan(10);
      expect(r.lru).toBeGreaterThan(20);
      // the rule
      expect(r.transientInFlight).toBeLessThan((r.mapInFlight as number) / 4);
      expect(r.transientWindow).toBeLessThan((r.mapWindow as number) / 4);
      expect(r.transientSetWindow).toBeLessThan((r.setWindow as number) / 4);
      expect(r.slotCache).toBeLessThan((r.lru as number) / 4);
    }, 60_000);
  }
});

describe("SlotCache: the delivery store's read cache, direct-mapped by slot", () => {
  it("returns only the last value stored for that slot, with that id, and nothing after a delete or a clear", () => {
    const cacheOp = fc.oneof(
      fc.record({ kind: fc.constant("set" as const), slot: fc.nat(100), id: fc.constantFrom("a", "b", "c") }),
      fc.record({ kind: fc.constant("get" as const), slot: fc.nat(100), id: fc.constantFrom("a", "b", "c") }),
      fc.record({ kind: fc.constant("delete" as const), slot: fc.nat(100) }),
      fc.record({ kind: fc.constant("clear" as const) }),
    );
    fc.assert(
      fc.property(fc.constantFrom(1, 2, 8, 32), fc.array(cacheOp, { maxLength: 400 }), (size, ops) => {
        const cache = new SlotCache<{ id: string; n: number }>(size);
        /** the model: per slot, the last value stored, unless deleted, cleared or displaced since */
        const last = new Map<number, { id: string; n: number }>();
        let n = 0;
        for (const o of ops) {
          if (o.kind === "set") {
            const v = { id: o.id, n: n++ };
            cache.set(o.slot, v);
            for (const s of [...last.keys()]) if (s % size === o.slot % size) last.delete(s); // displaced
            last.set(o.slot, v);
          } else if (o.kind === "get") {
            const want = last.get(o.slot);
            expect(cache.get(o.slot, o.id)).toBe(want !== undefined && want.id === o.id ? want : undefined);
          } else if (o.kind === "delete") {
            cache.delete(o.slot);
            last.delete(o.slot);
          } else {
            cache.clear();
            last.clear();
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it("holds the last `size` consecutive slots stored, whatever slot they start at", () => {
    fc.assert(
      fc.property(fc.constantFrom(4, 64, 512), fc.nat(1_000_000), fc.nat(3), (size, start, extra) => {
        const cache = new SlotCache<{ id: string }>(size);
        const n = size + extra * 7;
        for (let s = start; s < start + n; s++) cache.set(s, { id: `m${s}` });
        for (let s = start + n - size; s < start + n; s++) expect(cache.get(s, `m${s}`)).toEqual({ id: `m${s}` });
        for (let s = start; s < start + n - size; s++) expect(cache.get(s, `m${s}`)).toBeUndefined();
      }),
      { numRuns: 100 },
    );
  });

  it("refuses a size that is not a power of two, naming it", () => {
    for (const size of [0, 3, 100, -4, 1.5]) expect(() => new SlotCache(size)).toThrow(`got ${size}`);
  });
});

describe("the relay's long-lived Maps and Sets", () => {
  /** Each with why a plain Map is right: nothing comes and goes per message. */
  const PLAIN: Record<string, string> = {
    "relay/smtp-ingress.ts authFailures": "a client's failed AUTH attempts: per failure, not per message",
    "relay/storage/suppression.ts entries": "changed by the operator and by hard bounces, not per message",
    "relay/storage/job-index.ts rareErrors": "an error text no code covers: rare by definition",
    "relay/storage/sent-records.ts longQid": "a Postfix queue id over the inline length: none seen",
    "relay/transient.ts map": "the TransientMap's own table, replaced as it empties",
    "relay/transient.ts set": "the TransientSet's own table, replaced as it empties",
  };
  const files = (dir: string): string[] =>
    fs
      .readdirSync(dir, { withFileTypes: true })
      .flatMap((e) =>
        e.isDirectory() && e.name !== "dist"
          ? files(path.join(dir, e.name))
          : e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")
            ? [path.join(dir, e.name)]
            : [],
      );

  it("a Map or Set a relay class deletes from is a TransientMap or TransientSet, or is listed with why not", () => {
    const found: string[] = [];
    for (const file of files("relay")) {
      const text = fs.readFileSync(file, "utf8");
      const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
      const collections = new Set<string>();
      const visit = (n: ts.Node): void => {
        const decl = ts.isPropertyDeclaration(n) || ts.isVariableDeclaration(n) ? n : undefined;
        const init = decl?.initializer;
        if (
          decl &&
          init &&
          ts.isNewExpression(init) &&
          ts.isIdentifier(init.expression) &&
          ["Map", "Set"].includes(init.expression.text) &&
          (ts.isIdentifier(decl.name) || ts.isPrivateIdentifier(decl.name))
        )
          collections.add(decl.name.text);
        ts.forEachChild(n, visit);
      };
      visit(sf);
      const deleted = new Set<string>();
      const calls = (n: ts.Node): void => {
        if (
          ts.isCallExpression(n) &&
          ts.isPropertyAccessExpression(n.expression) &&
          n.expression.name.text === "delete"
        ) {
          const target = n.expression.expression;
          const name = ts.isPropertyAccessExpression(target)
            ? target.name.text
            : ts.isIdentifier(target)
              ? target.text
              : undefined;
          if (name !== undefined && collections.has(name)) deleted.add(name);
        }
        ts.forEachChild(n, calls);
      };
      calls(sf);
      for (const name of deleted) found.push(`${path.relative(process.cwd(), file)} ${name}`);
    }
    // the scan finds what it looks for: the allowed ones are all still there
    expect(found.filter((f) => f in PLAIN).sort()).toEqual(Object.keys(PLAIN).sort());
    expect(
      found.filter((f) => !(f in PLAIN)),
      "a plain Map or Set with per-message deletes: make it a TransientMap/TransientSet (relay/transient.ts), or add it to PLAIN with why",
    ).toEqual([]);
  });
});
