import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Admission } from "../../relay/admission";
import {
  composeForQueue,
  composeMessage,
  mailComposerFor,
  plainTextOf,
  serializeMimeTree,
  writeCommonMessage,
} from "../../relay/mime";
import { validateSendRequest, type Mailbox, type SendRequest } from "../../relay/validate";
// @ts-expect-error -- a plain .mjs module of the bench, without type declarations
import { BENCH_PAYLOAD } from "../../bench/relay-fixture.mjs";
import { ALLOWED_FROM, testConfig } from "./fixtures";

const opts = {
  messageId: "<11111111-2222-4333-8444-555555555555@mail.example.com>",
  date: new Date("2026-06-20T14:00:00Z"),
};
const BOUNDARY = "0123456789abcdef0123456789abcdef";

/** nodemailer's tree for the request and boundary, written by serializeMimeTree (itself checked against build()). */
function viaTree(req: SendRequest): string {
  const written = serializeMimeTree(mailComposerFor(req, opts, BOUNDARY).compile());
  if (written === undefined) throw new Error("serializeMimeTree declined a request's tree");
  return written.toString("latin1");
}

// Pieces that change what nodemailer writes for ASCII text: line breaks of each kind, blanks before them (QP encodes
// them), '=', long runs (7bit becomes QP past 76), control characters (QP), quotes and backslashes (quoted names,
// encoded words in headers), word characters only (names written bare). A request is drawn either clean (all of the
// above, which the composer must write itself) or mixed: then also non-ASCII characters, addresses that need quoting
// or punycode, header names the tree writes itself and attachments (which it must hand back).
const asciiPiece = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom("Thanks for your order. ", "Hello", " ", "a,b", "x_y 9", "Your receipt #12"),
  },
  {
    weight: 4,
    arbitrary: fc.constantFrom("\r\n", "\n", "\r", " \n", "\t", "\t\r\n", "=", "=3D", ".", '"', "\\", "<b>", "@", ";"),
  },
  { weight: 2, arbitrary: fc.constantFrom("x".repeat(80), "y".repeat(40) + " " + "z".repeat(40), "\x01", "\x7f") },
  { weight: 2, arbitrary: fc.string({ maxLength: 20 }) }, // printable ASCII by fast-check's default unit
);
const anyPiece = fc.oneof(
  { weight: 5, arbitrary: asciiPiece },
  { weight: 1, arbitrary: fc.constantFrom("ü", "日本", "\u2028", "€") },
);

/**
 * Every header name nodemailer's tree writes itself or by a rule of its own: the test's own list, apart from
 * relay/mime.ts's TREE_HEADERS on purpose, so that a name missing there is still generated here and caught.
 */
const TREE_NAMES = [
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
  "Content-ID",
  "Content-Type",
  "Content-Disposition",
  "Content-Transfer-Encoding",
  "MIME-Version",
];

const localOf = (mixed: boolean) =>
  fc.constantFrom("user", "first.last", "a+tag", "o'hara", "UPPER", ...(mixed ? ["with space", 'q"uote', "x<y"] : []));
const domainOf = (mixed: boolean) =>
  fc.constantFrom("example.net", "Example.NET", "sub.example.org", "EXAMPLE.com", ...(mixed ? ["bücher.example"] : []));
const headerKeyOf = (mixed: boolean) =>
  fc.constantFrom(
    "X-Campaign",
    "x-trace-id",
    "X-ENTITY-REF-ID",
    "x-smtpapi",
    "X-Mime-Thing",
    "X-Long-Header-Name-For-Folding-Over-Seventy-Six",
    // names the tree writes itself (the HTTP door refuses them; the composer must still not get them wrong)
    ...(mixed ? TREE_NAMES.map((n, i) => (i % 2 === 0 ? n.toLowerCase() : n)) : []),
  );

