// Types for bundle-charset.mjs, so that its test (type-checked) can import it; relay/build.mjs uses it as is.

/** `text` with every character above U+00FF written as a `\uXXXX` escape. */
export function escapeAboveLatin1(text: string): string;

/** The first character above U+00FF in `text` as "line L, column C (U+XXXX)", or undefined when there is none. */
export function firstAboveLatin1(text: string): string | undefined;
