import * as fs from "node:fs";
import * as path from "node:path";

/** What a scanned file turned out to be. */
export type Scanned =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly missing: boolean; readonly error: string };

export interface ScanOptions {
  /**
   * Leave the job's message text out ("raw": ""): the index never needs it, and decoding it is most of a file's cost.
   */
  readonly withoutRaw?: boolean;
  /** Main-thread time spent reading before the scan yields to the event loop (requests are served in between). */
  readonly sliceMs?: number;
  /** Checked between files: true stops the scan (shutdown). */
  readonly stopped?: () => boolean;
}

const FIRST_READ_BYTES = 64 * 1024;

/**
 * Reads and parses every *.json file of `dir` with synchronous reads, in slices of `sliceMs` between which the event
 * loop runs. A synchronous read is open + read(2) + close on the main thread; fs.promises.readFile makes several
 * thread-pool round trips per file, which on Debian's Node 18 made a 100,000-job start take many seconds; the slices
 * keep the relay answering while a big queue is read. The directory is streamed (opendir), not listed at once:
 * 100,000 names held in one array survive long enough to make V8 grow its young generation for good.
 * Files created while the scan runs may or may not be seen (readdir(3)); callers must not depend on either.
 */
export async function scanJsonFiles(
  dir: string,
  onFile: (name: string, file: Scanned) => void,
  opts: ScanOptions = {},
): Promise<void> {
  const buf = Buffer.allocUnsafe(FIRST_READ_BYTES);
  const withoutRaw = opts.withoutRaw ?? false;
  await eachJsonName(dir, (name) => onFile(name, readJsonSync(path.join(dir, name), buf, withoutRaw)), opts);
}

/** How many *.json files `dir` holds (streamed and sliced like scanJsonFiles, without opening them). */
export async function countJsonFiles(dir: string, opts: ScanOptions = {}): Promise<number> {
  let n = 0;
  await eachJsonName(dir, () => n++, opts);
  return n;
}

async function eachJsonName(dir: string, fn: (name: string) => void, opts: ScanOptions): Promise<void> {
  const sliceMs = opts.sliceMs ?? 5;
  const d = fs.opendirSync(dir, { bufferSize: 32 });
  try {
    for (;;) {
      if (opts.stopped?.()) return;
      const end = performance.now() + sliceMs;
      do {
        const entry = d.readSync();
        if (entry === null) return;
        if (entry.name.endsWith(".json")) fn(entry.name);
      } while (performance.now() < end);
      await new Promise<void>((r) => setImmediate(r));
    }
  } finally {
    d.closeSync();
  }
}

/** One file: a single read(2) when it fits in `buf` (a job without attachments does), else the whole file. */
export function readJsonSync(file: string, buf: Buffer, withoutRaw = false): Scanned {
  let bytes: Buffer;
  try {
    const fd = fs.openSync(file, "r");
    try {
      const n = fs.readSync(fd, buf, 0, buf.length, 0);
      if (n < buf.length) {
        bytes = buf.subarray(0, n);
      } else {
        const size = fs.fstatSync(fd).size;
        const all = Buffer.allocUnsafe(Math.max(size, n));
        buf.copy(all, 0, 0, n);
        let off = n;
        while (off < all.length) {
          const k = fs.readSync(fd, all, off, all.length - off, off);
          if (k === 0) break;
          off += k;
        }
        bytes = all.subarray(0, off);
      }
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { ok: false, missing: code === "ENOENT", error: (err as Error).message };
  }
  try {
    return { ok: true, value: withoutRaw ? parseWithoutRaw(bytes) : JSON.parse(bytes.toString("utf8")) };
  } catch (err) {
    return { ok: false, missing: false, error: (err as Error).message };
  }
}

const RAW_KEY = Buffer.from('"raw":"');
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * JSON.parse of a job file with the value of its "raw" key replaced by "" before decoding. In valid JSON the bytes
 * `"raw":"` can only be that key (a quote inside a string is escaped), and the value ends at the first quote that
 * follows an even number of backslashes. Anything else is parsed whole, so JSON.parse still judges malformed files.
 */
export function parseWithoutRaw(bytes: Buffer): unknown {
  const start = bytes.indexOf(RAW_KEY);
  if (start >= 0) {
    for (let q = bytes.indexOf(QUOTE, start + RAW_KEY.length); q >= 0; q = bytes.indexOf(QUOTE, q + 1)) {
      let backslashes = 0;
      while (bytes[q - 1 - backslashes] === BACKSLASH) backslashes++;
      if (backslashes % 2 === 0)
        return JSON.parse(`${bytes.toString("utf8", 0, start)}"raw":""${bytes.toString("utf8", q + 1)}`);
    }
  }
  return JSON.parse(bytes.toString("utf8"));
}
