// npm run bench:smtp — the relay bundle's SMTP ingress, measured from a client's side: one STARTTLS+AUTH connection
// sending small messages one after another (each 250 comes after the job's fsync), new connections (connect, STARTTLS,
// AUTH, one message, QUIT), one message at the size limit, the same with a bare <LF> (refused), and POST /send with the
// same content for comparison. The hand-off goes to an in-process sink, so Postfix is not measured here
// (bench:handoff). Knobs: BENCH_MESSAGES (500), BENCH_CONNECTIONS (50), BENCH_NODE (node binary, e.g.
// .cache/node18/usr/bin/node).
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import nodemailer from "nodemailer";
import { SMTPServer } from "smtp-server";
import { RELAY_NODE_FLAGS } from "../cloud-init/systemd";
import { DataScanner } from "../relay/smtp-message";
import { RawSmtp } from "../testkit/raw-smtp";
import { selfSignedCert } from "../testkit/self-signed-cert";

const N = Number(process.env.BENCH_MESSAGES ?? 500);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const NODE = process.env.BENCH_NODE ?? process.execPath;
const NODE_ENV_EXTRA = NODE.includes(".cache/node18")
  ? { LD_LIBRARY_PATH: path.join(path.dirname(NODE), "../lib/x86_64-linux-gnu") }
  : {};
