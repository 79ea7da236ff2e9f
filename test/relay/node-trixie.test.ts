// The bundle on Debian 13's own Node (what a debian-13 host installs from the user-data's package list), taken from the
// trixie tools image (the rehearsal image with the user-data's packages installed from its own local repository: one
// source for the rehearsal's host and this test) and run in a chroot of it. node18.test.ts does the same for Debian 12.
import * as path from "node:path";
import type { SMTPServer } from "smtp-server";
import { fakePostfix } from "./fixtures";
import { afterAll, describe, expect, it } from "vitest";
import { RELEASES, releaseName } from "../../cloud-init/release";
import { TOOLS_SCRATCH } from "../../rehearsal/image";
import { missing, removeDir, safeScratchDir } from "../../testkit/real-tools";
import { eachRelease, type ReleaseTools } from "../cloud-init/release-tools";
import { BUNDLE, haveBundle, sendAndWait, startBundle, type BundleProcess, type NodeRuntime } from "./bundle-process";

const TOKEN = "trixie-node-test-token-0123456789abcdef";
const release = "trixie" as const;
const major = RELEASES[release].ships.node;
const { tools, skip: noTools } = eachRelease(`Debian's Node ${major}`, ["node"]).find((r) => r.release === release)!;
const skip =
  noTools ??
  missing(`the bundle on ${releaseName(release)}'s Node`, {
    scratch: true,
    check: () => (haveBundle ? undefined : `${BUNDLE} is missing; run \`npm run build\``),
  });

/**
 * Node inside the release's root; the bundle and its queue live in the scratch directory, which is the same path
 * inside.
 */
function releaseNode(t: ReleaseTools): NodeRuntime {
  return { bin: "node", env: {}, command: ([bin, ...args], env) => t.command(bin, args, { env }) };
}

let dir = "";
const started: BundleProcess[] = [];
let sink: SMTPServer | undefined;
afterAll(async () => {
  for (const r of started) await r.stop("SIGKILL");
  await new Promise<void>((r) => (sink ? sink.close(() => r()) : r()));
  if (dir) removeDir(dir);
});

async function start(name: string, extraEnv: Record<string, string> = {}): Promise<BundleProcess> {
  dir ||= safeScratchDir("relay-node-trixie-");
  expect(dir.startsWith(`${TOOLS_SCRATCH}/`)).toBe(true);
  const r = await startBundle(path.join(dir, name), TOKEN, releaseNode(tools!), extraEnv);
  started.push(r);
  return r;
}

describe.skipIf(skip)(`the bundle runs on ${releaseName(release)}'s Node ${major} (what the host installs)`, () => {
  it(`the interpreter is the release's own nodejs package, Node ${major}`, () => {
    const v = tools!.run("node", ["--version"]);
    expect(v.stdout.trim()).toMatch(new RegExp(`^v${major}\\.`));
    // Debian's package, not a build from elsewhere: dpkg in the release's root owns the binary.
    expect(tools!.run("dpkg", ["-S", "/usr/bin/nodejs"]).stdout).toMatch(/^nodejs: /);
  });

  it("serves /health and accepts a /send that is handed to a fake sendmail (a script)", async () => {
    const relay = await start("r");
    expect((await (await fetch(`${relay.url}/health`)).text()).split("\n")[0]).toBe("ok");
    const message = await sendAndWait(relay, TOKEN, {
      to: "user@example.net",
      from: { email: "noreply@example.com", name: `Node ${major}` },
      subject: `node ${major} round trip`,
      html: "<p>hello</p>",
      attachments: [{ filename: "a.txt", contentType: "text/plain", content: "aGk=" }],
    });
    expect(message.state).toBe("handed_off");
    const t0 = Date.now();
    expect(await relay.stop("SIGTERM")).toBe(0);
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it("hands off over SMTP (the default) to a fake Postfix (smtp-server) and records the queue id", async () => {
    const fake = await fakePostfix("N20ABC");
    sink = fake.server;
    const { received } = fake;
    const port = fake.port;
    const relay = await start("smtp", { RELAY_HANDOFF: `smtp://127.0.0.1:${port}` });
    const message = await sendAndWait(relay, TOKEN, {
      to: "user@example.net",
      from: "noreply@example.com",
      subject: `node ${major} smtp`,
      text: "hello",
    });
    expect(message).toMatchObject({ state: "handed_off", postfixQueueId: "N20ABC" });
    expect(received).toHaveLength(1);
    expect(received[0]).toMatch(new RegExp(`^Subject: node ${major} smtp$`, "m"));
    expect(await relay.stop("SIGTERM")).toBe(0);
  });
});
