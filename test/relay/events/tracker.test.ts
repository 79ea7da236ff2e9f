import { appendFileSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { aggregateState, DeliveryStore, type DeliveryEvent } from "../../../relay/storage/delivery-store";
import { LogTail } from "../../../relay/events/log-tail";
import { DeliveryTracker } from "../../../relay/events/tracker";
import { RelayMetrics } from "../../../relay/metrics";
import { QueueStore } from "../../../relay/storage/queue";
import { captureLog, queueOptions, tempDir } from "../fixtures";
import { BOUNCED, DEFERRED, DOMAIN, EXPIRED, handoffLines, ID1, ID2, REMOVED, SENT } from "./maillog-fixtures";

const NOW = Date.UTC(2026, 10, 30, 12, 0, 0);
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

async function setup(root?: string) {
  const tmp = root ? { dir: root, cleanup: () => undefined } : tempDir("tracker-");
  cleanups.push(tmp.cleanup);
  const logFile = path.join(tmp.dir, "postfix.log");
  const store = new DeliveryStore(tmp.dir, { messageIdDomain: DOMAIN, retentionMs: 30 * 86_400_000, now: () => NOW });
  await store.open();
  const { log, lines } = captureLog();
  const queue = new QueueStore(queueOptions(tmp.dir));
  const metrics = new RelayMetrics(queue, false);
  const seen: DeliveryEvent[] = [];
  const tracker = new DeliveryTracker({
    store,
    tail: new LogTail(logFile),
    log,
    metrics,
    now: () => NOW,
    beforeCommit: async (ev) => void seen.push(...ev),
  });
  const write = (...l: string[]) => appendFileSync(logFile, l.map((x) => `${x}\n`).join(""));
  return { dir: tmp.dir, logFile, store, tracker, metrics, seen, write, logLines: lines };
}

const counter = async (m: RelayMetrics, outcome: string) =>
  (await m.deliveryEvents.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0;

describe("delivery tracking from Postfix's log", () => {
  it("a state is visible to readers (get, list) only once its batch commits, after the side effects are durable", async () => {
    const t = await setup();
    await t.store.recordHandoff({
      id: ID1,
      caller: "app",
      postfixQueueId: "4XyZ12abc",
      to: ["gone@example.net"],
      at: NOW,
    });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered = false;
    const gated = new DeliveryTracker({
      store: t.store,
      tail: new LogTail(t.logFile),
      log: captureLog().log,
      now: () => NOW,
      // stands for the suppression list's fsync and the webhook outbox (relay/server.ts)
      beforeCommit: async () => {
        entered = true;
        await gate;
      },
    });
    t.write(...handoffLines("4XyZ12abc", ID1), BOUNCED("4XyZ12abc", "gone@example.net"), REMOVED("4XyZ12abc"));
    const polled = gated.pollOnce();
    for (let i = 0; i < 200 && !entered; i++) await new Promise((r) => setTimeout(r, 5));
    expect(entered).toBe(true);
    // planned, side effects in progress: readers still see the hand-off
    expect(aggregateState(t.store.get(ID1)?.recipients ?? [])).toBe("handed_off");
    expect(t.store.list("app", { state: "bounced", limit: 10 })).toEqual([]);
    expect(t.store.list("app", { state: "handed_off", limit: 10 }).map((m) => m.id)).toEqual([ID1]);
    release();
    await polled;
    expect(aggregateState(t.store.get(ID1)?.recipients ?? [])).toBe("bounced");
    expect(t.store.list("app", { state: "bounced", limit: 10 }).map((m) => m.id)).toEqual([ID1]);
    expect(t.store.list("app", { state: "handed_off", limit: 10 })).toEqual([]);
  });

  it("maps each attempt to the message through the queue id; the message's state follows its recipients", async () => {
    const t = await setup();
    await t.store.recordHandoff({
      id: ID1,
      caller: "app",
      postfixQueueId: "4XyZ12abc",
      to: ["ok@example.net", "later@example.net", "gone@example.net"],
      at: NOW - 2000,
    });
    t.write(
      ...handoffLines("4XyZ12abc", ID1),
      SENT("4XyZ12abc", "ok@example.net"),
      DEFERRED("4XyZ12abc", "later@example.net"),
      BOUNCED("4XyZ12abc", "gone@example.net"),
    );
    await t.tracker.pollOnce();
    const m = t.store.get(ID1);
    expect(m?.recipients.map((r) => [r.address, r.state, r.dsn])).toEqual([
      ["ok@example.net", "delivered", "2.0.0"],
      ["later@example.net", "deferred", "4.2.0"],
      ["gone@example.net", "bounced", "5.1.1"],
    ]);
    expect(aggregateState(m?.recipients ?? [])).toBe("deferred");
    const later = m?.recipients[1];
    expect(later?.attempts).toBe(1);
    // delay=1.3 s is under minimal_backoff_time (300 s): Postfix retries ~300 s after the attempt
    expect((later?.retryEstimateAt ?? 0) - (later?.at ?? 0)).toBe(300_000);
    // deferred, then sent on retry
    t.write(
      SENT("4XyZ12abc", "later@example.net", "Nov 30 10:05:02.000000"),
      REMOVED("4XyZ12abc", "Nov 30 10:05:02.100000"),
    );
    await t.tracker.pollOnce();
    expect(t.store.get(ID1)?.recipients[1]).toMatchObject({
      state: "delivered",
      attempts: 2,
      reply: "250 2.0.0 Ok: queued as 4ABCDEF",
    });
    expect(aggregateState(t.store.get(ID1)?.recipients ?? [])).toBe("partially_delivered");
    expect(t.seen.map((e) => [e.recipient, e.state, e.hard])).toEqual([
      ["ok@example.net", "delivered", undefined],
      ["later@example.net", "deferred", undefined],
      ["gone@example.net", "bounced", true],
      ["later@example.net", "delivered", undefined],
    ]);
    expect(await counter(t.metrics, "delivered")).toBe(2);
    expect((await t.metrics.deliverySeconds.get()).values.find((v) => v.metricName?.endsWith("_count"))?.value).toBe(2);
  });

  it("mail that is not the relay's (a bounce notice, another Message-ID domain) is not tracked", async () => {
    const t = await setup();
    t.write(
      ...handoffLines("QOTHER1", ID1).map((l) => l.replace(DOMAIN, "elsewhere.example")),
      SENT("QOTHER1", "x@example.net"),
    );
    await t.tracker.pollOnce();
    expect(t.store.get(ID1)).toBeUndefined();
    expect(t.seen).toEqual([]);
  });

  it("expired: every recipient still deferred becomes expired; the others keep their state", async () => {
    const t = await setup();
    await t.store.recordHandoff({
      id: ID2,
      caller: "app",
      postfixQueueId: "Q2expire",
      to: ["ok@example.net", "slow@example.net"],
      at: NOW,
    });
    t.write(
      ...handoffLines("Q2expire", ID2),
      SENT("Q2expire", "ok@example.net"),
      DEFERRED("Q2expire", "slow@example.net"),
      EXPIRED("Q2expire"),
    );
    await t.tracker.pollOnce();
    expect(t.store.get(ID2)?.recipients.map((r) => r.state)).toEqual(["delivered", "expired"]);
    expect(aggregateState(t.store.get(ID2)?.recipients ?? [])).toBe("partially_delivered");
    expect(await counter(t.metrics, "expired")).toBe(1);
  });

  it("a line it does not understand is counted and logged at debug, and tracking goes on", async () => {
    const t = await setup();
    await t.store.recordHandoff({
      id: ID1,
      caller: "app",
      postfixQueueId: "4XyZ12abc",
      to: ["ok@example.net"],
      at: NOW,
    });
    t.write("this is not a postfix line", ...handoffLines("4XyZ12abc", ID1), SENT("4XyZ12abc", "ok@example.net"));
    await t.tracker.pollOnce();
    expect((await t.metrics.maillogUnparsed.get()).values[0]?.value).toBe(1);
    expect(t.logLines.filter((l) => l.includes("not understood"))).toHaveLength(1);
    expect(JSON.parse(t.logLines.find((l) => l.includes("not understood")) as string).level).toBe(20);
    expect(aggregateState(t.store.get(ID1)?.recipients ?? [])).toBe("delivered");
  });

  it("a restart in the middle of a burst loses nothing and counts nothing twice", async () => {
    const t = await setup();
    const ids = Array.from({ length: 40 }, (_, i) => `6f1c2d3e-0000-4000-8000-${String(i).padStart(12, "0")}`);
    for (const [i, id] of ids.entries())
      await t.store.recordHandoff({
        id,
        caller: "app",
        postfixQueueId: `QB${String(i).padStart(4, "0")}x`,
        to: ["ok@example.net"],
        at: NOW,
      });
    const burst = ids.flatMap((id, i) => [
      ...handoffLines(`QB${String(i).padStart(4, "0")}x`, id),
      SENT(`QB${String(i).padStart(4, "0")}x`, "ok@example.net"),
    ]);
    t.write(...burst.slice(0, 97)); // a batch ends in the middle of the burst, part-way through a message
    appendFileSync(t.logFile, burst[97]?.slice(0, 40) ?? ""); // and Postfix is half-way through writing a line
    await t.tracker.pollOnce();
    const firstRun = t.seen.length;
    expect(firstRun).toBeGreaterThan(0);
    expect(firstRun).toBeLessThan(40);
    // The relay dies after the side effects of the next batch but before its position is stored: simulated by a
    // journal torn after its records (the position record missing).
    await t.store.close();
    const journal = path.join(t.dir, "events", "deliveries.jsonl");
    appendFileSync(t.logFile, `${burst[97]?.slice(40)}\n${burst.slice(98).join("\n")}\n`);
    appendFileSync(
      journal,
      '{"t":"r","id":"' + ids[39] + '","rcpt":"ok@example.net","st":"delivered","at":1}\n{"t":"p","in',
    ); // torn
    // restart: a new store and tracker on the same files
    const t2 = await setup(t.dir);
    expect(t2.store.position?.offset).toBeGreaterThan(0);
    await t2.tracker.pollOnce();
    expect(firstRun + t2.seen.length).toBe(40);
    const delivered = ids.filter((id) => t2.store.get(id)?.recipients[0]?.state === "delivered");
    expect(delivered).toHaveLength(40);
    expect(ids.map((id) => t2.store.get(id)?.recipients[0]?.attempts)).toEqual(ids.map(() => 1));
    // the torn tail was cut off at the restart: every journal line parses
    for (const l of readFileSync(path.join(t.dir, "events", "deliveries.jsonl"), "utf8")
      .split("\n")
      .filter(Boolean))
      expect(() => JSON.parse(l), l).not.toThrow();
    // a third start reads nothing again
    const t3 = await setup(t.dir);
    await t3.tracker.pollOnce();
    expect(t3.seen).toEqual([]);
  });

  it("log rotation: the rest of the renamed file is read, then the new file from its start", async () => {
    const t = await setup();
    await t.store.recordHandoff({
      id: ID1,
      caller: "app",
      postfixQueueId: "QR1abcd",
      to: ["a@example.net", "b@example.net"],
      at: NOW,
    });
    await t.store.recordHandoff({ id: ID2, caller: "app", postfixQueueId: "QR2abcd", to: ["c@example.net"], at: NOW });
    t.write(...handoffLines("QR1abcd", ID1));
    await t.tracker.pollOnce();
    t.write(SENT("QR1abcd", "a@example.net")); // written before the rotation, not yet read
    renameSync(t.logFile, `${t.logFile}.1`); // postfix logrotate: rename, then Postfix opens a new file
    writeFileSync(
      t.logFile,
      [SENT("QR1abcd", "b@example.net"), ...handoffLines("QR2abcd", ID2), BOUNCED("QR2abcd", "c@example.net")].join(
        "\n",
      ) + "\n",
    );
    await t.tracker.pollOnce();
    expect(t.seen.map((e) => [e.recipient, e.state])).toEqual([
      ["a@example.net", "delivered"],
      ["b@example.net", "delivered"],
      ["c@example.net", "bounced"],
    ]);
    // restart after the rotation: nothing is read twice
    await t.store.close();
    const t2 = await setup(t.dir);
    await t2.tracker.pollOnce();
    expect(t2.seen).toEqual([]);
  });

  it("a rotated file that is gone is reported (lines may be missing), and the new file is read", async () => {
    const t = await setup();
    t.write("Nov 30 10:00:00 mail postfix/master[1]: daemon started -- version 3.7.11");
    await t.tracker.pollOnce();
    renameSync(t.logFile, path.join(t.dir, "elsewhere.log"));
    await t.store.recordHandoff({ id: ID1, caller: "app", postfixQueueId: "QG1abcd", to: ["a@example.net"], at: NOW });
    t.write(...handoffLines("QG1abcd", ID1), SENT("QG1abcd", "a@example.net"));
    await t.tracker.pollOnce();
    expect(t.logLines.some((l) => l.includes("rotated away"))).toBe(true);
    expect(t.seen.map((e) => e.state)).toEqual(["delivered"]);
  });
});
