import { promises as fs } from "node:fs";
import * as path from "node:path";
import { loadQueueRoot } from "./config";
import { JOB_STATES, type Job } from "./storage";
import { QueueAdmin } from "./queue-admin";
import { PID_FILE } from "./server";
import { WebhookOutbox } from "./storage";

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
}

const USAGE = `usage: relay.js queue <command>
  list [pending|processing|failed]   jobs with attempts, next attempt, caller, subject, recipients
  show ID [--raw]                    one job (or hand-off record); --raw prints the MIME message
  retry ID                           a pending or failed job goes to pending/, due now, attempts reset
  drop ID                            delete a pending or failed job for good
  retry-failed                       every failed job goes back to pending/
  webhooks [pending|failed]          webhooks waiting or given up (after 24 h): id, caller, attempts, last error
Mutating commands need the relay stopped (systemctl stop mail-relay) and must run as the queue's owner.`;

/** Is the relay that wrote the pid file still running? */
async function relayRunning(root: string): Promise<number | undefined> {
  let pid: number;
  try {
    pid = Number((await fs.readFile(path.join(root, PID_FILE), "utf8")).trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM" ? pid : undefined;
  }
}

function summary(state: string, j: Job): string {
  const next = state === "pending" ? new Date(j.nextAttemptAt).toISOString() : "-";
  return [
    j.id,
    state,
    String(j.attempts),
    next,
    j.caller,
    String(j.envelope.to.length),
    j.recipientDomains.join(","),
    JSON.stringify(j.subject),
  ].join("\t");
}

/** `relay.js queue ...`: the rollback tools (inspect pending/processing/failed, retry, drop). Returns the exit code. */
export async function runQueueCli(args: readonly string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const [cmd, arg, flag] = args;
  const root = loadQueueRoot(env);
  try {
    await fs.access(root);
  } catch {
    io.err(`queue root ${root} does not exist (set QUEUE_ROOT)`);
    return 1;
  }
  const queue = new QueueAdmin(root);
  const mutating = cmd === "retry" || cmd === "drop" || cmd === "retry-failed";
  if (mutating) {
    const pid = await relayRunning(root);
    if (pid !== undefined) {
      io.err(`the relay is running (pid ${pid}); stop it first: systemctl stop mail-relay`);
      return 1;
    }
    const owner = (await fs.stat(root)).uid;
    if (typeof process.getuid === "function" && process.getuid() !== owner) {
      io.err(
        `run as the queue's owner (uid ${owner}), e.g. sudo -u mailrelay, so the relay can read the files it gets back`,
      );
      return 1;
    }
  }
  switch (cmd) {
    case "list": {
      const states =
        arg === undefined ? (["pending", "processing", "failed"] as const) : JOB_STATES.filter((s) => s === arg);
      if (states.length === 0 || arg === "sent") {
        io.err(`unknown state "${arg}"; use pending, processing or failed`);
        return 2;
      }
      const jobs = await queue.list(states as ("pending" | "processing" | "failed")[]);
      io.out(["id", "state", "attempts", "next_attempt", "caller", "recipients", "domains", "subject"].join("\t"));
      for (const { state, job } of jobs) io.out(summary(state, job));
      return 0;
    }
    case "show": {
      if (!arg) break;
      const found = await queue.find(arg);
      if (!found) {
        io.err(`no job ${arg}`);
        return 1;
      }
      if (flag === "--raw" && found.job) {
        io.out(found.job.raw);
        return 0;
      }
      const { raw, ...rest } = found.job ?? ({ raw: "" } as Partial<Job>);
      io.out(
        JSON.stringify(
          { state: found.state, ...(found.job ? Object.assign({}, rest, { bytes: raw?.length }) : found.sent) },
          null,
          2,
        ),
      );
      return 0;
    }
    case "retry": {
      if (!arg) break;
      try {
        const from = await queue.retry(arg);
        io.out(`${arg}: ${from} -> pending (due now)`);
        return 0;
      } catch (err) {
        io.err((err as Error).message);
        return 1;
      }
    }
    case "drop": {
      if (!arg) break;
      try {
        const from = await queue.drop(arg);
        io.out(`${arg}: deleted from ${from}/`);
        return 0;
      } catch (err) {
        io.err((err as Error).message);
        return 1;
      }
    }
    case "webhooks": {
      const state = arg === "pending" ? "pending" : "failed";
      if (arg !== undefined && arg !== "pending" && arg !== "failed") break;
      const outbox = new WebhookOutbox(root);
      await outbox.open();
      io.out(["id", "state", "caller", "attempts", "created", "last_error"].join("\t"));
      for (const w of await outbox.list(state))
        io.out(
          [w.id, state, w.caller, String(w.attempts), new Date(w.createdAt).toISOString(), w.lastError ?? "-"].join(
            "\t",
          ),
        );
      return 0;
    }
    case "retry-failed": {
      const ids = await queue.retryFailed();
      io.out(`${ids.length} failed job(s) moved to pending/`);
      return 0;
    }
    default:
      break;
  }
  io.err(USAGE);
  return 2;
}