/** SendRequests built directly, not through validation: the composer's rules must hold whatever a door lets through. */
const requestOf = (mixed: boolean): fc.Arbitrary<SendRequest> => {
  const piece = mixed ? anyPiece : asciiPiece;
  const textArb = (max: number) => fc.array(piece, { maxLength: max }).map((a) => a.join(""));
  // one line: a clean request's header values and names are printable ASCII; a mixed one keeps tabs and controls
  const lineArb = (max: number) =>
    // eslint-disable-next-line no-control-regex
    textArb(max).map((s) => s.replace(mixed ? /[\r\n]/g : /[\x00-\x1f\x7f]/g, " "));
  const mailboxArb: fc.Arbitrary<Mailbox> = fc
    .record({ local: localOf(mixed), domain: domainOf(mixed), name: fc.option(lineArb(4), { nil: undefined }) })
    .map(({ local, domain, name }) => ({ email: `${local}@${domain}`, ...(name !== undefined ? { name } : {}) }));
  return fc
    .record({
      from: mailboxArb,
      to: fc.array(mailboxArb, { minLength: 0, maxLength: 3 }),
      cc: fc.array(mailboxArb, { maxLength: 2 }),
      replyTo: fc.array(mailboxArb, { maxLength: 1 }),
      subject: lineArb(8),
      text: fc.option(textArb(30), { nil: undefined }),
      html: fc.option(
        textArb(30).map((s) => `<p>${s}</p>`),
        { nil: undefined },
      ),
      headers: fc.dictionary(headerKeyOf(mixed), lineArb(12), { maxKeys: 3 }),
      attachments: fc.array(
        fc.record({
          filename: fc.constantFrom("a.txt", "r.pdf"),
          contentType: fc.constantFrom("text/plain", "application/pdf"),
          content: fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
        }),
        { maxLength: mixed ? 1 : 0 },
      ),
    })
    .map((r) => ({ ...r, bcc: [], tags: [] }));
};

/** A clean request with exactly one thing the composer must hand back to the tree: each class on its own. */
const oneDeviationArb: fc.Arbitrary<SendRequest> = fc
  .tuple(
    requestOf(false),
    fc.constantFrom("tree-header", "non-ascii", "control", "mailbox", "idn", "attachment", "no-text"),
    fc.constantFrom(...TREE_NAMES),
    fc.constantFrom("ü", "日本", "\u2028", "€"),
    fc.constantFrom("\t", "\x01", "\x7f", "\x1b", "\r", "\n", "\r\n"),
    fc.constantFrom("with space", 'q"uote', "x<y", "x>y"),
    fc.constantFrom("subject", "text", "html", "name", "header"),
    // values the tree rewrites by its field's rule: an address list, a structured value with parameters
    fc.constantFrom("Some.Name <a@Example.NET>", "inline;  filename=a b.txt; x=1"),
  )
  .map(([r, kind, treeName, wide, control, local, where, treeValue]) => {
    const put = (c: string): SendRequest => {
      switch (where) {
        case "subject":
          return { ...r, subject: `${r.subject}${c}` };
        case "text":
          return { ...r, text: `${r.text ?? ""}x${c}` };
        case "html":
          return { ...r, text: r.text ?? "t", html: `<p>${c}</p>` };
        case "name":
          return { ...r, from: { ...r.from, name: `N${c}` } };
        default:
          return { ...r, headers: { ...r.headers, "X-Dev": `v${c}` } };
      }
    };
    switch (kind) {
      case "tree-header":
        return { ...r, headers: { ...r.headers, [treeName.toUpperCase()]: treeValue } };
      case "non-ascii":
        return put(wide);
      case "control":
        // a control character in the body is still the common shape (quoted-printable); in a header line it is not
        return where === "text" ? { ...r, text: `x${control}` } : put(control);
      case "mailbox":
        return { ...r, to: [{ email: `${local}@example.net` }, ...r.to] };
      case "idn":
        return { ...r, cc: [{ email: "a@bücher.example" }] };
      case "attachment":
        return { ...r, attachments: [{ filename: "a.txt", contentType: "text/plain", content: Buffer.from("a") }] };
      default:
        return { ...r, text: undefined, html: undefined };
    }
  });

const requestArb = fc.oneof(fc.boolean().chain(requestOf), oneDeviationArb);

// eslint-disable-next-line no-control-regex
const PLAIN = /^[\x00-\x7f]*$/;
const PRINTABLE = /^[\x20-\x7e]*$/;

