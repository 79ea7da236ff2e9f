// The SMTP ingress's pure parts: the DATA scanner (bare CR/LF, NUL, long lines, however TCP splits the bytes) and what
// it keeps of a client's message.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Admission } from "../../relay/admission";
import { RelayError } from "../../relay/errors";
import {
  DataScanner,
  LINE_MAX,
  prepareRawMessage,
  rfc5322Date,
  SmtpRefusal,
  type DataProblem,
} from "../../relay/smtp-message";
import { testConfig } from "./fixtures";

/** The rule, byte by byte: what the scanner must find. */
function reference(bytes: Uint8Array): Set<DataProblem> {
  const found = new Set<DataProblem>();
  let line = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    const prev = i > 0 ? bytes[i - 1] : undefined;
    if (prev === 0x0d && b !== 0x0a) found.add("bare_cr");
    if (b === 0x0a) {
      if (prev !== 0x0d) found.add("bare_lf");
      line = 0;
      continue;
    }
    if (b === 0x00) found.add("nul");
    if (b !== 0x0d && ++line > LINE_MAX) found.add("long_line");
  }
  if (bytes[bytes.length - 1] === 0x0d) found.add("bare_cr");
  return found;
}

function scan(bytes: Uint8Array, cuts: number[]): DataScanner {
  const s = new DataScanner();
  let at = 0;
  for (const c of [...cuts.map((x) => x % (bytes.length + 1)).sort((a, b) => a - b), bytes.length]) {
    s.push(Buffer.from(bytes.subarray(at, Math.max(at, c))));
    at = Math.max(at, c);
  }
  return s;
}

function problems(s: DataScanner): Set<string> {
  const v = s.verdict();
  const found = new Set<string>(s.found);
  if (v) found.add(v.reason);
  return found;
}

describe("DataScanner", () => {
  const byte = fc.constantFrom(0x0d, 0x0a, 0x2e, 0x41, 0x00, 0x20, 0xc3);
  const data = fc.oneof(
    fc.uint8Array({ maxLength: 60 }).map((a) => a.map((x) => [0x0d, 0x0a, 0x2e, 0x41][x % 4]!)),
    fc.array(byte, { maxLength: 80 }).map((a) => Uint8Array.from(a)),
    // long lines around the limit
    fc
      .tuple(fc.integer({ min: LINE_MAX - 2, max: LINE_MAX + 2 }), fc.boolean())
      .map(([n, crlf]) => Buffer.from(`${"x".repeat(n)}${crlf ? "\r\n" : "\n"}ok\r\n`)),
  );

  it("finds exactly what a byte-by-byte check finds, however the bytes are split into chunks", () => {
    fc.assert(
      fc.property(data, fc.array(fc.nat(), { maxLength: 6 }), (bytes, cuts) => {
        const want = reference(bytes);
        const got = problems(scan(bytes, cuts));
        for (const p of want)
          expect(got, `${p} in ${JSON.stringify(Buffer.from(bytes).toString("latin1"))}`).toContain(p);
        // a bare CR at the very end is reported by verdict() as bare_cr
        for (const p of got)
          expect(want, `${p} in ${JSON.stringify(Buffer.from(bytes).toString("latin1"))}`).toContain(p);
      }),
      { numRuns: 2000 },
    );
  });

  it("a line of exactly 998 characters passes; 999 is refused; a CR/LF pair split over two chunks is one line end", () => {
    expect(scan(Buffer.from(`${"a".repeat(998)}\r\n`), [998, 999]).verdict()).toBeUndefined();
    expect(scan(Buffer.from(`${"a".repeat(999)}\r\n`), [500]).verdict()?.reason).toBe("long_line");
    expect(scan(Buffer.from("a\r\nb\r\n"), [2]).verdict()).toBeUndefined();
    expect(scan(Buffer.from("a\r"), []).verdict()?.reason).toBe("bare_cr");
  });
});

describe("prepareRawMessage", () => {
  const opts = {
    admission: new Admission(testConfig({ allowedFrom: new Set(["noreply@example.com"]) })),
    caller: "app",
    messageId: "<id-1@mail.example.com>",
    date: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)),
  };
  const prep = (text: string) => prepareRawMessage(Buffer.from(text), opts);

  it("a message that is all header gets Message-ID and Date after its last field", () => {
    expect(prep("From: noreply@example.com\r\nSubject: s\r\n").raw).toBe(
      "From: noreply@example.com\r\nSubject: s\r\nMessage-ID: <id-1@mail.example.com>\r\nDate: Fri, 02 Jan 2026 03:04:05 +0000\r\n",
    );
  });

  it("Date is RFC 5322 with a numeric zone", () => {
    expect(rfc5322Date(new Date(Date.UTC(2026, 10, 30, 23, 59, 1)))).toBe("Mon, 30 Nov 2026 23:59:01 +0000");
  });

  it("removes every Bcc field with its continuation lines, keeps the body's own 'Bcc:' text", () => {
    const r = prep(
      "From: noreply@example.com\r\nBcc: a@example.net,\r\n b@example.net\r\nTo: c@example.net\r\nBCC: d@example.net\r\n\r\nBcc: this is body text\r\n",
    );
    expect(r.raw).toBe(
      "From: noreply@example.com\r\nTo: c@example.net\r\nMessage-ID: <id-1@mail.example.com>\r\nDate: Fri, 02 Jan 2026 03:04:05 +0000\r\n\r\nBcc: this is body text\r\n",
    );
  });

  it("the idempotency content is the client's message without its Idempotency-Key field (before Message-ID/Date are added)", () => {
    const a = prep("From: noreply@example.com\r\nIdempotency-Key: k1\r\n\r\nhi\r\n");
    const b = prep("Idempotency-Key:   k1  \r\nFrom: noreply@example.com\r\n\r\nhi\r\n");
    expect(a.idempotencyKey).toBe("k1");
    expect(b.idempotencyKey).toBe("k1");
    expect(a.clientText).toBe("From: noreply@example.com\r\n\r\nhi\r\n");
    expect(b.clientText).toBe(a.clientText);
    expect(a.raw).not.toMatch(/Idempotency-Key/i);
  });

  it("refuses: forbidden fields (RelayError header_not_allowed), a From display trick with two addresses, a group as From", () => {
    expect(() => prep("From: noreply@example.com\r\nARC-Seal: i=1\r\n\r\n")).toThrow(RelayError);
    expect(() => prep('From: "noreply@example.com" <ceo@example.com>\r\n\r\n')).toThrow(/reads as an address/);
    expect(() => prep("From: Boss <ceo@example.com>\r\n\r\n")).toThrow(/ceo@example\.com is not an allowed sender/);
    expect(() => prep("From: undisclosed-recipients:;\r\n\r\n")).toThrow(/exactly one mailbox/);
    expect(() => prep("From: noreply@example.com\r\nSubject: a\r\nSubject: b\r\n\r\n")).toThrow(SmtpRefusal);
  });
});
