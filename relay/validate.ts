import { createHash } from "node:crypto";
import { domainToASCII } from "node:url";
import { z } from "zod";
import isBase64 from "validator/lib/isBase64";
import isEmail from "validator/lib/isEmail";
import { RelayError } from "./errors";
import { assertHtmlWithinLimits } from "./mime";

/** An address with an optional display name; the domain may be an IDN (kept in Unicode for headers). */
export interface Mailbox {
  readonly email: string;
  readonly name?: string;
}

export interface SendRequest {
  readonly from: Mailbox;
  readonly to: readonly Mailbox[];
  readonly cc: readonly Mailbox[];
  readonly bcc: readonly Mailbox[];
  readonly replyTo: readonly Mailbox[];
  readonly subject: string;
  readonly text?: string;
  readonly html?: string;
  readonly attachments: readonly { filename: string; contentType: string; content: Buffer }[];
  readonly headers: Readonly<Record<string, string>>;
  readonly tags: readonly string[];
}

export interface ValidationLimits {
  readonly allowedFrom: ReadonlySet<string>;
  readonly maxRecipients: number;
}

export const SUBJECT_MAX = 200;
export const NAME_MAX = 200;
export const HEADER_VALUE_MAX = 998;
export const HEADERS_MAX = 20;
export const TAGS_MAX = 10;

// zod tries union members in order and builds error objects for every member that fails, even when a later one
// matches (measured: ~50 us per request). The most common shapes come first: a list of strings for recipients, an
// object for the sender. The error for a value that matches no member is the same whatever the order.
const mailbox = z.union([
  z.string(),
  z.object({ email: z.string(), name: z.string().max(NAME_MAX).optional() }).strict(),
]);
const sender = z.union([
  z.object({ email: z.string(), name: z.string().max(NAME_MAX).optional() }).strict(),
  z.string(),
]);
const mailboxes = z.union([z.array(mailbox).min(1), mailbox]);

const bodySchema = z
  .object({
    from: sender,
    to: mailboxes,
    cc: mailboxes.optional(),
    bcc: mailboxes.optional(),
    replyTo: mailboxes.optional(),
    subject: z.string().min(1),
    text: z.string().optional(),
    html: z.string().optional(),
    attachments: z
      .array(
        z
          .object({
            filename: z.string().min(1).max(255),
            contentType: z.string().max(255).optional(),
            content: z.string(),
          })
          .strict(),
      )
      .max(20)
      .optional(),
    headers: z.record(z.string()).optional(),
    tags: z
      .array(z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, "tags use letters, digits, _ . : - (1-64 chars)"))
      .max(TAGS_MAX)
      .optional(),
  })
  .strict();

type RawBody = z.infer<typeof bodySchema>;
type RawMailbox = z.infer<typeof mailbox>;

/**
 * Custom headers: X- headers only, so Received, Return-Path, DKIM-*, ARC-*, Authentication-Results and every other
 * standard field are refused by construction; and among X- headers, the ones receivers and filters write
 * themselves (spam verdicts, Exchange transport, antivirus), which a caller could forge to look pre-approved.
 */
export const RESERVED_X_HEADERS =
  /^X-(Spam|MS-Exchange|Microsoft-Antispam|Forefront-Antispam|Virus|Mailer-Daemon|Original-To|Envelope-)/i;

/** CR, LF or NUL would end a header line early: refused, never stripped. */
const HEADER_BREAKER = /[\r\n\0]/;

const emailOptions = {
  allow_display_name: false,
  require_tld: true,
  allow_ip_domain: false,
  allow_utf8_local_part: false,
};

function fieldPath(p: readonly (string | number)[]): string {
  return p.reduce<string>((acc, k) => (typeof k === "number" ? `${acc}[${k}]` : acc ? `${acc}.${k}` : k), "");
}

