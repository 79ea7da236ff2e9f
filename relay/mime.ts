import { randomUUID } from "node:crypto";
import MailComposer from "nodemailer/lib/mail-composer";
import type Mail from "nodemailer/lib/mailer";
import MimeNodeClass from "nodemailer/lib/mime-node";
import type MimeNode from "nodemailer/lib/mime-node";
import * as mimeFuncs from "nodemailer/lib/mime-funcs";
import * as base64 from "nodemailer/lib/base64";
import { convert } from "html-to-text";
import { RelayError } from "./errors";
import { assertHtmlWithinLimits, HTML_LIMITS } from "./html-limits";
import type { Mailbox, SendRequest } from "./validate";

export { assertHtmlWithinLimits, HTML_LIMITS } from "./html-limits";

/** Composition that is still running after this is refused, not queued (the scan keeps real mail far below it). */
export const COMPOSE_DEADLINE_MS = 1000;

/** Plain-text part for HTML-only requests, by a real HTML parser (inbox checks expect both parts). */
export function htmlToPlainText(html: string): string {
  assertHtmlWithinLimits(html);
  return convert(html, {
    wordwrap: 78,
    selectors: [{ selector: "img", format: "skip" }],
    // Second line behind the scan: html-to-text's own limits (it truncates instead of recursing on).
    limits: {
      maxDepth: HTML_LIMITS.maxDepth,
      maxChildNodes: HTML_LIMITS.maxElements,
      maxInputLength: 16 * 1024 * 1024,
    },
  });
}

function addr(m: Mailbox): { name: string; address: string } {
  return { name: m.name ?? "", address: m.email };
}

/** The sender as admission allowed it (canonical), so From: and the envelope sender are one spelling. */
function senderOf(req: SendRequest): { name: string; address: string } {
  return { name: req.from.name ?? "", address: req.from.canonical ?? req.from.email };
}

/** True when every character is 7-bit ASCII. */
function isAscii(s: string): boolean {
  return /^\p{ASCII}*$/u.test(s);
}

export interface ComposeOptions {
  /** `<id@domain>`, from admission.messageId(). */
  readonly messageId: string;
  readonly date: Date;
}

/** The text part: the caller's, or one made from the HTML (html-to-text), or none. */
export function plainTextOf(req: SendRequest): string {
  return req.text ?? (req.html !== undefined ? htmlToPlainText(req.html) : "");
}

/** True when the text, the HTML, the subject and every display name are 7-bit ASCII. */
function allAsciiRequest(req: SendRequest, text: string): boolean {
  return [
    text,
    req.html ?? "",
    req.subject,
    ...[req.from, ...req.to, ...req.cc, ...req.replyTo].map((m) => m.name ?? ""),
  ].every(isAscii);
}

/** A fresh multipart boundary base: randomUUID's buffered entropy, drawn after the request's body is read. */
function newBaseBoundary(): string {
  return randomUUID().replace(/-/g, "");
}

/**
 * nodemailer's MailComposer for a request: multipart/alternative when there is HTML, attachments as multipart/mixed,
 * encoded and folded headers. Bcc never becomes a header: it only goes to the envelope. `baseBoundary` is for tests
 * that compare two compositions of one request (the relay always draws a fresh one); `text`, the text part when the
 * caller has it already.
 */
export function mailComposerFor(
  req: SendRequest,
  opts: ComposeOptions,
  baseBoundary = newBaseBoundary(),
  text = plainTextOf(req),
): MailComposer {
  // nodemailer picks quoted-printable or base64 per part by counting letters with two global regex matches (~0.1 ms
  // for a few KB, measured as the largest single cost of a request). For all-ASCII content its answer is
  // quoted-printable anyway, so say so up front; anything non-ASCII keeps nodemailer's own choice.
  const allAscii = allAsciiRequest(req, text);
  // A literal, then the optional fields: not `{ ...(cond ? {...} : {}), from, to, ... }`. V8 gives an object that
  // starts with a spread a map detached from every transition tree, so each field after it made a new hidden class
  // on every request (11 per message; V8's --log-maps over bench:relay's open loop, issue 23): garbage in V8's map
  // and old spaces that only a full collection frees, and property reads in nodemailer that never settle.
  // baseBoundary: MailComposer gives it to the root MimeNode it makes (an option of MimeNode's that Mail.Options' types
  // leave out), and every part's boundary is made from the root's. Without it the root draws one with
  // crypto.randomBytes(8), a synchronous call into OpenSSL (~1.4% of the relay's main thread in a bench:chain CPU
  // profile, issue 23; the parts under it still draw theirs, unused, as createChild passes no base). Here it comes
  // from randomUUID's buffered entropy: still random, drawn after the request's body is read, so a caller cannot
  // plant a line that ends a part early.
  const mail: Mail.Options & { baseBoundary: string } = {
    from: senderOf(req),
    to: req.to.map(addr),
    subject: req.subject,
    text,
    attachments: req.attachments.map((a) => ({ filename: a.filename, contentType: a.contentType, content: a.content })),
    headers: { ...req.headers },
    messageId: opts.messageId,
    date: opts.date,
    disableFileAccess: true,
    disableUrlAccess: true,
    baseBoundary,
  };
  if (allAscii) mail.textEncoding = "quoted-printable";
  if (req.cc.length > 0) mail.cc = req.cc.map(addr);
  if (req.replyTo.length > 0) mail.replyTo = req.replyTo.map(addr);
  if (req.html !== undefined) mail.html = req.html;
  return new MailComposer(mail);
}

