import { promises as fs } from "node:fs";
import type { CliIo } from "./cli";
import { loadQueueRoot } from "./config";
import { SuppressionList } from "./storage";

const USAGE = `usage: relay.js suppress <command>
  list [--caller NAME]          every suppressed address: email, reason, origin, caller, since, dsn
  add EMAIL [--caller NAME]     suppress an address (reason manual, origin operator)
  remove EMAIL                  lift a suppression (the next /send to it is accepted)
Safe while the relay runs: it reads what this appends before its next check. Run as the queue's owner.`;

/** `relay.js suppress ...`: the operator's view of the stack's suppression list. Returns the exit code. */
export async function runSuppressCli(args: readonly string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const [cmd, arg, ...rest] = args;
  const root = loadQueueRoot(env);
  try {
    await fs.access(root);
  } catch {
    io.err(`queue root ${root} does not exist (set QUEUE_ROOT)`);
    return 1;
  }
  const flag = (name: string, list: readonly (string | undefined)[]): string | undefined => {
    const i = list.indexOf(name);
    return i >= 0 ? list[i + 1] : undefined;
  };
  const list = new SuppressionList(root);
  await list.open();
  switch (cmd) {
    case "list": {
      const caller = flag("--caller", [arg, ...rest]);
      io.out(["email", "reason", "origin", "caller", "since", "dsn", "message"].join("\t"));
      for (const e of list.list(caller !== undefined ? { caller } : {})) {
        io.out(
          [
            e.email,
            e.reason,
            e.origin,
            e.caller ?? "-",
            new Date(e.createdAt).toISOString(),
            e.dsn ?? "-",
            e.messageId ?? "-",
          ].join("\t"),
        );
      }
      return 0;
    }
    case "add": {
      if (!arg || !/^[^@\s]+@[^@\s]+$/.test(arg)) break;
      const caller = flag("--caller", rest);
      const added = await list.add({
        email: arg,
        reason: "manual",
        origin: "operator",
        ...(caller !== undefined ? { caller } : {}),
      });
      io.out(
        added
          ? `${arg.toLowerCase()}: suppressed`
          : `${arg.toLowerCase()}: already suppressed (${list.find(arg)?.reason})`,
      );
      return 0;
    }
    case "remove": {
      if (!arg) break;
      if (!(await list.remove(arg, "operator"))) {
        io.err(`${arg} is not suppressed`);
        return 1;
      }
      io.out(`${arg.toLowerCase()}: removed`);
      return 0;
    }
    default:
      break;
  }
  io.err(USAGE);
  return 2;
}
