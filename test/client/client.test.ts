// The client against the real relay (relay/server.ts in this process on 127.0.0.1:0, with its queue, worker, delivery
// tracker and suppression list): what a caller's code sees for send, status, waitFor, the idempotency key, the
// suppression list and the relay's typed errors.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  RelayApiError,
  RelayClient,
  RelayNetworkError,
  RelayTimeoutError,
  type SendMessage,
} from "../../client/src/index";
import { FROM, OTHER_TOKEN, startRealRelay, TOKEN, type RealRelay } from "./real-relay";

let relay: RealRelay;
let client: RelayClient;
beforeAll(async () => {
  relay = await startRealRelay();
  client = new RelayClient({ url: relay.url, token: TOKEN, retry: { baseDelayMs: 10 } });
});
afterAll(() => relay?.close());

const message = (over: Partial<SendMessage> = {}): SendMessage => ({
  from: { email: FROM, name: "Example" },
  to: "ok@example.net",
  subject: "client test",
  text: "hello",
  ...over,
});

describe("the client against the real relay", () => {
  it("send() queues the message, status() reads it, waitFor() returns once Postfix's log says delivered", async () => {
    const sent = await client.send(message({ to: ["ok@example.net"], subject: "delivered" }));
    expect(sent.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(sent.replayed).toBe(false);
    expect(sent.attempts).toBe(1);
    expect(sent.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/); // generated: every send carries one
    expect(["queued", "sending", "handed_off"]).toContain((await client.status(sent.id)).state);
    const handedOff = await client.waitFor(sent.id, { states: ["handed_off"], timeoutMs: 10_000, intervalMs: 50 });
    expect(handedOff.postfixQueueId).toMatch(/^4QC/);
    relay.logDelivery(sent.id, { "ok@example.net": "sent" });
    const done = await client.waitFor(sent.id, { timeoutMs: 15_000, intervalMs: 100 });
    expect(done.state).toBe("delivered");
    expect(done.recipients?.[0]).toMatchObject({ email: "ok@example.net", state: "delivered", dsn: "2.0.0" });
    expect(done.recipients?.[0]?.remoteReply).toMatch(/^250 /);
  });

  it("a send repeated with the same Idempotency-Key returns the same id, replayed, and the relay queues it once", async () => {
    const before = relay.received.length;
    const key = `order-${Date.now()}-receipt`;
    const first = await client.send(message({ subject: "idempotent" }), { idempotencyKey: key });
    const again = await client.send(message({ subject: "idempotent" }), { idempotencyKey: key });
    expect(again.id).toBe(first.id);
    expect([first.replayed, again.replayed]).toEqual([false, true]);
    await client.waitFor(first.id, { states: ["handed_off"], timeoutMs: 10_000, intervalMs: 50 });
    await new Promise((r) => setTimeout(r, 300));
    expect(relay.received.length - before).toBe(1);
    // The same key with another body is the relay's 409, and a 4xx is never retried.
    const conflict = await client.send(message({ subject: "another body" }), { idempotencyKey: key }).catch((e) => e);
    expect(conflict).toBeInstanceOf(RelayApiError);
    expect(conflict).toMatchObject({ code: "idempotency_conflict", status: 409, attempts: 1 });
  });

  it("the relay's 4xx arrive as RelayApiError with its code and field, after one attempt", async () => {
    const cases: [SendMessage, string, string | undefined][] = [
      [message({ from: "other@example.com" }), "from_not_allowed", "from"],
      [message({ headers: { Received: "forged" } }), "header_not_allowed", "headers.Received"],
      [message({ subject: "a\r\nBcc: x@example.net" }), "header_injection", "subject"],
      [message({ text: undefined }), "missing_body", "text"],
    ];
    for (const [m, code, field] of cases) {
      const e = await client.send(m).catch((x) => x);
      expect(e, code).toBeInstanceOf(RelayApiError);
      expect(e, code).toMatchObject({ code, status: 400, field, attempts: 1 });
    }
    const unknown = await client.status("6f1c2d3e-0000-4000-8000-00000000dead").catch((x) => x);
    expect(unknown).toMatchObject({ code: "not_found", status: 404 });
    const wrongToken = new RelayClient({ url: relay.url, token: "x".repeat(40) });
    expect(await wrongToken.send(message()).catch((x) => x)).toMatchObject({ code: "unauthorized", status: 401 });
  });

  it("a hard bounce is on the caller's suppression list; removeSuppression() lifts it with the address URL-encoded", async () => {
    const rcpt = "gone+tag@example.net"; // "+" and "@" both travel percent-encoded
    const sent = await client.send(message({ to: rcpt, subject: "bounce" }));
    await client.waitFor(sent.id, { states: ["handed_off"], timeoutMs: 10_000, intervalMs: 50 });
    relay.logDelivery(sent.id, { [rcpt]: "bounced" });
    expect((await client.waitFor(sent.id, { timeoutMs: 15_000, intervalMs: 100 })).state).toBe("bounced");
    expect((await client.suppressions()).map((s) => [s.email, s.reason, s.origin])).toContainEqual([
      rcpt,
      "hard_bounce",
      "automatic",
    ]);
    const refused = await client.send(message({ to: rcpt })).catch((x) => x);
    expect(refused).toMatchObject({ code: "recipient_suppressed", status: 422 });
    // Another caller cannot lift it: the entry is not its own.
    const other = new RelayClient({ url: relay.url, token: OTHER_TOKEN });
    expect(await other.removeSuppression(rcpt).catch((x) => x)).toMatchObject({ code: "not_found" });
    expect(await client.removeSuppression(rcpt)).toBe(rcpt);
    expect((await client.suppressions()).map((s) => s.email)).not.toContain(rcpt);
  });

  it("listMessages() pages through the caller's handed-off messages with the relay's cursor", async () => {
    const first = await client.listMessages({ limit: 1 });
    expect(first.messages).toHaveLength(1);
    expect(first.nextCursor).toBeDefined();
    const second = await client.listMessages({ limit: 1, cursor: first.nextCursor });
    expect(second.messages[0]?.id).not.toBe(first.messages[0]?.id);
    expect((await client.listMessages({ state: "bounced" })).messages.every((m) => m.state === "bounced")).toBe(true);
  });

  it("waitFor() gives up after timeoutMs with the last status it read", async () => {
    const sent = await client.send(message({ subject: "never delivered in this test" }));
    const e = await client.waitFor(sent.id, { states: ["delivered"], timeoutMs: 300, intervalMs: 50 }).catch((x) => x);
    expect(e).toBeInstanceOf(RelayTimeoutError);
    expect((e as RelayTimeoutError).last).toMatchObject({ id: sent.id });
  });

  it("path parameters are URL-encoded: an id with / or ? cannot reach another route", async () => {
    const e = await client.status("../suppressions").catch((x) => x);
    expect(e).toMatchObject({ code: "not_found", status: 404 });
    expect(String((e as Error).message)).toContain("no message ../suppressions"); // the relay saw one parameter
  });

  it("the constructor refuses options that cannot work, naming the option", () => {
    expect(() => new RelayClient({ url: "mail-relay.example.com", token: TOKEN })).toThrow(/url .* is not a URL/);
    expect(() => new RelayClient({ url: relay.url, token: " " })).toThrow(/token is empty/);
    expect(() => new RelayClient({ url: relay.url, token: TOKEN, accessClientId: "id" })).toThrow(
      /both accessClientId and accessClientSecret/,
    );
  });

  it("a relay that is not listening is a RelayNetworkError after the configured attempts", async () => {
    const dead = new RelayClient({ url: "http://127.0.0.1:1", token: TOKEN, retry: { attempts: 2, baseDelayMs: 1 } });
    const e = await dead.send(message()).catch((x) => x);
    expect(e).toBeInstanceOf(RelayNetworkError);
    expect(e).toMatchObject({ attempts: 2 });
  });
});
