// Issue 23's crash test: kill -9 at any point loses nothing and duplicates nothing beyond the documented window
// (docs/operations.md). The runner is bench/crash-run.ts; `npm run crash` runs it for longer (CRASH_ROUNDS).
import { afterAll, describe, expect, it } from "vitest";
import { missing } from "../../testkit/real-tools";
import {
  classify,
  CRASH_BUNDLE,
  runCrashTest,
  type AcceptedMessage,
  type Kill,
  type SinkCopy,
} from "../../bench/crash-run";
import { existsSync } from "node:fs";
import { tempDir } from "./fixtures";

const ROUNDS = Number(process.env.CRASH_ROUNDS || 25);
const skip = missing("crash test", {
  check: () => (existsSync(CRASH_BUNDLE) ? undefined : `${CRASH_BUNDLE} is missing; run \`npm run build\``),
});
const tmp = tempDir("relay-crash-");
afterAll(() => tmp.cleanup());

describe("counting the crash test (classify), on hand-made timelines", () => {
  const kill: Kill = { round: 3, killAt: 10_000, deadAt: 10_005 };
  const copy = (queueId: string, dotAt: number, acceptedAt = dotAt): SinkCopy => ({
    marker: "m1",
    messageId: "id1@mail.example.com",
    queueId,
    dotAt,
    acceptedAt,
  });
  const accepted: AcceptedMessage = { marker: "m1", id: "id1", round: 3, at: 9_000, postfixQueueId: "B" };

  it("a 202'd message the fake Postfix never took is lost", () => {
    const c = classify([accepted], [], [kill], 1000);
    expect(c.lost.map((a) => a.marker)).toEqual(["m1"]);
  });

  it("a copy answered 250 just before a kill, then sent again and recorded, is a duplicate in the window", () => {
    const c = classify([accepted], [copy("A", 9_990), copy("B", 10_500)], [kill], 1000);
    expect([c.lost.length, c.duplicates.length, c.inWindow.length, c.beyond.length]).toEqual([0, 1, 1, 0]);
  });

  it("a copy answered 250 after the relay died, for DATA sent before, is in the window too", () => {
    const c = classify([accepted], [copy("A", 10_004, 10_100), copy("B", 10_500)], [kill], 1000);
    expect(c.inWindow.length).toBe(1);
  });

  it("a copy answered 250 long before the next kill is beyond the window (the relay had time to record it)", () => {
    const c = classify([accepted], [copy("A", 5_000), copy("B", 10_500)], [kill], 1000);
    expect(c.beyond.length).toBe(1);
    expect(c.beyond[0]?.verdicts[0]).toMatchObject({ inWindow: false, why: expect.stringContaining("5000 ms") });
  });

  it("a copy sent after the one the relay recorded is beyond the window, even next to a kill", () => {
    const c = classify([{ ...accepted, postfixQueueId: "A" }], [copy("A", 9_900), copy("B", 9_990)], [kill], 1000);
    expect(c.beyond.length).toBe(1);
  });

  it("a duplicate with no kill at all is beyond the window", () => {
    const c = classify([accepted], [copy("A", 9_990), copy("B", 10_500)], [], 1000);
    expect(c.beyond.length).toBe(1);
  });
});

describe.skipIf(skip)("kill -9 of the bundled relay under load, against a fake Postfix", () => {
  it(
    `${ROUNDS} kills at random moments: nothing 202'd is lost, no duplicate beyond the Postfix-250→record window, ` +
      "a retried 202'd request gets its first id",
    async () => {
      const report = await runCrashTest({
        rounds: ROUNDS,
        dir: tmp.dir,
        killAfterMs: [20, 450],
        seed: process.env.CRASH_SEED ? Number(process.env.CRASH_SEED) : undefined,
      });
      console.log([report.summary, ...report.details].join("\n"));
      // It exercised what it claims to: crashes cut requests, the fake refused some hand-offs, replays were checked.
      expect(report.kills.length).toBe(ROUNDS);
      expect(report.retried).toBeGreaterThan(0);
      expect(report.refused).toBeGreaterThan(0);
      expect(report.replaysChecked).toBeGreaterThan(0);
      expect(report.unexpected).toEqual([]);
      expect(report.never202).toBe(0);
      expect(report.accepted).toBe(report.messages);
      expect(report.replayMismatches).toEqual([]);
      expect(report.classified.unaccepted).toEqual([]);
      expect(report.classified.lost.map((a) => a.marker)).toEqual([]);
      expect(report.classified.beyond.map((d) => d.marker)).toEqual([]);
      expect(report.maxDuplicatesPerKill).toBeLessThanOrEqual(report.handoffConcurrency);
    },
    90_000,
  );
});
