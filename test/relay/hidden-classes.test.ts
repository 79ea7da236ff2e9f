// Rule: nothing the relay does per message makes a new V8 hidden class (map). An object that starts with a spread
// ({ ...a, b: 1 }, or { ...a } then a.b = 1) gets a map detached from every transition tree, so each field added to it
// makes a new map and descriptor array, every time: garbage in V8's map and old spaces that only a full collection
// frees (issue 23: 12 per message drove the old generation's growth and bench:relay's full GCs). V8's --log-maps
// writes each such transition as "map,Transition,...,prototype,<field>".
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { SMTPServer } from "smtp-server";
import ts from "typescript";
import { afterAll, describe, expect, it } from "vitest";
import { UNTHROTTLED_RELAY_ENV } from "../../bench/unthrottled-env.mjs";
import { missing } from "../../testkit/real-tools";
import { BUNDLE, haveBundle, haveNode18, NODE18, startBundle, type BundleProcess } from "./bundle-process";
import { tempDir } from "./fixtures";

const RELAY = path.resolve(__dirname, "../../relay");
const tmp = tempDir("relay-maps-");
const running: BundleProcess[] = [];
afterAll(async () => {
  for (const p of running) await p.stop("SIGKILL");
  tmp.cleanup();
});
let dirs = 0;
const sub = (name: string): string => {
  const d = path.join(tmp.dir, `${name}-${++dirs}`);
  mkdirSync(d, { recursive: true });
  return d;
};

/** Detached-map transitions in a V8 --log-maps log: one per field added to an object whose map has no tree. */
function detachedTransitions(log: string): number {
  return detachedFields(log).length;
}

/** The field of each detached-map transition (for the failure message: which object it was). */
function detachedFields(log: string): string[] {
  return log
    .split("\n")
    .filter((l) => l.startsWith("map,Transition,") && l.split(",")[8] === "prototype")
    .map((l) => l.split(",").slice(9).join(","));
}

/** The most frequent fields, "name xN", most first. */
function topFields(fields: string[]): string {
  const n = new Map<string, number>();
  for (const f of fields) n.set(f, (n.get(f) ?? 0) + 1);
  return [...n]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 12)
    .map(([f, c]) => `${f} x${c}`)
    .join(", ");
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? e.name === "dist"
        ? []
        : sourceFiles(path.join(dir, e.name))
      : e.name.endsWith(".ts")
        ? [path.join(dir, e.name)]
        : [],
  );
}

describe("no object literal in relay/ starts with a spread and goes on with fields of its own", () => {
  it("every object literal of every relay source file (Object.assign({}, a, { b }) instead)", () => {
    const offenders: string[] = [];
    let literals = 0;
    for (const file of sourceFiles(RELAY)) {
      const sf = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
      const visit = (node: ts.Node): void => {
        if (ts.isObjectLiteralExpression(node)) {
          literals++;
          const [first, ...rest] = node.properties;
          if (first && ts.isSpreadAssignment(first) && rest.some((p) => !ts.isSpreadAssignment(p))) {
            const { line } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
            offenders.push(`${path.relative(RELAY, file)}:${line + 1}`);
          }
        }
        ts.forEachChild(node, visit);
      };
      visit(sf);
    }
    expect(literals).toBeGreaterThan(500); // the walk saw the relay's code
    expect(offenders).toEqual([]);
  });
});

// The premise, on each runtime the host runs: which spellings make a map per object and which do not.
const PATTERNS: Record<string, { code: string; perObject: boolean }> = {
  "{ ...a, b }": { code: "o = { ...src, attempts: i, lastError: 'e' };", perObject: true },
  "{ ...(c ? { t } : {}), a, b }": { code: "o = { ...(i >= 0 ? { t: 1 } : {}), a: 1, b: 2 };", perObject: true },
  "{ ...a } then o.b = ...": { code: "o = { ...src }; o.extra = i;", perObject: true },
  "Object.assign({}, a, { b })": {
    code: "o = Object.assign({}, src, { attempts: i, lastError: 'e' });",
    perObject: false,
  },
  "{ a, b, ...c }": { code: "o = { a: 1, b: 2, ...src };", perObject: false },
  "a literal, then o.c = ...": { code: "o = { a: 1, b: 2 }; if (i >= 0) o.c = i;", perObject: false },
};
const runtimes = [
  { name: `this machine's node (${process.version})`, bin: process.execPath, env: {} as Record<string, string> },
  ...(haveNode18 ? [{ name: "Debian 12's node 18", bin: NODE18.bin, env: NODE18.env }] : []),
];
const noNode18 = missing("the Node 18 variant of the hidden-class test", {
  check: () => (haveNode18 ? undefined : `${NODE18.bin} is missing; run bash .ci/node18.sh`),
});

