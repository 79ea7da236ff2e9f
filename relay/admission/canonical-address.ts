// One canonical form per address (STYLE.md): every address the relay compares or stores (sender lists, suppression
// list, quotas, recipient limits, the queue's envelope, delivery tracking) goes through canonicalAddress() once,
// where it enters, and is compared only in that form after.
//
// The same mailbox, one spelling:
// - a quoted local part that needs no quoting is the unquoted one: "gone"@example.net == gone@example.net (RFC 5321
//   4.1.2; Postfix unquotes it the same way before it delivers or logs);
// - the domain is case-insensitive and IDNs are punycode: Bücher.Example == xn--bcher-kva.example (UTS #46, as
//   node:url's domainToASCII maps it, so full-width and other compatibility forms map to the same labels);
// - the local part keeps its case (RFC 5321 2.4: only the receiving host may fold it); comparisons that must not
//   be fooled by case (sender lists, the suppression list) use addressKey(), the canonical form lower-cased.
// Refused, because no safe canonical form exists:
// - a local part that needs quoting (space, "<", ">", ",", "@", ...): Postfix, receivers and the relay's own log
//   reader disagree on where such an address ends (e.g. "x>y"@example.net);
// - a non-ASCII local part (SMTPUTF8 is not offered), a domain literal, a domain without a dot, a label over 63
//   characters or an address over 254;
// - a domain label that mixes scripts (Latin with Cyrillic or Greek, ...) or is written only in letters that look
//   Latin (a whole-script confusable such as Cyrillic "аррӏе"): it reads as another domain than it is.
import { domainToASCII, domainToUnicode } from "node:url";

/** Why an address has no canonical form; the refusal names it. */
export type AddressProblem = "invalid" | "needs_quoting" | "confusable_domain";

export type CanonicalResult =
  | { readonly ok: true; readonly address: string; readonly local: string; readonly domain: string }
  | { readonly ok: false; readonly problem: AddressProblem; readonly detail: string };

// RFC 5322 atext, ASCII only.
const DOT_ATOM = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const LDH_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
// Scripts whose letters are mistaken for Latin ones; a label mixing any two of Latin and these is refused.
const LOOKALIKE_SCRIPTS: readonly [string, RegExp][] = [
  ["Latin", /\p{Script=Latin}/u],
  ["Cyrillic", /\p{Script=Cyrillic}/u],
  ["Greek", /\p{Script=Greek}/u],
  ["Armenian", /\p{Script=Armenian}/u],
  ["Cherokee", /\p{Script=Cherokee}/u],
  ["Georgian", /\p{Script=Georgian}/u],
];
// Cyrillic and Greek letters with a Latin double (Chromium's IDN spoof list, in short): a label made only of these
// (and digits, hyphens) reads as a Latin word.
const LATIN_LOOKALIKES = /^[аеорсухіјѕԁһӏԛԝьвкмнтзοαιϲνρτυχ0-9-]+$/u;

/** Unquotes a quoted-string local part (RFC 5322 3.2.4); undefined when the quotes are not well formed. */
function unquote(local: string): string | undefined {
  let out = "";
  for (let i = 1; i < local.length - 1; i++) {
    const c = local[i] as string;
    if (c === "\\") {
      i++;
      if (i >= local.length - 1) return undefined;
      out += local[i] as string;
    } else if (c === '"') return undefined;
    else out += c;
  }
  return out;
}

function confusableLabel(label: string): string | undefined {
  const unicode = label.startsWith("xn--") ? domainToUnicode(label) : label;
  if (/^\p{ASCII}*$/u.test(unicode)) return undefined;
  const scripts = LOOKALIKE_SCRIPTS.filter(([, re]) => re.test(unicode)).map(([name]) => name);
  if (scripts.length > 1) return `the label ${unicode} mixes ${scripts.join(" and ")} letters`;
  if (LATIN_LOOKALIKES.test(unicode)) return `the label ${unicode} is written in letters that look Latin`;
  return undefined;
}

/**
 * The address in its canonical form (unquoted local part as written, `@`, the lower-case ASCII domain), or why it has
 * none. `local` and `domain` are the two halves of `address`.
 */
export function canonicalAddress(input: string): CanonicalResult {
  const bad = (problem: AddressProblem, detail: string): CanonicalResult => ({ ok: false, problem, detail });
  const at = input.lastIndexOf("@");
  if (at <= 0 || at === input.length - 1) return bad("invalid", "an address is local-part@domain");
  let local = input.slice(0, at);
  if (local.length > 2 && local.startsWith('"') && local.endsWith('"')) {
    const inner = unquote(local);
    if (inner === undefined) return bad("invalid", "the quoted local part is not well formed");
    if (!DOT_ATOM.test(inner))
      return bad("needs_quoting", "the local part needs quoting; use an address whose local part needs none");
    local = inner;
  } else if (!DOT_ATOM.test(local)) {
    return bad("invalid", "the local part is not a dot-atom of ASCII letters, digits and !#$%&'*+/=?^_`{|}~-");
  }
  if (local.length > 64) return bad("invalid", "the local part is longer than 64 characters");
  if (local.startsWith("-")) return bad("invalid", "an address may not start with - (sendmail would read an option)");
  const rawDomain = input.slice(at + 1);
  if (rawDomain.startsWith("[")) return bad("invalid", "domain literals ([1.2.3.4]) are not accepted");
  if (rawDomain.endsWith(".")) return bad("invalid", "the domain ends with a dot");
  const domain = domainToASCII(rawDomain);
  if (domain === "") return bad("invalid", "the domain is not a valid (IDNA) domain name");
  const labels = domain.split(".");
  if (labels.length < 2 || !labels.every((l) => LDH_LABEL.test(l)) || /^[0-9]+$/.test(labels[labels.length - 1]!))
    return bad("invalid", "the domain needs a dot and labels of letters, digits and - (at most 63 each)");
  for (const l of labels) {
    const why = l.startsWith("xn--") ? confusableLabel(l) : undefined;
    if (why !== undefined) return bad("confusable_domain", why);
  }
  const address = `${local}@${domain}`;
  if (address.length > 254) return bad("invalid", "the address is longer than 254 characters");
  return { ok: true, address, local, domain };
}

/** The key for comparisons that ignore case (sender lists, the suppression list): the canonical form, lower-cased. */
export function addressKey(canonical: string): string {
  return canonical.toLowerCase();
}

/**
 * The comparison key of any spelling: canonical when the address has one, else the trimmed, lower-cased input (an
 * entry written before canonical forms existed still matches itself).
 */
export function lookupKey(email: string): string {
  const c = canonicalAddress(email.trim());
  return c.ok ? addressKey(c.address) : email.trim().toLowerCase();
}
