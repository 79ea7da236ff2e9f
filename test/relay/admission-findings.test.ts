// Issue 19's findings, one rule each, through the relay's public doors and modules (each fails on the code before the
// admission module). The cross-door table is admission-doors.test.ts.
import { appendFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { DeliveryStore } from "../../relay/storage/delivery-store";
import { LogTail } from "../../relay/events/log-tail";
import { isHardBounce, parsePostfixLogLine } from "../../relay/events/postfix-log";
import { RawSmtp } from "../../testkit/raw-smtp";
import { haveOpenssl } from "../../testkit/self-signed-cert";
import { appsClosedAfterEach, auth, tempDir, TOKEN_BILLING, validBody } from "./fixtures";
import { crlfMessage, ingressClosedAfterEach } from "./smtp-client";

const { ingress, loggedIn, closeLater } = ingressClosedAfterEach();
const makeApp = appsClosedAfterEach();

/** MAIL, RCPT, DATA with the given header lines; the first reply that is not a go-ahead. */
async function sendOver(c: RawSmtp, headers: string[], from = "noreply@example.com"): Promise<string> {
  for (const cmd of [`MAIL FROM:<${from}>`, "RCPT TO:<user@example.net>"]) {
    const r = await c.cmd(cmd);
    if (!r.startsWith("250")) return r;
  }
  const d = await c.cmd("DATA");
  if (!d.startsWith("354")) return d;
  c.send(crlfMessage(headers) + ".\r\n");
  const reply = await c.reply();
  await c.cmd("RSET");
  return reply;
}

describe.skipIf(!haveOpenssl)("issue 19: the SMTP door applies the caller's rules", () => {
  it("finding 1: a caller with its own sender list cannot use another allowed sender over SMTP (MAIL FROM and From:)", async () => {
    const r = await ingress({
      config: {
        allowedFrom: new Set(["noreply@example.com", "tickets@example.com"]),
        callerFrom: new Map([["billing", new Set(["tickets@example.com"])]]),
      },
    });
    const c = await loggedIn(r, "billing", TOKEN_BILLING);
    expect(await sendOver(c, ["From: noreply@example.com", "To: user@example.net"])).toMatch(/^550 5\.7\.1 /);
    expect(await sendOver(c, ["From: noreply@example.com", "To: user@example.net"], "tickets@example.com")).toMatch(
      /^550 5\.7\.1 the From: header address noreply@example\.com is not an allowed sender/,
    );
    expect(await sendOver(c, ["From: tickets@example.com", "To: user@example.net"], "tickets@example.com")).toMatch(
      /^250 /,
    );
  });

  it("finding 2: the per-caller recipient quota is charged over SMTP", async () => {
    const r = await ingress({
      config: { quotas: { recipientsPerMin: 2, recipientsPerDay: 100, bytesPerMin: 1e9, bytesPerDay: 1e9 } },
    });
    const c = await loggedIn(r);
    const headers = ["From: noreply@example.com", "To: user@example.net"];
    expect(await sendOver(c, headers)).toMatch(/^250 /);
    expect(await sendOver(c, headers)).toMatch(/^250 /);
    expect(await sendOver(c, headers)).toMatch(/^452 4\.5\.3 this caller's quota of 2 recipients per minute/);
  });

  it("finding 3: a client's Message-ID never reaches Postfix as the Message-ID (the relay writes its own)", async () => {
    const r = await ingress();
    const c = await loggedIn(r);
    const stolen = "<11111111-2222-4333-8444-555555555555@mail.example.com>";
    expect(await sendOver(c, ["From: noreply@example.com", "To: user@example.net", `Message-ID: ${stolen}`])).toMatch(
      /^250 2\.0\.0 queued as ([0-9a-f-]{36})$/,
    );
    const raw = (await r.queue.claimNext())!.raw;
    expect(raw).not.toMatch(new RegExp(`^Message-ID: ${stolen}`, "im"));
    expect(raw).toMatch(/^X-Original-Message-ID: <11111111-2222-4333-8444-555555555555@mail\.example\.com>\r$/m);
  });

  it("finding 5: an author field that is not exactly one plain mailbox is refused, whatever trick hides a second address", async () => {
    const r = await ingress();
    const c = await loggedIn(r);
    const tricks = [
      "noreply@example.com <>",
      "noreply@example.com, ceo@example.com",
      "Team: noreply@example.com;",
      "noreply@example.com (ceo@evil.example)",
      '"ceo@evil.example" <noreply@example.com>',
      "=?utf-8?q?ceo=40evil=2Eexample?= <noreply@example.com>",
      "=?utf-8?b?Y2VvQGV2aWwuZXhhbXBsZQ==?= <noreply@example.com>",
      "Boss <@route.example:noreply@example.com>",
      "noreply @ example.com",
      "<noreply@example.com> <ceo@evil.example>",
    ];
    for (const value of tricks) {
      expect(await sendOver(c, [`From: ${value}`, "To: user@example.net"]), value).toMatch(/^5\d\d /);
      expect(
        await sendOver(c, ["From: noreply@example.com", `Sender: ${value}`, "To: user@example.net"]),
        `Sender: ${value}`,
      ).toMatch(/^5\d\d /);
    }
    expect(await sendOver(c, ['From: "Example, Inc." <noreply@example.com>', "To: user@example.net"])).toMatch(/^250 /);
    expect(await r.queue.claimNext()).not.toBeNull();
    expect(await r.queue.claimNext()).toBeNull();
  });

  it("low: at most 8 connections wait to authenticate (the 9th gets 421), and one that does not authenticate in time is closed with 421", async () => {
    const r = await ingress({ authDeadlineMs: 1500 });
    const idle: RawSmtp[] = [];
    for (let i = 0; i < 8; i++) {
      const { client, greeting } = await RawSmtp.connect(r.port);
      closeLater(client);
      idle.push(client);
      expect(greeting).toMatch(/^220 /);
    }
    const { client: ninth, greeting } = await RawSmtp.connect(r.port);
    closeLater(ninth);
    expect(greeting).toMatch(/^421 /);
    expect(await idle[0]!.reply(4000)).toMatch(/^421 4\.7\.0 authenticate/);
    const { client: later, greeting: g2 } = await RawSmtp.connect(r.port);
    closeLater(later);
    expect(g2).toMatch(/^220 /);
  });
});

describe("issue 19: POST /send", () => {
  it("low: a recipient the SMTP hand-off would always refuse (a local part that needs quoting) is refused with 400, not queued", async () => {
    const t = await makeApp();
    for (const to of ['"x>y"@example.net', '"a b"@example.net', '"x,y"@example.net']) {
      const res = await t.app.inject({ method: "POST", url: "/send", headers: auth(), payload: validBody({ to }) });
      expect(res.statusCode, to).toBe(400);
      expect(res.json().error.code).toBe("address_needs_quoting");
    }
  });

  it("low: the recipient limit is checked on the count, before any address is parsed (35,000 invalid addresses answer too_many_recipients)", async () => {
    const t = await makeApp({ config: { bodyLimitBytes: 2 * 1024 * 1024 } });
    const to = Array.from({ length: 35_000 }, (_, i) => `not an address ${i}`);
    const res = await t.app.inject({
      method: "POST",
      url: "/send",
      headers: auth(),
      payload: validBody({ to }),
    });
    expect(res.json().error.code).toBe("too_many_recipients");
  });

  it("low: a refused request (409 idempotency conflict) uses no quota", async () => {
    const t = await makeApp({
      config: { quotas: { recipientsPerMin: 2, recipientsPerDay: 100, bytesPerMin: 1e9, bytesPerDay: 1e9 } },
    });
    const post = (body: Record<string, unknown>) =>
      t.app.inject({ method: "POST", url: "/send", headers: { ...auth(), "idempotency-key": "k1" }, payload: body });
    expect((await post(validBody({ subject: "one" }))).statusCode).toBe(202);
    expect((await post(validBody({ subject: "two" }))).statusCode).toBe(409);
    const other = await t.app.inject({ method: "POST", url: "/send", headers: auth(), payload: validBody() });
    expect(other.statusCode).toBe(202);
  });
});

describe("issue 19: delivery tracking", () => {
  const h = "Nov 30 10:00:01 mail";

  it("finding 3: a message-id= line never re-maps a queue id the hand-off tied, nor ties one to a Message-ID the relay did not hand off", async () => {
    const tmp = tempDir("findings-");
    closeLater({ close: tmp.cleanup });
    const store = new DeliveryStore(tmp.dir, { messageIdDomain: "mail.example.com", retentionMs: 86_400_000 });
    await store.open();
    closeLater({ close: () => store.close() });
    const victim = "11111111-2222-4333-8444-555555555555";
    const attacker = "22222222-2222-4333-8444-555555555555";
    await store.recordHandoff({ id: victim, caller: "app", to: ["a@example.net"], at: 1, postfixQueueId: "QVICTIM1" });
    await store.recordHandoff({
      id: attacker,
      caller: "billing",
      to: ["b@example.net"],
      at: 2,
      postfixQueueId: "QATTK01",
    });
    const facts = [
      `${h} postfix/cleanup[1]: QATTK01: message-id=<${victim}@mail.example.com>`,
      `${h} postfix/cleanup[1]: QOTHER1: message-id=<33333333-2222-4333-8444-555555555555@mail.example.com>`,
      `${h} postfix/smtp[2]: QATTK01: to=<b@example.net>, relay=mx[192.0.2.1]:25, delay=1, delays=1/0/0/0, dsn=5.1.1, status=bounced (gone)`,
      `${h} postfix/smtp[2]: QOTHER1: to=<c@example.net>, relay=mx[192.0.2.1]:25, delay=1, delays=1/0/0/0, dsn=2.0.0, status=sent (ok)`,
    ].map((l, line) => {
      const r = parsePostfixLogLine(l, Date.UTC(2026, 10, 30));
      if (r.kind !== "fact") throw new Error(`not a fact: ${l}`);
      return { fact: r.fact, line };
    });
    const { events } = store.plan(facts, { inode: 1, offset: 100 });
    expect(events.map((e) => [e.messageId, e.caller, e.recipient])).toEqual([[attacker, "billing", "b@example.net"]]);
    expect(store.get(victim)!.recipients).toEqual([{ address: "a@example.net", state: "pending", attempts: 0 }]);
  });

  it("low: a recipient whose quoted local part holds '>, ' and ' (' is read whole from Postfix's log", () => {
    const r = parsePostfixLogLine(
      `${h} postfix/smtp[2]: 4ABCDE123: to=<"a>, b (c, status=sent (x"@example.net>, relay=mx[192.0.2.1]:25, delay=0.2, delays=0.1/0/0.05/0.05, dsn=5.1.1, status=bounced (host said: 550 5.1.1 (no) user)`,
      Date.UTC(2026, 10, 30),
    );
    expect(r).toMatchObject({
      kind: "fact",
      fact: { recipient: '"a>, b (c, status=sent (x"@example.net', status: "bounced", dsn: "5.1.1" },
    });
  });

  it("low: a log line over 1 MiB is skipped and the lines after it are still read", async () => {
    const tmp = tempDir("findings-");
    closeLater({ close: tmp.cleanup });
    const file = path.join(tmp.dir, "postfix.log");
    writeFileSync(file, `${h} postfix/smtp[2]: ${"x".repeat(1024 * 1024 + 10)}\n`);
    appendFileSync(file, `${h} postfix/qmgr[3]: QAFTER1: removed\n`);
    const tail = new LogTail(file);
    let pos = undefined as Parameters<LogTail["read"]>[0];
    const lines: string[] = [];
    for (let i = 0; i < 5; i++) {
      const chunk = await tail.read(pos);
      lines.push(...chunk.lines);
      pos = chunk.next;
    }
    expect(lines).toEqual([`${h} postfix/qmgr[3]: QAFTER1: removed`]);
  });

  it("low: a permanent failure caused by the message's content or size does not suppress the mailbox; one that says the mailbox is gone does", () => {
    for (const dsn of ["5.3.4", "5.2.3", "5.6.0", "5.6.1", "5.7.1"]) expect(isHardBounce(dsn), dsn).toBe(false);
    for (const dsn of ["5.1.1", "5.1.2", "5.2.1", "5.4.4", "5.0.0"]) expect(isHardBounce(dsn), dsn).toBe(true);
  });
});
