import { promises as fs } from "node:fs";
import * as path from "node:path";
import { DurableWriter, fsyncDir } from "./storage";
import { isJobId, jobFile, readJobFile, readSentRecord, type Job, type JobState, type SentRecord } from "./storage";
import { scanJsonFiles } from "./json-scan";
import { readSentLog } from "./storage";

type Waiting = "pending" | "processing" | "failed";

/**
 * The operator's commands behind `relay.js queue ...`: read and change job files directly, with the relay stopped
 * (cli.ts refuses mutations while it runs), so there is no index to keep in step. Writes are durable, like the relay's.
 */
export class QueueAdmin {
  readonly root: string;
  private readonly writer: DurableWriter;
  private readonly now: () => number;

  constructor(root: string, now: () => number = Date.now) {
    this.root = root;
    this.now = now;
    this.writer = new DurableWriter(path.join(root, "tmp"));
  }

  /** A job or hand-off record, wherever it is. */
  async find(id: string): Promise<{ state: JobState; job?: Job; sent?: SentRecord } | undefined> {
    if (!isJobId(id)) return undefined;
    const found = await readJobFile(this.root, id, ["pending", "processing", "failed"]);
    if (found) return found;
    let sent = await readSentRecord(this.root, id); // a record of the sent/ directory the relay has not moved yet
    await readSentLog(this.root, (rec) => {
      if (rec.id === id) sent = rec; // the latest line wins
    });
    return sent ? { state: "sent", sent } : undefined;
  }

  /** Every job in the given states, oldest first (unreadable files are skipped). */
  async list(states: readonly Waiting[]): Promise<{ state: JobState; job: Job }[]> {
    const out: { state: JobState; job: Job }[] = [];
    for (const state of states) {
      const dir = path.join(this.root, state);
      await scanJsonFiles(
        dir,
        (_name, file) => {
          if (file.ok) out.push({ state, job: file.value as Job });
        },
        { withoutRaw: true },
      ); // a listing shows no message text
    }
    return out.sort((a, b) => a.job.createdAt - b.job.createdAt);
  }

  /** Puts a pending or failed job back to pending/, due now, with a fresh attempt count. */
  async retry(id: string): Promise<"pending" | "failed"> {
    const found = await this.find(id);
    if (!found || !found.job || found.state === "sent") throw new Error(`no pending or failed job ${id}`);
    if (found.state === "processing")
      throw new Error(`job ${id} is in processing/; start and stop the relay once, or retry it after recovery`);
    const job: Job = Object.assign({}, found.job, { attempts: 0, nextAttemptAt: this.now() });
    delete job.failedAt;
    await this.writer.write(path.join(this.root, "pending"), `${id}.json`, JSON.stringify(job));
    if (found.state === "failed") await fs.rm(jobFile(this.root, "failed", id), { force: true });
    return found.state;
  }

  /** Deletes a pending or failed job for good. */
  async drop(id: string): Promise<"pending" | "failed"> {
    const found = await this.find(id);
    if (!found || found.state === "sent" || found.state === "processing")
      throw new Error(`no pending or failed job ${id}`);
    await fs.rm(jobFile(this.root, found.state, id));
    await fsyncDir(path.join(this.root, found.state));
    return found.state;
  }

  /** Moves every failed job back to pending/. */
  async retryFailed(): Promise<string[]> {
    const ids = (await this.list(["failed"])).map((j) => j.job.id);
    for (const id of ids) await this.retry(id);
    return ids;
  }
}
