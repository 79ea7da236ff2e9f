// CPU per message of composing the bench's ~4 KB text + HTML message (bench:chain's and bench:relay's), three ways:
// nodemailer's stream build (MimeNode.build()), the relay's synchronous write of the same tree (serializeMimeTree),
// and building the tree alone. Rounds alternate so a noisy neighbour hits all three alike.
// Run: npm run bench:compose   (BENCH_COMPOSE_N messages per path and round, default 4000; BENCH_COMPOSE_ROUNDS, 3)
import { cpus, loadavg } from "node:os";
import { mailComposerFor, serializeMimeTree } from "../relay/mime";
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
const tree = () => mailComposerFor(request, { messageId: "<bench@mail.example.com>", date: new Date() }).compile();

const paths: [string, () => unknown][] = [
  ["MimeNode.build() (streams)", () => tree().build()],
  ["compile + serializeMimeTree (relay)", () => serializeMimeTree(tree())],
  ["compile alone", () => tree()],
];

/** CPU (user + sys) per call in ms, over n calls, each awaited (build() resolves on a later turn). */
async function cpuPerCall(f: () => unknown, n: number): Promise<number> {
  const t = process.cpuUsage();
  for (let i = 0; i < n; i++) await f();
  const c = process.cpuUsage(t);
  return (c.user + c.system) / n / 1000;
}

async function main(): Promise<void> {
  // the two paths must agree before their costs mean anything
  const a = tree();
  const b = tree();
  b.baseBoundary = a.baseBoundary;
  if (!serializeMimeTree(a)?.equals(await b.build())) throw new Error("serializeMimeTree differs from build()");
  for (const [, f] of paths) await cpuPerCall(f, WARMUP);
  const figures = new Map<string, number[]>(paths.map(([name]) => [name, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, f] of paths) figures.get(name)!.push(await cpuPerCall(f, N));
  }
  console.log(
    `compose benchmark: ~${serializeMimeTree(tree())!.length} B text+HTML message, node ${process.version}, ` +
      `${cpus().length} cores, ${N} messages x ${ROUNDS} rounds per path, 1-min load ${loadavg()[0]!.toFixed(2)}`,
  );
  for (const [name, ms] of figures) {
    console.log(`${name.padEnd(40)} CPU per message (ms), by round: ${ms.map((m) => m.toFixed(3)).join(" / ")}`);
  }
  const [build, relay] = [figures.get(paths[0]![0])!, figures.get(paths[1]![0])!];
  console.log(`relay ÷ build() per round: ${relay.map((x, i) => (x / build[i]!).toFixed(2)).join(" / ")}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
