import { describe, expect, it } from "vitest";
import { isHardBounce, parsePostfixLogLine, type LogFact } from "../../../relay/events/postfix-log";
import {
  BOUNCE_NOTICE,
  BOUNCED,
  DEFERRED,
  DOMAIN,
  ERROR_DEFERRED,
  EXPIRED,
  handoffLines,
  ID1,
  REMOVED,
  SENT,
  SMARTHOST_SENT,
} from "./maillog-fixtures";

const NOW = Date.UTC(2026, 10, 30, 12, 0, 0);
const fact = (line: string): LogFact => {
  const r = parsePostfixLogLine(line, NOW);
  if (r.kind !== "fact") throw new Error(`not a fact (${r.kind}): ${line}`);
  return r.fact;
};

describe("the Postfix log parser reads every delivery status", () => {
  it("cleanup's message-id ties the queue id to the relay's message; the other hand-off lines are ignored", () => {
    const [connect, client, cleanup, qmgr] = handoffLines("4XyZ12abc", ID1);
    expect(fact(cleanup as string)).toEqual({
      kind: "message-id",
      queueId: "4XyZ12abc",
      messageId: `${ID1}@${DOMAIN}`,
      at: Date.UTC(2026, 10, 30, 10, 0, 0, 100),
    });
    for (const l of [connect, client, qmgr, BOUNCE_NOTICE("4XyZ12abc")])
      expect(parsePostfixLogLine(l as string, NOW).kind).toBe("ignored");
  });

  it("status=sent: recipient, dsn 2.0.0, the remote reply and the relay", () => {
    expect(fact(SENT("4XyZ12abc", "ok@example.net"))).toMatchObject({
      kind: "recipient",
      queueId: "4XyZ12abc",
      recipient: "ok@example.net",
      status: "sent",
      dsn: "2.0.0",
      relay: "mx.example.net[192.0.2.10]:25",
      delaySeconds: 1.2,
      reply: "250 2.0.0 Ok: queued as 4ABCDEF",
    });
  });

  it("status=deferred keeps the whole reason, nested parentheses included", () => {
    const f = fact(DEFERRED("4XyZ12abc", "later@example.net"));
    expect(f).toMatchObject({ status: "deferred", dsn: "4.2.0" });
    expect(f.kind === "recipient" && f.reply).toBe(
      "host mx.example.net[192.0.2.10] said: 450 4.2.0 <later@example.net>: Recipient address rejected: try again later (in reply to RCPT TO command)",
    );
  });

  it("status=bounced with a 5.1.1 is a hard bounce; a 5.7.1 policy refusal and a 4.x.x are not", () => {
    expect(fact(BOUNCED("4XyZ12abc", "gone@example.net"))).toMatchObject({ status: "bounced", dsn: "5.1.1" });
    expect(isHardBounce("5.1.1")).toBe(true);
    expect(isHardBounce("5.2.2")).toBe(true);
    expect(isHardBounce("5.7.1")).toBe(false);
    expect(isHardBounce("4.2.0")).toBe(false);
  });

  it("multi-recipient: each to= line of one queue id is its own fact", () => {
    const facts = [
      SENT("Q1abcde", "a@example.net"),
      DEFERRED("Q1abcde", "b@example.net"),
      BOUNCED("Q1abcde", "c@example.net"),
    ].map(fact);
    expect(facts.map((f) => f.kind === "recipient" && [f.queueId, f.recipient, f.status])).toEqual([
      ["Q1abcde", "a@example.net", "sent"],
      ["Q1abcde", "b@example.net", "deferred"],
      ["Q1abcde", "c@example.net", "bounced"],
    ]);
  });

  it("the smarthost case (relay on :587) and the error agent (delivery suspended) parse the same way", () => {
    expect(fact(SMARTHOST_SENT("Q2abcde", "user@example.net"))).toMatchObject({
      status: "sent",
      relay: "smtp.provider.example[198.51.100.5]:587",
      reply: "250 2.0.0 OK  1764496802 e7-20020a05 - gsmtp",
    });
    const viaRelayTransport = SMARTHOST_SENT("Q2abcde", "user@example.net").replace(
      "postfix/smtp[",
      "postfix/relay/smtp[",
    );
    expect(fact(viaRelayTransport)).toMatchObject({ status: "sent", recipient: "user@example.net" });
    expect(fact(ERROR_DEFERRED("Q2abcde", "user@example.net"))).toMatchObject({
      status: "deferred",
      dsn: "4.4.1",
      relay: "none",
      delaySeconds: 300,
    });
  });

  it("qmgr: expired (returned to sender) and removed", () => {
    expect(fact(EXPIRED("Q3abcde"))).toEqual({
      kind: "expired",
      queueId: "Q3abcde",
      at: Date.UTC(2026, 11, 5, 10, 0, 0) - 365 * 86_400_000,
    });
    expect(fact(REMOVED("Q3abcde"))).toMatchObject({ kind: "removed", queueId: "Q3abcde" });
  });

  it("syslog and ISO timestamps are read too; the year comes from the reader's clock", () => {
    const syslog =
      "Nov 30 10:00:01 mail postfix/smtp[1004]: Q4abcde: to=<ok@example.net>, relay=mx.example.net[192.0.2.10]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)";
    expect(fact(syslog).at).toBe(Date.UTC(2026, 10, 30, 10, 0, 1));
    const iso =
      "2026-11-30T10:00:01.500000+00:00 mail postfix/smtp[1004]: Q4abcde: to=<ok@example.net>, relay=x[1.2.3.4]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)";
    expect(fact(iso).at).toBe(Date.UTC(2026, 10, 30, 10, 0, 1, 500));
  });

  it("a line that is not Postfix's, or a delivery line without a dsn, is 'unparsed' (never an exception)", () => {
    expect(parsePostfixLogLine("garbage", NOW).kind).toBe("unparsed");
    expect(
      parsePostfixLogLine(
        "Nov 30 10:00:01 mail postfix/smtp[1]: Q5abcde: to=<x@example.net>, relay=none, status=sent (ok)",
        NOW,
      ).kind,
    ).toBe("unparsed");
    expect(
      parsePostfixLogLine("Nov 30 10:00:01 mail postfix/master[1]: daemon started -- version 3.7.11", NOW).kind,
    ).toBe("ignored");
  });
});

describe("a message held by the recipient's TLS policy (MTA-STS, DANE) is deferred with Postfix's TLS text", () => {
  // Postfix 3.7/3.10 smtp(8) wording for each way a policy can fail; the reason must reach the caller unchanged, so it
  // can tell a policy hold from a busy MX.
  const REASONS = [
    "Server certificate not verified",
    "TLS is required, but was not offered by host mx.example.net[192.0.2.10]",
    "TLS is required, but our TLS engine is unavailable",
    "Server certificate not trusted",
    "lost connection with mx.example.net[192.0.2.10] while performing the TLS handshake",
    "TLSA lookup error for mx.example.net:25",
  ];
  it.each(REASONS)("status=deferred (%s)", (reason) => {
    const line =
      "Nov 30 10:00:05.000000 mail postfix/smtp[1004]: 4XyZ12abc: to=<user@example.net>, " +
      `relay=mx.example.net[192.0.2.10]:25, delay=1.3, delays=0.1/0.01/0.5/0.7, dsn=4.7.5, status=deferred (${reason})`;
    const f = fact(line);
    expect(f.kind).toBe("recipient");
    if (f.kind !== "recipient") return;
    expect(f.status).toBe("deferred");
    expect(f.reply).toBe(reason);
    expect(isHardBounce(f.dsn)).toBe(false);
  });
});
