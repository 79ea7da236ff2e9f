/** Child processes for the rehearsal: run to completion with captured output, or start and track by PID. */
import { ChildProcess, spawn, SpawnOptions } from "node:child_process";

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly input?: string | Buffer;
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
  readonly cwd?: string;
}

export function run(cmd: string, args: readonly string[], o: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: o.env ?? process.env, cwd: o.cwd, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    const timer = o.timeoutMs ? setTimeout(() => child.kill("SIGKILL"), o.timeoutMs) : undefined;
    child.on("error", (e) => {
      if (timer) clearTimeout(timer);
      resolve({ code: 127, stdout: "", stderr: String(e) });
    });
    child.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        code: code ?? (signal ? 128 + 9 : 1),
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
      });
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(o.input ?? "");
  });
}

export async function sh(script: string, o: RunOptions = {}): Promise<RunResult> {
  const r = await run("/bin/sh", ["-c", script], o);
  if (r.code !== 0) throw new Error(`\`${script}\` exited ${r.code}: ${r.stderr.slice(-2000)}`);
  return r;
}

/** Every long-running process the rehearsal starts, so it can stop each one by PID, also on failure and Ctrl-C. */
export class Processes {
  private readonly children = new Map<number, { name: string; child: ChildProcess }>();

  start(name: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn(cmd, args, { stdio: "ignore", ...opts });
    if (child.pid === undefined) throw new Error(`could not start ${name} (${cmd})`);
    const pid = child.pid;
    this.children.set(pid, { name, child });
    child.on("exit", () => this.children.delete(pid));
    return child;
  }

  pids(): number[] {
    return [...this.children.keys()];
  }

  /** Stops every process started under `name` (SIGTERM, SIGKILL after `graceMs`) and waits until each has exited. */
  async stop(name: string, graceMs = 3000): Promise<void> {
    const mine = [...this.children.entries()].filter(([, c]) => c.name === name);
    await Promise.all(mine.map(([pid, { child }]) => this.end(pid, child, graceMs)));
  }

  private end(pid: number, child: ChildProcess, graceMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const t = setTimeout(() => {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          /* already gone */
        }
        resolve();
      }, graceMs);
      child.once("exit", () => {
        clearTimeout(t);
        resolve();
      });
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        clearTimeout(t);
        resolve();
      }
    });
  }

  /** SIGTERM each, then SIGKILL what is left after `graceMs`. */
  async stopAll(graceMs = 5000): Promise<string[]> {
    const stopped: string[] = [];
    const waits = [...this.children.entries()].map(([pid, { name, child }]) => {
      stopped.push(`${name} (pid ${pid})`);
      return this.end(pid, child, graceMs);
    });
    await Promise.all(waits);
    return stopped;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
