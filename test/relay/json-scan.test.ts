import { mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { countJsonFiles, parseWithoutRaw, scanJsonFiles, type Scanned } from "../../relay/json-scan";
import { tempDir } from "./fixtures";

const dirs: { cleanup(): void }[] = [];
afterEach(() => {
  while (dirs.length) dirs.pop()?.cleanup();
});

/** Strings full of what JSON escapes: quotes, backslashes (also just before a quote), control characters, non-ASCII. */
const tricky = fc.string({
  unit: fc.oneof(
    fc.constantFrom('"', "\\", '\\"', '"raw":"', "\r\n", "\u0000", "é", "😀"),
    fc.string({ maxLength: 3, unit: "grapheme" }),
  ),
});

describe("reading a job file without decoding its message", () => {
  it("gives what JSON.parse gives, with raw emptied, whatever the strings hold", () => {
    fc.assert(
      fc.property(tricky, tricky, tricky, (subject, raw, lastError) => {
        const job = {
          id: "x",
          subject,
          envelope: { from: "a@b", to: ["c@d"] },
          raw,
          idempotency: { keyHash: "k", bodyHash: "b" },
          lastError,
        };
        const parsed = parseWithoutRaw(Buffer.from(JSON.stringify(job)));
        expect(parsed).toEqual({ ...job, raw: "" });
      }),
      { numRuns: 500 },
    );
  });

  it("a file without a raw field (a hand-off record) parses whole; a malformed one still throws", () => {
    expect(parseWithoutRaw(Buffer.from('{"id":"x","handedOffAt":1}'))).toEqual({ id: "x", handedOffAt: 1 });
    expect(() => parseWithoutRaw(Buffer.from('{"id":"x","raw":"unterminated'))).toThrow();
    expect(() => parseWithoutRaw(Buffer.from('{"id":"x","raw":"a"'))).toThrow();
  });
});

describe("scanning a directory of JSON files", () => {
  it("reads every *.json file once (small, and larger than the first read), reports unreadable ones, ignores other names", async () => {
    const t = tempDir("relay-scan-");
    dirs.push(t);
    const dir = path.join(t.dir, "d");
    mkdirSync(dir);
    for (let i = 0; i < 600; i++)
      writeFileSync(path.join(dir, `j${i}.json`), JSON.stringify({ i, raw: "x".repeat(i === 7 ? 200_000 : 10) }));
    writeFileSync(path.join(dir, "broken.json"), '{"i":');
    writeFileSync(path.join(dir, "notes.txt"), "not json");
    const seen = new Map<string, Scanned>();
    await scanJsonFiles(
      dir,
      (name, file) => {
        expect(seen.has(name)).toBe(false);
        seen.set(name, file);
      },
      { sliceMs: 1 },
    );
    expect(seen.size).toBe(601);
    expect(seen.get("j7.json")).toEqual({ ok: true, value: { i: 7, raw: "x".repeat(200_000) } });
    expect(seen.get("broken.json")).toMatchObject({ ok: false, missing: false });
    const withoutRaw = new Map<string, unknown>();
    await scanJsonFiles(dir, (name, file) => file.ok && withoutRaw.set(name, file.value), { withoutRaw: true });
    expect(withoutRaw.get("j7.json")).toEqual({ i: 7, raw: "" });
    expect(await countJsonFiles(dir)).toBe(601);
  });

  it("yields to the event loop between slices, and stops when asked", async () => {
    const t = tempDir("relay-scan-");
    dirs.push(t);
    for (let i = 0; i < 1000; i++) writeFileSync(path.join(t.dir, `j${i}.json`), "{}");
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    let read = 0;
    await scanJsonFiles(
      t.dir,
      () => {
        read++;
        const until = performance.now() + 0.1; // 100 us a file: 100 ms in all
        while (performance.now() < until);
      },
      { sliceMs: 2, stopped: () => read >= 800 },
    );
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(5);
    expect(read).toBeGreaterThanOrEqual(800);
    expect(read).toBeLessThan(1000);
  });
});