describe.each(runtimes)("V8's maps on $name, 1,000 objects per spelling", ({ bin, env }) => {
  it.each(Object.entries(PATTERNS))("%s", (_name, { code, perObject }) => {
    const dir = sub("micro");
    const script = path.join(dir, "m.js");
    writeFileSync(
      script,
      `const keep = []; for (let i = 0; i < 1000; i++) { const src = JSON.parse('{"id":"a","attempts":1}'); let o; ${code} keep.push(o); }\n`,
    );
    const log = path.join(dir, "v8.log");
    const r = spawnSync(bin, ["--log-maps", `--logfile=${log}`, "--no-logfile-per-isolate", script], {
      env: { ...process.env, ...env },
    });
    expect(r.status, String(r.stderr)).toBe(0);
    const n = detachedTransitions(readFileSync(log, "utf8"));
    if (perObject) expect(n).toBeGreaterThanOrEqual(900);
    else expect(n).toBeLessThan(10);
  });
});
if (noNode18) it.skip(`node 18: ${noNode18}`, () => undefined);

const skip = missing("the bundle's hidden-class test", {
  check: () => (haveBundle ? undefined : `${BUNDLE} is missing; run \`npm run build\` (npm test does)`),
});
const NODE_PIPE_OPTIONS = new Set(["allowHalfOpen", "emitClose", "autoDestroy", "decodeStrings"]);
const TOKEN = "maps-test-token-0123456789abcdefghijkl";
const body = JSON.stringify({
  to: ["user@example.net"],
  from: { email: "noreply@example.com", name: "Maps" },
  subject: "Your receipt",
  text: "Thanks for your order. ".repeat(20),
  html: `<p>${"Thanks for your <b>order</b>. ".repeat(20)}</p>`,
  tags: ["receipt"],
});

/** Runs the bundle under --log-maps, sends `n` messages one after another, stops it; the log's detached transitions. */
async function transitionsFor(n: number, handoff: "smtp" | "sendmail", sinkPort: number): Promise<string[]> {
  const dir = sub(`bundle-${handoff}-${n}`);
  const log = path.join(dir, "v8.log");
  const relay = await startBundle(
    dir,
    TOKEN,
    {
      bin: process.execPath,
      env: {},
      command: ([bin, ...args], env) => [
        "env",
        ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
        bin as string,
        "--log-maps",
        `--logfile=${log}`,
        "--no-logfile-per-isolate",
        ...args,
      ],
    },
    // the per-minute rate limit and quotas would refuse 220 messages in a few seconds
    { ...UNTHROTTLED_RELAY_ENV, ...(handoff === "smtp" ? { RELAY_HANDOFF: `smtp://127.0.0.1:${sinkPort}` } : {}) },
  );
  running.push(relay);
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${relay.url}/send`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body,
    });
    expect(res.status).toBe(202);
  }
  await new Promise((r) => setTimeout(r, 500)); // the queued path: the worker's hand-offs and records
  expect(await relay.stop()).toBe(0);
  return detachedFields(readFileSync(log, "utf8"));
}

describe.skipIf(skip)("the bundled relay makes no hidden class per message", () => {
  let sinkPort = 0;
  const sink = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onData(stream, _s, cb) {
      stream.resume();
      stream.on("end", () => cb(null, "2.0.0 Ok: queued as C0FFEE"));
    },
  });
  afterAll(() => new Promise<void>((r) => sink.close(() => r())));

  it.each(["smtp", "sendmail"] as const)(
    "handed off by %s: 200 more messages add fewer than 40 detached-map transitions (12 per message before)",
    async (handoff) => {
      if (sinkPort === 0) {
        await new Promise<void>((r) => sink.listen(0, "127.0.0.1", () => r()));
        sinkPort = (sink.server.address() as { port: number }).port;
      }
      const few = await transitionsFor(20, handoff, sinkPort);
      const many = await transitionsFor(220, handoff, sinkPort);
      // Node's own: net.Socket's options for the pipes of each spawned sendmail (lib/net.js spreads them), 8 per
      // message on the sendmail hand-off. Not the relay's code; the hand-off spawns a process per message anyway.
      const ours = (fields: string[]): string[] => fields.filter((f) => !NODE_PIPE_OPTIONS.has(f));
      expect(
        ours(many).length - ours(few).length,
        `20 messages: ${few.length}, 220 messages: ${many.length}; the most frequent fields: ${topFields(many)}`,
      ).toBeLessThan(40);
    },
    60_000,
  );
});
