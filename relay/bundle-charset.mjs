// The bundle's characters, made one byte each. V8 keeps a script's source on its heap for as long as the script runs:
// one byte per character when every character is Latin-1 (U+0000-U+00FF), two bytes per character when even one is
// not. esbuild escapes non-ASCII characters in strings but leaves them in comments and regular expressions: one en
// dash in a dependency's comment (nodemailer) and the Cyrillic and Greek letters of a regular expression made the
// 2.8 MB bundle a 5.7 MB string in every process that runs it (the relay, its webhook sender, its TLS policy server),
// 29% of the relay's live heap (a heap snapshot after warm-up, issue 23).
//
// A `\uXXXX` escape means the character it replaces only inside a token that reads escapes, so the source is read by
// a JavaScript parser (acorn, the one eslint's parser is built on) and each character is rewritten for where it is:
// - in a string, an untagged template, a regular expression, an identifier or a comment: an escape of the same
//   character (an identifier's astral character as `\u{X}`, the only form an identifier accepts);
// - between tokens, where it can only be white space: a space, or a line feed for U+2028 and U+2029, which are line
//   terminators and so steer automatic semicolon insertion and end a `//` comment (a block comment that holds one
//   keeps a line feed for the same reason);
// - after a backslash in a string or template, U+2028 and U+2029 are a line continuation, and stay one as `\` + LF.
// A tagged template's raw text is visible to its tag (String.raw), so a wide character there is refused, by position.
import { parse, tokTypes } from "acorn";
import { simple } from "acorn-walk";

const WIDE = /[\u0100-\uffff]/;
const LINE_TERMINATOR = /[\u2028\u2029]/;
const PARSE_OPTIONS = {
  ecmaVersion: "latest",
  sourceType: "script",
  allowHashBang: true,
  allowReturnOutsideFunction: true,
};

const hex4 = (unit) => `\\u${unit.toString(16).padStart(4, "0")}`;

/** `chunk` (the text of one token or comment) with every wide character escaped, as `kind` reads escapes. */
function escapeChunk(chunk, kind) {
  if (!WIDE.test(chunk)) return chunk;
  return chunk.replace(/(\\*)([\u0100-\uffff])([\udc00-\udfff]?)/g, (_m, slashes, ch, low) => {
    const code = ch.charCodeAt(0);
    const escaped = slashes.length % 2 === 1; // `\а`: an identity escape, or a line continuation before U+2028/9
    if (kind === "comment")
      return slashes + (LINE_TERMINATOR.test(ch) ? "\n" : hex4(code)) + (low && hex4(low.charCodeAt(0)));
    if (escaped && (kind === "string" || kind === "template") && LINE_TERMINATOR.test(ch)) return `${slashes}\n${low}`;
    const kept = escaped ? slashes.slice(1) : slashes;
    if (kind === "name" && low && code >= 0xd800 && code <= 0xdbff) {
      return `${kept}\\u{${String.fromCharCode(code, low.charCodeAt(0)).codePointAt(0).toString(16)}}`;
    }
    return kept + hex4(code) + (low && hex4(low.charCodeAt(0)));
  });
}

const TOKEN_KIND = new Map([
  [tokTypes.string, "string"],
  [tokTypes.template, "template"],
  [tokTypes.invalidTemplate, "template"],
  [tokTypes.regexp, "regexp"],
  [tokTypes.name, "name"],
  [tokTypes.privateId, "name"],
]);

/** "line L, column C" of index `at` in `text` (both from 1, as an editor counts). */
function position(text, at) {
  const before = text.slice(0, at);
  return `line ${before.split("\n").length}, column ${at - before.lastIndexOf("\n")}`;
}

const codePoint = (ch) => `U+${ch.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`;

/** "U+XXXX at line L, column C" for the first wide character of `source` at or after `from`. */
function wideAt(source, from) {
  const i = from + source.slice(from).search(WIDE);
  return `${codePoint(source[i])} at ${position(source, i)}`;
}

