/**
 * The real relay (relay/server.ts's startServer: routes, queue, worker, delivery tracker, suppression list) in this
 * process on 127.0.0.1:0, handing off over SMTP to a fake Postfix (smtp-server that answers `queued as <qid>` with a
 * fresh queue id per message and keeps what it got). Delivery is logged by the test: it appends Postfix's log lines
 * for a queue id to the file the relay's tracker follows (RELAY_POSTFIX_LOG).
 */
import { appendFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { SMTPServer } from "smtp-server";
import { startServer, type RunningRelay } from "../../relay/server";
import { tempDir } from "../relay/fixtures";
import { BOUNCED, handoffLines, SENT } from "../relay/events/maillog-fixtures";

export const TOKEN = "client-test-token-0123456789abcdefghijklm";
export const OTHER_TOKEN = "client-test-other-0123456789abcdefghijklm";
export const FROM = "noreply@example.com";

export interface Received {
  readonly qid: string;
  readonly from: string;
  readonly to: string[];
  readonly raw: string;
}

export interface RealRelay {
  readonly url: string;
  /** What the fake Postfix accepted, in order. */
  readonly received: Received[];
  /** Logs Postfix's hand-off and per-recipient outcome lines for message `id` (queue id of its hand-off). */
  logDelivery(id: string, outcomes: Record<string, "sent" | "bounced">): void;
  close(): Promise<void>;
}

export async function startRealRelay(env: Record<string, string> = {}): Promise<RealRelay> {
  const tmp = tempDir("client-relay-");
  const received: Received[] = [];
  let n = 0;
  const postfix = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        const qid = `4QC${(++n).toString(16).toUpperCase().padStart(6, "0")}`;
        received.push({
          qid,
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString("utf8"),
        });
        cb(null, `2.0.0 Ok: queued as ${qid}`);
      });
    },
  });
  await new Promise<void>((r) => postfix.listen(0, "127.0.0.1", () => r()));
  const port = (postfix.server.address() as { port: number }).port;
  const maillog = path.join(tmp.dir, "postfix.log");
  writeFileSync(maillog, "");
  const relay: RunningRelay = await startServer(
    {
      RELAY_LISTEN: "127.0.0.1:0",
      SMTP_RELAY_TOKEN: `app=${TOKEN},other=${OTHER_TOKEN}`,
      RELAY_ALLOWED_FROM: FROM,
      RELAY_MESSAGE_ID_DOMAIN: "mail.example.com",
      QUEUE_ROOT: path.join(tmp.dir, "queue"),
      RELAY_HANDOFF: `smtp://127.0.0.1:${port}`,
      RELAY_POSTFIX_LOG: maillog,
      RELAY_MIN_FREE_BYTES: "0",
      LOG_LEVEL: "fatal",
      ...env,
    },
    { installSignalHandlers: false },
  );
  return {
    url: relay.address,
    received,
    logDelivery(id, outcomes) {
      const got = received.find((r) => r.raw.includes(`<${id}@mail.example.com>`));
      if (!got) throw new Error(`the fake Postfix has no message ${id}`);
      const lines = handoffLines(got.qid, id);
      for (const [rcpt, o] of Object.entries(outcomes))
        lines.push(o === "sent" ? SENT(got.qid, rcpt) : BOUNCED(got.qid, rcpt));
      appendFileSync(maillog, lines.join("\n") + "\n");
    },
    async close() {
      await relay.close();
      await new Promise<void>((r) => postfix.close(() => r()));
      tmp.cleanup();
    },
  };
}
