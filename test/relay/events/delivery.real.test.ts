// The whole delivery-events path on real software: the relay (in this process, sendmail hand-off so it reaches the
// namespaced Postfix through MAIL_CONFIG) -> Postfix + OpenDKIM from the rendered files in a network namespace ->
// a Node smtp-server MX in that namespace that accepts ok@, answers 450 to later@ once and then accepts, and 550 5.1.1
// to gone@. The tracker reads Postfix's real maillog_file; the webhook sender delivers the real relay's outbox.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type RunningRelay } from "../../../relay/server";
import type { RecipientView } from "../../../relay/events/routes";
import { WebhookOutbox } from "../../../relay/storage/webhook-outbox";
import type { WebhookPayload } from "../../../relay/webhooks/payload";
import { WebhookSender } from "../../../relay/webhooks/sender";
import { newWebhookSecret } from "../../../relay/webhooks/signature";
import { buildConfig } from "../../../testkit/node-config";
import { INSTANCE_TOOLS, netnsUnavailable, PostfixInstance, waitFor } from "../../../testkit/postfix-instance";
import { missing, run, tool } from "../../../testkit/real-tools";
import { captureLog } from "../fixtures";

const REPO = join(__dirname, "..", "..", "..");
const skip = missing("delivery events through a real Postfix + OpenDKIM and an smtp-server MX", {
  tools: INSTANCE_TOOLS,
  root: true,
  scratch: true,
  check: () => netnsUnavailable(`mrevprobe${process.pid}`),
});

const cfg = buildConfig({ ipv6: false });
const TOKEN = "app-token-0123456789abcdefghijklmnopqrstuv";
const MX_PORT = 2727;
let inst: PostfixInstance;
let mx: ChildProcess | undefined;
let relay: RunningRelay | undefined;
let receiver: Server | undefined;
let queueRoot: string;
const got: { headers: IncomingMessage["headers"]; body: string }[] = [];
const secret = newWebhookSecret();

const MX_SCRIPT = `
const { SMTPServer } = require(${JSON.stringify(join(REPO, "node_modules", "smtp-server"))});
const seen = new Map();
const server = new SMTPServer({
  authOptional: true, disabledCommands: ["STARTTLS"], logger: false,
  onRcptTo(addr, _s, cb) {
    const a = addr.address.toLowerCase();
    if (a.startsWith("gone@")) { const e = new Error("5.1.1 <" + a + ">: Recipient address rejected: User unknown"); e.responseCode = 550; return cb(e); }
    if (a.startsWith("later@") && !seen.has(a)) { seen.set(a, 1); const e = new Error("4.2.0 <" + a + ">: try again later"); e.responseCode = 450; return cb(e); }
    cb();
  },
  onData(stream, _s, cb) { stream.resume(); stream.on("end", () => cb(null, "2.0.0 accepted by the test MX")); },
});
server.listen(${MX_PORT}, "127.0.0.1", () => console.log("listening"));
`;

/** The fields of the relay's JSON answers these tests read. */
interface ApiAnswer {
  id?: string;
  message?: { state: string; recipients?: RecipientView[] };
  error?: { code: string };
  suppressions?: unknown[];
}

