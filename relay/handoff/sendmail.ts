import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { constants as fsc, promises as fs } from "node:fs";
import { assertNotOption, HandoffError, type Handoff, type HandoffMessage, type HandoffResult } from "./types";

export type SpawnFn = (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess;

export interface SendmailOptions {
  readonly path: string;
  readonly timeoutMs: number;
  /** Grace between SIGTERM and SIGKILL after a timeout (postdrop cleans up its maildrop file on SIGTERM). */
  readonly killGraceMs?: number;
}

/**
 * `-i`: a lone "." does not end the message; `-f`: envelope sender; `--` then explicit recipients (not -t: Bcc is not a
 * header).
 */
export function sendmailArgs(from: string, to: readonly string[]): string[] {
  return ["-i", "-f", from, "--", ...to];
}

const STDERR_KEEP = 2048;

/**
 * Hands a message to /usr/sbin/sendmail: arguments as an array, the message on stdin, settled exactly once, killed on
 * timeout. Guarantee: exit 0 means Postfix's postdrop accepted the file into maildrop/. It does NOT mean the cleanup
 * daemon or OpenDKIM ran: with Postfix or the milter down, sendmail still exits 0 and the mail waits in maildrop.
 */
export class SendmailHandoff implements Handoff {
  readonly kind = "sendmail" as const;
  /** Swappable in tests, as nodemailer's sendmail transport keeps `this._spawn`. */
  _spawn: SpawnFn = spawn as SpawnFn;
  private readonly opts: SendmailOptions;

  constructor(opts: SendmailOptions) {
    this.opts = opts;
  }

  send(msg: HandoffMessage): Promise<HandoffResult> {
    try {
      assertNotOption([msg.from, ...msg.to]);
      if (msg.to.length === 0) throw new HandoffError("no recipients", true);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<HandoffResult>((resolve, reject) => {
      let settled = false;
      // settle() can run before the timer is armed (spawn failure), so the timer is declared up here.
      // eslint-disable-next-line prefer-const
      let timer: NodeJS.Timeout | undefined;
      let stderr = "";
      let stdinError: Error | undefined;
      const settle = (err?: Error): void => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        if (err) reject(err);
        else resolve({});
      };

      let child: ChildProcess;
      try {
        child = this._spawn(this.opts.path, sendmailArgs(msg.from, msg.to), {
          stdio: ["pipe", "ignore", "pipe"],
          shell: false,
        });
      } catch (err) {
        settle(new HandoffError(`cannot start ${this.opts.path}: ${(err as Error).message}`));
        return;
      }

      child.on("error", (err) => settle(new HandoffError(`cannot run ${this.opts.path}: ${err.message}`)));
      child.on("close", (code, signal) => {
        if (code === 0 && !stdinError) settle();
        else if (code === 0)
          settle(new HandoffError(`sendmail exited 0 but did not read the whole message: ${stdinError?.message}`));
        else settle(new HandoffError(`sendmail exited with ${code ?? signal}${stderr ? `: ${stderr.trim()}` : ""}`));
      });
      child.stderr?.on("data", (chunk: Buffer) => {
        if (stderr.length < STDERR_KEEP) stderr += chunk.toString("utf8").slice(0, STDERR_KEEP - stderr.length);
      });
      child.stdin?.on("error", (err) => {
        stdinError = err; // EPIPE: the exit status decides, and a 0 with a broken pipe is not trusted
      });

      timer = setTimeout(() => {
        settle(new HandoffError(`sendmail did not finish within ${this.opts.timeoutMs} ms; killed`));
        child.kill("SIGTERM");
        const hard = setTimeout(() => child.kill("SIGKILL"), this.opts.killGraceMs ?? 2000);
        hard.unref();
        child.once("exit", () => clearTimeout(hard));
      }, this.opts.timeoutMs);

      child.stdin?.end(msg.raw);
    });
  }

  async check(): Promise<void> {
    await fs.access(this.opts.path, fsc.X_OK);
  }

  async close(): Promise<void> {
    // nothing pooled
  }
}
