// POST /send's body -> a SendRequest: the JSON shape and the rules only the JSON API has (X- custom headers, subject,
// body, attachments). Every admission rule both doors share (addresses, senders, recipient limit, forbidden headers)
// is relay/admission's, called from here.
import { createHash } from "node:crypto";
import { z } from "zod";
import isBase64 from "validator/lib/isBase64";
import type { Admission } from "./admission";
import { RelayError } from "./errors";
import { assertHtmlWithinLimits } from "./html-limits";

/** An address with an optional display name; the domain may be an IDN (kept in Unicode for headers). */
export interface Mailbox {
  readonly email: string;
  readonly name?: string;
  /**
   * The canonical form (relay/admission/canonical-address.ts): what the envelope, quotas and tracking use. Always set
   * by validateSendRequest.
   */
  readonly canonical?: string;
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

/** The admission rules the body is checked against, for this caller. */
export interface ValidationRules {
  readonly admission: Pick<Admission, "recipientCount" | "address" | "sender" | "headerName">;
  readonly caller: string;
}

export const SUBJECT_MAX = 200;
export const NAME_MAX = 200;
export const HEADER_VALUE_MAX = 998;
export const HEADERS_MAX = 20;
export const TAGS_MAX = 10;

/**
 * A union whose member is picked by the value's JS type: only that member runs, and its result is the union's. zod's
 * own union runs its members in order and builds a full error (makeIssue) for every member that fails before one
 * matches, whichever order they are in: ~1% of the relay's main thread in a bench:chain CPU profile (issue 23). A value
 * the picked member refuses, or whose type picks none, is parsed by the union itself, so every error is word for word
 * the union's (test/relay/validate-unions.property.test.ts compares the two over generated values).
 */
function pickedUnion<Options extends readonly [z.ZodTypeAny, z.ZodTypeAny, ...z.ZodTypeAny[]]>(
  union: z.ZodUnion<Options>,
  pick: (v: unknown) => z.ZodTypeAny | undefined,
) {
  return z.any().transform((v: unknown, ctx): z.output<z.ZodUnion<Options>> => {
    const member = pick(v);
    if (member) {
      const r = member.safeParse(v);
      if (r.success) return r.data as z.output<z.ZodUnion<Options>>;
    }
    const r = union.safeParse(v);
    if (r.success) return r.data;
    for (const issue of r.error.issues) ctx.addIssue(issue);
    return z.NEVER;
  });
}

const isPlainObject = (v: unknown): boolean => typeof v === "object" && v !== null && !Array.isArray(v);
const mailboxString = z.string();
const mailboxObject = z.object({ email: z.string(), name: z.string().max(NAME_MAX).optional() }).strict();
const mailboxUnion = z.union([mailboxString, mailboxObject]);
const mailbox = pickedUnion(mailboxUnion, (v) =>
  typeof v === "string" ? mailboxString : isPlainObject(v) ? mailboxObject : undefined,
);
const mailboxList = z.array(mailbox).min(1);
const mailboxesUnion = z.union([mailboxList, mailbox]);
const mailboxes = pickedUnion(mailboxesUnion, (v) => (Array.isArray(v) ? mailboxList : mailbox));

/** The unions as zod runs them and as the relay runs them, for the test that compares them. */
export const UNIONS_FOR_TEST = {
  mailbox: { union: mailboxUnion, picked: mailbox },
  mailboxes: { union: mailboxesUnion, picked: mailboxes },
} as const;

const bodySchema = z
  .object({
    from: mailbox,
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

/** CR, LF or NUL would end a header line early: refused, never stripped. */
const HEADER_BREAKER = /[\r\n\0]/;

function fieldPath(p: readonly (string | number)[]): string {
  return p.reduce<string>((acc, k) => (typeof k === "number" ? `${acc}[${k}]` : acc ? `${acc}.${k}` : k), "");
}

function asList(v: RawMailbox | RawMailbox[] | undefined): RawMailbox[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

function toMailbox(v: RawMailbox, canonical: string): Mailbox {
  return typeof v === "string"
    ? { email: v, canonical }
    : v.name !== undefined
      ? { email: v.email, name: v.name, canonical }
      : { email: v.email, canonical };
}

/** to + cc + bcc as given, without parsing an address: a list is counted by its length, anything else as one. */
function rawRecipientCount(body: unknown): number {
  if (body === null || typeof body !== "object") return 0;
  const b = body as Record<string, unknown>;
  return ["to", "cc", "bcc"].reduce((n, k) => n + (Array.isArray(b[k]) ? (b[k] as unknown[]).length : b[k] ? 1 : 0), 0);
}

/** Checks a /send body rule by rule; the first broken rule is thrown as a RelayError naming the field. */
export function validateSendRequest(body: unknown, rules: ValidationRules): SendRequest {
  const { admission, caller } = rules;
  // Rule (admission): the recipient limit, on the count alone, before any address is parsed.
  admission.recipientCount(rawRecipientCount(body));
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
    admission.headerName(k, `headers.${k}`);
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

  // Rules (admission): every address has a canonical form (IDN domains included; a leading "-" is refused because
  // sendmail would read it as an option), and the sender is on the caller's list.
  const canonical = (name: string, list: RawMailbox[]): Mailbox[] =>
    list.map((m, i) => {
      const f = !Array.isArray((b as Record<string, unknown>)[name]) ? name : `${name}[${i}]`;
      return toMailbox(m, admission.address(typeof m === "string" ? m : m.email, f));
    });
  const fromRaw = b.from;
  const from = toMailbox(
    fromRaw,
    admission.sender(caller, typeof fromRaw === "string" ? fromRaw : fromRaw.email, "from"),
  );
  const to = canonical("to", asList(b.to));
  const cc = canonical("cc", asList(b.cc));
  const bcc = canonical("bcc", asList(b.bcc));
  const replyTo = canonical("replyTo", asList(b.replyTo));

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
    replyTo,
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
