// The bundle's webhook sender (`node relay.js webhooks`, as mail-relay-webhooks.service runs it) delivering to a
// host-name URL on Debian 12's Node 18 and on this machine's Node 20, with nothing of the relay's checks switched
// off: https only, the system resolver, no test hook. Each run lives in its own network and mount namespace
// (unshare): the receiver holds a documentation-range address (203.0.113.80, 2001:db8::80) on that namespace's
// loopback device, so no packet leaves it, and a private /etc/hosts (bind-mounted there only) names it.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { Webhook } from "standardwebhooks";
import { afterAll, describe, expect, it } from "vitest";
import { WebhookOutbox } from "../../../relay/storage/webhook-outbox";
import { deliveryPayload } from "../../../relay/webhooks/payload";
import { newWebhookSecret } from "../../../relay/webhooks/signature";
import { missing } from "../../../testkit/real-tools";
import { haveOpenssl } from "../../../testkit/self-signed-cert";
import { BUNDLE, haveBundle, haveNode18, NODE18, NODE18_DIR, type NodeRuntime } from "../bundle-process";
import { tempDir } from "../fixtures";

const skip = missing("the bundle's webhook sender by host name", {
  tools: ["unshare", "ip", "mount"],
  root: true,
  check: () =>
    !haveBundle
      ? `${BUNDLE} is missing; run \`npm run build\``
      : !haveNode18
        ? `${NODE18_DIR} is missing; run \`bash .ci/node18.sh\` (.ci/run does)`
        : !haveOpenssl
          ? "openssl is not installed"
          : undefined,
});

const RECEIVER_V4 = "203.0.113.80";
const RECEIVER_V6 = "2001:db8::80";
const HOSTS = [
  "127.0.0.1 localhost",
  "::1 localhost",
  // one public name on both families (Node 20 tries the list in turn), one that mixes in a loopback address
  `${RECEIVER_V4} hooks.example.test`,
  `${RECEIVER_V6} hooks.example.test`,
  `${RECEIVER_V4} mixed.example.test`,
  "127.0.0.1 mixed.example.test",
].join("\n");

/** An https receiver on every address of the namespace (so a connection to any of them would arrive). */
const RECEIVER = `
import { createServer } from "node:https";
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
const [dir] = process.argv.slice(2);
const server = createServer(
  { key: readFileSync(dir + "/key.pem"), cert: readFileSync(dir + "/cert.pem") },
  (req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      appendFileSync(dir + "/got.jsonl", JSON.stringify({ headers: req.headers, body, local: req.socket.localAddress }) + "\\n");
      res.end();
    });
  },
);
server.listen({ port: 443, host: "::", ipv6Only: false }, () => writeFileSync(dir + "/ready", "1"));
`;

const WRAPPER = `
set -e
ip link set lo up
ip addr add ${RECEIVER_V4}/32 dev lo
ip addr add ${RECEIVER_V6}/128 dev lo nodad
mount --bind "$DIR/hosts" /etc/hosts
"$RECEIVER_NODE" "$DIR/receiver.mjs" "$DIR" &
for i in $(seq 100); do [ -e "$DIR/ready" ] && break; sleep 0.05; done
exec "$NODE_BIN" "$DIR/app/relay.js" webhooks
`;

const started: ChildProcess[] = [];
const tmp = tempDir("webhook-hostname-");
afterAll(async () => {
  for (const c of started) {
    try {
      process.kill(-(c.pid as number), "SIGKILL");
    } catch {
      /* already gone */
    }
  }
  tmp.cleanup();
});

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, log: () => string): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`waited for ${what}: not within 20 s; the sender's output:\n${log()}`);
}

const runtimes: [string, NodeRuntime][] = [
  ["Debian 12's Node 18", NODE18],
  [`this machine's Node ${process.versions.node.split(".")[0]}`, { bin: process.execPath, env: {} }],
];

