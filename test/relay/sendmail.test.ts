import { EventEmitter } from "node:events";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { PassThrough } from "node:stream";
import type { ChildProcess } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { SendmailHandoff, sendmailArgs } from "../../relay/handoff/sendmail";
import { HandoffError } from "../../relay/handoff/types";
import { tempDir } from "./fixtures";

const tmp = tempDir("relay-sendmail-");
afterAll(() => tmp.cleanup());

/** A fake sendmail: records argv and stdin, then behaves as $MODE says. */
function fakeSendmail(name: string, body: string): string {
  const p = path.join(tmp.dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}
const out = (f: string) => path.join(tmp.dir, f);

const msg = {
  id: "m1",
  from: "noreply@example.com",
  to: ["a@example.net", "b@example.org"],
  raw: "Subject: hi\r\n\r\nline\r\n.\r\nafter the dot\r\n",
};

describe("sendmail hand-off, against fake sendmail scripts", () => {
  it("passes -i -f <from> -- and explicit recipients as separate arguments, and the message on stdin", async () => {
    const bin = fakeSendmail(
      "ok.sh",
      `for a in "$@"; do printf '%s\\n' "$a"; done > ${out("argv")}\ncat > ${out("stdin")}\nexit 0`,
    );
    const h = new SendmailHandoff({ path: bin, timeoutMs: 5000 });
    await expect(h.send(msg)).resolves.toEqual({});
    expect(readFileSync(out("argv"), "utf8").trim().split("\n")).toEqual([
      "-i",
      "-f",
      "noreply@example.com",
      "--",
      "a@example.net",
      "b@example.org",
    ]);
    expect(readFileSync(out("stdin"), "utf8")).toBe(msg.raw);
    expect(sendmailArgs("x@y.z", ["r@y.z"])).not.toContain("-t"); // -t would lose Bcc: the composer strips that header
  });

  it("a shell never sees the message: quotes and $(...) in addresses or body are inert", async () => {
    const bin = fakeSendmail("argv2.sh", `printf '%s\\n' "$@" > ${out("argv2")}\ncat > /dev/null`);
    const h = new SendmailHandoff({ path: bin, timeoutMs: 5000 });
    const marker = out("pwned");
    await h.send({ ...msg, to: [`"$(touch ${marker})"@example.net`], raw: `$(touch ${marker})` });
    expect(existsSync(marker)).toBe(false);
    expect(readFileSync(out("argv2"), "utf8")).toContain(`"$(touch ${marker})"@example.net`);
  });

  it("a non-zero exit is a (temporary) failure carrying the exit code and stderr", async () => {
    const bin = fakeSendmail(
      "fail.sh",
      `cat > /dev/null\necho "postdrop: warning: unable to look up public/pickup" >&2\nexit 75`,
    );
    const err = await new SendmailHandoff({ path: bin, timeoutMs: 5000 }).send(msg).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HandoffError);
    expect((err as HandoffError).message).toMatch(/exited with 75: postdrop: warning/);
    expect((err as HandoffError).permanent).toBe(false);
  });

  it("a missing binary is a failure, not a crash", async () => {
    const err = await new SendmailHandoff({ path: out("does-not-exist"), timeoutMs: 5000 })
      .send(msg)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HandoffError);
    expect((err as Error).message).toMatch(/ENOENT/);
  });

  it("a sendmail that hangs is killed after the timeout and the attempt fails", async () => {
    const pidFile = out("hang.pid");
    const bin = fakeSendmail("hang.sh", `echo $$ > ${pidFile}\nexec sleep 30`);
    const started = Date.now();
    const err = await new SendmailHandoff({ path: bin, timeoutMs: 300, killGraceMs: 200 })
      .send(msg)
      .catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(3000);
    expect((err as Error).message).toMatch(/did not finish within 300 ms; killed/);
    const pid = Number(readFileSync(pidFile, "utf8"));
    await new Promise((r) => setTimeout(r, 500));
    expect(() => process.kill(pid, 0)).toThrow(); // the process is gone
  });

  it("exit 0 without reading the whole message is not trusted", async () => {
    const bin = fakeSendmail("noread.sh", "exit 0");
    const big = { ...msg, raw: "x".repeat(4 * 1024 * 1024) };
    const r = await new SendmailHandoff({ path: bin, timeoutMs: 5000 }).send(big).then(
      () => "resolved",
      (e: Error) => e.message,
    );
    expect(r).toMatch(/did not read the whole message/);
  });

  it("an address starting with '-' is refused before anything is spawned", async () => {
    const h = new SendmailHandoff({ path: "/bin/true", timeoutMs: 1000 });
    let spawned = 0;
    h._spawn = () => {
      spawned++;
      throw new Error("must not spawn");
    };
    for (const bad of [
      { ...msg, to: ["-oQ/tmp/evil"] },
      { ...msg, from: "-bs" },
    ]) {
      const err = await h.send(bad).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HandoffError);
      expect((err as HandoffError).permanent).toBe(true);
    }
    expect(spawned).toBe(0);
  });

  it("settles exactly once: the first of error/close decides, and a settled attempt is never killed by its timer", async () => {
    const h = new SendmailHandoff({ path: "/fake/sendmail", timeoutMs: 100 });
    let child!: EventEmitter;
    let kills = 0;
    h._spawn = () => {
      child = Object.assign(new EventEmitter(), {
        stdin: new PassThrough(),
        stderr: new PassThrough(),
        kill: () => ++kills > 0,
      });
      return child as unknown as ChildProcess;
    };
    const first = h.send(msg).then(
      () => "resolved",
      (e: Error) => e.message,
    );
    child.emit("error", new Error("spawn EACCES"));
    child.emit("close", 0, null);
    child.emit("close", 1, null);
    expect(await first).toMatch(/cannot run \/fake\/sendmail: spawn EACCES/);

    const second = h.send(msg).then(
      () => "resolved",
      (e: Error) => e.message,
    );
    child.emit("close", 0, null);
    child.emit("error", new Error("late error"));
    expect(await second).toBe("resolved");
    await new Promise((r) => setTimeout(r, 250)); // past timeoutMs
    expect(kills).toBe(0);
  });
});
