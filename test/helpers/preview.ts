/**
 * What `pulumi preview` shows for a config change, computed from two runs of the program under mocks (before and
 * after, sharing a state file so ids, addresses and random values carry over as a stack's state keeps them) with the
 * engine's rules:
 *  1. a resource only in `after` is created, one only in `before` deleted;
 *  2. a resource in both is compared input by input; an input whose value comes from a resource that is created or
 *     replaced is unknown during the preview, so it counts as changed (propertyDependencies of the engine's graph);
 *  3. a changed input listed in REPLACEMENT_TABLE (the provider's ForceNew / RequiresReplace / replaceOnChanges)
 *     replaces the resource; any other change updates it in place; 2 and 3 repeat until nothing new is replaced;
 *  4. order: a replaced resource with deleteBeforeReplace is deleted first (its replaced dependants before it); then
 *     creates, updates and replacements follow the dependencies; then the deletes, dependants first.
 * Outputs of a resource updated in place are taken as unchanged (the ids and addresses the program reads are).
 */
import { isDeepStrictEqual } from "node:util";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { GraphNode, OfflineRun, RecordedResource } from "../../infra/offline";
import { replacementInputs } from "./replacement";
import { runStack, type StackName } from "./stack";

export type Op = "create" | "update" | "replace" | "delete";

export interface ResourceChange {
  readonly name: string;
  readonly type: string;
  readonly op: Op;
  /** Inputs that differ or are unknown (empty for create and delete). */
  readonly changed: readonly string[];
  /** The changed inputs that force the replacement. */
  readonly forcing: readonly string[];
}

export interface Preview {
  /** Every resource that is not unchanged, by "name [Type]". */
  readonly changes: ReadonlyMap<string, ResourceChange>;
  /** The engine's steps in order: "delete-replaced X" (deleteBeforeReplace), "create X", "update X", "replace X",
   * "delete X" (removed resources, and the originals of replacements without deleteBeforeReplace). */
  readonly steps: readonly string[];
}

/** Component resources (this program's own types) only group; they hold no inputs. */
const isCustom = (r: { type: string }) => !r.type.startsWith("mail-relay:");

/** Resources are keyed by type and name: two types may share a logical name (caller "app"'s token, the Access app). */
const keyOf = (r: { type: string; name: string }) => `${r.type}::${r.name}`;

/** The custom resources of a run's graph, with dependencies as keys (a name shared by two types means both). */
function customGraph(run: OfflineRun): Map<string, GraphNode & { deps: string[]; propDeps: Record<string, string[]> }> {
  const keysByName = new Map<string, string[]>();
  for (const g of run.graph.filter(isCustom)) keysByName.set(g.name, [...(keysByName.get(g.name) ?? []), keyOf(g)]);
  const keys = (names: readonly string[]) => names.flatMap((n) => keysByName.get(n) ?? []);
  return new Map(
    run.graph.filter(isCustom).map((g) => [
      keyOf(g),
      {
        ...g,
        deps: keys(g.dependsOn),
        propDeps: Object.fromEntries(Object.entries(g.propertyDependencies).map(([k, v]) => [k, keys(v)])),
      },
    ]),
  );
}

type CustomGraph = ReturnType<typeof customGraph>;

/** Dependencies first: a stable topological order of `keys` under the graph's dependencies. */
function topological(keys: ReadonlySet<string>, graph: CustomGraph): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const visit = (k: string) => {
    if (seen.has(k)) return;
    seen.add(k);
    for (const d of graph.get(k)?.deps ?? []) if (keys.has(d)) visit(d);
    out.push(k);
  };
  for (const k of graph.keys()) if (keys.has(k)) visit(k);
  for (const k of keys) visit(k);
  return out;
}

/** Everything that depends on `key`, directly or not. */
function dependants(key: string, graph: CustomGraph): Set<string> {
  const out = new Set<string>();
  for (let grew = true; grew;) {
    grew = false;
    for (const [k, g] of graph)
      if (!out.has(k) && g.deps.some((d) => d === key || out.has(d))) {
        out.add(k);
        grew = true;
      }
  }
  return out;
}

