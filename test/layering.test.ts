// The one-way imports the layout promises (README "Layout", STYLE.md), read from the import statements themselves:
// what ships (infra/, cloud-init/, relay/) never imports a test helper, testkit/ never imports the tests it serves,
// the renderers stay free of Pulumi, and the relay knows nothing of the Pulumi program.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = resolve(__dirname, "..");
const SKIP_DIRS = new Set(["node_modules", "dist", "__snapshots__"]);

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = join(dir, e.name);
    if (e.isDirectory()) return SKIP_DIRS.has(e.name) ? [] : sourceFiles(rel);
    return /\.(ts|mts|cts|mjs|cjs|js)$/.test(e.name) ? [rel] : [];
  });
}

/** Every module a file imports (static, dynamic, require, vi.mock), as written. */
function importSpecifiers(source: string): string[] {
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*|\bvi\.mock\s*\(\s*)["']([^"']+)["']/g;
  return [...source.matchAll(re)].map((m) => m[1]);
}

/** A relative specifier as a repo path ("testkit/real-tools"); a package name as itself ("@pulumi/pulumi"). */
function target(file: string, spec: string): string {
  return spec.startsWith(".") ? relative(ROOT, resolve(ROOT, dirname(file), spec)) : spec;
}

function violations(dirs: string[], forbidden: (target: string) => boolean): string[] {
  return dirs.flatMap(sourceFiles).flatMap((f) =>
    importSpecifiers(readFileSync(join(ROOT, f), "utf8"))
      .filter((s) => forbidden(target(f, s)))
      .map((s) => `${f} imports ${s}`),
  );
}

const under = (t: string, ...tops: string[]) => tops.some((top) => t === top || t.startsWith(`${top}/`));

describe("one-way imports", () => {
  it("the scanner sees every kind of import, and resolves relative ones", () => {
    const src = [
      'import { a } from "../testkit/real-tools";',
      'import "./side-effect";',
      'const m = await import("../test/helpers/stack");',
      'const r = require("@pulumi/pulumi");',
      'vi.mock("../relay/queue");',
      'export { b } from "./b";',
    ].join("\n");
    const specs = importSpecifiers(src);
    expect(specs).toEqual([
      "../testkit/real-tools",
      "./side-effect",
      "../test/helpers/stack",
      "@pulumi/pulumi",
      "../relay/queue",
      "./b",
    ]);
    expect(target("infra/deploy.ts", specs[0])).toBe("testkit/real-tools");
    expect(under(target("infra/policy/x.ts", "../../test/helpers/stack"), "test")).toBe(true);
    expect(under(target("relay/x.ts", "./testkit"), "testkit")).toBe(false);
  });

  it("what ships (infra/, cloud-init/, relay/) imports nothing from test/, testkit/ or bench/", () => {
    const files = ["infra", "cloud-init", "relay"].flatMap(sourceFiles);
    expect(files.length).toBeGreaterThan(50);
    expect(violations(["infra", "cloud-init", "relay"], (t) => under(t, "test", "testkit", "bench"))).toEqual([]);
  });

  it("testkit/ imports nothing from test/ or bench/ (the benches use it without the tests)", () => {
    expect(sourceFiles("testkit").length).toBeGreaterThan(0);
    expect(violations(["testkit"], (t) => under(t, "test", "bench"))).toEqual([]);
  });

  it("relay/ reaches its storage only through relay/storage/index.ts (one surface for the doors, the worker and the rest)", () => {
    const outside = sourceFiles("relay").filter((f) => !f.startsWith("relay/storage/"));
    const reachesIn = (f: string) =>
      importSpecifiers(readFileSync(join(ROOT, f), "utf8"))
        .filter((s) => s.startsWith("."))
        .filter((s) => {
          const t = target(f, s);
          return t.startsWith("relay/storage/") && t !== "relay/storage/index";
        })
        .map((s) => `${f} imports ${s}`);
    expect(sourceFiles("relay/storage").length).toBeGreaterThan(10);
    // The rule can fire: an import of one of the folder's files from outside it is seen as reaching in.
    expect(target("relay/app.ts", "./storage/queue")).toBe("relay/storage/queue");
    expect(outside.flatMap(reachesIn)).toEqual([]);
  });

  it("bench/ imports nothing from test/", () => {
    expect(violations(["bench"], (t) => under(t, "test"))).toEqual([]);
  });

  it("client/ ships alone: it imports only node: built-ins and its own files (no relay/, no package)", () => {
    const files = sourceFiles("client");
    expect(files.length).toBeGreaterThan(2);
    expect(violations(["client"], (t) => !t.startsWith("node:") && !under(t, "client"))).toEqual([]);
  });

  it("the renderers (cloud-init/) import nothing from @pulumi/* or infra/", () => {
    expect(violations(["cloud-init"], (t) => t.startsWith("@pulumi/") || under(t, "infra"))).toEqual([]);
  });

  it("the relay (relay/) imports nothing from infra/ or @pulumi/*", () => {
    expect(violations(["relay"], (t) => t.startsWith("@pulumi/") || under(t, "infra"))).toEqual([]);
  });
});

/** The repo file a relative specifier loads (x.ts, x/index.ts, ...), or undefined for a package or a missing file. */
function resolveFile(file: string, spec: string): string | undefined {
  if (!spec.startsWith(".")) return undefined;
  const base = target(file, spec);
  const candidates = [
    base,
    ...["ts", "mts", "cts", "mjs", "js"].flatMap((e) => [`${base}.${e}`, `${base}/index.${e}`]),
  ];
  return candidates.find((c) => /\.[cm]?[tj]s$/.test(c) && existsSync(join(ROOT, c)));
}

/** Every import cycle among the files of `dirs` (type-only imports count: they tie the modules together too). */
function importCycles(dirs: string[]): string[][] {
  const files = dirs.flatMap(sourceFiles);
  const edges = new Map(
    files.map((f) => [
      f,
      importSpecifiers(readFileSync(join(ROOT, f), "utf8"))
        .map((s) => resolveFile(f, s))
        .filter((t): t is string => t !== undefined),
    ]),
  );
  const cycles: string[][] = [];
  const done = new Set<string>();
  const visit = (f: string, stack: string[]): void => {
    const at = stack.indexOf(f);
    if (at >= 0) {
      cycles.push([...stack.slice(at), f]);
      return;
    }
    if (done.has(f)) return;
    for (const t of edges.get(f) ?? []) visit(t, [...stack, f]);
    done.add(f);
  };
  for (const f of files) visit(f, []);
  return cycles;
}

describe("no import cycles", () => {
  it("the cycle finder sees a cycle, type-only imports included (the one rehearsal/main.ts <-> phases/index.ts had)", () => {
    // A deliberate fixture cycle (relay/'s mime.ts <-> validate.ts, the last real one, is gone): the finder can fail.
    expect(importCycles(["test/helpers/import-cycle-fixture"]).map((c) => c.join(" -> "))).toContain(
      "test/helpers/import-cycle-fixture/first.ts -> test/helpers/import-cycle-fixture/second.ts -> " +
        "test/helpers/import-cycle-fixture/first.ts",
    );
  });

  it("no module of relay/, infra/, cloud-init/, rehearsal/, testkit/, bench/, scripts/, doctor/ or client/ imports itself through others", () => {
    expect(
      importCycles(["relay", "infra", "cloud-init", "rehearsal", "testkit", "bench", "scripts", "doctor", "client"]),
    ).toEqual([]);
  });
});