function asList(v: RawMailbox | RawMailbox[] | undefined): RawMailbox[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

function toMailbox(v: RawMailbox): Mailbox {
  return typeof v === "string"
    ? { email: v }
    : v.name !== undefined
      ? { email: v.email, name: v.name }
      : { email: v.email };
}

/** The address with its domain in ASCII (punycode), as the SMTP envelope needs it; "" when the domain is not valid. */
export function envelopeAddress(email: string): string {
  const at = email.lastIndexOf("@");
  const ascii = domainToASCII(email.slice(at + 1));
  return ascii === "" ? "" : `${email.slice(0, at)}@${ascii}`;
}

export function isValidAddress(email: string): boolean {
  return !email.startsWith("-") && isEmail(email, emailOptions) && envelopeAddress(email) !== "";
}

/** Checks a /send body rule by rule; the first broken rule is thrown as a RelayError naming the field. */
export function validateSendRequest(body: unknown, limits: ValidationLimits): SendRequest {
  const parsed = bodySchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0] as z.ZodIssue;
    const field =
      issue.code === "unrecognized_keys"
        ? fieldPath([...issue.path, issue.keys[0] as string])
        : fieldPath(issue.path) || "body";
    const message = issue.code === "unrecognized_keys" ? `unknown field "${field}"` : `${field}: ${issue.message}`;
    throw new RelayError("invalid_field", message, field);
  }
  const b: RawBody = parsed.data;

  const groups: [string, RawMailbox[]][] = [
    ["from", [b.from]],
    ["to", asList(b.to)],
    ["cc", asList(b.cc)],
    ["bcc", asList(b.bcc)],
    ["replyTo", asList(b.replyTo)],
  ];

  // Rule: no CR/LF/NUL in anything that becomes a header.
  const headerish: [string, string][] = [["subject", b.subject]];
  for (const [name, list] of groups) {
    list.forEach((m, i) => {
      const f = Array.isArray(name === "from" ? b.from : (b as Record<string, unknown>)[name]) ? `${name}[${i}]` : name;
      if (typeof m === "string") headerish.push([f, m]);
      else {
        headerish.push([`${f}.email`, m.email]);
        if (m.name !== undefined) headerish.push([`${f}.name`, m.name]);
      }
    });
  }
  for (const [k, v] of Object.entries(b.headers ?? {})) headerish.push([`headers.${k}`, k], [`headers.${k}`, v]);
  (b.attachments ?? []).forEach((a, i) => {
    headerish.push([`attachments[${i}].filename`, a.filename]);
    if (a.contentType !== undefined) headerish.push([`attachments[${i}].contentType`, a.contentType]);
  });
  for (const [field, value] of headerish) {
    if (HEADER_BREAKER.test(value)) {
      throw new RelayError(
        "header_injection",
        `${field} contains CR, LF or NUL; header fields must be one line`,
        field,
      );
    }
  }

  // Rule: custom headers are X- headers only, so callers cannot override From, To, DKIM-relevant headers, etc.
  const headerEntries = Object.entries(b.headers ?? {});
  if (headerEntries.length > HEADERS_MAX) {
    throw new RelayError("header_not_allowed", `at most ${HEADERS_MAX} custom headers`, "headers");
  }
  for (const [k, v] of headerEntries) {
    if (!/^X-[A-Za-z0-9-]{1,70}$/i.test(k)) {
      throw new RelayError(
        "header_not_allowed",
        `headers.${k} is not allowed; only X- headers (letters, digits, "-") may be set`,
        `headers.${k}`,
      );
    }
    if (RESERVED_X_HEADERS.test(k)) {
      throw new RelayError(
        "header_not_allowed",
        `headers.${k} is not allowed: receivers' spam and transport verdicts (X-Spam-*, X-MS-Exchange-*, ...) ` +
          `can't be set by a caller`,
        `headers.${k}`,
      );
    }
    if (v.length > HEADER_VALUE_MAX) {
      throw new RelayError(
        "invalid_field",
        `headers.${k} is longer than ${HEADER_VALUE_MAX} characters`,
        `headers.${k}`,
      );
    }
  }

  // Rule: a subject with something visible in it (the composer drops a blank Subject header).
  if (b.subject.trim() === "")
    throw new RelayError("invalid_field", "subject must contain a visible character", "subject");

  // Rule: subject length.
  if ([...b.subject].length > SUBJECT_MAX) {
    throw new RelayError(
      "subject_too_long",
      `subject has ${[...b.subject].length} characters; the limit is ${SUBJECT_MAX}`,
      "subject",
    );
  }

  // Rule: every address is valid (IDN domains included); a leading "-" is refused because sendmail would read it as an
  // option.
  for (const [name, list] of groups) {
    list.forEach((m, i) => {
      const email = typeof m === "string" ? m : m.email;
      if (!isValidAddress(email)) {
        const f = name === "from" || !Array.isArray((b as Record<string, unknown>)[name]) ? name : `${name}[${i}]`;
        throw new RelayError("invalid_address", `${f} is not a valid email address`, f);
      }
    });
  }

  // Rule: the sender is on the allowlist.
  const from = toMailbox(b.from);
  if (!limits.allowedFrom.has(from.email.toLowerCase())) {
    throw new RelayError(
      "from_not_allowed",
      `from address ${from.email} is not an allowed sender for this caller`,
      "from",
    );
  }

  // Rule: recipient count.
  const to = asList(b.to).map(toMailbox);
  const cc = asList(b.cc).map(toMailbox);
  const bcc = asList(b.bcc).map(toMailbox);
  const total = to.length + cc.length + bcc.length;
  if (total > limits.maxRecipients) {
    throw new RelayError(
      "too_many_recipients",
      `${total} recipients (to+cc+bcc); the limit is ${limits.maxRecipients}`,
      "to",
    );
  }

  // Rule: a body (text or html).
  if ((b.text === undefined || b.text === "") && (b.html === undefined || b.html === "")) {
    throw new RelayError("missing_body", "give text, html or both", "text");
  }

  // Rule: HTML within HTML_LIMITS (elements, nesting), checked by a linear scan before any parser sees it.
  if (b.html !== undefined && b.html !== "") assertHtmlWithinLimits(b.html);

  // Rule: attachments are base64 with a plain type/subtype.
  const attachments = (b.attachments ?? []).map((a, i) => {
    if (a.content !== "" && !isBase64(a.content)) {
      throw new RelayError(
        "invalid_attachment",
        `attachments[${i}].content must be base64`,
        `attachments[${i}].content`,
      );
    }
    const contentType = a.contentType ?? "application/octet-stream";
    if (!/^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$/.test(contentType)) {
      throw new RelayError(
        "invalid_attachment",
        `attachments[${i}].contentType must be type/subtype`,
        `attachments[${i}].contentType`,
      );
    }
    // A message/* part is a whole message (its own From, Received, DKIM-Signature) riding inside a signed one.
    if (/^message\//i.test(contentType)) {
      throw new RelayError(
        "invalid_attachment",
        `attachments[${i}].contentType ${contentType} is not allowed: no message/* attachments`,
        `attachments[${i}].contentType`,
      );
    }
    return { filename: a.filename, contentType, content: Buffer.from(a.content, "base64") };
  });

  return {
    from,
    to,
    cc,
    bcc,
    replyTo: asList(b.replyTo).map(toMailbox),
    subject: b.subject,
    ...(b.text !== undefined && b.text !== "" ? { text: b.text } : {}),
    ...(b.html !== undefined && b.html !== "" ? { html: b.html } : {}),
    attachments,
    headers: Object.fromEntries(headerEntries),
    tags: b.tags ?? [],
  };
}

/** JSON with sorted keys: "the same body" for idempotency means the same values, whatever the key order. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}

export function sha256(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}
