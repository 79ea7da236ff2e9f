// The nodemailer transport against the real relay (relay/server.ts on 127.0.0.1:0): an app's mail options go through
// nodemailer.createTransport(relayTransport(...)).sendMail() and arrive at the (fake) Postfix as the relay composed
// them; nodemailer's info shape comes back.
import nodemailer from "nodemailer";
import { simpleParser } from "mailparser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RelayApiError, RelayClient } from "../../client/src/index";
import { relayTransport, toSendMessage, UNSUPPORTED_FIELDS } from "../../client/src/nodemailer";
import { FROM, startRealRelay, TOKEN, type RealRelay } from "./real-relay";

let relay: RealRelay;
let client: RelayClient;
beforeAll(async () => {
  relay = await startRealRelay();
  client = new RelayClient({ url: relay.url, token: TOKEN, retry: { baseDelayMs: 10 } });
});
afterAll(() => relay?.close());

async function arrived(id: string) {
  await client.waitFor(id, { states: ["handed_off"], timeoutMs: 10_000, intervalMs: 50 });
  const got = relay.received.find((r) => r.raw.includes(`<${id}@mail.example.com>`));
  if (!got) throw new Error(`message ${id} did not reach the fake Postfix`);
  return { envelope: got, mail: await simpleParser(got.raw) };
}

describe("the nodemailer transport", () => {
  it("maps from, to/cc/bcc, replyTo, subject, text, html, attachments and X- headers onto POST /send", async () => {
    const transport = nodemailer.createTransport(relayTransport(client));
    const info = await transport.sendMail({
      from: '"Example Support" <noreply@example.com>',
      to: ["Ann <ann@example.net>", "bob@example.net"],
      cc: "carl@example.net",
      bcc: { name: "Audit", address: "audit@example.org" },
      replyTo: "support@example.com",
      subject: "Your receipt ✓",
      text: "Thanks for your order.",
      html: "<p>Thanks for your <b>order</b>.</p>",
      headers: { "X-Order-Id": "1234" },
      attachments: [
        { filename: "receipt.txt", content: "paid: 12 EUR\n" },
        { filename: "logo.bin", content: Buffer.from([0, 1, 2, 255]), contentType: "application/octet-stream" },
        { filename: "note.txt", content: Buffer.from("base64 given").toString("base64"), encoding: "base64" },
      ],
    });
    expect(info.messageId).toMatch(/^[0-9a-f-]{36}$/);
    expect(info.accepted).toEqual(["ann@example.net", "bob@example.net", "carl@example.net", "audit@example.org"]);
    expect(info.rejected).toEqual([]);
    expect(info.response).toBe(`202 queued as ${info.messageId}`);

    const { envelope, mail } = await arrived(info.messageId);
    expect(envelope.from).toBe(FROM);
    expect(envelope.to).toEqual(["ann@example.net", "bob@example.net", "carl@example.net", "audit@example.org"]);
    expect(mail.from?.value).toEqual([{ address: FROM, name: "Example Support" }]);
    expect((Array.isArray(mail.to) ? mail.to[0] : mail.to)?.value).toEqual([
      { address: "ann@example.net", name: "Ann" },
      { address: "bob@example.net", name: "" },
    ]);
    expect((Array.isArray(mail.cc) ? mail.cc[0] : mail.cc)?.value[0]?.address).toBe("carl@example.net");
    expect(mail.bcc).toBeUndefined(); // bcc only in the envelope
    expect(mail.replyTo?.value[0]?.address).toBe("support@example.com");
    expect(mail.subject).toBe("Your receipt ✓");
    expect(mail.text?.trim()).toBe("Thanks for your order.");
    expect(mail.html).toContain("<b>order</b>");
    expect(mail.headers.get("x-order-id")).toBe("1234");
    expect(mail.attachments.map((a) => [a.filename, a.content.toString("hex")])).toEqual([
      ["receipt.txt", Buffer.from("paid: 12 EUR\n").toString("hex")],
      ["logo.bin", "000102ff"],
      ["note.txt", Buffer.from("base64 given").toString("hex")],
    ]);
  });

  it("the relay's refusal reaches sendMail's caller as a RelayApiError with its code and field", async () => {
    const transport = nodemailer.createTransport(relayTransport(client));
    const e = await transport
      .sendMail({ from: FROM, to: "x@example.net", subject: "s", text: "t", headers: { "X-Spam-Flag": "NO" } })
      .catch((x) => x);
    expect(e).toBeInstanceOf(RelayApiError);
    expect(e).toMatchObject({ code: "header_not_allowed", field: "headers.X-Spam-Flag" });
  });

  it.each(Object.keys(UNSUPPORTED_FIELDS))(
    "a mail option the relay cannot carry (%s) is refused before anything is sent, never dropped",
    async (field) => {
      const before = relay.received.length;
      const transport = nodemailer.createTransport(relayTransport(client));
      const value = field === "envelope" ? { from: FROM, to: ["x@example.net"] } : field === "date" ? new Date() : "x";
      const e = await transport
        .sendMail({ from: FROM, to: "x@example.net", subject: "s", text: "t", [field]: value })
        .catch((x) => x);
      expect(String(e)).toContain(`no field for ${field} (`);
      expect(relay.received.length).toBe(before);
    },
  );

  it("an inline (cid) attachment is refused naming the attachment", async () => {
    const transport = nodemailer.createTransport(relayTransport(client));
    const e = await transport
      .sendMail({
        from: FROM,
        to: "x@example.net",
        subject: "s",
        html: '<img src="cid:logo">',
        attachments: [{ filename: "logo.png", content: Buffer.from([1]), cid: "logo" }],
      })
      .catch((x) => x);
    expect(String(e)).toMatch(/attachments\[0\]\.cid/);
  });

  it("transporter.verify() passes with the right token and fails with the relay's unauthorized otherwise", async () => {
    expect(await nodemailer.createTransport(relayTransport(client)).verify()).toBe(true);
    const bad = nodemailer.createTransport(relayTransport({ url: relay.url, token: "y".repeat(40) }));
    expect(await bad.verify().catch((x) => x)).toMatchObject({ code: "unauthorized" });
  });

  it("a mail's idempotencyKey is sent as the Idempotency-Key: the same mail twice is queued once", async () => {
    const transport = nodemailer.createTransport(relayTransport(client));
    const mail = { from: FROM, to: "x@example.net", subject: "once", text: "t", idempotencyKey: `k-${Date.now()}` };
    const a = await transport.sendMail(mail);
    const b = await transport.sendMail(mail);
    expect(b.messageId).toBe(a.messageId);
    expect(b.response).toContain("idempotent replay");
  });

  it("toSendMessage keeps display names and omits empty fields (the relay refuses unknown or null ones)", () => {
    expect(
      toSendMessage({
        from: { name: "", address: FROM },
        to: [{ name: "Ann", address: "ann@example.net" }],
        cc: null,
        subject: "s",
        text: "t",
        headers: {},
      }),
    ).toEqual({ from: FROM, to: [{ email: "ann@example.net", name: "Ann" }], subject: "s", text: "t" });
  });
});
