// message_size_limit must hold every message the relay builds from a body within its limit. The composer below is
// the relay's (relay/mime.ts): nodemailer MailComposer, and html-to-text for the text part of HTML-only requests.
// Bodies are adversarial: the JSON is filled up to the limit with content that expands most under MIME encoding.
import MailComposer from "nodemailer/lib/mail-composer";
import { convert } from "html-to-text";
import { describe, expect, it } from "vitest";
import { messageSizeLimitFor } from "../../cloud-init";
import { MESSAGE_SIZE_OVERHEAD_BYTES } from "../../cloud-init/postfix";
import { loadConfig } from "../../relay/config";

interface Body {
  to: string[];
  from: { email: string; name?: string };
  subject: string;
  text?: string;
  html?: string;
  attachments?: { filename: string; contentType?: string; content: string }[];
}

function compose(b: Body): Promise<number> {
  const text =
    b.text ??
    (b.html !== undefined ? convert(b.html, { wordwrap: 78, selectors: [{ selector: "img", format: "skip" }] }) : "");
  const composer = new MailComposer({
    from: { name: b.from.name ?? "", address: b.from.email },
    to: b.to.map((address) => ({ name: "", address })),
    subject: b.subject,
    text,
    ...(b.html !== undefined ? { html: b.html } : {}),
    attachments: (b.attachments ?? []).map((a) => ({
      filename: a.filename,
      contentType: a.contentType,
      content: a.content,
      encoding: "base64",
    })),
    messageId: "<0123456789abcdef@mail.example.com>",
    date: new Date(0),
    disableFileAccess: true,
    disableUrlAccess: true,
  });
  return new Promise((resolve, reject) =>
    composer.compile().build((err, msg) => (err ? reject(err) : resolve(msg.length))),
  );
}

const envelope = {
  to: ["someone@example.org"],
  from: { email: "noreply@example.com", name: "Example" },
  subject: "Ünïcode subject ==",
};
const size = (b: Body) => Buffer.byteLength(JSON.stringify(b));

/** The largest body of this shape whose JSON fits in `limit` bytes (binary search on the repeat count). */
function fill(limit: number, make: (n: number) => Body): Body {
  let lo = 0;
  let hi = limit;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (size(make(mid)) <= limit) lo = mid;
    else hi = mid - 1;
  }
  return make(lo);
}

const LIMIT = 524_288; // the relay's default RELAY_BODY_LIMIT_BYTES
const shapes: [string, (n: number) => Body][] = [
  ["HTML-only of '=' and non-ASCII (text part generated)", (n) => ({ ...envelope, html: "é" + "=".repeat(n) })],
  ["text of '=' with one non-ASCII character", (n) => ({ ...envelope, text: "é" + "=".repeat(n) })],
  ["text and HTML, both '=' heavy", (n) => ({ ...envelope, text: "é" + "=".repeat(n), html: "é" + "=".repeat(n) })],
  ["HTML list items", (n) => ({ ...envelope, html: "<ol>" + "<li>=</li>".repeat(n) + "</ol>" })],
  ["HTML paragraphs", (n) => ({ ...envelope, html: "<p>=</p>".repeat(n) })],
  ["long unbroken lines", (n) => ({ ...envelope, text: "x".repeat(n) })],
  [
    "one big base64 attachment",
    (n) => ({ ...envelope, text: "x", attachments: [{ filename: "a.bin", content: "QUFB".repeat(n) }] }),
  ],
  [
    "many one-byte attachments (per-part headers)",
    (n) => ({
      ...envelope,
      text: "x",
      attachments: Array.from({ length: n }, () => ({ filename: "a", content: "QQ==" })),
    }),
  ],
];

describe("message_size_limit holds what the relay builds from a body at its limit", () => {
  it.each(shapes)("%s", async (_name, make) => {
    const body = fill(LIMIT, make);
    expect(size(body)).toBeLessThanOrEqual(LIMIT);
    expect(size(body)).toBeGreaterThan(LIMIT * 0.99);
    const mime = await compose(body);
    console.info(
      `[message-size] ${_name}: JSON ${size(body)} B -> MIME ${mime} B (x${(mime / size(body)).toFixed(2)}), limit ${messageSizeLimitFor(LIMIT)} B`,
    );
    // Postfix also counts its own Received: header and the DKIM-Signature: well inside the 1 MiB overhead.
    expect(mime + 8192).toBeLessThanOrEqual(messageSizeLimitFor(LIMIT));
  });
});

describe("Postfix never refuses for size what the relay queued", () => {
  it.each([1024, 65_536, 524_288, 4 * 1024 * 1024])(
    "body limit %i: the relay's largest composed message plus Postfix's own headers fits message_size_limit",
    (bodyLimit) => {
      const relayMax = loadConfig({
        SMTP_RELAY_TOKEN: `app=${"k".repeat(32)}`,
        RELAY_ALLOWED_FROM: "noreply@example.com",
        RELAY_BODY_LIMIT_BYTES: String(bodyLimit),
      }).maxMessageBytes;
      expect(relayMax + MESSAGE_SIZE_OVERHEAD_BYTES).toBeLessThanOrEqual(messageSizeLimitFor(bodyLimit));
    },
  );
});
