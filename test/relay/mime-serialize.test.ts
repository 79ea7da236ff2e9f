import { PassThrough } from "node:stream";
import fc from "fast-check";
import MailComposer from "nodemailer/lib/mail-composer";
import { describe, expect, it } from "vitest";
import { Admission } from "../../relay/admission";
import { RelayError } from "../../relay/errors";
import { composeMessage, mailComposerFor, serializeMimeTree, type ComposeOptions } from "../../relay/mime";
import { validateSendRequest, type SendRequest } from "../../relay/validate";
import { ALLOWED_FROM, testConfig } from "./fixtures";

const limits = {
  admission: new Admission(testConfig({ allowedFrom: new Set([ALLOWED_FROM]), maxRecipients: 50 })),
  caller: "app",
};
const opts: ComposeOptions = {
  messageId: "<11111111-2222-4333-8444-555555555555@mail.example.com>",
  date: new Date("2026-06-20T14:00:00Z"),
};

/** The reference: nodemailer's own stream build of the same tree, with the same boundaries. */
async function viaBuild(req: SendRequest): Promise<{ reference: Buffer; written: Buffer | undefined }> {
  const written = mailComposerFor(req, opts).compile();
  const built = mailComposerFor(req, opts).compile();
  built.baseBoundary = written.baseBoundary;
  return { written: serializeMimeTree(written), reference: await built.build() };
}

// Pieces that change what nodemailer writes: line breaks of each kind, trailing blanks (QP encodes them), '=', dots at
// a line's start, long runs without a space (QP and header folding), non-ASCII (base64 or QP, encoded words).
const piece = fc.oneof(
  fc.constantFrom(
    "\r\n",
    "\n",
    "\r",
    " ",
    "\t",
    " \n",
    "\t\r\n",
    "=",
    "=3D",
    ".",
    "\n.\n",
    "x".repeat(90),
    "ü",
    "日本",
  ),
  fc.constantFrom("Thanks for your order. ", "a,b", '"q"', "\\", "<b>x</b>", "@", ";", "()", "=?utf-8?q?x?="),
  fc.string({ maxLength: 12, unit: "grapheme" }),
  fc.string({ maxLength: 30 }),
);
const textOf = (max: number) => fc.array(piece, { maxLength: max }).map((a) => a.join(""));
const lineOf = (max: number) => textOf(max).map((s) => s.replace(/[\r\n\0]/g, " "));
const nameOf = fc.option(
  lineOf(6).map((s) => s.slice(0, 200)),
  { nil: undefined },
);
const mailboxOf = (local: string) => nameOf.map((name) => (name === undefined ? local : { email: local, name }));

const body = fc.record(
  {
    from: nameOf.map((name) => ({ email: ALLOWED_FROM, ...(name !== undefined ? { name } : {}) })),
    to: fc.array(mailboxOf("user@example.net"), { minLength: 1, maxLength: 3 }),
    cc: fc.array(mailboxOf("cc@example.org"), { minLength: 1, maxLength: 2 }),
    replyTo: mailboxOf("reply@example.com"),
    subject: lineOf(10).map((s) => (s.trim() === "" ? "s" : s.slice(0, 200))),
    text: textOf(40),
    html: textOf(40).map((s) => `<p>${s}</p>`),
    headers: fc.dictionary(
      fc.constantFrom("X-Campaign", "x-trace-id", "X-Entity-Ref-ID", "X-LONG-HEADER-NAME-FOR-FOLDING"),
      lineOf(8),
    ),
    attachments: fc.array(
      fc.record({
        filename: fc.constantFrom("a.txt", "receipt.pdf", "résumé.pdf", "no extension", "日本.csv"),
        contentType: fc.constantFrom(
          "text/plain",
          "application/pdf",
          "image/png",
          "text/csv",
          "application/octet-stream",
        ),
        content: fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b).toString("base64")),
      }),
      { maxLength: 2 },
    ),
  },
  { requiredKeys: ["from", "to", "subject"] },
);

describe("the relay writes each message synchronously, byte for byte what nodemailer's build() streams", () => {
  it("every generated request the relay accepts: serializeMimeTree(tree) equals tree.build()", async () => {
    let compared = 0;
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        let req: SendRequest;
        try {
          req = validateSendRequest(b, limits);
        } catch (err) {
          if (err instanceof RelayError) return; // refused at the door: never composed
          throw err;
        }
        const { reference, written } = await viaBuild(req);
        expect(written).toBeDefined();
        expect(written!.toString("latin1")).toBe(reference.toString("latin1"));
        compared++;
      }),
      { numRuns: 400 },
    );
    // the generator must mostly make requests the relay accepts, or the property above says little
    expect(compared).toBeGreaterThan(200);
  });

  it("composeMessage returns those bytes (the boundary aside) for text, html, both, and attachments", async () => {
    const base = { from: { email: ALLOWED_FROM, name: "Shop" }, to: "user@example.net", subject: "Hi" };
    const variants = [
      { text: "plain only" },
      { html: "<p>html only, <b>text generated</b></p>" },
      { text: "Thanks. ".repeat(30), html: `<p>${"Thanks. ".repeat(30)}</p>` },
      { text: "x", attachments: [{ filename: "a.bin", content: Buffer.from("abcdefgh").toString("base64") }] },
      { text: "ü", html: "<p>ü</p>", attachments: [{ filename: "b.txt", contentType: "text/plain", content: "" }] },
    ];
    for (const v of variants) {
      const req = validateSendRequest({ ...base, ...v }, limits);
      const composed = await composeMessage(req, opts);
      const { reference } = await viaBuild(req);
      const unbound = (s: string): string => s.replace(/--_NmP-[0-9a-f]+-Part_/g, "--_NmP-B-Part_");
      expect(unbound(composed.toString("latin1"))).toBe(unbound(reference.toString("latin1")));
    }
  });

  it("a tree it cannot write (streamed content, raw, a streamed part) gives undefined, and build() is used instead", async () => {
    const streamed = new MailComposer({ from: ALLOWED_FROM, to: "u@example.net", text: new PassThrough() }).compile();
    expect(serializeMimeTree(streamed)).toBeUndefined();
    const raw = new MailComposer({ raw: "Subject: x\r\n\r\nbody\r\n" }).compile();
    expect(serializeMimeTree(raw)).toBeUndefined();
    // a tree it gives up on is left untouched: build() writes exactly what it writes for a fresh copy
    const mixedTree = (part: PassThrough) =>
      new MailComposer({
        from: ALLOWED_FROM,
        to: "u@example.net",
        text: "first part writable, second part streamed",
        attachments: [{ filename: "s.txt", content: part }],
        messageId: opts.messageId,
        date: opts.date,
      }).compile();
    const [partA, partB] = [new PassThrough(), new PassThrough()];
    const [tried, fresh] = [mixedTree(partA), mixedTree(partB)];
    fresh.baseBoundary = tried.baseBoundary;
    expect(serializeMimeTree(tried)).toBeUndefined();
    partA.end("streamed");
    partB.end("streamed");
    const [afterTry, untouched] = await Promise.all([tried.build(), fresh.build()]);
    expect(afterTry.toString()).toContain("c3RyZWFtZWQ="); // build() still writes the streamed part
    expect(afterTry.toString()).toBe(untouched.toString());
  });
});
