import { constants as fsc, createReadStream, promises as fs } from "node:fs";
import * as path from "node:path";
import { callbackFs } from "./callback-fs";
import { fsyncDir } from "./durable-write";
import { isJobId, type SentRecord } from "./job";

/** The hand-off records' file in the queue root (it replaces the sent/ directory's one file per message). */
export const SENT_LOG = "sent.log";

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

/**
 * The hand-off records as one append-only file of JSON lines, group-committed: every record appended while an
 * fsync runs goes out in the next single write + fsync, and append() resolves only after the fsync that covers its
 * line. One write(2) and a share of one fsync per message, instead of a file, an fsync, a rename and a directory fsync.
 *
 * A line that does not end in "\n" was never acknowledged (its fsync had not returned): open() cuts it off. compact()
 * rewrites the file with the records still kept (temp file, fsync, rename, directory fsync), between two batches.
 */
export class SentLog {
  readonly file: string;
  private fd: number | null = null;
  private buf: string[] = [];
  private waiters: Waiter[] = [];
  private running: Promise<void> | null = null;
  /** A write failed part-way: the next batch starts on a new line so a torn fragment cannot swallow a record. */
  private torn = false;
  /** Lines in the file, live or not (compaction's trigger). */
  lines = 0;

  constructor(root: string) {
    this.file = path.join(root, SENT_LOG);
  }

  /**
   * Reads every complete record (oldest first) into `each`, cuts off a torn last line, then opens the file for
   * appending. Returns the number of lines that were not a record (reported as unreadable, left in place).
   */
  async open(each: (rec: SentRecord) => void): Promise<{ records: number; bad: number }> {
    let records = 0;
    let bad = 0;
    let complete = 0; // bytes up to the last "\n"
    let rest = "";
    let offset = 0;
    try {
      for await (const chunk of createReadStream(this.file, { encoding: "utf8", highWaterMark: 1 << 20 })) {
        const text = rest + (chunk as string);
        let start = 0;
        for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", start)) {
          const line = text.slice(start, nl);
          start = nl + 1;
          this.lines++;
          if (line.length === 0) continue;
          const rec = parseRecord(line);
          if (rec) {
            records++;
            each(rec);
          } else bad++;
        }
        offset += Buffer.byteLength(text.slice(0, start), "utf8");
        complete = offset;
        rest = text.slice(start);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    this.fd = await callbackFs.open(this.file, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o600);
    if (rest.length > 0) {
      // A crash during a write: that record's append() never resolved, so no caller heard about it.
      await fs.truncate(this.file, complete);
      await callbackFs.fsync(this.fd);
    }
    await fsyncDir(path.dirname(this.file));
    return { records, bad };
  }

  /** Resolves once the record is on disk (after the fsync of the batch it went out in). */
  append(rec: SentRecord): Promise<void> {
    if (this.fd === null) return Promise.reject(new Error("the hand-off record log is not open"));
    this.buf.push(`${JSON.stringify(rec)}\n`);
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.running ??= this.flush();
    });
  }

  /** Appends many records in one batch (the upgrade from sent/ files). */
  appendAll(recs: readonly SentRecord[]): Promise<void> {
    return Promise.all(recs.map((r) => this.append(r))).then(() => undefined);
  }

  private async flush(): Promise<void> {
    while (this.buf.length > 0 && this.fd !== null) {
      const data = (this.torn ? "\n" : "") + this.buf.join("");
      const waiters = this.waiters;
      const n = this.buf.length;
      this.buf = [];
      this.waiters = [];
      try {
        callbackFs.writeAllSync(this.fd, data);
        await callbackFs.fsync(this.fd);
        this.torn = false;
        this.lines += n;
        for (const w of waiters) w.resolve();
      } catch (err) {
        this.torn = true;
        for (const w of waiters) w.reject(err as Error);
      }
    }
    this.running = null;
  }

  /**
   * Rewrites the file with the lines whose record is still kept (`live(id)`), between two batches: appends made
   * meanwhile wait and go into the new file. Lines are copied as they are (the idempotency key stays with its record).
   */
  async compact(live: (id: string) => boolean): Promise<void> {
    while (this.running) await this.running;
    const hold = this.rewrite(live);
    this.running = hold.then(
      () => undefined,
      () => undefined,
    );
    try {
      await hold;
    } finally {
      this.running = null;
      if (this.buf.length > 0) this.running = this.flush();
    }
  }

  private async rewrite(live: (id: string) => boolean): Promise<void> {
    if (this.fd === null) return;
    const tmp = `${this.file}.compact.${process.pid}`;
    const fd = await callbackFs.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC, 0o600);
    let lines = 0;
    try {
      let rest = "";
      for await (const chunk of createReadStream(this.file, { encoding: "utf8", highWaterMark: 1 << 20 })) {
        const text = rest + (chunk as string);
        const end = text.lastIndexOf("\n") + 1;
        rest = text.slice(end);
        const kept: string[] = [];
        for (const line of text.slice(0, end).split("\n")) {
          // JSON.stringify puts "id" first: {"id":"<36 characters>",...
          const id = line.startsWith('{"id":"') ? line.slice(7, 43) : parseRecord(line)?.id;
          if (id !== undefined && live(id)) kept.push(line);
        }
        if (kept.length > 0) await callbackFs.writeAll(fd, `${kept.join("\n")}\n`);
        lines += kept.length;
      }
      await callbackFs.fsync(fd);
    } catch (err) {
      await callbackFs.close(fd);
      await callbackFs.unlinkIfExists(tmp);
      throw err;
    }
    await callbackFs.close(fd);
    await callbackFs.rename(tmp, this.file);
    await fsyncDir(path.dirname(this.file));
    const old = this.fd;
    this.fd = await callbackFs.open(this.file, fsc.O_WRONLY | fsc.O_APPEND, 0o600);
    await callbackFs.close(old);
    this.torn = false;
    this.lines = lines;
  }

  async close(): Promise<void> {
    while (this.running) await this.running;
    if (this.fd !== null) {
      const fd = this.fd;
      this.fd = null;
      await callbackFs.close(fd);
    }
  }
}

function parseRecord(line: string): SentRecord | undefined {
  try {
    const rec = JSON.parse(line) as SentRecord;
    return rec && typeof rec.id === "string" && isJobId(rec.id) && typeof rec.handedOffAt === "number"
      ? rec
      : undefined;
  } catch {
    return undefined;
  }
}

/** Every record of the log (the queue CLI's `show`, with the relay stopped or not: it only reads). */
export async function readSentLog(root: string, each: (rec: SentRecord) => void): Promise<void> {
  let rest = "";
  try {
    for await (const chunk of createReadStream(path.join(root, SENT_LOG), { encoding: "utf8" })) {
      const lines = (rest + (chunk as string)).split("\n");
      rest = lines.pop() ?? "";
      for (const l of lines) {
        const rec = l ? parseRecord(l) : undefined;
        if (rec) each(rec);
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}
