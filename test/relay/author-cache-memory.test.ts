import * as v8 from "node:v8";
import * as vm from "node:vm";
import { describe, expect, it } from "vitest";
import { ownCopy, parseAuthor } from "../../relay/admission/author";

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;
const heapAfterGc = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

const MESSAGES = 40;
const MESSAGE_BYTES = 1 << 20;

describe("the author cache keeps only the fields it parsed, never the messages they were cut from", () => {
  it(`${MESSAGES} distinct From: fields cut from ${MESSAGES} messages of 1 MiB leave under 8 MB behind`, () => {
    const before = heapAfterGc();
    for (let i = 0; i < MESSAGES; i++) {
      // A field as the doors see it: a slice of the whole message (V8 keeps a slice's parent string alive).
      const raw = `From: Sender ${i} <noreply@example.com>\r\nSubject: s\r\n\r\n${"x".repeat(MESSAGE_BYTES)}`;
      const value = raw.slice("From: ".length, raw.indexOf("\r\n"));
      const r = parseAuthor(value);
      expect(r).toMatchObject({ ok: true, address: "noreply@example.com", name: `Sender ${i}` });
    }
    const grown = heapAfterGc() - before;
    expect(grown, `the heap grew by ${(grown / 1e6).toFixed(1)} MB`).toBeLessThan(8e6);
  });

  it("a copied key is the same text, code unit for code unit, lone surrogates and non-ASCII included", () => {
    for (const s of ["a", "Grüße <a@example.com>", "日本 <x@example.com>", "\ud800 lone", "end \udfff", ""]) {
      expect(ownCopy(s)).toBe(s);
    }
    const a = parseAuthor("Name <a@example.com>");
    expect(parseAuthor(ownCopy("Name <a@example.com>"))).toBe(a); // a cache hit: the same result object
  });
});
