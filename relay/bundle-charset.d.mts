// Types for bundle-charset.mjs, so that its test (type-checked) can import it; relay/build.mjs uses it as is.

/** `source` (a whole script) with every character above U+00FF rewritten to mean what it meant; throws on a tagged
 * template that holds one and on a source that does not parse. */
export function escapeAboveLatin1(source: string): string;

/** The first character above U+00FF in `text` as "line L, column C (U+XXXX)", or undefined when there is none. */
export function firstAboveLatin1(text: string): string | undefined;
