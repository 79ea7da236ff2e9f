// npx tsx bench/handoff-cpu-bench.ts — CPU per message of the SMTP client alone: nodemailer's pooled Mail transport
// (what relay/handoff/smtp.ts used first), a bare nodemailer SMTPConnection (what SmtpHandoff pooled next, no plugin
// pipeline; kept as "before" for the A/B) and the relay's SmtpHandoff (its own pipelining client), each sending
// BENCH_MESSAGES raw ~3 KB messages serially to Postfix's smtp-sink (a separate C process, so the CPU measured here is
// the client's). Rounds alternate the order. Then the relay's SmtpHandoff again, over DATA and over BDAT (issue 23),
// against bench/chunking-sink.mjs (smtp-sink offers no CHUNKING), one Node process offering it and one not, so the
// two rows differ only in the client's path. Run it with Debian's Node 18 for the host's figure:
//   LD_LIBRARY_PATH=.cache/node18/usr/lib/x86_64-linux-gnu \
//     .cache/node18/usr/bin/node --import tsx bench/handoff-cpu-bench.ts
import { spawn, type ChildProcess } from "node:child_process";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import nodemailer from "nodemailer";
import SMTPConnection from "nodemailer/lib/smtp-connection";
import { connectNoDelay, SmtpHandoff } from "../relay/handoff/smtp";
import { tool } from "../testkit/real-tools";

const N = Number(process.env.BENCH_MESSAGES ?? 3000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const PORT = 20000 + Math.floor(Math.random() * 20000);
const raw = Buffer.from(
  `Message-ID: <bench@example.com>\r\nFrom: noreply@example.com\r\nTo: u@example.net\r\nSubject: s\r\n` +
    `\r\n${"body line of text\r\n".repeat(150)}`,
);
const envelope = { from: "noreply@example.com", to: ["u@example.net"] };

const sinkPath = tool("smtp-sink");
if (!sinkPath) {
  console.log("skipped: smtp-sink (postfix) is not installed");
  process.exit(0);
}
// smtp-sink drops privileges when started as root.
const sink = spawn(sinkPath, [...(process.getuid?.() === 0 ? ["-u", "nobody"] : []), `127.0.0.1:${PORT}`, "256"], {
  stdio: "ignore",
});
const stopSink = (): void => void sink.kill("SIGTERM");
process.on("exit", stopSink);
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => process.exit(130));

async function waitForSink(): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((r) =>
      net
        .connect(PORT, "127.0.0.1")
        .once("connect", function (this: net.Socket) {
          this.destroy();
          r(true);
        })
        .once("error", () => r(false)),
    );
    if (up) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("smtp-sink did not start");
}

type Client = { name: string; send(): Promise<unknown>; close(): void };

function mailTransport(): Client {
  const t = nodemailer.createTransport({
    pool: true,
    host: "127.0.0.1",
    port: PORT,
    ignoreTLS: true,
    name: "localhost",
    logger: false,
    getSocket: (_o: unknown, cb: (err: Error | null, s?: { connection: net.Socket }) => void) =>
      connectNoDelay({ host: "127.0.0.1", port: PORT, timeoutMs: 5000 }, cb),
  } as Parameters<typeof nodemailer.createTransport>[0]);
  return {
    name: "nodemailer Mail transport (pool)",
    send: () => t.sendMail({ envelope, raw }),
    close: () => t.close(),
  };
}

function relayHandoff(port = PORT, name = "relay SmtpHandoff (own pipelining)"): Client {
  const h = new SmtpHandoff({ host: "127.0.0.1", port, timeoutMs: 5000, maxConnections: 1 });
  return {
    name,
    send: () => h.send({ id: "b", ...envelope, raw }),
    close: () => void h.close(),
  };
}

