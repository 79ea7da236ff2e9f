import MailComposer from "nodemailer/lib/mail-composer";
import type Mail from "nodemailer/lib/mailer";
import type MimeNode from "nodemailer/lib/mime-node";
import * as base64 from "nodemailer/lib/base64";
import * as qp from "nodemailer/lib/qp";
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

/** True when every character is 7-bit ASCII. */
function isAscii(s: string): boolean {
  return /^\p{ASCII}*$/u.test(s);
}

export interface ComposeOptions {
  /** `<id@domain>`, from admission.messageId(). */
  readonly messageId: string;
  readonly date: Date;
}

/**
 * nodemailer's MailComposer for a request: multipart/alternative when there is HTML, attachments as multipart/mixed,
 * encoded and folded headers. Bcc never becomes a header: it only goes to the envelope.
 */
export function mailComposerFor(req: SendRequest, opts: ComposeOptions): MailComposer {
  const text = req.text ?? (req.html !== undefined ? htmlToPlainText(req.html) : "");
  // nodemailer picks quoted-printable or base64 per part by counting letters with two global regex matches (~0.1 ms
  // for a few KB, measured as the largest single cost of a request). For all-ASCII content its answer is
  // quoted-printable anyway, so say so up front; anything non-ASCII keeps nodemailer's own choice.
  const allAscii = [
    text,
    req.html ?? "",
    req.subject,
    ...[req.from, ...req.to, ...req.cc, ...req.replyTo].map((m) => m.name ?? ""),
  ].every(isAscii);
  // A literal, then the optional fields: not `{ ...(cond ? {...} : {}), from, to, ... }`. V8 gives an object that
  // starts with a spread a map detached from every transition tree, so each field after it made a new hidden class
  // on every request (11 per message; V8's --log-maps over bench:relay's open loop, issue 23): garbage in V8's map
  // and old spaces that only a full collection frees, and property reads in nodemailer that never settle.
  const mail: Mail.Options = {
    // The sender as admission allowed it (canonical), so From: and the envelope sender are one spelling.
    from: { name: req.from.name ?? "", address: req.from.canonical ?? req.from.email },
    to: req.to.map(addr),
    subject: req.subject,
    text,
    attachments: req.attachments.map((a) => ({ filename: a.filename, contentType: a.contentType, content: a.content })),
    headers: { ...req.headers },
    messageId: opts.messageId,
    date: opts.date,
    disableFileAccess: true,
    disableUrlAccess: true,
  };
  if (allAscii) mail.textEncoding = "quoted-printable";
  if (req.cc.length > 0) mail.cc = req.cc.map(addr);
  if (req.replyTo.length > 0) mail.replyTo = req.replyTo.map(addr);
  if (req.html !== undefined) mail.html = req.html;
  return new MailComposer(mail);
}

/**
 * Builds the RFC 5322 message (mailComposerFor's tree), synchronously when serializeMimeTree can write it, which is
 * every tree a request makes; through MimeNode.build() otherwise.
 */
export async function composeMessage(req: SendRequest, opts: ComposeOptions): Promise<Buffer> {
  const root = mailComposerFor(req, opts).compile();
  const started = performance.now();
  const message = serializeMimeTree(root);
  if (message !== undefined) {
    // Synchronous: nothing can interrupt it, so the deadline is checked after (the HTML scan keeps real mail far
    // below it).
    if (performance.now() - started > COMPOSE_DEADLINE_MS) throw composeTooSlow();
    return message;
  }
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => reject(composeTooSlow()), COMPOSE_DEADLINE_MS);
    root.build((err, built) => {
      clearTimeout(deadline);
      if (err) reject(err);
      else resolve(built);
    });
  });
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
 * encode() and wrap(), or its qp wrap() after encodeQuotedPrintable() (its qp.encode(), the same output for less
 * garbage), chunked as its Encoder streams chunk a single write; test/relay/mime-serialize.test.ts checks the result
 * against build() byte for byte over generated messages.
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

/** One node as MimeNode.stream() writes it: headers, a blank line, the encoded content, then the children. */
function writeNode(node: MimeNode, out: Buffer[]): void {
  const content: unknown = node.content;
  const transferEncoding = node.getTransferEncoding();
  out.push(Buffer.from(node.buildHeaders() + "\r\n\r\n"));
  if (content) {
    const bytes = typeof content === "string" ? Buffer.from(content) : (content as Buffer);
    if (transferEncoding === "quoted-printable") out.push(Buffer.from(qp.wrap(encodeQuotedPrintable(bytes), 76)));
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
