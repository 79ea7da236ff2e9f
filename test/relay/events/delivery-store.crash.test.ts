import { spawn } from "node:child_process";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DeliveryStore } from "../../../relay/storage/delivery-store";
import { tempDir } from "../fixtures";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** Runs the child until it acknowledged some work, kills it (SIGKILL) after a random delay, returns its lines. */
function runAndKill(root: string, startOffset: number, delayMs: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", path.join(__dirname, "delivery-store-crash-child.ts"), root, String(startOffset)],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    let timer: NodeJS.Timeout | undefined;
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
      if (!timer) timer = setTimeout(() => child.kill("SIGKILL"), delayMs);
    });
    child.on("error", reject);
    child.on("exit", (_code, signal) => {
      if (signal !== "SIGKILL") return reject(new Error(`child exited by itself: ${out.slice(-500)}`));
      // A line cut by the kill is not an acknowledgement.
      resolve(out.split("\n").slice(0, -1));
    });
  });
}

describe("the delivery store survives kill -9", () => {
  it("killed at random points while hand-offs, batches, checkpoints and compactions run, 12 times: every acknowledged hand-off and batch is there once, the position never goes back", async () => {
    const t = tempDir("ds-crash-");
    cleanups.push(t.cleanup);
    const handed = new Set<string>();
    const committed = new Map<string, number>();
    let lastOffset = 0;
    let lost = 0;
    let duplicated = 0;
    for (let round = 0; round < 12; round++) {
      const lines = await runAndKill(t.dir, lastOffset, 150 + Math.floor(Math.random() * 900));
      for (const l of lines) {
        const [k, id, off] = l.split(" ") as [string, string, string | undefined];
        if (k === "H") handed.add(id);
        else if (k === "C") committed.set(id, Number(off));
      }
      const store = new DeliveryStore(t.dir, { messageIdDomain: "mail.example.com", retentionMs: 86_400_000 });
      await store.open();
      const acked = Math.max(0, ...committed.values());
      const pos = store.position?.offset ?? 0;
      expect(pos, `round ${round}: position went back`).toBeGreaterThanOrEqual(acked);
      for (const id of handed) if (store.get(id)?.handedOffAt === undefined) lost++;
      for (const id of committed.keys()) {
        const r = store.get(id)?.recipients[0];
        if (r?.state !== "delivered") lost++;
        else if (r.attempts !== 1) duplicated++;
      }
      lastOffset = pos;
      await store.close();
    }
    console.log(
      `kill -9 x12: ${handed.size} hand-offs and ${committed.size} delivery outcomes acknowledged; ` +
        `lost ${lost}, applied twice ${duplicated}`,
    );
    expect(handed.size).toBeGreaterThan(100);
    expect({ lost, duplicated }).toEqual({ lost: 0, duplicated: 0 });
  }, 180_000);
});
