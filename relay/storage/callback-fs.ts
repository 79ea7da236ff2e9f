import * as fs from "node:fs";

/**
 * The queue's hot-path file operations (accept, claim, record) as promises over the callback fs API: FileHandle
 * objects of fs.promises cost ~40 us more user CPU per durable write (measured: write+fsync+rename loop, 50
 * concurrent). One object, so tests can count calls (vi.spyOn(callbackFs, "rename")).
 */
export const callbackFs = {
  open: (p: string, flags: number, mode?: number): Promise<number> =>
    new Promise((resolve, reject) => fs.open(p, flags, mode, (err, fd) => (err ? reject(err) : resolve(fd)))),
  fsync: (fd: number): Promise<void> =>
    new Promise((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve()))),
  close: (fd: number): Promise<void> =>
    new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve()))),
  rename: (from: string, to: string): Promise<void> =>
    new Promise((resolve, reject) => fs.rename(from, to, (err) => (err ? reject(err) : resolve()))),
  readFile: (p: string): Promise<string> =>
    new Promise((resolve, reject) => fs.readFile(p, "utf8", (err, s) => (err ? reject(err) : resolve(s)))),
  /** unlink(2); a file that is already gone is fine. */
  unlinkIfExists: (p: string): Promise<void> =>
    new Promise((resolve, reject) => fs.unlink(p, (err) => (err && err.code !== "ENOENT" ? reject(err) : resolve()))),
  /**
   * write(2) on the calling thread until every byte is on the file: for the group-committed logs' appends (a few KB
   * into the page cache, a few microseconds). The thread-pool round trip of fs.write (a futex wake each way) cost
   * more CPU than the write itself (bench:chain, issue 23); the fsync that follows stays asynchronous.
   */
  writeAllSync(fd: number, data: string | Buffer): void {
    const buf = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    for (let off = 0; off < buf.length;) {
      const n = fs.writeSync(fd, buf, off, buf.length - off);
      if (n <= 0) throw new Error(`write(2) returned ${n}`);
      off += n;
    }
  },
  /** write(2) until every byte is on the file (a short write is allowed by POSIX). */
  async writeAll(fd: number, data: string): Promise<void> {
    const buf = Buffer.from(data, "utf8");
    for (let off = 0; off < buf.length;) {
      const n = await new Promise<number>((resolve, reject) =>
        fs.write(fd, buf, off, buf.length - off, null, (err, written) => (err ? reject(err) : resolve(written))),
      );
      if (n <= 0) throw new Error(`write(2) returned ${n}`);
      off += n;
    }
  },
};