/** A composed message as the queue keeps it: its text, and its size in bytes (what Postfix's size limit counts). */
export interface ComposedMessage {
  readonly raw: string;
  readonly bytes: number;
}

/**
 * The RFC 5322 message for a request, as the queue keeps it. The common message is written directly as an ASCII
 * string (writeCommonMessage), so it is never turned into bytes and back; anything else is the bytes of
 * mailComposerFor's tree, read as UTF-8.
 */
export async function composeForQueue(req: SendRequest, opts: ComposeOptions): Promise<ComposedMessage> {
  const message = await composeEither(req, opts);
  return typeof message === "string"
    ? { raw: message, bytes: message.length }
    : { raw: message.toString("utf8"), bytes: message.length };
}

/** The RFC 5322 message for a request, as bytes: composeForQueue's message. */
export async function composeMessage(req: SendRequest, opts: ComposeOptions): Promise<Buffer> {
  const message = await composeEither(req, opts);
  return typeof message === "string" ? Buffer.from(message, "latin1") : message;
}

/**
 * The message written directly (writeCommonMessage, an ASCII string) for the shape nearly every request has; else
 * from mailComposerFor's tree, synchronously when serializeMimeTree can write it, which is every tree a request makes;
 * through MimeNode.build() otherwise.
 */
async function composeEither(req: SendRequest, opts: ComposeOptions): Promise<string | Buffer> {
  const text = plainTextOf(req);
  const started = performance.now();
  const baseBoundary = newBaseBoundary();
  const direct = writeCommonMessage(req, opts, text, baseBoundary);
  if (direct !== undefined) return withinDeadline(direct, started);
  const root = mailComposerFor(req, opts, baseBoundary, text).compile();
  const written = serializeMimeTree(root);
  if (written !== undefined) return withinDeadline(written, started);
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => reject(composeTooSlow()), COMPOSE_DEADLINE_MS);
    root.build((err, built) => {
      clearTimeout(deadline);
      if (err) reject(err);
      else resolve(built);
    });
  });
}

/**
 * Header fields nodemailer's tree sets itself, or writes by rules of their own (addresses, message ids, dates,
 * content type), by their normalised names: a caller's header of one of these sends the request down nodemailer's
 * own path. (nodemailer also has a rule for "Content-Id", which no normalised name matches: it writes Content-ID as
 * any other field.)
 */
const TREE_HEADERS = new Set([
  "From",
  "Sender",
  "To",
  "Cc",
  "Bcc",
  "Reply-To",
  "In-Reply-To",
  "References",
  "Subject",
  "Message-ID",
  "Date",
  "Content-Type",
  "Content-Disposition",
  "Content-Transfer-Encoding",
  "MIME-Version",
]);

/** nodemailer's header-name normalisation (MimeNode's own method; it reads nothing of the node). */
const normalizeHeaderKey = (MimeNodeClass.prototype as unknown as { _normalizeHeaderKey: (key: string) => string })
  ._normalizeHeaderKey;

/** A line break: nodemailer writes each as a blank in a header value (the doors refuse them before). */
const LINE_BREAK = /[\r\n]/;

