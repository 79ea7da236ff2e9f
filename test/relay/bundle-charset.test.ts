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
const LINE_TERMINATORS = [0x2028, 0x2029];
// Every character JavaScript reads as white space or a line terminator above U+00FF: the whole class, not a sample.
const WIDE_SPACES = [...Array(0x10000 - 0x100).keys()]
  .map((i) => String.fromCharCode(i + 0x100))
  .filter((c) => /\s/.test(c));

describe("the bundle keeps its source one byte per character in V8's heap (relay/bundle-charset.mjs)", () => {
  it("relay/dist/relay.js holds no character above U+00FF (npm run build escapes them)", () => {
    if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing: run npm run build (npm test does)`);
    expect(firstAboveLatin1(readFileSync(BUNDLE, "utf8"))).toBeUndefined();
  });

  it("names where a character above U+00FF is, and finds none in Latin-1 text", () => {
    expect(firstAboveLatin1("ab\ncdé\nx–y")).toBe("line 3, column 2 (U+2013)");
    expect(firstAboveLatin1("é ÿ \u00ff plain")).toBeUndefined();
  });

  it("leaves Latin-1 text as it is and escapes everything else, over generated strings", () => {
    fc.assert(
      fc.property(text, (t) => {
        const source = JSON.stringify(t);
        const e = escapeAboveLatin1(source);
        expect(firstAboveLatin1(e)).toBeUndefined();
        if (firstAboveLatin1(source) === undefined) expect(e).toBe(source);
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
      fc.property(
        wide.filter((c) => !LINE_TERMINATORS.includes(c)),
        fc.integer({ min: 0, max: 3 }),
        (cp, pairs) => {
          const c = String.fromCodePoint(cp);
          const before = "\\\\".repeat(pairs); // escaped backslashes, then one that escapes the character
          const literal = `"${before}\\${c}"`;
          expect(evaluate(escapeAboveLatin1(literal))).toBe(evaluate(literal));
          const regex = `/^${before}\\${c}$/`;
          const subject = `${"\\".repeat(pairs)}${c}`;
          expect((evaluate(escapeAboveLatin1(regex)) as RegExp).test(subject)).toBe(true);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("white space above U+00FF between tokens stays white space, and a line terminator stays one (every such character)", () => {
    expect(WIDE_SPACES).toEqual(expect.arrayContaining(["\u1680", "\u2028", "\u2029", "\u3000", "\ufeff"]));
    for (const w of WIDE_SPACES) {
      const programs = [
        `[1,${w}2]`,
        `(function () { return${w}7 })()`, // a line terminator ends the statement (automatic semicolon insertion)
        `(function () { return /*${w}*/ 7 })()`, // so does a block comment that holds one
        `(function () { var a = 1 // note${w} + 1\n return a })()`, // and it ends a line comment
        `(function () { return "a\\${w}b" })()`, // after a backslash it is a line continuation
        `(function () { return \`a\\${w}b\` })()`,
      ];
      for (const p of programs) {
        const e = escapeAboveLatin1(p);
        expect(firstAboveLatin1(e), `${JSON.stringify(p)} -> ${JSON.stringify(e)}`).toBeUndefined();
        expect(evaluate(e), `${JSON.stringify(p)} -> ${JSON.stringify(e)}`).toEqual(evaluate(p));
      }
    }
  });

  it("an identifier or private name of letters above U+00FF (astral ones included) names the same binding, over generated names", () => {
    const start = fc
      .oneof(fc.integer({ min: 0x100, max: 0xffff }), fc.integer({ min: 0x10000, max: 0x3ffff }))
      .filter((c) => /\p{ID_Start}/u.test(String.fromCodePoint(c)));
    const rest = fc
      .integer({ min: 0x100, max: 0x3ffff })
      .filter((c) => /\p{ID_Continue}/u.test(String.fromCodePoint(c)));
    fc.assert(
      fc.property(start, fc.array(rest, { maxLength: 4 }), (first, more) => {
        const n = String.fromCodePoint(first, ...more);
        const program = `(() => { const ${n} = 7; class K { #${n} = 3; get() { return this.#${n} } } return ${n} + ({ ${n}: 1 }).${n} + new K().get(); })()`;
        const e = escapeAboveLatin1(program);
        expect(firstAboveLatin1(e)).toBeUndefined();
        expect(evaluate(e), e).toBe(11);
      }),
      { numRuns: 1000 },
    );
  });

  it("refuses a character above U+00FF in a tagged template's text (its tag sees the raw text), naming where it is", () => {
    fc.assert(
      fc.property(wide, (cp) => {
        const c = String.fromCodePoint(cp);
        expect(() => escapeAboveLatin1(`1;\nString.raw\`x${c}\``)).toThrow(
          `a tagged template holds U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")} at line 2, column 13`,
        );
        // A template inside a tagged template's substitution is untagged: its value is all that can be seen.
        expect(evaluate(escapeAboveLatin1(`String.raw\`x\${\`${c}\`}\``))).toBe(`x${c}`);
      }),
      { numRuns: 300 },
    );
  });

  it("refuses a source that does not parse, rather than guess what its characters are", () => {
    expect(() => escapeAboveLatin1("/а\u2028/")).toThrow(/does not parse as a script/);
  });

  it("a program of strings, templates, regular expressions (u flag or not), comments, names and white space evaluates the same, over generated programs", () => {
    const chars = (from: fc.Arbitrary<number>, opts = {}) =>
      fc.array(fc.oneof(from, fc.integer({ min: 0x30, max: 0x39 })), opts).map((a) => String.fromCodePoint(...a));
    const noLineEnd = wide.filter((c) => !LINE_TERMINATORS.includes(c));
    const segment = fc.oneof(
      text.map((t) => JSON.stringify(t)),
      chars(wide).map((c) => `\`${c}\``),
      fc
        .tuple(chars(noLineEnd, { minLength: 1 }), chars(noLineEnd), fc.constantFrom("u", ""))
        .map(([set, probe, flags]) => `/^[${set}]*$/${flags}.test(${JSON.stringify(probe)})`),
      chars(wide).map((c) => `/*${c}*/ 5`),
      chars(noLineEnd).map((c) => `5 // ${c}\n`),
      fc.constantFrom(...WIDE_SPACES).map((w) => `${w}6${w}`),
    );
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 6 }), (segments) => {
        const program = `[${segments.join(",")}]`;
        const e = escapeAboveLatin1(program);
        expect(firstAboveLatin1(e)).toBeUndefined();
        expect(evaluate(e)).toEqual(evaluate(program));
      }),
      { numRuns: 1000 },
    );
  });
});
