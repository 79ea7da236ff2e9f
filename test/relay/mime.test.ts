import { simpleParser, type AddressObject } from "mailparser";
import { describe, expect, it } from "vitest";
import { Admission } from "../../relay/admission";
import { composeMessage, htmlToPlainText, mailComposerFor } from "../../relay/mime";
import { validateSendRequest } from "../../relay/validate";
import { ALLOWED_FROM, testConfig } from "./fixtures";

const limits = {
  admission: new Admission(testConfig({ allowedFrom: new Set([ALLOWED_FROM]), maxRecipients: 50 })),
  caller: "app",
};
const date = new Date("2026-06-20T14:00:00Z");

async function build(body: Record<string, unknown>) {
  const req = validateSendRequest(
    { from: { email: ALLOWED_FROM, name: "Example Support" }, to: "user@example.net", subject: "Hi", ...body },
    limits,
  );
  const raw = (
    await composeMessage(req, { messageId: "<11111111-2222-4333-8444-555555555555@mail.example.com>", date })
  ).toString("utf8");
  return { raw, parsed: await simpleParser(raw) };
}

function addresses(a: AddressObject | AddressObject[] | undefined): string[] {
  return (Array.isArray(a) ? a : a ? [a] : []).flatMap((x) => x.value.map((v) => v.address ?? ""));
}

describe("MIME built by nodemailer's MailComposer, parsed back with mailparser", () => {
  it("text + html become multipart/alternative with both parts", async () => {
    const { raw, parsed } = await build({ text: "Plain body", html: "<p>HTML <b>body</b></p>" });
    expect(raw).toMatch(/^Content-Type: multipart\/alternative;/m);
    expect(parsed.text?.trim()).toBe("Plain body");
    expect(parsed.html).toContain("<b>body</b>");
  });

  it("an html-only request gets a generated plain-text part (inbox checks want both)", async () => {
    const { raw, parsed } = await build({
      html: '<h1>Welcome</h1><p>Reset your password <a href="https://example.com/r">here</a>.</p><script>x()</script>',
    });
    expect(raw).toMatch(/multipart\/alternative/);
    expect(parsed.text).toContain("WELCOME");
    expect(parsed.text).toContain("Reset your password");
    expect(parsed.text).toContain("https://example.com/r");
    expect(parsed.text).not.toContain("<p>");
    expect(parsed.text).not.toContain("x()");
  });

  it("html-to-text is a parser, not a tag-stripping regex: entities decode, comments vanish", () => {
    expect(htmlToPlainText("<p>Tom &amp; Jerry<!-- hidden <b>x</b> --></p>")).toBe("Tom & Jerry");
  });

  it("attachments are decoded back byte for byte, with name and type", async () => {
    const pdf = Buffer.from("%PDF-1.4 fake \u0000\u00ff binary", "latin1");
    const { raw, parsed } = await build({
      text: "see attached",
      html: "<p>see attached</p>",
      attachments: [
        { filename: "invoice 2026.pdf", contentType: "application/pdf", content: pdf.toString("base64") },
        { filename: "notes.txt", contentType: "text/plain", content: Buffer.from("line1\nline2").toString("base64") },
      ],
    });
    expect(raw).toMatch(/^Content-Type: multipart\/mixed;/m);
    expect(parsed.attachments).toHaveLength(2);
    const [a, b] = parsed.attachments;
    expect(a?.filename).toBe("invoice 2026.pdf");
    expect(a?.contentType).toBe("application/pdf");
    expect(a?.content.equals(pdf)).toBe(true);
    expect(b?.content.toString()).toBe("line1\nline2");
    expect(parsed.text?.trim()).toBe("see attached");
  });

  it("the boundary base is the relay's own (a UUID's 32 hex digits, not nodemailer's randomBytes(8)), new for each message", async () => {
    const shapes: Record<string, unknown>[] = [
      { text: "x" },
      { html: "<p>x</p>" },
      { text: "x", html: "<p>x</p>" },
      { text: "x", html: "<p>x</p>", attachments: [{ filename: "a.txt", content: "YQ==" }] },
    ];
    const seen = new Set<string>();
    for (const shape of shapes) {
      const req = validateSendRequest(
        { from: { email: ALLOWED_FROM }, to: "user@example.net", subject: "Hi", ...shape },
        limits,
      );
      for (let i = 0; i < 3; i++) {
        const root = mailComposerFor(req, { messageId: "<m@mail.example.com>", date }).compile();
        // every part's boundary is made from the root's base (MimeNode._generateBoundary)
        expect(root.baseBoundary, JSON.stringify(shape)).toMatch(/^[0-9a-f]{32}$/);
        seen.add(root.baseBoundary);
      }
      const { raw, parsed } = await build(shape);
      expect(parsed.text?.trim()).toBe("x");
      if (shape.html !== undefined || shape.attachments !== undefined)
        expect(raw).toMatch(/boundary="--_NmP-[0-9a-f]{32}-Part_1"/);
    }
    expect(seen.size).toBe(shapes.length * 3);
  });

  it("Message-ID is on the configured domain and Date is the acceptance time", async () => {
    const { parsed } = await build({ text: "x" });
    expect(parsed.messageId).toBe("<11111111-2222-4333-8444-555555555555@mail.example.com>");
    expect(parsed.date?.toISOString()).toBe(date.toISOString());
  });

  it("long and non-ASCII headers are encoded and folded to lines of at most 78 characters", async () => {
    const subject = `Votre commande n° 123 — état: expédiée ✓ ${"très longue ligne ".repeat(8)}`.trim();
    const { raw, parsed } = await build({
      text: "x",
      subject,
      headers: { "X-Campaign": "a".repeat(30) + " " + "b".repeat(60) + " " + "c".repeat(30) },
    });
    const head = raw.slice(0, raw.indexOf("\r\n\r\n"));
    for (const line of head.split("\r\n")) expect(line.length, line).toBeLessThanOrEqual(78);
    expect(head).toMatch(/^Subject: =\?UTF-8\?/m); // RFC 2047 encoded-word
    expect(head).toMatch(/^Subject: .*\r\n [^\r\n]+/m); // folded continuation line
    expect(parsed.subject).toBe(subject);
    expect(parsed.headers.get("x-campaign")).toBe("a".repeat(30) + " " + "b".repeat(60) + " " + "c".repeat(30));
  });

  it("display names and IDN domains survive; Bcc never appears in the headers", async () => {
    const { raw, parsed } = await build({
      text: "x",
      to: [{ email: "kunde@bücher.example", name: "Müller, Hans" }],
      cc: "cc@example.org",
      bcc: "hidden@example.org",
      replyTo: { email: "support@example.com", name: "Support" },
    });
    expect(raw).toMatch(/^To: .*<kunde@xn--bcher-kva\.example>/m); // punycode on the wire
    expect(addresses(parsed.to)).toEqual(["kunde@bücher.example"]);
    expect((parsed.to as AddressObject).value[0]?.name).toBe("Müller, Hans");
    expect(addresses(parsed.cc)).toEqual(["cc@example.org"]);
    expect(addresses(parsed.replyTo)).toEqual(["support@example.com"]);
    expect(parsed.from?.value[0]).toMatchObject({ address: ALLOWED_FROM, name: "Example Support" });
    expect(raw).not.toMatch(/^bcc:/im);
    expect(raw).not.toContain("hidden@example.org");
  });
});