/**
 * `source` (a whole script) with every character above U+00FF rewritten so that it means what it meant: an escape
 * inside tokens and comments, a space or a line feed between tokens (see the header). Throws, naming the position,
 * when the source does not parse or when a tagged template's raw text holds such a character.
 */
export function escapeAboveLatin1(source) {
  if (!WIDE.test(source)) return source;
  const tokens = [];
  const comments = [];
  let tree;
  try {
    tree = parse(source, { ...PARSE_OPTIONS, onToken: tokens, onComment: comments });
  } catch (err) {
    throw new Error(
      `the bundle does not parse as a script (${err.message}), so its characters cannot be escaped safely`,
      { cause: err },
    );
  }
  // The start of each part of a tagged template's text (not of templates inside its `${}`, which are untagged).
  const tagged = new Set();
  simple(tree, {
    TaggedTemplateExpression(n) {
      for (const q of n.quasi.quasis) tagged.add(q.start);
    },
  });
  const pieces = [
    ...tokens.map((t) => ({ start: t.start, end: t.end, kind: TOKEN_KIND.get(t.type) ?? "other" })),
    ...comments.map((c) => ({ start: c.start, end: c.end, kind: "comment" })),
  ].sort((a, b) => a.start - b.start);
  const out = [];
  let at = 0;
  for (const piece of [...pieces, { start: source.length, end: source.length, kind: "other" }]) {
    // Between pieces there is only white space: a wide one becomes a space, or a line feed if it ends a line.
    out.push(
      source.slice(at, piece.start).replace(/[\u0100-\uffff]/g, (ch) => (LINE_TERMINATOR.test(ch) ? "\n" : " ")),
    );
    const text = source.slice(piece.start, piece.end);
    if (piece.kind === "template" && WIDE.test(text) && tagged.has(piece.start)) {
      throw new Error(
        `a tagged template holds ${wideAt(source, piece.start)}; its tag sees the raw text, ` +
          `so an escape would change it: write the character as an escape in the source`,
      );
    }
    if (piece.kind === "other" && WIDE.test(text))
      throw new Error(`unexpected ${wideAt(source, piece.start)} in a token`);
    out.push(escapeChunk(text, piece.kind));
    at = Math.max(at, piece.end);
  }
  const escaped = out.join("");
  assertSameTokens(tokens, escaped);
  return escaped;
}

/**
 * Throws unless `escaped` reads as the same tokens as the source `tokens` came from: the same kinds in the same order,
 * and the same value for each string, template part, name and number (a regular expression's pattern is text and
 * is compared by its flags; test/relay/bundle-charset.test.ts compares what they match).
 */
function assertSameTokens(tokens, escaped) {
  const again = [];
  try {
    parse(escaped, { ...PARSE_OPTIONS, onToken: again });
  } catch (err) {
    throw new Error(
      `escaping the bundle's characters broke it (${err.message}): a defect in relay/bundle-charset.mjs`,
      {
        cause: err,
      },
    );
  }
  const differs = (a, b) =>
    a.type !== b.type ||
    (a.type === tokTypes.regexp ? a.value.flags !== b.value.flags : typeof a.value !== "object" && a.value !== b.value);
  // The first token that differs, or the first one only one side has.
  let i = again.findIndex((t, k) => k >= tokens.length || differs(tokens[k], t));
  if (i < 0 && again.length !== tokens.length) i = again.length;
  if (i >= 0) {
    const where = position(escaped, again[i]?.start ?? escaped.length);
    throw new Error(
      `escaping the bundle's characters changed token ${i + 1} (${tokens[i]?.type.label} at ${where}): ` +
        "a defect in relay/bundle-charset.mjs",
    );
  }
}

/** The first character above U+00FF in `text` as "line L, column C (U+XXXX)", or undefined when there is none. */
export function firstAboveLatin1(text) {
  const m = WIDE.exec(text);
  if (!m) return undefined;
  return `${position(text, m.index)} (${codePoint(m[0])})`;
}
