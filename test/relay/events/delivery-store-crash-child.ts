// Child of delivery-store.crash.test.ts: records hand-offs and delivery batches into a DeliveryStore as fast as it can,
// printing each one only once the store said it is durable ("H <id>" after recordHandoff with `at`, "C <id> <offset>"
// after commit), until it is killed. Tiny checkpoint and compaction thresholds, so kills land in those too.
import { randomUUID } from "node:crypto";
import { DeliveryStore } from "../../../relay/storage/delivery-store";

const [root, startOffset] = [process.argv[2] as string, Number(process.argv[3])];
const DOMAIN = "mail.example.com";

async function main(): Promise<void> {
  const store = new DeliveryStore(root, {
    messageIdDomain: DOMAIN,
    retentionMs: 86_400_000,
    checkpointBytes: 64 * 1024,
    compactBytes: 256 * 1024,
  });
  await store.open();
  let offset = startOffset;
  for (;;) {
    const wave = Array.from({ length: 8 }, () => ({ id: randomUUID(), qid: `Q${randomUUID().slice(0, 10)}` }));
    await Promise.all(
      wave.map(async (w) => {
        await store.recordHandoff({
          id: w.id,
          caller: "app",
          to: ["a@example.net"],
          postfixQueueId: w.qid,
          at: Date.now(),
        });
        process.stdout.write(`H ${w.id}\n`);
      }),
    );
    offset += 1000;
    const after = { inode: 9, offset };
    const { records } = store.plan(
      wave.map((w, line) => ({
        line,
        fact: {
          kind: "recipient" as const,
          queueId: w.qid,
          recipient: "a@example.net",
          status: "sent" as const,
          dsn: "2.0.0",
          relay: "mx",
          delaySeconds: 1,
          reply: "250 ok",
          at: Date.now(),
        },
      })),
      after,
    );
    await store.commit(records, after);
    process.stdout.write(wave.map((w) => `C ${w.id} ${offset}\n`).join(""));
  }
}

void main();
