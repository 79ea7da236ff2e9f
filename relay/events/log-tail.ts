import { promises as fs } from "node:fs";
import * as path from "node:path";

/** Where the tracker stopped: the log file's inode and the byte after the last whole line it consumed. */
export interface LogPosition {
  readonly inode: number;
  readonly offset: number;
}

export interface LogChunk {
  readonly lines: readonly string[];
  /** The position after these lines; store it only once what they produced is durable. */
  readonly next: LogPosition;
  /** Set when the file the position points to was rotated away and could not be found: lines may have been missed. */
  readonly lostTrack?: string;
  /** Bytes of one line over MAX_CHUNK that were skipped (the position moved past its newline). */
  readonly skippedBytes?: number;
}

/** The most one read holds; a longer line is skipped whole, so one line can never stop the tail. */
export const MAX_CHUNK = 1024 * 1024;

async function readRange(file: string, offset: number, size: number): Promise<Buffer> {
  const fh = await fs.open(file, "r");
  try {
    const len = Math.min(size - offset, MAX_CHUNK);
    const buf = Buffer.alloc(len);
    const { bytesRead } = await fh.read(buf, 0, len, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Whole lines of `buf`; the bytes after the last newline wait for the next read (a line Postfix is still writing). */
function wholeLines(buf: Buffer, final: boolean): { lines: string[]; used: number } {
  const last = buf.lastIndexOf(0x0a);
  const used = final ? buf.length : last + 1;
  const text = buf.subarray(0, used).toString("utf8");
  return { lines: text.split("\n").filter((l) => l !== ""), used };
}

/**
 * Reads Postfix's maillog_file by position, across rotation: `postfix logrotate` (or logrotate with `create`)
 * renames the file and Postfix opens a new one. When the inode at `file` is not the stored one, the rest of the
 * renamed file (found by inode next to it) is read first, then the new file from byte 0.
 */
export class LogTail {
  constructor(readonly file: string) {}

  private async rotatedByInode(inode: number): Promise<{ file: string; size: number } | undefined> {
    const dir = path.dirname(this.file);
    const base = path.basename(this.file);
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch {
      return undefined;
    }
    for (const n of names) {
      if (n === base || !n.startsWith(base) || n.endsWith(".gz")) continue;
      try {
        const st = await fs.stat(path.join(dir, n));
        if (st.ino === inode) return { file: path.join(dir, n), size: st.size };
      } catch {
        // gone between readdir and stat
      }
    }
    return undefined;
  }

  /** The next whole lines after `pos` (from the start of the current file when `pos` is undefined). */
  async read(pos: LogPosition | undefined): Promise<LogChunk> {
    let st;
    try {
      st = await fs.stat(this.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { lines: [], next: pos ?? { inode: 0, offset: 0 } };
      throw err;
    }
    const current = { inode: st.ino, size: st.size };
    if (pos === undefined || pos.inode === 0)
      return this.readFrom(this.file, { inode: current.inode, offset: 0 }, current.size, false);
    if (pos.inode === current.inode) {
      // Truncated in place (copytruncate): start again at 0.
      const start = current.size < pos.offset ? { inode: pos.inode, offset: 0 } : pos;
      return this.readFrom(this.file, start, current.size, false);
    }
    const old = await this.rotatedByInode(pos.inode);
    if (old && old.size > pos.offset) return this.readFrom(old.file, pos, old.size, true);
    const fresh = await this.readFrom(this.file, { inode: current.inode, offset: 0 }, current.size, false);
    return old
      ? fresh
      : Object.assign({}, fresh, {
          lostTrack: `the log file with inode ${pos.inode} was rotated away before it was read to the end`,
        });
  }

  private async readFrom(file: string, pos: LogPosition, size: number, rotated: boolean): Promise<LogChunk> {
    if (size <= pos.offset) return { lines: [], next: pos };
    const buf = await readRange(file, pos.offset, size);
    // A rotated file gets no more lines: its unterminated tail is a whole line.
    const final = rotated && pos.offset + buf.length >= size;
    if (!final && buf.length === MAX_CHUNK && !buf.includes(0x0a)) return this.skipLongLine(file, pos, size);
    const { lines, used } = wholeLines(buf, final);
    return { lines, next: { inode: pos.inode, offset: pos.offset + used } };
  }

  /** A line longer than MAX_CHUNK: moves past its newline (or waits at it while Postfix is still writing it). */
  private async skipLongLine(file: string, pos: LogPosition, size: number): Promise<LogChunk> {
    for (let offset = pos.offset + MAX_CHUNK; offset < size;) {
      const buf = await readRange(file, offset, size);
      const lf = buf.indexOf(0x0a);
      if (lf >= 0) {
        const next = offset + lf + 1;
        return { lines: [], next: { inode: pos.inode, offset: next }, skippedBytes: next - pos.offset };
      }
      offset += buf.length;
    }
    return { lines: [], next: pos };
  }
}
