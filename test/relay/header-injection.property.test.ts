import fc from "fast-check";
import { simpleParser } from "mailparser";
import { describe, expect, it } from "vitest";
import { Admission } from "../../relay/admission";
import { RelayError } from "../../relay/errors";
import { composeMessage } from "../../relay/mime";
import { validateSendRequest } from "../../relay/validate";
import { ALLOWED_FROM, testConfig } from "./fixtures";

const limits = {
  admission: new Admission(testConfig({ allowedFrom: new Set([ALLOWED_FROM]), maxRecipients: 50 })),
  caller: "app",
};

// Strings biased towards what breaks headers: CR, LF, NUL, colons, header-looking text, unicode line separators.
const nasty = fc.string({
  unit: fc.oneof(
    fc.constantFrom(
      "\r",
      "\n",
      "\r\n",
      "\0",
      ":",
      " ",
      "\t",
      "Bcc: evil@example.org",
      "X-Injected: 1",
      "\u2028",
      "\u0085",
      "=?utf-8?b?",
      ";",
      "<",
      ">",
      '"',
    ),
    fc.string({ minLength: 1, maxLength: 3, unit: "grapheme" }),
  ),
  maxLength: 40,
});

function headerNames(raw: string): string[] {
  const head = raw.slice(0, raw.indexOf("\r\n\r\n"));
  return head
    .split("\r\n")
    .filter((l) => !/^[ \t]/.test(l))
    .map((l) => l.slice(0, l.indexOf(":")).toLowerCase());
}

describe("no generated header value can inject a header", () => {
  it("subject, display names and X- header values either get refused (header_injection) or come out as exactly one header each", async () => {
    await fc.assert(
      fc.asyncProperty(nasty, nasty, nasty, nasty, async (subject, fromName, toName, custom) => {
        const body = {
          from: { email: ALLOWED_FROM, name: fromName },
          to: [{ email: "user@example.net", name: toName }],
          subject: subject === "" ? "s" : subject,
          text: "body",
          headers: { "X-Custom": custom },
        };
        const breaks = [body.subject, fromName, toName, custom].some((v) => /[\r\n\0]/.test(v));
        let req;
        try {
          req = validateSendRequest(body, limits);
        } catch (err) {
          // Refusal is allowed only for CR/LF/NUL (or an over-long subject), and must say header_injection.
          expect(err).toBeInstanceOf(RelayError);
          if ((err as RelayError).code === "subject_too_long") return;
          // A subject of blanks only (e.g. "\t") is refused by its own rule before it could become a header.
          if (
            (err as RelayError).code === "invalid_field" &&
            (err as RelayError).field === "subject" &&
            body.subject.trim() === ""
          )
            return;
          expect((err as RelayError).code).toBe("header_injection");
          expect(breaks).toBe(true);
          return;
        }
        expect(breaks).toBe(false);
        const raw = (
          await composeMessage(req, {
            messageId: "<11111111-2222-4333-8444-555555555555@mail.example.com>",
            date: new Date(0),
          })
        ).toString("utf8");
        const names = headerNames(raw);
        // Exactly the headers the relay sets, each once. The composer omits an X- value of ASCII blanks only; any other
        // value (Unicode spaces included, which it encodes) is exactly one header.
        expect(names.filter((n) => n !== "x-custom").sort()).toEqual([
          "content-transfer-encoding",
          "content-type",
          "date",
          "from",
          "message-id",
          "mime-version",
          "subject",
          "to",
        ]);
        expect(names.filter((n) => n === "x-custom").length).toBe(/^[ \t\v\f]*$/.test(custom) ? 0 : 1);
        const parsed = await simpleParser(raw);
        // The subject stays one value: no part of it turned into another header (fidelity of astral characters is a
        // separate, known nodemailer issue, pinned below).
        expect(/[\r\n]/.test(parsed.subject ?? "")).toBe(false);
        expect(parsed.headers.has("bcc")).toBe(false);
        expect(parsed.headers.has("x-injected")).toBe(false);
        expect(parsed.bcc).toBeUndefined();
      }),
      { numRuns: 300 },
    );
  });
});

describe("known nodemailer issue (found by the property test above)", () => {
  // MailComposer splits long encoded-word subjects by UTF-16 length, so a surrogate pair at the split point becomes two
  // U+FFFD. Not an injection, but an emoji at that position arrives garbled. it.fails turns red once nodemailer fixes
  // it.
  it.fails("an astral character at an encoded-word boundary survives the round trip", async () => {
    const subject = '"𝚹Ⳃⅸ;𓂧𖭤ആ🚕𓉟';
    const req = validateSendRequest({ from: ALLOWED_FROM, to: "user@example.net", subject, text: "x" }, limits);
    const raw = (
      await composeMessage(req, {
        messageId: "<11111111-2222-4333-8444-555555555555@mail.example.com>",
        date: new Date(0),
      })
    ).toString("utf8");
    expect((await simpleParser(raw)).subject).toBe(subject);
  });
});
