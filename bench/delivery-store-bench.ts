// Memory the delivery tracker keeps per handed-off message: DeliveryStore holds every message of the retention
// period (QUEUE_SENT_RETENTION_MS, 7 days by default) in memory, for GET /messages/:id and GET /messages. Records N
// hand-offs with one delivered recipient each (Postfix's real reply text), through the store's own hand-off and
// log-fact paths, and prints the V8 heap it keeps per message, and the journal's size.
// Run: npm run bench:deliveries (npx tsx --expose-gc bench/delivery-store-bench.ts); BENCH_MESSAGES (50000).
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DeliveryStore } from "../relay/events/delivery-store";
import type { LogFact } from "../relay/events/postfix-log";

const N = Number(process.env.BENCH_MESSAGES ?? 50_000);
const DOMAIN = "mail.example.com";
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --expose-gc (npx tsx --expose-gc bench/delivery-store-bench.ts)");

function heapMb(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed / 1048576;
}

async function main(): Promise<void> {
  const root = mkdtempSync(path.join(os.tmpdir(), "delivery-store-bench-"));
  try {
    const store = new DeliveryStore(root, { messageIdDomain: DOMAIN, retentionMs: 7 * 86_400_000 });
    await store.open();
    const before = heapMb();
    const t0 = performance.now();
    for (let i = 0; i < N; i++) {
      const id = randomUUID();
      const qid = `4Z${i.toString(36).toUpperCase().padStart(9, "0")}`;
      const at = Date.now();
      await store.recordHandoff({ id, caller: "app", postfixQueueId: qid, to: [`user${i}@example.net`], at });
      const facts: { fact: LogFact; line: number }[] = [
        { fact: { kind: "message-id", queueId: qid, messageId: `${id}@${DOMAIN}`, at }, line: 1 },
        {
          fact: {
            kind: "recipient",
            queueId: qid,
            recipient: `user${i}@example.net`,
            status: "sent",
            dsn: "2.0.0",
            relay: "mx.example.net[198.51.100.25]:25",
            delaySeconds: 0.4,
            reply: "250 2.0.0 Ok: queued as 4ZxYz1Abc2",
            at,
          },
          line: 2,
        },
        { fact: { kind: "removed", queueId: qid, at }, line: 3 },
      ];
      const after = { inode: 1, offset: (i + 1) * 300 };
      const { records } = store.plan(facts, after);
      await store.commit(records, after);
    }
    const ms = performance.now() - t0;
    const kept = heapMb() - before;
    const journal = statSync(path.join(root, "events", "deliveries.jsonl")).size;
    await store.close();
    console.log(
      `delivery store, node ${process.version}, ${N} messages tracked (1 recipient, delivered), ` +
        `1-min load ${(os.loadavg()[0] as number).toFixed(2)}`,
    );
    console.log(`  V8 heap kept: ${kept.toFixed(1)} MB = ${((kept * 1048576) / N).toFixed(0)} bytes per message`);
    console.log(`  journal: ${(journal / 1048576).toFixed(1)} MB = ${(journal / N).toFixed(0)} bytes per message`);
    console.log(
      `  recorded in ${(ms / 1000).toFixed(1)} s (${((ms * 1000) / N).toFixed(0)} us per message, fsync included)`,
    );
    console.log(
      "  at this size per message, a 7-day retention of 10,000 messages a day keeps " +
        `~${((kept / N) * 70_000).toFixed(0)} MB`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
