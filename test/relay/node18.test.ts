import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { SMTPServer } from "smtp-server";
import { afterAll, describe, expect, it } from "vitest";
import { missing } from "../../testkit/real-tools";
import {
  BUNDLE,
  haveBundle,
  haveNode18,
  NODE18,
  NODE18_DIR,
  sendAndWait,
  startBundle,
  type BundleProcess,
} from "./bundle-process";
import { tempDir, fakePostfix } from "./fixtures";

const TOKEN = "node18-test-token-0123456789abcdefghijk";
const skip = missing("Node 18 tests", {
  check: () =>
    !haveNode18
      ? `${NODE18_DIR} is missing; run \`bash .ci/node18.sh\` (.ci/run does)`
      : !haveBundle
        ? `${BUNDLE} is missing; run \`npm run build\``
        : undefined,
});

const tmp = tempDir("relay-node18-");
let relay: BundleProcess | undefined;
let smtpRelay: BundleProcess | undefined;
let sink: SMTPServer | undefined;
afterAll(async () => {
  await relay?.stop("SIGKILL");
  await smtpRelay?.stop("SIGKILL");
  await new Promise<void>((r) => (sink ? sink.close(() => r()) : r()));
  tmp.cleanup();
});

describe.skipIf(skip)("the bundle runs on Debian 12's Node 18 (what the host installs)", () => {
  it("the interpreter really is Node 18", () => {
    expect(execFileSync(NODE18.bin, ["--version"], { env: { ...process.env, ...NODE18.env } }).toString()).toMatch(
      /^v18\./,
    );
  });

  it("serves /health and accepts a /send that is handed to a fake sendmail (a script)", async () => {
    relay = await startBundle(path.join(tmp.dir, "r"), TOKEN, NODE18);
    expect((await (await fetch(`${relay.url}/health`)).text()).split("\n")[0]).toBe("ok"); // a second line while the index loads
    const message = await sendAndWait(relay, TOKEN, {
      to: "user@example.net",
      from: { email: "noreply@example.com", name: "Node 18" },
      subject: "node 18 round trip",
      html: "<p>hello</p>",
      attachments: [{ filename: "a.txt", contentType: "text/plain", content: "aGk=" }],
    });
    expect(message.state).toBe("handed_off");
    // fetch keeps its socket alive: Node 18's server.close() alone would wait for it (seen: 60 s hang).
    const t0 = Date.now();
    expect(await relay.stop("SIGTERM")).toBe(0);
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it("hands off over SMTP (the default) to a fake Postfix (smtp-server) through its TCP_NODELAY socket factory and records the queue id", async () => {
    const fake = await fakePostfix("N18ABC");
    sink = fake.server;
    const { received } = fake;
    const port = fake.port;
    smtpRelay = await startBundle(path.join(tmp.dir, "smtp"), TOKEN, NODE18, {
      RELAY_HANDOFF: `smtp://127.0.0.1:${port}`,
    });
    const message = await sendAndWait(smtpRelay, TOKEN, {
      to: "user@example.net",
      from: "noreply@example.com",
      subject: "node 18 smtp",
      text: "hello",
    });
    expect(message).toMatchObject({ state: "handed_off", postfixQueueId: "N18ABC" });
    expect(received).toHaveLength(1);
    expect(received[0]).toMatch(/^Subject: node 18 smtp$/m);
    expect(await smtpRelay.stop("SIGTERM")).toBe(0);
  });
});
