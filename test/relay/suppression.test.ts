import { appendFileSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { buildApp } from "../../relay/app";
import { DeliveryStore } from "../../relay/storage/delivery-store";
import { LogTail } from "../../relay/events/log-tail";
import { DeliveryTracker } from "../../relay/events/tracker";
import { QueueStore } from "../../relay/storage/queue";
import { runSuppressCli } from "../../relay/suppression-cli";
import { SuppressionList } from "../../relay/storage/suppression";
import { auth, captureLog, okHandoff, queueOptions, tempDir, testConfig, TOKEN_BILLING, validBody } from "./fixtures";
import { BOUNCED, DOMAIN, handoffLines } from "./events/maillog-fixtures";

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function relayWithSuppression() {
  const tmp = tempDir("suppress-");
  const suppressions = new SuppressionList(tmp.dir);
  await suppressions.open();
  const queue = new QueueStore(queueOptions(tmp.dir));
  await queue.open();
  const deliveries = new DeliveryStore(tmp.dir, { messageIdDomain: DOMAIN, retentionMs: 86_400_000 * 30 });
  await deliveries.open();
  const { log } = captureLog();
  const app = await buildApp({
    config: testConfig({ queueRoot: tmp.dir, messageIdDomain: DOMAIN }),
    queue,
    handoff: okHandoff,
    log,
    deliveries,
    suppressions,
  });
  const logFile = path.join(tmp.dir, "postfix.log");
  const tracker = new DeliveryTracker({
    store: deliveries,
    tail: new LogTail(logFile),
    log,
    beforeCommit: async (events) => {
      for (const e of events)
        if (e.state === "bounced" && e.hard)
          await suppressions.add({
            email: e.recipient,
            reason: "hard_bounce",
            origin: "automatic",
            messageId: e.messageId,
            ...(e.caller ? { caller: e.caller } : {}),
            ...(e.dsn ? { dsn: e.dsn } : {}),
          });
    },
  });
  cleanups.push(async () => {
    await app.close();
    await deliveries.close();
    tmp.cleanup();
  });
  return { root: tmp.dir, app, queue, deliveries, suppressions, tracker, logFile };
}

describe("suppression list", () => {
  it("a hard bounce suppresses the address; a later /send including it is 422 recipient_suppressed naming it, nothing queued", async () => {
    const r = await relayWithSuppression();
    const first = await r.app.inject({
      method: "POST",
      url: "/send",
      headers: auth(),
      payload: validBody({ to: ["ok@example.net", "gone@example.net"] }),
    });
    expect(first.statusCode).toBe(202);
    const id = first.json().id as string;
    const job = await r.queue.claimNext(); // the worker's steps, without a fake Postfix: claim, mark sent, record
    await r.queue.markSent(job as NonNullable<typeof job>, "QS1abcd");
    await r.deliveries.recordHandoff({
      id,
      caller: "app",
      to: ["ok@example.net", "gone@example.net"],
      postfixQueueId: "QS1abcd",
      at: Date.now(),
    });
    appendFileSync(
      r.logFile,
      [...handoffLines("QS1abcd", id), BOUNCED("QS1abcd", "gone@example.net")].join("\n") + "\n",
    );
    await r.tracker.pollOnce();
    const before = r.queue.depth().pending;
    const again = await r.app.inject({
      method: "POST",
      url: "/send",
      headers: auth(),
      payload: validBody({ to: "ok@example.net", bcc: "Gone@Example.net" }),
    });
    expect(again.statusCode).toBe(422);
    expect(again.json().error).toMatchObject({ code: "recipient_suppressed", field: "to" });
    expect(again.json().error.message).toMatch(/^gone@example\.net is on the suppression list \(hard_bounce since /);
    expect(r.queue.depth().pending).toBe(before);
    // the message shows the bounce per recipient
    const msg = (await r.app.inject({ method: "GET", url: `/messages/${id}`, headers: auth() })).json().message;
    expect(msg.recipients.find((x: { email: string }) => x.email === "gone@example.net")).toMatchObject({
      state: "bounced",
      dsn: "5.1.1",
    });
  });

  it("a 5.7.1 policy refusal does not suppress", async () => {
    const r = await relayWithSuppression();
    const id = "6f1c2d3e-0000-4000-8000-0000000000aa";
    await r.deliveries.recordHandoff({
      id,
      caller: "app",
      to: ["policy@example.net"],
      postfixQueueId: "QS2abcd",
      at: Date.now(),
    });
    appendFileSync(
      r.logFile,
      [...handoffLines("QS2abcd", id), BOUNCED("QS2abcd", "policy@example.net", "5.7.1")].join("\n") + "\n",
    );
    await r.tracker.pollOnce();
    expect(r.suppressions.size).toBe(0);
  });

  it("callers see and lift only their own entries; another caller's answers 404", async () => {
    const r = await relayWithSuppression();
    await r.suppressions.add({ email: "mine@example.net", reason: "hard_bounce", origin: "automatic", caller: "app" });
    await r.suppressions.add({ email: "theirs@example.net", reason: "manual", origin: "caller", caller: "billing" });
    const list = (await r.app.inject({ method: "GET", url: "/suppressions", headers: auth() })).json();
    expect(list.suppressions.map((s: { email: string }) => s.email)).toEqual(["mine@example.net"]);
    expect(
      (
        await r.app.inject({
          method: "DELETE",
          url: "/suppressions/theirs@example.net",
          headers: { authorization: auth().authorization as string },
        })
      ).statusCode,
    ).toBe(404);
    expect(r.suppressions.find("theirs@example.net")).toBeDefined();
    const del = await r.app.inject({
      method: "DELETE",
      url: "/suppressions/mine@example.net",
      headers: { authorization: auth().authorization as string },
    });
    expect(del.json()).toEqual({ ok: true, removed: "mine@example.net" });
    expect(
      (
        await r.app.inject({
          method: "POST",
          url: "/send",
          headers: auth(),
          payload: validBody({ to: "mine@example.net" }),
        })
      ).statusCode,
    ).toBe(202);
    expect(
      (await r.app.inject({ method: "GET", url: "/suppressions", headers: auth(TOKEN_BILLING) })).json().suppressions,
    ).toHaveLength(1);
  });

  it("the operator CLI adds, lists and removes; the running relay sees it at its next check", async () => {
    const r = await relayWithSuppression();
    const out: string[] = [];
    const io = { out: (l: string) => out.push(l), err: (l: string) => out.push(`ERR ${l}`) };
    expect(await runSuppressCli(["add", "Blocked@Example.net"], { QUEUE_ROOT: r.root }, io)).toBe(0);
    expect(
      (
        await r.app.inject({
          method: "POST",
          url: "/send",
          headers: auth(),
          payload: validBody({ to: "blocked@example.net" }),
        })
      ).statusCode,
    ).toBe(422);
    expect(await runSuppressCli(["list"], { QUEUE_ROOT: r.root }, io)).toBe(0);
    expect(out.find((l) => l.startsWith("blocked@example.net\t"))).toMatch(/\tmanual\toperator\t-\t/);
    expect(await runSuppressCli(["remove", "blocked@example.net"], { QUEUE_ROOT: r.root }, io)).toBe(0);
    expect(await runSuppressCli(["remove", "blocked@example.net"], { QUEUE_ROOT: r.root }, io)).toBe(1);
    expect(
      (
        await r.app.inject({
          method: "POST",
          url: "/send",
          headers: auth(),
          payload: validBody({ to: "blocked@example.net" }),
        })
      ).statusCode,
    ).toBe(202);
    expect(await runSuppressCli(["bogus"], { QUEUE_ROOT: r.root }, io)).toBe(2);
  });

  it("survives a restart (and a torn last line), and stays fast at 100,000 entries", async () => {
    const tmp = tempDir("suppress-100k-");
    cleanups.push(tmp.cleanup);
    const file = path.join(tmp.dir, "suppressions.jsonl");
    const lines: string[] = [];
    for (let i = 0; i < 100_000; i++)
      lines.push(
        JSON.stringify({
          op: "add",
          email: `user${i}@example.net`,
          reason: "hard_bounce",
          origin: "automatic",
          caller: "app",
          createdAt: 1_700_000_000_000 + i,
        }),
      );
    appendFileSync(file, lines.join("\n") + "\n" + '{"op":"add","email":"torn@exa');
    const list = new SuppressionList(tmp.dir);
    const t0 = performance.now();
    expect(await list.open()).toBe(100_000);
    const openMs = performance.now() - t0;
    const t1 = performance.now();
    for (let i = 0; i < 1000; i++) await list.assertDeliverable(["fresh@example.net", "other@example.net"]);
    const checkMs = (performance.now() - t1) / 1000;
    await expect(list.assertDeliverable(["user99999@example.net"])).rejects.toMatchObject({
      code: "recipient_suppressed",
    });
    console.log(
      `[measured] suppression list: open 100,000 entries ${openMs.toFixed(0)} ms; one /send check ${(checkMs * 1000).toFixed(0)} µs`,
    );
    expect(openMs).toBeLessThan(5000);
    expect(checkMs).toBeLessThan(5);
    expect(list.find("torn@example.net")).toBeUndefined();
    expect(readFileSync(file, "utf8").length).toBeGreaterThan(0);
  });
});