async function api(method: string, url: string, body?: unknown): Promise<{ status: number; json: ApiAnswer }> {
  const res = await fetch(`http://${relayAddress}${url}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, json: (await res.json()) as ApiAnswer };
}
let relayAddress = "";

describe.skipIf(skip)(
  "delivery events from a real Postfix: per-recipient states, suppression and signed webhooks",
  () => {
    beforeAll(async () => {
      inst = new PostfixInstance(`mrev${process.pid}`, "events-");
      await inst.start({
        host: cfg.host,
        dkimPrivateKeyPem: cfg.secrets.dkimPrivateKeyPem,
        sink: "127.0.0.1:2626",
        sinkBacklog: 10,
      });
      const scratch = mkdtempSync(join(tmpdir(), "events-mx-"));
      writeFileSync(join(scratch, "mx.js"), MX_SCRIPT);
      mx = spawn(tool("ip") as string, ["netns", "exec", inst.ns, process.execPath, join(scratch, "mx.js")], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      let mxUp = false;
      mx.stdout?.on("data", () => (mxUp = true));
      await waitFor(() => mxUp, "the test MX");
      // Next hop: the test MX; short retry times so the 450 is retried within seconds.
      const pc = run(tool("postconf") as string, [
        "-c",
        inst.etc,
        "-e",
        `relayhost=[127.0.0.1]:${MX_PORT}`,
        "minimal_backoff_time=1s",
        "maximal_backoff_time=2s",
        "queue_run_delay=1s",
        "smtp_tls_security_level=none",
      ]);
      expect(pc.status, pc.stderr).toBe(0);
      expect(inst.inNs(tool("postfix") as string, ["-c", inst.etc, "reload"]).status).toBe(0);

      receiver = createServer((req, res) => {
        let b = "";
        req.on("data", (c) => (b += c));
        req.on("end", () => {
          got.push({ headers: req.headers, body: b });
          res.end();
        });
      });
      await new Promise<void>((r) => receiver?.listen(0, "127.0.0.1", r));

      queueRoot = mkdtempSync(join(tmpdir(), "events-queue-"));
      process.env.MAIL_CONFIG = inst.etc; // sendmail (postdrop) writes into this instance's maildrop
      relay = await startServer(
        {
          QUEUE_ROOT: queueRoot,
          RELAY_LISTEN: "127.0.0.1:0",
          SMTP_RELAY_TOKEN: `app=${TOKEN}`,
          RELAY_ALLOWED_FROM: "noreply@example.com",
          RELAY_MESSAGE_ID_DOMAIN: "example.com",
          RELAY_HANDOFF: "sendmail",
          SENDMAIL_PATH: tool("sendmail") as string,
          RELAY_POSTFIX_LOG: join(inst.base, "maillog"),
          RELAY_WEBHOOK_URLS: "app=https://hooks.example.com/mail",
          RELAY_WEBHOOK_SECRETS: `app=${secret}`,
          LOG_LEVEL: "warn",
        },
        { installSignalHandlers: false },
      );
      relayAddress = relay.address.replace(/^http:\/\//, "");
    }, 120_000);

    afterAll(async () => {
      await relay?.close();
      delete process.env.MAIL_CONFIG;
      await new Promise<void>((r) => (receiver ? receiver.close(() => r()) : r()));
      mx?.kill("SIGTERM");
      inst?.stop();
      if (queueRoot) rmSync(queueRoot, { recursive: true, force: true });
    });

    let id = "";
    it("GET /messages/:id shows each recipient's outcome and the MX's reply: delivered, deferred then delivered, bounced 5.1.1", async () => {
      const sent = await api("POST", "/send", {
        from: "noreply@example.com",
        to: ["ok@example.net", "later@example.net", "gone@example.net"],
        subject: "delivery events",
        text: "hello",
      });
      expect(sent.status).toBe(202);
      id = sent.json.id ?? "";
      let msg: ApiAnswer["message"];
      const end = Date.now() + 60_000;
      for (;;) {
        msg = (await api("GET", `/messages/${id}`)).json.message;
        const later = msg?.recipients?.find((r) => r.email === "later@example.net");
        if (later?.state === "delivered" && msg?.recipients?.every((r) => r.state !== "pending")) break;
        if (Date.now() > end) throw new Error(`timed out: ${JSON.stringify(msg)}\n${inst.maillog().slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 500));
      }
      expect(msg?.state).toBe("partially_delivered");
      const by = (e: string) => msg?.recipients?.find((r) => r.email === e);
      expect(by("ok@example.net")).toMatchObject({ state: "delivered", dsn: "2.0.0", attempts: 1 });
      expect(by("ok@example.net")?.remoteReply).toMatch(/250 2\.0\.0 accepted by the test MX/);
      expect(by("later@example.net")).toMatchObject({ state: "delivered", attempts: 2 });
      expect(by("gone@example.net")).toMatchObject({ state: "bounced", dsn: "5.1.1" });
      expect(by("gone@example.net")?.remoteReply).toMatch(
        /550 5\.1\.1 <gone@example\.net>: Recipient address rejected: User unknown/,
      );
      expect(inst.maillog()).toMatch(/status=deferred .*450 4\.2\.0/); // the deferral really happened
    }, 90_000);

    it("gone@ is now suppressed: a later /send to it is 422 recipient_suppressed", async () => {
      const r = await api("POST", "/send", {
        from: "noreply@example.com",
        to: "gone@example.net",
        subject: "again",
        text: "hello",
      });
      expect(r.status).toBe(422);
      expect(r.json.error).toMatchObject({ code: "recipient_suppressed" });
      expect((await api("GET", "/suppressions")).json.suppressions).toEqual([
        expect.objectContaining({
          email: "gone@example.net",
          reason: "hard_bounce",
          origin: "automatic",
          messageId: id,
        }),
      ]);
    });

    it("the outbox the relay wrote is delivered with signatures the standardwebhooks package verifies", async () => {
      const port = (receiver?.address() as AddressInfo).port;
      const sender = new WebhookSender({
        outbox: new WebhookOutbox(queueRoot),
        webhooks: new Map([["app", { url: `http://127.0.0.1:${port}/hooks`, secrets: [secret] }]]),
        log: captureLog().log,
        unsafeAllowLoopbackForTests: true,
      });
      await sender.runOnce();
      const payloads = got.map(
        (g) => new Webhook(secret).verify(g.body, g.headers as Record<string, string>) as WebhookPayload,
      );
      const types = payloads.map((p) => `${p.type} ${String(p.data.to)}`).sort();
      expect(types).toEqual([
        "email.bounced gone@example.net",
        "email.delivered later@example.net",
        "email.delivered ok@example.net",
        "email.suppressed gone@example.net",
      ]);
      expect(payloads.find((p) => p.type === "email.bounced")?.data.bounce).toMatchObject({
        type: "hard",
        dsn: "5.1.1",
      });
    });
  },
);
