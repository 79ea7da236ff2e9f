import { afterEach, describe, expect, it } from "vitest";
import { buildApp } from "../../../relay/app";
import { DeliveryStore } from "../../../relay/storage/delivery-store";
import { QueueStore } from "../../../relay/storage/queue";
import { auth, captureLog, okHandoff, queueOptions, tempDir, testConfig, TOKEN_BILLING, validBody } from "../fixtures";
import { DOMAIN } from "./maillog-fixtures";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function relay() {
  const tmp = tempDir("routes-");
  const queue = new QueueStore(queueOptions(tmp.dir));
  await queue.open();
  const deliveries = new DeliveryStore(tmp.dir, { messageIdDomain: DOMAIN, retentionMs: 30 * 86_400_000 });
  await deliveries.open();
  const app = await buildApp({
    config: testConfig({ queueRoot: tmp.dir, messageIdDomain: DOMAIN }),
    queue,
    handoff: okHandoff,
    log: captureLog().log,
    deliveries,
  });
  cleanups.push(async () => {
    await app.close();
    await deliveries.close();
    tmp.cleanup();
  });
  /** Accepts a message and walks it through the worker's steps (no Postfix): claim, mark sent, record the hand-off. */
  const sendAndHandOff = async (to: string[], qid: string, token?: string) => {
    const res = await app.inject({ method: "POST", url: "/send", headers: auth(token), payload: validBody({ to }) });
    const id = res.json().id as string;
    const job = await queue.claimNext();
    await queue.markSent(job as NonNullable<typeof job>, qid);
    await deliveries.recordHandoff({
      id,
      caller: token === TOKEN_BILLING ? "billing" : "app",
      to,
      postfixQueueId: qid,
      at: Date.now(),
    });
    return id;
  };
  const facts = (id: string, lines: [string, "sent" | "deferred" | "bounced", string][], qid: string) =>
    deliveries.commit(
      deliveries.plan(
        [
          {
            fact: { kind: "message-id" as const, queueId: qid, messageId: `${id}@${DOMAIN}`, at: Date.now() },
            line: 0,
          },
          ...lines.map(([rcpt, status, dsn], i) => ({
            fact: {
              kind: "recipient" as const,
              queueId: qid,
              recipient: rcpt,
              status,
              dsn,
              relay: "mx[192.0.2.1]:25",
              delaySeconds: 1,
              reply: `${dsn} reply`,
              at: Date.now(),
            },
            line: i + 1,
          })),
        ],
        { inode: 1, offset: Math.floor(Math.random() * 1e9) },
      ).records,
      { inode: 1, offset: 1 },
    );
  return { app, queue, deliveries, sendAndHandOff, facts };
}

describe("what callers see of delivery", () => {
  it("GET /messages/:id: handed_off until Postfix logs, then the aggregated state and a recipients array; never another caller's", async () => {
    const r = await relay();
    const id = await r.sendAndHandOff(["ok@example.net", "gone@example.net"], "QM1abcd");
    const get = (token?: string) => r.app.inject({ method: "GET", url: `/messages/${id}`, headers: auth(token) });
    expect((await get()).json().message).toMatchObject({ state: "handed_off", postfixQueueId: "QM1abcd" });
    await r.facts(
      id,
      [
        ["ok@example.net", "sent", "2.0.0"],
        ["gone@example.net", "bounced", "5.1.1"],
      ],
      "QM1abcd",
    );
    const m = (await get()).json().message;
    expect(m.state).toBe("partially_delivered");
    expect(m.recipients).toEqual([
      expect.objectContaining({
        email: "ok@example.net",
        state: "delivered",
        dsn: "2.0.0",
        remoteReply: "2.0.0 reply",
        attempts: 1,
      }),
      expect.objectContaining({ email: "gone@example.net", state: "bounced", dsn: "5.1.1" }),
    ]);
    expect(typeof m.recipients[0].at).toBe("string");
    expect((await get(TOKEN_BILLING)).statusCode).toBe(404);
  });

  it("GET /messages?state=…&since=… lists only the caller's messages in that state, a page at a time", async () => {
    const r = await relay();
    const bounced: string[] = [];
    for (let i = 0; i < 5; i++) {
      const id = await r.sendAndHandOff([`b${i}@example.net`], `QL${i}abcd`);
      await r.facts(id, [[`b${i}@example.net`, "bounced", "5.1.1"]], `QL${i}abcd`);
      bounced.push(id);
    }
    const ok = await r.sendAndHandOff(["ok@example.net"], "QLOKabcd");
    await r.facts(ok, [["ok@example.net", "sent", "2.0.0"]], "QLOKabcd");
    const other = await r.sendAndHandOff(["x@example.net"], "QLXabcd", TOKEN_BILLING);
    await r.facts(other, [["x@example.net", "bounced", "5.1.1"]], "QLXabcd");
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 5; page++) {
      const url = `/messages?state=bounced&since=${encodeURIComponent(new Date(Date.now() - 60_000).toISOString())}&limit=2${cursor ? `&cursor=${cursor}` : ""}`;
      const body = (await r.app.inject({ method: "GET", url, headers: auth() })).json();
      seen.push(...body.messages.map((m: { id: string; state: string }) => (expect(m.state).toBe("bounced"), m.id)));
      cursor = body.nextCursor;
      if (!cursor) break;
    }
    expect(seen.sort()).toEqual([...bounced].sort());
    expect(
      (await r.app.inject({ method: "GET", url: "/messages?state=lost", headers: auth() })).json().error,
    ).toMatchObject({ code: "invalid_field", field: "state" });
    expect(
      (await r.app.inject({ method: "GET", url: `/messages?since=${Date.now() + 60_000}`, headers: auth() })).json()
        .messages,
    ).toEqual([]);
  });
});
