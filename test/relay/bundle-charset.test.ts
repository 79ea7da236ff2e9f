import fc from "fast-check";
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { escapeAboveLatin1, firstAboveLatin1 } from "../../relay/bundle-charset.mjs";

const BUNDLE = path.join(__dirname, "../../relay/dist/relay.js");

// Characters of every width, and the ones that steer JavaScript's lexer around them.
const char = fc.oneof(
  fc.constantFrom("\\", '"', "`", "$", "{", "/", "*", "\n", "a", "é", "ÿ", "Ā", "–", "а", "€", "\u{1f600}", "\ud800"),
  fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
  fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)),
  fc.integer({ min: 0x100, max: 0xffff }).map((c) => String.fromCharCode(c)),
  fc.integer({ min: 0x10000, max: 0x10ffff }).map((c) => String.fromCodePoint(c)),
);
const text = fc.array(char, { maxLength: 40 }).map((a) => a.join(""));
const wide = fc.oneof(
  fc.integer({ min: 0x100, max: 0xffff }).filter((c) => c < 0xd800 || c > 0xdfff),
  fc.integer({ min: 0x10000, max: 0x10ffff }),
);
const evaluate = (source: string): unknown => new Function(`return (${source});`)();

describe("the bundle keeps its source one byte per character in V8's heap (relay/bundle-charset.mjs)", () => {
  it("relay/dist/relay.js holds no character above U+00FF (npm run build escapes them)", () => {
    if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing: run npm run build (npm test does)`);
    expect(firstAboveLatin1(readFileSync(BUNDLE, "utf8"))).toBeUndefined();
  });

  it("names where a character above U+00FF is, and finds none in Latin-1 text", () => {
    expect(firstAboveLatin1("ab\ncdé\nx–y")).toBe("line 3, column 2 (U+2013)");
    expect(firstAboveLatin1("é ÿ \u00ff plain")).toBeUndefined();
  });

  it("leaves Latin-1 text as it is and escapes everything else, over generated text", () => {
    fc.assert(
      fc.property(text, (t) => {
        const e = escapeAboveLatin1(t);
        expect(firstAboveLatin1(e)).toBeUndefined();
        if (firstAboveLatin1(t) === undefined) expect(e).toBe(t);
      }),
      { numRuns: 2000 },
    );
  });

  it("a string literal means the same string after escaping, over generated strings (escaped backslashes included)", () => {
    fc.assert(
      fc.property(text, (t) => {
        expect(evaluate(escapeAboveLatin1(JSON.stringify(t)))).toBe(t);
      }),
      { numRuns: 2000 },
    );
  });

  it("a character already escaped by a backslash (an identity escape) keeps its meaning", () => {
    fc.assert(
      fc.property(wide, fc.integer({ min: 0, max: 3 }), (cp, pairs) => {
        const c = String.fromCodePoint(cp);
        const before = "\\\\".repeat(pairs); // escaped backslashes, then one that escapes the character
        const literal = `"${before}\\${c}"`;
        expect(evaluate(escapeAboveLatin1(literal))).toBe(evaluate(literal));
        const regex = `/^${before}\\${c}$/`;
        const subject = `${"\\".repeat(pairs)}${c}`;
        expect((evaluate(escapeAboveLatin1(regex)) as RegExp).test(subject)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it("a template literal's value, a comment, and a regular expression with and without the u flag mean the same", () => {
    const plain = fc.array(fc.oneof(wide, fc.integer({ min: 0x30, max: 0x39 })), { minLength: 1, maxLength: 12 });
    fc.assert(
      fc.property(
        plain,
        fc.array(fc.oneof(wide, fc.integer({ min: 0x30, max: 0x39 })), { maxLength: 6 }),
        (set, probe) => {
          const chars = set.map((c) => String.fromCodePoint(c)).join("");
          expect(evaluate(escapeAboveLatin1(`\`${chars}\``))).toBe(chars);
          expect(evaluate(escapeAboveLatin1(`/* ${chars} */ 1`))).toBe(1);
          const subject = probe.map((c) => String.fromCodePoint(c)).join("");
          for (const flags of ["u", ""]) {
            const raw = `/^[${chars}]*$/${flags}`;
            expect((evaluate(escapeAboveLatin1(raw)) as RegExp).test(subject), `${raw} on ${subject}`).toBe(
              (evaluate(raw) as RegExp).test(subject),
            );
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