/** Before: SmtpHandoff's pool held nodemailer SMTPConnections; one connection, one message at a time, as here. */
function smtpConnection(): Client {
  let conn: Promise<SMTPConnection> | undefined;
  const open = (): Promise<SMTPConnection> =>
    new Promise((resolve, reject) =>
      connectNoDelay({ host: "127.0.0.1", port: PORT, timeoutMs: 5000 }, (err, s) => {
        if (err || !s) return reject(err ?? new Error("no socket"));
        const c = new SMTPConnection({ connection: s.connection, ignoreTLS: true, name: "localhost", logger: false });
        c.on("error", reject);
        c.connect(() => resolve(c));
      }),
    );
  let sent = 0;
  return {
    name: "nodemailer SMTPConnection (before)",
    send: async () => {
      // Renewed after 100 messages, as SmtpHandoff does.
      if (!conn || sent++ % 100 === 0) {
        if (conn) (await conn).quit();
        conn = open();
      }
      const c = await conn;
      return new Promise((resolve, reject) =>
        c.send(envelope, raw, (err, info) => (err ? reject(err) : resolve(info))),
      );
    },
    close: () => void conn?.then((c) => c.quit()),
  };
}

async function measure(make: () => Client): Promise<{ name: string; cpuMs: number; perSec: number }> {
  const c = make();
  for (let i = 0; i < 200; i++) await c.send(); // warm-up: JIT, connection
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await c.send();
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  c.close();
  return { name: c.name, cpuMs: (cpu.user + cpu.system) / 1000 / N, perSec: N / secs };
}

/** bench/chunking-sink.mjs on `port`, offering CHUNKING or not; resolves once it listens. */
function nodeSink(port: number, mode: "chunking" | "data"): Promise<ChildProcess> {
  const child = spawn(process.execPath, [path.join(__dirname, "chunking-sink.mjs"), String(port), mode], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  process.on("exit", () => void child.kill("SIGTERM"));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`chunking-sink exited ${code}`)));
    child.stdout!.once("data", () => resolve(child));
  });
}

(async () => {
  await waitForSink();
  const results: { name: string; cpuMs: number; perSec: number }[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const clients = [mailTransport, smtpConnection, relayHandoff];
    const order = r % 2 === 0 ? clients : [...clients].reverse();
    for (const make of order) results.push(await measure(make));
  }
  console.log(
    `SMTP client CPU per message, node ${process.version}, ${N} messages x ${ROUNDS} rounds to smtp-sink; ` +
      `1/5/15-min load ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}`,
  );
  for (const name of [...new Set(results.map((x) => x.name))]) {
    const rs = results.filter((x) => x.name === name);
    console.log(
      `  ${name.padEnd(36)} CPU ${rs.map((x) => x.cpuMs.toFixed(3)).join(" / ")} ` +
        `ms/msg, ${rs.map((x) => x.perSec.toFixed(0)).join(" / ")} msg/s`,
    );
  }
  const mean = (name: string): number => {
    const rs = results.filter((x) => x.name.startsWith(name));
    return rs.reduce((a, x) => a + x.cpuMs, 0) / rs.length;
  };
  const [dataPort, chunkPort] = [PORT + 1, PORT + 2];
  await Promise.all([nodeSink(dataPort, "data"), nodeSink(chunkPort, "chunking")]);
  const paths: Record<string, number[]> = { DATA: [], BDAT: [] };
  for (let r = 0; r < 2 * ROUNDS; r++) {
    const order: ("DATA" | "BDAT")[] = r % 2 === 0 ? ["DATA", "BDAT"] : ["BDAT", "DATA"];
    for (const p of order) {
      const m = await measure(() => relayHandoff(p === "DATA" ? dataPort : chunkPort, p));
      paths[p]!.push(m.cpuMs);
    }
  }
  const avg = (xs: number[]): number => xs.reduce((a, x) => a + x, 0) / xs.length;
  const list = (xs: number[]): string => xs.map((x) => x.toFixed(3)).join(" / ");
  console.log(
    `  relay SmtpHandoff to bench/chunking-sink.mjs, ${2 * ROUNDS} alternating rounds each: DATA (2 writes, 2 round ` +
      `trips) CPU ${list(paths.DATA!)} ms/msg; BDAT (1 write, 1 round trip) CPU ${list(paths.BDAT!)} ms/msg; ` +
      `BDAT/DATA ${(avg(paths.BDAT!) / avg(paths.DATA!)).toFixed(2)}x`,
  );
  console.log(
    `  relay SmtpHandoff uses ${(mean("relay") / mean("nodemailer Mail")).toFixed(2)}x the CPU of the Mail ` +
      `transport and ${(mean("relay") / mean("nodemailer SMTPConnection")).toFixed(2)}x that of SMTPConnection ` +
      `per message`,
  );
  process.exit(0);
})();
