import MailComposer from "nodemailer/lib/mail-composer";
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
 * Builds the RFC 5322 message with nodemailer's MailComposer: multipart/alternative when there is HTML, attachments
 * as multipart/mixed, encoded and folded headers. Bcc never becomes a header: it only goes to the envelope.
 */
export function composeMessage(req: SendRequest, opts: ComposeOptions): Promise<Buffer> {
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
  const composer = new MailComposer({
    ...(allAscii ? { textEncoding: "quoted-printable" as const } : {}),
    // The sender as admission allowed it (canonical), so From: and the envelope sender are one spelling.
    from: { name: req.from.name ?? "", address: req.from.canonical ?? req.from.email },
    to: req.to.map(addr),
    ...(req.cc.length > 0 ? { cc: req.cc.map(addr) } : {}),
    ...(req.replyTo.length > 0 ? { replyTo: req.replyTo.map(addr) } : {}),
    subject: req.subject,
    text,
    ...(req.html !== undefined ? { html: req.html } : {}),
    attachments: req.attachments.map((a) => ({ filename: a.filename, contentType: a.contentType, content: a.content })),
    headers: { ...req.headers },
    messageId: opts.messageId,
    date: opts.date,
    disableFileAccess: true,
    disableUrlAccess: true,
  });
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(
      () =>
        reject(
          new RelayError("message_too_complex", `composing the message took longer than ${COMPOSE_DEADLINE_MS} ms`),
        ),
      COMPOSE_DEADLINE_MS,
    );
    composer.compile().build((err, message) => {
      clearTimeout(deadline);
      if (err) reject(err);
      else resolve(message);
    });
  });
}
