// CPU per message of composing the bench's ~4 KB text + HTML message (bench:chain's and bench:relay's), four ways:
// nodemailer's stream build (MimeNode.build()), the relay's synchronous write of the same tree (serializeMimeTree),
// building the tree alone, and the relay's direct write of the common message (writeCommonMessage, what composeMessage
// uses for this message). Rounds alternate so a noisy neighbour hits all alike. Each path also prints V8's
// young-generation collections per 1,000 messages (perf_hooks' gc entries): the garbage it leaves behind, which is
// what sets how often the relay pauses to collect.
// Run: npm run bench:compose   (BENCH_COMPOSE_N messages per path and round, default 4000; BENCH_COMPOSE_ROUNDS, 3)
import { cpus, loadavg } from "node:os";
import { constants, PerformanceObserver } from "node:perf_hooks";
import { mailComposerFor, plainTextOf, serializeMimeTree, writeCommonMessage } from "../relay/mime";
import type { SendRequest } from "../relay/validate";

const N = Number(process.env.BENCH_COMPOSE_N ?? 4000);
const ROUNDS = Number(process.env.BENCH_COMPOSE_ROUNDS ?? 3);
const WARMUP = 500;

const request: SendRequest = {
  from: { email: "noreply@example.com", name: "Chain bench" },
  to: [{ email: "someone@example.org" }],
  cc: [],
  bcc: [],
  replyTo: [],
  subject: "Your receipt #12345",
  text: "Thanks for your order. ".repeat(60),
  html: `<p>${"Thanks for your <b>order</b>. ".repeat(60)}</p>`,
  attachments: [],
  headers: { "X-Bench-Phase": "compose" },
  tags: [],
};
const opts = (date = new Date()) => ({ messageId: "<bench@mail.example.com>", date });
const BASE = "0123456789abcdef0123456789abcdef";
const tree = () => mailComposerFor(request, opts(), BASE).compile();
const direct = () => writeCommonMessage(request, opts(), plainTextOf(request), BASE);

const paths: [string, () => unknown][] = [
  ["MimeNode.build() (streams)", () => tree().build()],
  ["compile + serializeMimeTree", () => serializeMimeTree(tree())],
  ["compile alone", () => tree()],
  ["writeCommonMessage (relay)", direct],
];

let scavenges = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries())
    if ((e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) scavenges++;
}).observe({ entryTypes: ["gc"] });
/** Lets the observer see the collections of the calls before (its entries arrive on a later turn). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

/** CPU (user + sys) per call in ms, over n calls, each awaited (build() resolves on a later turn). */
async function cpuPerCall(f: () => unknown, n: number): Promise<number> {
  const t = process.cpuUsage();
  for (let i = 0; i < n; i++) await f();
  const c = process.cpuUsage(t);
  return (c.user + c.system) / n / 1000;
}

async function main(): Promise<void> {
  // the paths must agree before their costs mean anything (one Date for all three, as the header has seconds)
  const same = opts();
  const built = await mailComposerFor(request, same, BASE).compile().build();
  if (!serializeMimeTree(mailComposerFor(request, same, BASE).compile())?.equals(built))
    throw new Error("serializeMimeTree differs from build()");
  if (writeCommonMessage(request, same, plainTextOf(request), BASE) !== built.toString("latin1"))
    throw new Error("writeCommonMessage differs from build(), or left this message to the tree");
  for (const [, f] of paths) await cpuPerCall(f, WARMUP);
  const figures = new Map<string, number[]>(paths.map(([name]) => [name, []]));
  const collections = new Map<string, number>(paths.map(([name]) => [name, 0]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, f] of paths) {
      await settle();
      const before = scavenges;
      figures.get(name)!.push(await cpuPerCall(f, N));
      await settle();
      collections.set(name, collections.get(name)! + scavenges - before);
    }
  }
  console.log(
    `compose benchmark: ~${serializeMimeTree(tree())!.length} B text+HTML message, node ${process.version}, ` +
      `${cpus().length} cores, ${N} messages x ${ROUNDS} rounds per path, 1-min load ${loadavg()[0]!.toFixed(2)}`,
  );
  for (const [name, ms] of figures) {
    const perK = ((collections.get(name)! / (N * ROUNDS)) * 1000).toFixed(1);
    console.log(
      `${name.padEnd(30)} CPU per message (ms), by round: ${ms.map((m) => m.toFixed(3)).join(" / ")}; ` +
        `young-generation collections per 1,000 messages: ${perK}`,
    );
  }
  const [build, serialized, relay] = [0, 1, 3].map((i) => figures.get(paths[i]![0])!) as [number[], number[], number[]];
  const ratio = (a: number[], b: number[]) => a.map((x, i) => (x / b[i]!).toFixed(2)).join(" / ");
  console.log(`writeCommonMessage ÷ build() per round: ${ratio(relay, build)}`);
  console.log(`writeCommonMessage ÷ compile + serializeMimeTree per round: ${ratio(relay, serialized)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
