// The bundle's characters, made one byte each. V8 keeps a script's source on its heap for as long as the script runs:
// one byte per character when every character is Latin-1 (U+0000-U+00FF), two bytes per character when even one is
// not. esbuild escapes non-ASCII characters in strings but leaves them in comments and regular expressions: one en
// dash in a dependency's comment (nodemailer) and the Cyrillic and Greek letters of a regular expression made the
// 2.8 MB bundle a 5.7 MB string in every process that runs it (the relay, its webhook sender, its TLS policy server),
// 29% of the relay's live heap (a heap snapshot after warm-up, issue 23).

/**
 * `text` with every character above U+00FF written as a `\uXXXX` escape (each half of a surrogate pair as its own).
 * In a string, a template literal's value, a regular expression (with or without the u flag, where an escaped pair
 * is one code point) and an identifier, the escape means the same character; in a comment it is text. A character
 * already escaped by a backslash (`\а`, an identity escape in a string or a regular expression without the u flag)
 * loses that backslash, so the escape is not itself escaped.
 */
export function escapeAboveLatin1(text) {
  return text.replace(/(\\*)([\u0100-\uffff])/g, (_m, slashes, ch) => {
    const escape = `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`;
    return (slashes.length % 2 === 1 ? slashes.slice(1) : slashes) + escape;
  });
}

/** The first character above U+00FF in `text` as "line L, column C (U+XXXX)", or undefined when there is none. */
export function firstAboveLatin1(text) {
  const m = /[\u0100-\uffff]/.exec(text);
  if (!m) return undefined;
  const before = text.slice(0, m.index);
  const line = before.split("\n").length;
  const column = m.index - before.lastIndexOf("\n");
  return `line ${line}, column ${column} (U+${m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")})`;
}
