/**
 * Phase 5: replay the captured remote steps over real SSH, the way the Pulumi engine runs them: each step starts
 * as soon as every step it depends on has succeeded, so independent steps run in parallel; a failed step stops
 * its dependants. Deletes run in reverse: a step's delete runs after the deletes of every step that depends on it.
 */
import type { RemoteStep } from "./capture";
import type { HostShell } from "./host";

export interface StepResult {
  readonly name: string;
  readonly ok: boolean;
  readonly code: number;
  readonly seconds: number;
  readonly dials: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly skipped?: string;
}

export async function runStep(
  shell: HostShell,
  s: RemoteStep,
  what: "create" | "delete" = "create",
): Promise<StepResult> {
  const t0 = Date.now();
  const r =
    s.kind === "copy"
      ? what === "create"
        ? await shell.copy(s.connection, s.source!, s.remotePath!)
        : { code: 0, stdout: "", stderr: "", dials: 0 }
      : await shell.exec(
          s.connection,
          (what === "create" ? s.create : s.delete) ?? "true",
          what === "create" ? s.stdin : undefined,
        );
  return {
    name: s.name,
    ok: r.code === 0,
    code: r.code,
    seconds: (Date.now() - t0) / 1000,
    dials: r.dials,
    stdout: r.stdout,
    stderr: r.stderr,
  };
}

/** Runs `steps` in dependency order, in parallel where the graph allows. */
export async function replay(
  shell: HostShell,
  steps: readonly RemoteStep[],
  onDone: (r: StepResult) => void,
): Promise<StepResult[]> {
  const names = new Set(steps.map((s) => s.name));
  for (const s of steps)
    for (const a of s.after)
      if (!names.has(a)) throw new Error(`step ${s.name} waits for ${a}, which is not among the steps`);
  const results = new Map<string, StepResult>();
  const started = new Set<string>();
  return new Promise((resolve) => {
    const pump = () => {
      for (const s of steps) {
        if (started.has(s.name)) continue;
        const deps = s.after.map((a) => results.get(a));
        if (deps.some((d) => d === undefined)) continue;
        started.add(s.name);
        const failed = deps.find((d) => !d!.ok);
        if (failed) {
          const r: StepResult = {
            name: s.name,
            ok: false,
            code: -1,
            seconds: 0,
            dials: 0,
            stdout: "",
            stderr: "",
            skipped: `not run: ${failed.name} failed`,
          };
          results.set(s.name, r);
          onDone(r);
          continue;
        }
        void runStep(shell, s).then((r) => {
          results.set(s.name, r);
          onDone(r);
          pump();
        });
      }
      if (results.size === steps.length) resolve(steps.map((s) => results.get(s.name)!));
    };
    pump();
  });
}

/**
 * The steps that have a delete, ordered so that everything depending on a step is deleted first (the engine's destroy
 * order).
 */
export function deleteOrder(steps: readonly RemoteStep[]): RemoteStep[] {
  const dependants = new Map(steps.map((s) => [s.name, steps.filter((x) => x.after.includes(s.name))]));
  const order: RemoteStep[] = [];
  const visited = new Set<string>();
  const visit = (s: RemoteStep) => {
    if (visited.has(s.name)) return;
    visited.add(s.name);
    for (const d of dependants.get(s.name) ?? []) visit(d);
    order.push(s);
  };
  for (const s of steps) visit(s);
  return order.filter((s) => s.kind === "command" && s.delete);
}