export function preview(before: OfflineRun, after: OfflineRun): Preview {
  const b = new Map(before.resources.filter(isCustom).map((r) => [keyOf(r), r]));
  const a = new Map(after.resources.filter(isCustom).map((r) => [keyOf(r), r]));
  const graphA = customGraph(after);
  const graphB = customGraph(before);
  const changes = new Map<string, ResourceChange>();
  const entry = (r: RecordedResource, op: Op, changed: string[] = [], forcing: string[] = []): ResourceChange => ({
    name: r.name,
    type: r.type,
    op,
    changed,
    forcing,
  });
  for (const [k, r] of a) if (!b.has(k)) changes.set(k, entry(r, "create"));
  for (const [k, r] of b) if (!a.has(k)) changes.set(k, entry(r, "delete"));

  const differing = new Map<string, string[]>();
  for (const [k, r] of a) {
    const old = b.get(k);
    if (!old) continue;
    const props = new Set([...Object.keys(old.inputs), ...Object.keys(r.inputs)]);
    differing.set(
      k,
      [...props].filter((p) => !isDeepStrictEqual(old.inputs[p], r.inputs[p])),
    );
  }
  const unknownSources = () =>
    new Set([...changes].filter(([, c]) => c.op === "create" || c.op === "replace").map(([k]) => k));
  for (let known = -1; ;) {
    const unknown = unknownSources();
    if (unknown.size === known) break;
    known = unknown.size;
    for (const [k, r] of a) {
      if (!b.has(k)) continue;
      const deps = graphA.get(k)?.propDeps ?? {};
      const viaUnknown = Object.keys(deps).filter((p) => deps[p].some((d) => unknown.has(d)));
      const changed = [...new Set([...differing.get(k)!, ...viaUnknown])].sort();
      if (changed.length === 0) continue;
      const forcing = changed.filter((p) => replacementInputs(r.type).includes(p));
      changes.set(k, entry(r, forcing.length > 0 ? "replace" : "update", changed, forcing));
    }
  }

  // Order (rule 4).
  const label = (k: string) => changes.get(k)!.name;
  const replaced = new Set([...changes].filter(([, c]) => c.op === "replace").map(([k]) => k));
  const steps: string[] = [];
  const dbr = topological(replaced, graphA).filter((k) => graphA.get(k)?.deleteBeforeReplace);
  const deletedEarly = new Set<string>();
  for (const k of [...dbr].reverse()) {
    const deps = dependants(k, graphA);
    const first = topological(new Set([...replaced].filter((x) => deps.has(x))), graphA).reverse();
    for (const d of [...first, k]) {
      if (deletedEarly.has(d)) continue;
      deletedEarly.add(d);
      steps.push(`delete-replaced ${label(d)}`);
    }
  }
  const forward = new Set([...changes].filter(([, c]) => c.op !== "delete").map(([k]) => k));
  for (const k of topological(forward, graphA)) steps.push(`${changes.get(k)!.op} ${label(k)}`);
  const removed = new Set([...changes].filter(([, c]) => c.op === "delete").map(([k]) => k));
  for (const k of topological(removed, graphB).reverse()) steps.push(`delete ${label(k)}`);
  for (const k of topological(replaced, graphA).reverse())
    if (!deletedEarly.has(k)) steps.push(`delete-original ${label(k)}`);
  return { changes: new Map([...changes.values()].map((c) => [`${c.name} [${shortType(c.type)}]`, c])), steps };
}

/** "cloudflare:index/dnsRecord:DnsRecord" -> "DnsRecord". */
export function shortType(type: string): string {
  return type.split(":").at(-1) ?? type;
}

/** The preview as "op name" lines, sorted: what a test writes out as its expected set. */
export function summary(p: Preview): string[] {
  return [...p.changes.keys()].map((k) => `${p.changes.get(k)!.op} ${k}`).sort();
}

/**
 * Runs a stack before and after a config change, sharing one state (ids, addresses, keys, tokens), and previews the
 * change. `before` may be a list of configs applied in turn (a stack's history), the last one being the base.
 */
export async function previewChange(
  stack: StackName,
  before: Record<string, unknown> | Record<string, unknown>[],
  after: Record<string, unknown>,
): Promise<{ before: OfflineRun; after: OfflineRun; preview: Preview }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lifecycle-"));
  try {
    const stateFile = path.join(dir, "state.json");
    let base: OfflineRun | undefined;
    for (const cfg of Array.isArray(before) ? before : [before])
      base = await runStack(stack, cfg, { stateFile, keepAll: true });
    const next = await runStack(stack, after, { stateFile, keepAll: true });
    return { before: base!, after: next, preview: preview(base!, next) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
