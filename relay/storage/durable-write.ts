import { constants as fsc } from "node:fs";
import * as path from "node:path";
import { callbackFs } from "./callback-fs";

/**
 * Writes a file so that it survives a power cut once the promise resolves: temp file in tmpDir, write, fsync,
 * rename into place, fsync of the directory. A reader never sees a half-written file (rename is atomic), and
 * concurrent writers into one directory share directory fsyncs (group commit).
 */
export class DurableWriter {
  private readonly tmpDir: string;
  private readonly dirSync = new Map<string, { running: Promise<void> | null; next: Promise<void> | null }>();
  private seq = 0;

  constructor(tmpDir: string) {
    this.tmpDir = tmpDir;
  }

  async write(dir: string, name: string, data: string): Promise<void> {
    const tmp = path.join(this.tmpDir, `${name}.${process.pid}.${this.seq++}`);
    const fd = await callbackFs.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
    try {
      await callbackFs.writeAll(fd, data);
      await callbackFs.fsync(fd);
    } finally {
      await callbackFs.close(fd);
    }
    await callbackFs.rename(tmp, path.join(dir, name));
    await this.syncDir(dir);
  }

  /**
   * Resolves after a directory fsync that started after this call. Concurrent callers share it: while one fsync runs,
   * every later caller waits for the single next one (their renames may have missed the running one).
   */
  syncDir(dir: string): Promise<void> {
    let s = this.dirSync.get(dir);
    if (!s) {
      s = { running: null, next: null };
      this.dirSync.set(dir, s);
    }
    const st = s;
    const start = (): Promise<void> => {
      const p = fsyncDir(dir).finally(() => {
        if (st.running === p) st.running = null;
      });
      st.running = p;
      return p;
    };
    if (!st.running) return start();
    if (!st.next) {
      st.next = st.running
        .catch(() => undefined)
        .then(() => {
          st.next = null;
          return start();
        });
    }
    return st.next;
  }
}

/** fsync(2) of a directory: makes the renames and unlinks in it durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fd = await callbackFs.open(dir, fsc.O_RDONLY);
  try {
    await callbackFs.fsync(fd);
  } finally {
    await callbackFs.close(fd);
  }
}
