import { randomUUID } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runQueueCli } from "../../relay/cli";
import { QueueStore, type Job } from "../../relay/storage/queue";
import { queueOptions, tempDir } from "./fixtures";

const dirs: { cleanup(): void }[] = [];
afterEach(() => {
  while (dirs.length) dirs.pop()?.cleanup();
});

async function setup() {
  const t = tempDir("relay-cli-");
  dirs.push(t);
  const q = new QueueStore(queueOptions(t.dir, { maxAttempts: 1 }));
  await q.open();
  const mk = (subject: string): Job => ({
    id: randomUUID(),
    caller: "billing",
    createdAt: Date.now(),
    attempts: 0,
    nextAttemptAt: Date.now(),
    envelope: { from: "noreply@example.com", to: ["a@example.net"] },
    subject,
    recipientDomains: ["example.net"],
    tags: [],
    raw: `Subject: ${subject}\r\n\r\nbody of ${subject}\r\n`,
  });
  const pending = mk("still pending");
  const failing = mk("will fail");
  await q.enqueue(failing);
  await q.markAttemptFailed((await q.claimNext()) as Job, "SMTP 451 4.7.1 try later", false);
  await q.enqueue(pending);
  return { root: t.dir, pending, failing };
}

async function cli(root: string, ...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runQueueCli(args, { QUEUE_ROOT: root }, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("queue CLI (the rollback tools)", () => {
  it("list shows pending and failed jobs with caller, attempts and subject", async () => {
    const { root, pending, failing } = await setup();
    const r = await cli(root, "list");
    expect(r.code).toBe(0);
    const rows = r.out
      .split("\n")
      .slice(1)
      .map((l) => l.split("\t"));
    expect(rows.map((c) => [c[0], c[1], c[2]]).sort()).toEqual(
      [
        [pending.id, "pending", "0"],
        [failing.id, "failed", "1"],
      ].sort(),
    );
    expect(r.out).toContain('"will fail"');
    expect((await cli(root, "list", "failed")).out).not.toContain(pending.id);
  });

  it("show prints the job with its recipients and last error, and --raw the MIME message", async () => {
    const { root, failing } = await setup();
    const r = await cli(root, "show", failing.id);
    expect(JSON.parse(r.out)).toMatchObject({
      state: "failed",
      lastError: "SMTP 451 4.7.1 try later",
      envelope: { to: ["a@example.net"] },
    });
    expect((await cli(root, "show", failing.id, "--raw")).out).toContain("body of will fail");
    expect((await cli(root, "show", randomUUID())).code).toBe(1);
  });

  it("retry moves a failed job back to pending/, due now, with attempts reset", async () => {
    const { root, failing } = await setup();
    expect((await cli(root, "retry", failing.id)).code).toBe(0);
    expect(existsSync(path.join(root, "pending", `${failing.id}.json`))).toBe(true);
    expect(existsSync(path.join(root, "failed", `${failing.id}.json`))).toBe(false);
    const q = new QueueStore(queueOptions(root));
    await q.open();
    expect(await q.status(failing.id)).toMatchObject({ state: "queued", attempts: 0 });
  });

  it("retry-failed moves every failed job; drop deletes one job for good", async () => {
    const { root, pending, failing } = await setup();
    expect((await cli(root, "retry-failed")).out).toMatch(/^1 failed job/);
    expect((await cli(root, "drop", pending.id)).code).toBe(0);
    expect(existsSync(path.join(root, "pending", `${pending.id}.json`))).toBe(false);
    expect(existsSync(path.join(root, "pending", `${failing.id}.json`))).toBe(true);
    expect((await cli(root, "drop", pending.id)).code).toBe(1);
  });

  it("mutating commands refuse while the relay is running (pid file of a live process)", async () => {
    const { root, failing } = await setup();
    writeFileSync(path.join(root, "relay.pid"), `${process.ppid}\n`); // a live process that is not the CLI
    const r = await cli(root, "retry", failing.id);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/relay is running/);
    expect(existsSync(path.join(root, "failed", `${failing.id}.json`))).toBe(true);
    expect((await cli(root, "list")).code).toBe(0); // reading is fine
  });

  it("an id that is not a job id never reaches the filesystem", async () => {
    const { root } = await setup();
    expect((await cli(root, "drop", "../../etc/passwd")).code).toBe(1);
    expect((await cli(root, "show", "../pending")).code).toBe(1);
  });

  it("unknown commands print usage with exit 2", async () => {
    const { root } = await setup();
    const r = await cli(root, "purge");
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/usage: relay.js queue/);
  });
});
