import type { HandoffConfig } from "../config";
import { SendmailHandoff } from "./sendmail";
import { SmtpHandoff } from "./smtp";
import type { Handoff } from "./types";

/** `concurrency`: hand-offs the worker runs at once; the SMTP hand-off keeps that many connections. */
export function createHandoff(cfg: HandoffConfig, timeoutMs: number, concurrency = 1): Handoff {
  switch (cfg.kind) {
    case "sendmail":
      return new SendmailHandoff({ path: cfg.path, timeoutMs });
    case "smtp":
      return new SmtpHandoff({ host: cfg.host, port: cfg.port, timeoutMs, maxConnections: concurrency });
    default: {
      const never: never = cfg;
      throw new Error(`unknown hand-off ${JSON.stringify(never)}`);
    }
  }
}