const TOKEN = "bench-token-0123456789abcdefghijklmnopqrstu";
const BUNDLE = path.resolve(__dirname, "../relay/dist/relay.js");
const progress = (s: string): void => void process.stderr.write(`[bench:smtp] ${s}\n`);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;
const fmt = (xs: number[]): string => `p50 ${pct(xs, 50).toFixed(2)} ms, p99 ${pct(xs, 99).toFixed(2)} ms`;

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "smtp-bench-"));
  let sinkCount = 0;
  const sink = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    onData(stream, _s, cb) {
      stream.on("data", () => undefined);
      stream.on("end", () => {
        sinkCount++;
        cb(null, "2.0.0 Ok: queued as BENCH");
      });
    },
  });
  await new Promise<void>((r) => sink.listen(0, "127.0.0.1", () => r()));
  const sinkPort = (sink.server.address() as { port: number }).port;
  const { key, cert } = selfSignedCert();
  writeFileSync(path.join(dir, "key.pem"), key, { mode: 0o600 });
  writeFileSync(path.join(dir, "cert.pem"), cert);
  const ca = cert;

  const relay = spawn(NODE, [...RELAY_NODE_FLAGS, BUNDLE], {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      ...NODE_ENV_EXTRA,
      RELAY_LISTEN: "127.0.0.1:0",
      RELAY_SMTP_LISTEN: "127.0.0.1:0",
      RELAY_SMTP_TLS_KEY: path.join(dir, "key.pem"),
      RELAY_SMTP_TLS_CERT: path.join(dir, "cert.pem"),
      SMTP_RELAY_TOKEN: `app=${TOKEN}`,
      RELAY_ALLOWED_FROM: "noreply@example.com",
      RELAY_RATE_LIMIT_PER_MIN: "1000000",
      RELAY_HANDOFF: `smtp://127.0.0.1:${sinkPort}`,
      QUEUE_ROOT: path.join(dir, "queue"),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  let listening: RegExpExecArray | null = null;
  // Scan the log only until the relay says where it listens; afterwards drain it unread (the bench measures the relay).
  const onLog = (d: Buffer): void => {
    if (listening) return;
    log += d;
    listening = /"address":"http:\/\/127\.0\.0\.1:(\d+)","smtpAddress":"smtp:\/\/127\.0\.0\.1:(\d+)"/.exec(log);
  };
  relay.stdout.on("data", onLog);
  relay.stderr.on("data", onLog);
  const cleanUp = (): void => {
    if (relay.exitCode === null) relay.kill("SIGTERM");
    sink.close();
    rmSync(dir, { recursive: true, force: true });
  };
  process.on("exit", cleanUp);
  for (let i = 0; i < 150 && !listening && relay.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100));
  if (!listening) throw new Error(`relay did not listen: ${log}`);
  const httpPort = Number((listening as RegExpExecArray)[1]);
  const smtpPort = Number((listening as RegExpExecArray)[2]);
  progress(
    `relay on node ${execFileSync(NODE, ["--version"], { env: { ...process.env, ...NODE_ENV_EXTRA } })
      .toString()
      .trim()}, smtp :${smtpPort}, http :${httpPort}`,
  );

  const mail = { from: "noreply@example.com", to: "user@example.net", subject: "bench", text: "x".repeat(1000) };
  // BENCH_CLIENT_NODELAY=1: the client's socket without Nagle (nodemailer leaves it on; see docs/smtp-ingress.md).
  const noDelay = process.env.BENCH_CLIENT_NODELAY === "1";
  const getSocket = (_o: unknown, cb: (err: Error | null, s?: { connection: net.Socket }) => void): void => {
    const sock = net.connect({ host: "127.0.0.1", port: smtpPort, noDelay: true });
    sock.once("error", cb);
    sock.once("connect", () => cb(null, { connection: sock }));
  };
  const transport = (pool: boolean) =>
    nodemailer.createTransport({
      host: "127.0.0.1",
      port: smtpPort,
      secure: false,
      requireTLS: true,
      auth: { user: "app", pass: TOKEN },
      tls: { ca, servername: "localhost" },
      pool,
      maxConnections: 1,
      maxMessages: Infinity,
      ...(noDelay ? { getSocket } : {}),
    } as nodemailer.TransportOptions);

  // 1. one connection, sequential messages
  const pooled = transport(true);
  await pooled.sendMail(mail); // warm-up: connect, STARTTLS, AUTH
  const seq: number[] = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const t = process.hrtime.bigint();
    await pooled.sendMail(mail);
    seq.push(ms(t));
  }
  const seqSeconds = ms(t0) / 1000;
  pooled.close();

  // 2. a new connection per message
  const conn: number[] = [];
  for (let i = 0; i < CONNECTIONS; i++) {
    const t = process.hrtime.bigint();
    const once = transport(false);
    await once.sendMail(mail);
    conn.push(ms(t));
    once.close();
  }

  // 3. one message just under the size limit (RELAY_MAX_MESSAGE_BYTES: 8 x 512 KiB), written raw (nodemailer's own
  // quoted-printable encoding of 4 MiB takes seconds on the client); timed from the first DATA byte to the 250.
  const { client: raw } = await RawSmtp.connect(smtpPort);
  await raw.login(ca, "app", TOKEN);
  const bigBody = `${"y".repeat(70)}\r\n`.repeat(Math.floor((4 * 1024 * 1024 - 200) / 72));
  const bigMsg = Buffer.from(
    `From: noreply@example.com\r\nTo: user@example.net\r\nSubject: bench\r\n\r\n${bigBody}.\r\n`,
  );
  const bigs: number[] = [];
  for (let i = 0; i < 5; i++) {
    await raw.cmd("MAIL FROM:<noreply@example.com>");
    await raw.cmd("RCPT TO:<user@example.net>");
    await raw.cmd("DATA");
    const t2 = process.hrtime.bigint();
    raw.send(bigMsg);
    const reply = await raw.reply(60_000);
    if (!reply.startsWith("250")) throw new Error(`big message refused: ${reply}`);
    bigs.push(ms(t2));
  }
  raw.close();
  // The relay's own byte scan of a 4 MiB DATA (bare CR/LF, NUL, line length), in this process.
  const fourMiB = Buffer.from(`${"z".repeat(70)}\r\n`.repeat(Math.floor((4 * 1024 * 1024) / 72)));
  const scans: number[] = [];
  for (let i = 0; i < 20; i++) {
    const s = new DataScanner();
    const t2 = process.hrtime.bigint();
    for (let o = 0; o < fourMiB.length; o += 65536) s.push(fourMiB.subarray(o, o + 65536));
    scans.push(ms(t2));
  }

  // 4. POST /send with the same content, sequential, keep-alive
  const http: number[] = [];
  for (let i = 0; i < N; i++) {
    const t1 = process.hrtime.bigint();
    const res = await fetch(`http://127.0.0.1:${httpPort}/send`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ from: mail.from, to: mail.to, subject: mail.subject, text: mail.text }),
    });
    await res.arrayBuffer();
    http.push(ms(t1));
  }

  await new Promise((r) => setTimeout(r, 1000));
  console.log(
    `bench:smtp  ${new Date().toISOString()}  ${os.cpus().length} cores, load ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}, queue on ${os.tmpdir()}`,
  );
  console.log(`  client socket: ${noDelay ? "TCP_NODELAY" : "nodemailer's default (Nagle on)"}`);
  console.log(
    `  one connection, ${N} x 1 KB messages: ${(N / seqSeconds).toFixed(0)} msg/s, ${fmt(seq)} (MAIL..250 after fsync)`,
  );
  console.log(`  new connection per message (TCP + STARTTLS + AUTH + 1 msg), ${CONNECTIONS}: ${fmt(conn)}`);
  console.log(
    `  a ${(bigMsg.length / 1048576).toFixed(2)} MiB message over one connection, DATA to 250, ` +
      `5 times: ${fmt(bigs)}; the relay's DATA scan of 4 MiB alone: ${fmt(scans)}`,
  );
  console.log(`  POST /send, same content, ${N}: ${fmt(http)}`);
  console.log(`  handed to the sink so far: ${sinkCount}`);
  cleanUp();
  process.exit(0);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
