// The author fields (From:, Sender:) read with one RFC 5322 grammar parser, email-addresses, strictly: a field is
// exactly one mailbox, or it is refused. nodemailer's addressparser was used before; it is lenient by design (it
// recovers an address from anything), which is how `From: noreply@example.com <>` passed the relay and then left
// Postfix unsigned: OpenDKIM and the receivers' parsers read such a field differently from a lenient one.
import emailAddresses from "email-addresses";

export type AuthorProblem = "not_one_mailbox" | "comment" | "address_in_name" | "spaced_address";

export type AuthorResult =
  | { readonly ok: true; readonly address: string; readonly name?: string }
  | { readonly ok: false; readonly problem: AuthorProblem; readonly detail: string };

/** RFC 2047 encoded words; their decoded bytes are checked like the display name itself. */
const ENCODED_WORD = /=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=/g;
/** What makes a display name read as an address: "@" (also full-width, small) and angle brackets. */
const ADDRESS_MARKS = /[@<>\uFF20\uFE6B\uFF1C\uFF1E]/;

function decodedWords(name: string): string {
  let out = "";
  for (const m of name.matchAll(ENCODED_WORD)) {
    const [, charset, enc, text] = m as unknown as [string, string, string, string];
    const bytes =
      enc.toUpperCase() === "B"
        ? Buffer.from(text, "base64")
        : Buffer.from(
            text
              .replace(/_/g, " ")
              .replace(/=([0-9A-Fa-f]{2})/g, (_s, h: string) => String.fromCharCode(parseInt(h, 16))),
            "latin1",
          );
    // UTF-16/32 words would hide "@" from a byte check: decoded as such; everything else is ASCII-compatible.
    out += /^utf-?(16|32)/i.test(charset)
      ? new TextDecoder(charset.toLowerCase()).decode(bytes)
      : bytes.toString("utf8");
    out += bytes.toString("latin1");
  }
  return out;
}

/**
 * One author field's value (unfolded) -> its one mailbox, or why it is refused. Refused besides what the grammar
 * refuses (groups, lists, `<>`, obsolete syntax such as routes): comments (a comment can carry the address a reader
 * shows), a display name that itself reads as an address (also inside encoded words), and blanks inside the address.
 */
export function parseAuthor(value: string): AuthorResult {
  let r = seen.get(value);
  if (r === undefined) {
    if (seen.size >= SEEN_MAX) seen.clear();
    // The value is usually a slice of a whole message (the SMTP door's DATA, a composed message), and V8 keeps a
    // slice's whole parent alive: the cache would hold up to SEEN_MAX messages, each up to the size limit. So the
    // key, and the result parsed from it (its address and name are slices of the key), come from a copy.
    const key = ownCopy(value);
    seen.set(key, (r = parseAuthorUncached(key)));
  }
  return r;
}

/**
 * A string with the same UTF-16 code units that shares no storage with `s` (built anew, not a slice of it). Through
 * JSON, not a Buffer: a lone surrogate (JSON allows one in a caller's field) survives the round trip unchanged.
 */
export function ownCopy(s: string): string {
  return JSON.parse(JSON.stringify(s)) as string;
}

// The grammar parser costs ~75 us per field (measured with tsx on the build VM); a caller's From: is nearly always the
// same few values, and the result is a pure function of the value, so it is remembered.
const SEEN_MAX = 1000;
const seen = new Map<string, AuthorResult>();

function parseAuthorUncached(value: string): AuthorResult {
  const bad = (problem: AuthorProblem, detail: string): AuthorResult => ({ ok: false, problem, detail });
  const parsed = emailAddresses.parseOneAddress({
    input: value.trim(),
    startAt: "mailbox",
    strict: true, // no obs- syntax
    rfc6532: true, // UTF-8 display names, as mail clients write them
    rejectTLD: true,
  });
  if (parsed === null || parsed.type !== "mailbox")
    return bad("not_one_mailbox", "it must be exactly one mailbox, e.g. Name <sender@example.com>");
  if (parsed.parts.comments.some((c) => c.tokens.includes("(")))
    return bad("comment", "comments ( ... ) are not accepted in it");
  const addr = parsed.parts.address.tokens.trim();
  if (/\s/.test(addr)) return bad("spaced_address", "its address must be written without blanks");
  const name = parsed.name ?? undefined;
  if (name !== undefined && (ADDRESS_MARKS.test(name) || ADDRESS_MARKS.test(decodedWords(name))))
    return bad("address_in_name", "its display name reads as an address; use a name without @, < or >");
  // The address as written (a quoted local part keeps its quotes) for canonicalAddress to judge.
  const at = addr.lastIndexOf("@");
  const address = `${addr.slice(0, at)}@${parsed.domain}`;
  return { ok: true, address, ...(name !== undefined ? { name } : {}) };
}