const simpleMailbox = (m: Mailbox): boolean => !/[\s<>"]/.test(m.email) && PRINTABLE.test(m.email + (m.name ?? ""));

/** The shape writeCommonMessage is meant to write itself: when this holds, it must not hand the request back. */
function commonShape(req: SendRequest, text: string): boolean {
  return (
    req.attachments.length === 0 &&
    text !== "" &&
    PLAIN.test(text + (req.html ?? "")) &&
    PLAIN.test(req.subject) &&
    !/[\r\n]/.test(req.subject) &&
    [req.from, ...req.to, ...req.cc, ...req.replyTo].every(simpleMailbox) &&
    Object.entries(req.headers).every(
      ([k, v]) => !TREE_NAMES.some((n) => n.toLowerCase() === k.toLowerCase()) && !/[\r\n]/.test(v),
    )
  );
}

describe("the relay writes the common message itself, byte for byte what nodemailer's tree writes", () => {
  it("every generated request: writeCommonMessage gives the tree's bytes, or undefined and the tree writes it", () => {
    let written = 0;
    let declined = 0;
    fc.assert(
      fc.property(requestArb, (req) => {
        const direct = writeCommonMessage(req, opts, plainTextOf(req), BOUNDARY);
        if (direct === undefined) {
          declined++;
          // it hands back only what is outside the common shape
          expect(commonShape(req, plainTextOf(req))).toBe(false);
          return;
        }
        written++;
        expect(direct).toBe(viaTree(req));
        // one byte per character: the queue counts its size as its length
        // eslint-disable-next-line no-control-regex
        expect(direct).toMatch(/^[\x00-\x7f]*$/);
      }),
      { numRuns: 1500 },
    );
    // both sides of the property must be exercised, or it says little
    expect(written).toBeGreaterThan(300);
    expect(declined).toBeGreaterThan(150);
  });

  it("requests the HTTP door accepts: composeMessage equals the tree's message (the boundary aside)", async () => {
    const limits = {
      admission: new Admission(
        testConfig({ allowedFrom: new Set([ALLOWED_FROM, "noreply@example.com"]), maxRecipients: 50 }),
      ),
      caller: "app",
    };
    const bodies = [
      JSON.parse(BENCH_PAYLOAD as string) as object,
      {
        to: "someone@example.org",
        from: { email: "noreply@example.com", name: "Chain bench" },
        subject: "Your receipt #7",
        text: "Thanks for your order. ".repeat(60),
        html: `<p>${"Thanks for your <b>order</b>. ".repeat(60)}</p>`,
        headers: { "X-Bench-Phase": "chain" },
      },
      {
        to: [{ email: "a@Example.NET", name: "A" }, "b@example.org"],
        from: ALLOWED_FROM,
        subject: 'Say "hi"',
        text: "short",
      },
      { to: "a@example.net", from: { email: ALLOWED_FROM, name: "O'Hara, Inc." }, subject: "s", html: "<p>only</p>" },
      {
        to: "a@example.net",
        cc: "c@example.net",
        replyTo: "r@example.com",
        from: ALLOWED_FROM,
        subject: "s",
        text: "t",
      },
    ];
    const unbound = (s: string): string => s.replace(/--_NmP-[0-9a-f]+-Part_/g, "--_NmP-B-Part_");
    for (const b of bodies) {
      const req = validateSendRequest(b, limits);
      // every one of these is the common shape, so the relay writes it itself
      expect(writeCommonMessage(req, opts, plainTextOf(req), BOUNDARY)).toBeDefined();
      const composed = await composeMessage(req, opts);
      expect(unbound(composed.toString("latin1"))).toBe(unbound(viaTree(req)));
    }
    // what the queue keeps: the same text, and its size in bytes, on both paths (a non-ASCII request takes the tree)
    for (const b of [...bodies, { to: "a@example.net", from: ALLOWED_FROM, subject: "Grüße", text: "€ 5" }]) {
      const req = validateSendRequest(b, limits);
      const { raw, bytes } = await composeForQueue(req, opts);
      expect(bytes).toBe(Buffer.byteLength(raw));
      expect(unbound(raw)).toBe(unbound((await composeMessage(req, opts)).toString("utf8")));
    }
    // a Message-ID without its angle brackets (admission always writes them) is left to the tree, which adds them
    const req = validateSendRequest(bodies[0], limits);
    const bare = { ...opts, messageId: "bare@mail.example.com" };
    expect(writeCommonMessage(req, bare, plainTextOf(req), BOUNDARY)).toBeUndefined();
    expect((await composeMessage(req, bare)).toString()).toContain("\r\nMessage-ID: <bare@mail.example.com>\r\n");
  });
});
