import { readdirSync, readFileSync, mkdirSync } from "node:fs";
import * as path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { callbackFs } from "../../relay/storage/callback-fs";
import { DurableWriter } from "../../relay/storage/durable-write";
import { tempDir } from "./fixtures";

const dirs: { cleanup(): void }[] = [];
afterEach(() => {
  vi.restoreAllMocks();
  while (dirs.length) dirs.pop()?.cleanup();
});

function setup(): { root: string; out: string; tmp: string; writer: DurableWriter } {
  const t = tempDir("relay-durable-");
  dirs.push(t);
  const out = path.join(t.dir, "out");
  const tmp = path.join(t.dir, "tmp");
  mkdirSync(out);
  mkdirSync(tmp);
  return { root: t.dir, out, tmp, writer: new DurableWriter(tmp) };
}

/** Records, in order, renames into `dir` and the start and end of every fsync of `dir` itself. */
function traceDir(dir: string, dirFsyncDelayMs = 0): string[] {
  const events: string[] = [];
  const dirFds = new Set<number>();
  const open = callbackFs.open;
  const fsync = callbackFs.fsync;
  const rename = callbackFs.rename;
  vi.spyOn(callbackFs, "open").mockImplementation(async (p, flags, mode) => {
    const fd = await open(p, flags, mode);
    if (p === dir) dirFds.add(fd);
    return fd;
  });
  vi.spyOn(callbackFs, "fsync").mockImplementation(async (fd) => {
    if (!dirFds.has(fd)) return fsync(fd);
    dirFds.delete(fd);
    events.push("dir-fsync-start");
    await new Promise((r) => setTimeout(r, dirFsyncDelayMs));
    await fsync(fd);
    events.push("dir-fsync-end");
  });
  vi.spyOn(callbackFs, "rename").mockImplementation(async (from, to) => {
    await rename(from, to);
    if (path.dirname(to) === dir) events.push(`rename ${path.basename(to)}`);
  });
  return events;
}

describe("DurableWriter: temp file, fsync, rename, directory fsync", () => {
  it("the file is complete under its name when write resolves, and no temp file is left", async () => {
    const { out, tmp, writer } = setup();
    await writer.write(out, "a.json", '{"x":"é"}');
    expect(readFileSync(path.join(out, "a.json"), "utf8")).toBe('{"x":"é"}');
    expect(readdirSync(tmp)).toEqual([]);
  });

  it("each write resolves only after a directory fsync that started after its rename", async () => {
    const { out, writer } = setup();
    const events = traceDir(out, 5);
    await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        await writer.write(out, `f${i}.json`, "{}");
        events.push(`resolved f${i}.json`);
      }),
    );
    for (let i = 0; i < 12; i++) {
      const renamed = events.indexOf(`rename f${i}.json`);
      const resolved = events.indexOf(`resolved f${i}.json`);
      const startAfterRename = events.indexOf("dir-fsync-start", renamed);
      expect(startAfterRename).toBeGreaterThan(renamed);
      expect(events.indexOf("dir-fsync-end", startAfterRename)).toBeLessThan(resolved);
    }
  });

  it("concurrent writers into one directory share directory fsyncs (group commit)", async () => {
    const { out, writer } = setup();
    // A slow directory fsync: every rename lands while the first one runs, so all of them share the next one.
    const events = traceDir(out, 50);
    await Promise.all(Array.from({ length: 20 }, (_, i) => writer.write(out, `f${i}.json`, "{}")));
    const fsyncs = events.filter((e) => e === "dir-fsync-start").length;
    expect(readdirSync(out)).toHaveLength(20);
    expect(fsyncs).toBeGreaterThanOrEqual(1);
    expect(fsyncs).toBeLessThanOrEqual(3);
  });

  it("a failed fsync of the file rejects the write, and the file never appears under its name", async () => {
    const { out, writer } = setup();
    vi.spyOn(callbackFs, "fsync").mockRejectedValueOnce(
      Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" }),
    );
    await expect(writer.write(out, "a.json", "{}")).rejects.toThrow(/EIO/);
    expect(readdirSync(out)).toEqual([]);
  });

  it("a failed directory fsync rejects the write", async () => {
    const { out, writer } = setup();
    const fsync = callbackFs.fsync;
    let calls = 0;
    // One write fsyncs the file, then the directory: fail the second.
    vi.spyOn(callbackFs, "fsync").mockImplementation(async (fd) => {
      if (++calls === 2) throw Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" });
      return fsync(fd);
    });
    await expect(writer.write(out, "a.json", "{}")).rejects.toThrow(/EIO/);
    expect(calls).toBe(2);
  });
});