describe.skipIf(skip)("webhooks to a host-name URL, the bundle's sender in a namespace of its own", () => {
  it.each(runtimes)(
    "on %s: a name resolving to public addresses is delivered; a name mixing in loopback is refused whole",
    async (label, node) => {
      const dir = path.join(tmp.dir, label.replace(/\W+/g, "-"));
      mkdirSync(path.join(dir, "app"), { recursive: true });
      copyFileSync(BUNDLE, path.join(dir, "app", "relay.js"));
      writeFileSync(path.join(dir, "hosts"), `${HOSTS}\n`);
      writeFileSync(path.join(dir, "receiver.mjs"), RECEIVER);
      execFileSync(
        "openssl",
        [
          ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
          ...["-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem"), "-days", "2"],
          ...[
            "-subj",
            "/CN=hooks.example.test",
            "-addext",
            "subjectAltName=DNS:hooks.example.test,DNS:mixed.example.test",
          ],
        ],
        { stdio: "ignore" },
      );
      const queueRoot = path.join(dir, "queue");
      const secrets = { app: newWebhookSecret(), billing: newWebhookSecret() };
      const outbox = new WebhookOutbox(queueRoot);
      await outbox.open();
      const event = {
        id: "evt_host",
        messageId: "6f1c2d3e-0000-4000-8000-000000000001",
        caller: "app",
        recipient: "user@example.net",
        state: "delivered" as const,
        at: Date.now(),
        attempts: 1,
      };
      await outbox.add("evt_host", "app", deliveryPayload(event), Date.now());
      await outbox.add(
        "evt_mixed",
        "billing",
        deliveryPayload({ ...event, id: "evt_mixed", caller: "billing" }),
        Date.now(),
      );

      const env: Record<string, string> = {
        PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
        ...node.env,
        DIR: dir,
        NODE_BIN: node.bin,
        RECEIVER_NODE: process.execPath,
        // the receiver's self-signed certificate is trusted the way an operator adds a CA, nothing turned off
        NODE_EXTRA_CA_CERTS: path.join(dir, "cert.pem"),
        QUEUE_ROOT: queueRoot,
        SMTP_RELAY_TOKEN: "app=webhook-hostname-token-0123456789abcdef,billing=webhook-hostname-token-fedcba9876543210",
        RELAY_ALLOWED_FROM: "noreply@example.com",
        RELAY_WEBHOOK_URLS: "app=https://hooks.example.test/hooks,billing=https://mixed.example.test/hooks",
        RELAY_WEBHOOK_SECRETS: `app=${secrets.app},billing=${secrets.billing}`,
      };
      const child = spawn("unshare", ["--net", "--mount", "sh", "-c", WRAPPER], {
        env,
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
      });
      started.push(child);
      let out = "";
      child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
      child.stderr?.on("data", (c: Buffer) => (out += c.toString()));

      const gotFile = path.join(dir, "got.jsonl");
      const got = await waitFor(
        "the webhook to hooks.example.test to arrive",
        async () => {
          // only whole lines: the receiver may have created the file and not yet finished writing its line
          const lines = existsSync(gotFile) ? readFileSync(gotFile, "utf8").split("\n").slice(0, -1) : [];
          return lines.length > 0
            ? lines.map((l) => JSON.parse(l) as { headers: Record<string, string>; body: string; local: string })
            : undefined;
        },
        () => out,
      );
      const refused = await waitFor(
        "the webhook to mixed.example.test to be refused",
        async () => (await outbox.list("pending")).find((i) => i.id === "evt_mixed" && i.lastError),
        () => out,
      );
      process.kill(-(child.pid as number), "SIGTERM");

      expect(got).toHaveLength(1);
      const [hit] = got;
      expect(hit?.headers.host).toBe("hooks.example.test");
      expect([RECEIVER_V4, RECEIVER_V6, `::ffff:${RECEIVER_V4}`]).toContain(hit?.local);
      expect(() => new Webhook(secrets.app).verify(hit!.body, hit!.headers)).not.toThrow();
      expect(out).not.toMatch(/Invalid IP address/);
      expect(refused.lastError).toBe(
        "refused: mixed.example.test resolves to 127.0.0.1 (private, loopback, link-local or metadata)",
      );
      expect((await outbox.list("pending")).map((i) => i.id)).toEqual(["evt_mixed"]);
    },
    40_000,
  );
});
