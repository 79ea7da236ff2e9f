import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { EXIT_CONFIG } from "../../relay/host-contract";
import { missing } from "../../testkit/real-tools";
import { BUNDLE, haveBundle, startBundle, waitHandedOff, type BundleProcess } from "./bundle-process";
import { tempDir } from "./fixtures";

const TOKEN = "bundle-test-token-0123456789abcdefghij";
const skip = missing("bundle tests", {
  check: () => (haveBundle ? undefined : `${BUNDLE} is missing; run \`npm run build\` (npm test does)`),
});

const tmp = tempDir("relay-bundle-");
const running: BundleProcess[] = [];
afterAll(async () => {
  for (const p of running) await p.stop("SIGKILL");
  tmp.cleanup();
});

const current = { bin: process.execPath, env: {} };

describe.skipIf(skip)(
  "the bundled relay (relay/dist/relay.js), copied alone into an empty directory, on this machine's node",
  () => {
    it("serves /health and /send, hands off to a fake sendmail (a script that records its arguments), and stops cleanly on SIGTERM", async () => {
      const dir = path.join(tmp.dir, "serve");
      const relay = await startBundle(dir, TOKEN, current);
      running.push(relay);
      expect((await (await fetch(`${relay.url}/health`)).text()).split("\n")[0]).toBe("ok"); // a second line while the index loads
      const res = await fetch(`${relay.url}/send`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({
          to: "user@example.net",
          bcc: "audit@example.org",
          from: "noreply@example.com",
          subject: "bundle",
          html: "<p>hi</p>",
        }),
      });
      expect(res.status).toBe(202);
      const { id } = (await res.json()) as { id: string };
      expect((await waitHandedOff(relay, TOKEN, id)).state).toBe("handed_off");
      const argsFile = readdirSync(dir).find((f) => f.startsWith("sendmail-args."));
      expect(
        readFileSync(path.join(dir, argsFile as string), "utf8")
          .trim()
          .split("\n"),
      ).toEqual(["-i", "-f", "noreply@example.com", "--", "user@example.net", "audit@example.org"]);
      expect(existsSync(path.join(dir, "queue", "relay.pid"))).toBe(true);
      expect(await relay.stop("SIGTERM")).toBe(0);
      expect(existsSync(path.join(dir, "queue", "relay.pid"))).toBe(false);
      expect(relay.stdout()).toMatch(/"msg":"stopped"/);
      expect(relay.stdout()).not.toContain(TOKEN);

      const list = execFileSync(process.execPath, [path.join(dir, "app", "relay.js"), "queue", "list"], {
        env: { QUEUE_ROOT: path.join(dir, "queue") },
      }).toString();
      expect(list.split("\n")[0]).toMatch(/^id\tstate/);
    });

    it("a job in processing/ when the relay died is sent after the next start", async () => {
      const dir = path.join(tmp.dir, "recover");
      const first = await startBundle(dir, TOKEN, current, {
        SENDMAIL_PATH: "/bin/false",
        QUEUE_RETRY_BASE_MS: "600000",
      });
      running.push(first);
      const res = await fetch(`${first.url}/send`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ to: "user@example.net", from: "noreply@example.com", subject: "recover", text: "x" }),
      });
      const { id } = (await res.json()) as { id: string };
      await first.stop("SIGKILL");
      const { renameSync } = await import("node:fs");
      const pendingFile = path.join(dir, "queue", "pending", `${id}.json`);
      // As if killed mid hand-off: the job sits in processing/.
      if (existsSync(pendingFile)) renameSync(pendingFile, path.join(dir, "queue", "processing", `${id}.json`));
      expect(readdirSync(path.join(dir, "queue", "processing"))).toEqual([`${id}.json`]);
      const second = await startBundle(dir, TOKEN, current);
      running.push(second);
      expect(second.stdout()).toMatch(/"recoveredFromProcessing":1/);
      expect((await waitHandedOff(second, TOKEN, id)).state).toBe("handed_off");
      await second.stop();
    });

    it("refuses to start on a bad environment with exit 78 and every bad variable named", () => {
      const r = spawnSync(process.execPath, [BUNDLE], {
        env: { PATH: process.env.PATH, SMTP_RELAY_TOKEN: "short", QUEUE_MAX_ATTEMPTS: "x" },
      });
      expect(r.status).toBe(EXIT_CONFIG); // what the unit's RestartPreventExitStatus names
      const err = r.stderr.toString();
      for (const v of ["SMTP_RELAY_TOKEN", "RELAY_ALLOWED_FROM", "QUEUE_MAX_ATTEMPTS"]) expect(err).toContain(v);
      expect(err).not.toContain("short");
    });
  },
);