/** Printable ASCII (SP to '~'): an address or display name of only these is written without encoded words. */
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/**
 * nodemailer's address list (MimeNode._convertAddresses after _normalizeAddress) for printable-ASCII mailboxes whose
 * address has no blank and one "@": the domain lower-cased (punycode leaves an ASCII domain as it is), a name of only
 * word characters and blanks as is, any other printable name quoted. Undefined for anything else.
 */
function addressList(list: readonly { name: string; address: string }[]): string | undefined {
  const out: string[] = [];
  for (const { name, address } of list) {
    const at = address.lastIndexOf("@");
    if (at <= 0 || !PRINTABLE_ASCII.test(address) || /[\s<>"]/.test(address) || !PRINTABLE_ASCII.test(name))
      return undefined;
    const normalized = address.slice(0, at + 1) + address.slice(at + 1).toLowerCase();
    if (name === "") out.push(normalized);
    else if (/^[\w ]*$/.test(name)) out.push(`${name} <${normalized}>`);
    else out.push(`"${name.replace(/([\\"])/g, "\\$1")}" <${normalized}>`);
  }
  return out.join(", ");
}

/**
 * MimeNode._encodeWords for all-ASCII requests (its text encoding "Q"): mimeFuncs.encodeWords with encodeAll, a
 * fourth argument nodemailer's type declarations leave out. A value with a '"' becomes one encoded word; else as is.
 */
const encodeWordsAll = (value: string): string =>
  (mimeFuncs.encodeWords as (v: string, enc: "Q", max: number, all: boolean) => string)(value, "Q", 52, true);

/** One header line as nodemailer's buildHeaders() writes it: "Key: value", folded at 76 (mimeFuncs.foldLines). */
function headerLine(key: string, value: string): string {
  const line = `${key}: ${value}`;
  return line.length < 76 ? line : mimeFuncs.foldLines(line, 76);
}

/**
 * One text part's transfer encoding and body as nodemailer writes it for all-ASCII content: 7bit when it has no
 * control characters and no line over 76 (mimeFuncs.isPlainText, mimeFuncs.hasLongerLines), else quoted-printable.
 */
function textPart(content: string): { encoding: string; body: string } {
  if (mimeFuncs.isPlainText(content) && !mimeFuncs.hasLongerLines(content, 76))
    return { encoding: "7bit", body: content };
  return {
    encoding: "quoted-printable",
    body: wrapQuotedPrintable(encodeQuotedPrintable(Buffer.from(content, "latin1")), 76),
  };
}

/**
 * The message nodemailer's tree (mailComposerFor, then serializeMimeTree) gives, written directly as an ASCII string
 * (each character one byte), for the shape nearly every request has: all-ASCII text (with or without HTML), subject
 * and display names; no attachments; printable-ASCII addresses and display names; header values on one line; caller
 * headers other than the ones the tree sets. Undefined for anything else, which then takes nodemailer's own path.
 *
 * Why: building nodemailer's tree (three MimeNode objects, the two parts each drawing an unused random boundary base
 * from OpenSSL; every header name normalised by regular expressions each time it is set, looked up or written; the
 * content type parsed back from a string) was ~35% of everything a POST /send allocated and ~16% of the relay's busy
 * main thread (bench:relay's open loop, V8's sampling heap profiler and --cpu-prof, issue 23). Every rule below is
 * nodemailer's, called from its own mime-funcs where it has one; test/relay/mime-direct.property.test.ts compares
 * this with the tree's output byte for byte over generated requests, and checks which requests it writes.
 */
export function writeCommonMessage(
  req: SendRequest,
  opts: ComposeOptions,
  text: string,
  baseBoundary: string,
): string | undefined {
  if (req.attachments.length > 0 || text === "" || !allAsciiRequest(req, text)) return undefined;
  const headers: string[] = [];
  for (const key of Object.keys(req.headers)) {
    const value = req.headers[key]!;
    const name = normalizeHeaderKey(key);
    if (TREE_HEADERS.has(name) || LINE_BREAK.test(value)) return undefined;
    if (value.trim() === "") continue; // nodemailer leaves out a field with nothing in it
    headers.push(headerLine(name, encodeWordsAll(value)));
  }
  const from = addressList([senderOf(req)]);
  const to = addressList(req.to.map(addr));
  const cc = addressList(req.cc.map(addr));
  const replyTo = addressList(req.replyTo.map(addr));
  if (from === undefined || to === undefined || cc === undefined || replyTo === undefined) return undefined;
  if (LINE_BREAK.test(req.subject) || !/^<[\x21-\x7e]*>$/.test(opts.messageId)) return undefined;
  headers.push(headerLine("From", from));
  if (to !== "") headers.push(headerLine("To", to));
  if (cc !== "") headers.push(headerLine("Cc", cc));
  if (replyTo !== "") headers.push(headerLine("Reply-To", replyTo));
  const subject = encodeWordsAll(req.subject);
  if (subject.trim() !== "") headers.push(headerLine("Subject", subject));
  headers.push(
    headerLine("Message-ID", opts.messageId),
    headerLine("Date", opts.date.toUTCString().replace(/GMT/, "+0000")),
  );
  const plain = textPart(text);
  if (!req.html) {
    headers.push(
      `Content-Transfer-Encoding: ${plain.encoding}`,
      "MIME-Version: 1.0",
      "Content-Type: text/plain; charset=utf-8",
    );
    return withFinalNewline(`${headers.join("\r\n")}\r\n\r\n${plain.body}`);
  }
  const html = textPart(req.html);
  const boundary = `--_NmP-${baseBoundary}-Part_1`;
  headers.push("MIME-Version: 1.0", headerLine("Content-Type", `multipart/alternative; boundary="${boundary}"`));
  return withFinalNewline(
    `${headers.join("\r\n")}\r\n\r\n` +
      `--${boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Transfer-Encoding: ${plain.encoding}\r\n\r\n${plain.body}\r\n` +
      `--${boundary}\r\nContent-Type: text/html; charset=utf-8\r\n` +
      `Content-Transfer-Encoding: ${html.encoding}\r\n\r\n${html.body}\r\n` +
      `--${boundary}--\r\n`,
  );
}

/** The message, ending with a line break as build()'s LastNewline makes it. */
function withFinalNewline(message: string): string {
  const last = message.charCodeAt(message.length - 1);
  return last === 0x0d ? `${message}\n` : last === 0x0a ? message : `${message}\r\n`;
}

/**
 * A message composed synchronously: nothing could interrupt it, so the deadline is checked after (the HTML scan keeps
 * real mail far below it).
 */
function withinDeadline<T>(message: T, started: number): T {
  if (performance.now() - started > COMPOSE_DEADLINE_MS) throw composeTooSlow();
  return message;
}

function composeTooSlow(): RelayError {
  return new RelayError("message_too_complex", `composing the message took longer than ${COMPOSE_DEADLINE_MS} ms`);
}

/** The parts of nodemailer's MimeNode its stream() reads that its type declarations leave out. */
interface MimeNodeInternals {
  readonly _raw: unknown;
  readonly _transforms: readonly unknown[];
  readonly _processFuncs: readonly unknown[];
  readonly newline?: unknown;
}

/**
 * The bytes MimeNode.build() would give for `root`, written synchronously, or undefined when the tree holds anything
 * this does not write (raw or streamed content, transforms, newline conversion): the caller then runs build().
 *
 * Why: build() pipes every node through PassThrough and encoder streams and moves on with a setImmediate per part.
 * For the relay's small messages that plumbing cost more CPU than the encoding (bench:relay's CPU profile:
 * nodemailer ~21% of the relay's busy main thread), and the parts of one message interleaved with other requests'
 * work. Every header is still nodemailer's (buildHeaders()), and every body byte goes through its own base64
 * encode() and wrap(), or through encodeQuotedPrintable() and wrapQuotedPrintable() (its qp.encode() and qp.wrap(),
 * the same output for less garbage), chunked as its Encoder streams chunk a single write;
 * test/relay/mime-serialize.test.ts checks the result against build() byte for byte over generated messages.
 */
export function serializeMimeTree(root: MimeNode): Buffer | undefined {
  // Checked for the whole tree before anything is written: build() then starts from an untouched tree.
  if (!writable(root, root)) return undefined;
  const out: Buffer[] = [];
  writeNode(root, out);
  // build()'s LastNewline: the message ends with a line break
  let lastByte: number | undefined;
  for (let i = out.length - 1; i >= 0 && lastByte === undefined; i--) lastByte = out[i]![out[i]!.length - 1];
  if (lastByte === 0x0d) out.push(Buffer.from("\n"));
  else if (lastByte !== 0x0a) out.push(Buffer.from("\r\n"));
  return Buffer.concat(out);
}

/** True when writeNode writes `node` and every node under it as stream() would: no raw or streamed content. */
function writable(node: MimeNode, root: MimeNode): boolean {
  const internals = node as unknown as MimeNodeInternals;
  if (internals._raw || internals._transforms.length > 0 || internals._processFuncs.length > 0) return false;
  if (node === root && internals.newline) return false;
  const content: unknown = node.content;
  if (content && typeof content !== "string" && !Buffer.isBuffer(content)) return false;
  return node.childNodes.every((child) => writable(child, root));
}

/** Bytes quoted-printable writes as themselves: TAB, LF, CR, and SP to '~' except '=' (RFC 2045 6.7; nodemailer's). */
const QP_LITERAL = new Uint8Array(256);
for (const b of [0x09, 0x0a, 0x0d]) QP_LITERAL[b] = 1;
for (let b = 0x20; b <= 0x7e; b++) if (b !== 0x3d) QP_LITERAL[b] = 1;
const HEX = "0123456789ABCDEF";

/**
 * nodemailer's qp.encode(), the same output (test/relay/qp-encode.property.test.ts checks it over generated bytes)
 * for a fraction of the garbage: it builds its result a character at a time (`result += ...`), one heap string per
 * input byte, which was 27% of everything the relay allocated per POST /send (bench:relay's open loop, V8's sampling
 * heap profiler, issue 23) and so drove the young-generation collections that land in the open loop's tail. Here:
 * one buffer, written once, turned into one string. A blank (SP or TAB) before a line break or at the very end is
 * encoded, as there.
 */
export function encodeQuotedPrintable(bytes: Buffer): string {
  const len = bytes.length;
  const out = Buffer.allocUnsafe(len * 3);
  let j = 0;
  for (let i = 0; i < len; i++) {
    const b = bytes[i] as number;
    if (QP_LITERAL[b] === 1) {
      if (b !== 0x20 && b !== 0x09) {
        out[j++] = b;
        continue;
      }
      const next = i + 1 < len ? (bytes[i + 1] as number) : -1;
      if (next !== -1 && next !== 0x0a && next !== 0x0d) {
        out[j++] = b;
        continue;
      }
    }
    out[j++] = 0x3d;
    out[j++] = HEX.charCodeAt(b >> 4);
    out[j++] = HEX.charCodeAt(b & 15);
  }
  return out.toString("latin1", 0, j);
}

const isHex = (c: number): boolean => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
const hexValue = (c: number): number => (c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x61 + 10);
/** SP, TAB, '.', ',', '!' and '?': where a line may be broken. */
const isBreakable = (c: number): boolean =>
  c === 0x20 || c === 0x09 || c === 0x2e || c === 0x2c || c === 0x21 || c === 0x3f;

/** The start of an "=" followed by at most `maxHex` hex digits that ends the line s[pos, end), leftmost; else -1. */
function partialEscapeStart(s: string, pos: number, end: number, maxHex: number): number {
  for (let p = Math.max(pos, end - 1 - maxHex); p < end; p++) {
    if (s.charCodeAt(p) !== 0x3d) continue;
    let hex = true;
    for (let i = p + 1; i < end && hex; i++) hex = isHex(s.charCodeAt(i));
    if (hex) return p;
  }
  return -1;
}

/** True when the line s[pos, end) ends with a whole "=XX" escape. */
function endsWithEscape(s: string, pos: number, end: number): boolean {
  return (
    end - pos >= 3 && s.charCodeAt(end - 3) === 0x3d && isHex(s.charCodeAt(end - 2)) && isHex(s.charCodeAt(end - 1))
  );
}

/** True when the line s[pos, end) is one to four "=XX" escapes and nothing else. */
function onlyEscapes(s: string, pos: number, end: number): boolean {
  const n = end - pos;
  if (n < 3 || n > 12 || n % 3 !== 0) return false;
  for (let p = pos; p < end; p += 3) if (!endsWithEscape(s, p, p + 3)) return false;
  return true;
}

/**
 * nodemailer's qp.wrap(str, lineLength) for quoted-printable text (ASCII), the same output
 * (test/relay/qp-encode.property.test.ts compares them over generated encoded text), by index instead of with a
 * substring, regular-expression matches and a concatenation per line (~7% of what a POST /send allocated after
 * encodeQuotedPrintable, issue 23). Its rules: a line ends after a hard line break in it; else at the last LF of its
 * last third; else, when long enough, after the last blank or punctuation of its last third; else it is not cut
 * inside an "=XX" escape nor inside a UTF-8 sequence written as escapes. A line that does not end the text gets a
 * soft break ("=" CRLF) and stays within lineLength with it.
 */
export function wrapQuotedPrintable(str: string, lineLength = 76): string {
  const len = str.length;
  if (len <= lineLength) return str;
  const margin = Math.floor(lineLength / 3);
  const parts: string[] = [];
  let nextCrlf = -1; // the first CRLF at or after pos (searched again only once pos has passed it)
  let pos = 0;
  while (pos < len) {
    const lineEnd = Math.min(pos + lineLength, len);
    if (nextCrlf !== -2 && nextCrlf < pos) {
      nextCrlf = str.indexOf("\r\n", pos);
      if (nextCrlf === -1) nextCrlf = -2; // none left
    }
    if (nextCrlf >= 0 && nextCrlf + 2 <= lineEnd) {
      parts.push(str.slice(pos, nextCrlf + 2));
      pos = nextCrlf + 2;
      continue;
    }
    if (str.charCodeAt(lineEnd - 1) === 0x0a) {
      parts.push(str.slice(pos, lineEnd));
      pos = lineEnd;
      continue;
    }
    const tailStart = Math.max(pos, lineEnd - margin);
    let lf = -1; // the last LF of the last third, with no CR after it
    for (let i = lineEnd - 1; i >= tailStart; i--) {
      const c = str.charCodeAt(i);
      if (c === 0x0d) break;
      if (c === 0x0a) {
        lf = i;
        break;
      }
    }
    if (lf !== -1) {
      parts.push(str.slice(pos, lf + 1));
      pos = lf + 1;
      continue;
    }
    let end = lineEnd;
    let breakAt = -1;
    if (lineEnd - pos > lineLength - margin) {
      for (let i = lineEnd - 1; i >= tailStart && breakAt === -1; i--) if (isBreakable(str.charCodeAt(i))) breakAt = i;
    }
    if (breakAt !== -1) end = breakAt + 1;
    else if (partialEscapeStart(str, pos, end, 2) !== -1) {
      const cut = partialEscapeStart(str, pos, end, 1);
      if (cut !== -1) end = cut;
      while (end - pos > 3 && end - pos < len - pos && !onlyEscapes(str, pos, end) && endsWithEscape(str, pos, end)) {
        const code = hexValue(str.charCodeAt(end - 2)) * 16 + hexValue(str.charCodeAt(end - 1));
        if (code < 128) break;
        end -= 3;
        if (code >= 192) break;
      }
    }
    // Only text that is not quoted-printable (an "=" without its two digits at the end) can leave nothing to write;
    // nodemailer's wrap() never returns on it, this one writes the rest of the line.
    if (end <= pos) end = lineEnd;
    if (end < len && str.charCodeAt(end - 1) !== 0x0a) {
      if (end - pos === lineLength && endsWithEscape(str, pos, end)) end -= 3;
      else if (end - pos === lineLength) end -= 1;
      parts.push(str.slice(pos, end), "=\r\n");
    } else parts.push(str.slice(pos, end));
    pos = end;
  }
  return parts.join("");
}

/** One node as MimeNode.stream() writes it: headers, a blank line, the encoded content, then the children. */
function writeNode(node: MimeNode, out: Buffer[]): void {
  const content: unknown = node.content;
  const transferEncoding = node.getTransferEncoding();
  out.push(Buffer.from(node.buildHeaders() + "\r\n\r\n"));
  if (content) {
    const bytes = typeof content === "string" ? Buffer.from(content) : (content as Buffer);
    if (transferEncoding === "quoted-printable")
      out.push(Buffer.from(wrapQuotedPrintable(encodeQuotedPrintable(bytes), 76)));
    else if (transferEncoding === "base64") {
      // base64.Encoder encodes whole 3-byte groups and wraps them, then appends the last 1-2 bytes' encoding
      const whole = bytes.length - (bytes.length % 3);
      out.push(Buffer.from(base64.wrap(base64.encode(bytes.subarray(0, whole)), 76)));
      if (whole < bytes.length) out.push(Buffer.from(base64.encode(bytes.subarray(whole))));
    } else out.push(bytes);
  }
  if (!node.multipart) return;
  for (const [i, child] of node.childNodes.entries()) {
    out.push(Buffer.from(`${i > 0 ? "\r\n" : ""}--${String(node.boundary)}\r\n`));
    writeNode(child, out);
  }
  out.push(Buffer.from(`\r\n--${String(node.boundary)}--\r\n`));
}
