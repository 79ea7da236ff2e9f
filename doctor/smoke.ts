/**
 * `npm run smoke -- <stack> --to <address> [--outputs <file>] [--caller <name>] [--from <address>] [--url <base>]
 *  [--subject <text>] [--timeout <s>] [--json]`
 *
 * Sends one message through the public path exactly as a caller does, with the callers' client (client/: the Access
 * service token's headers, the relay token, an Idempotency-Key), then follows GET /messages/:id until it is
 * delivered, bounced or the time runs out, and prints the timeline: accepted, handed off (Postfix's queue id),
 * delivered with the recipient MX's reply. Exit 0 only when delivered. See docs/doctor.md.
 */
import { RelayApiError, RelayClient, RelayTimeoutError } from "../client/src/index";
import { readInputs, runAsProgram, type StackOutputs } from "./outputs";

export interface SmokeOptions {
  readonly stack: string;
  readonly to: string;
  readonly outputsFile?: string;
  readonly caller?: string;
  readonly from?: string;
  readonly url?: string;
  readonly subject?: string;
  readonly timeoutSeconds: number;
  readonly json: boolean;
}

const USAGE =
  "usage: npm run smoke -- <stack> --to <address> [--outputs <file>] [--caller <name>] [--from <address>] " +
  "[--url <base url>] [--subject <text>] [--timeout <seconds> (default 120)] [--json]";

export function parseSmokeArgs(argv: readonly string[]): SmokeOptions {
  const flags = new Map<string, string>();
  const rest: string[] = [];
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--json") json = true;
    else if (a.startsWith("--")) {
      if (!["--to", "--outputs", "--caller", "--from", "--url", "--subject", "--timeout"].includes(a))
        throw new Error(`unknown option ${a}; ${USAGE}`);
      const v = argv[++i];
      if (v === undefined || v === "") throw new Error(`${a} needs a value; ${USAGE}`);
      flags.set(a, v);
    } else rest.push(a);
  }
  if (rest.length !== 1 || !flags.get("--to")) throw new Error(USAGE);
  const timeout = Number(flags.get("--timeout") ?? "120");
  if (!Number.isInteger(timeout) || timeout < 1) throw new Error(`--timeout must be whole seconds, got ${timeout}`);
  return {
    stack: rest[0],
    to: flags.get("--to")!,
    outputsFile: flags.get("--outputs"),
    caller: flags.get("--caller"),
    from: flags.get("--from"),
    url: flags.get("--url"),
    subject: flags.get("--subject"),
    timeoutSeconds: timeout,
    json,
  };
}

export interface Recipient {
  readonly email?: string;
  readonly state?: string;
  readonly dsn?: string;
  readonly remoteReply?: string;
  readonly at?: string;
}

export interface MessageStatus {
  readonly state?: string;
  readonly createdAt?: number;
  readonly handedOffAt?: number;
  readonly postfixQueueId?: string;
  readonly lastError?: string;
  readonly recipients?: readonly Recipient[];
}

export interface TimelineEvent {
  readonly at: string;
  readonly event: string;
  readonly detail: string;
}

/** States after which the message's fate is known. */
export const FINAL = new Set(["delivered", "bounced", "expired", "partially_delivered", "failed"]);

/** The timeline from the last status seen: accepted, handed off, then each recipient's outcome with its reply. */
export function timeline(id: string, acceptedAt: Date, s: MessageStatus | undefined): TimelineEvent[] {
  const ev: TimelineEvent[] = [{ at: acceptedAt.toISOString(), event: "accepted", detail: `202, id ${id}` }];
  if (s?.handedOffAt)
    ev.push({
      at: new Date(s.handedOffAt).toISOString(),
      event: "handed off",
      detail: `to Postfix${s.postfixQueueId ? `, queue id ${s.postfixQueueId}` : ""}`,
    });
  for (const r of s?.recipients ?? [])
    if (r.state && r.state !== "pending")
      ev.push({
        at: r.at ?? "?",
        event: r.state,
        detail: `${r.email ?? "?"}: dsn ${r.dsn ?? "?"}, remote reply: ${r.remoteReply ?? "(none)"}`,
      });
  return ev;
}

export interface Caller {
  readonly name: string;
  readonly relayToken: string;
  readonly accessId?: string;
  readonly accessSecret?: string;
}

export function pickCaller(out: StackOutputs, name?: string): Caller {
  const tokens = out.relayTokens ?? {};
  const names = Object.keys(tokens);
  if (names.length === 0) throw new Error("the outputs have no relayTokens: nothing to send as");
  const caller = name ?? names[0];
  if (!tokens[caller]) throw new Error(`--caller ${caller}: the stack's callers are ${names.join(", ")}`);
  return {
    name: caller,
    relayToken: tokens[caller],
    accessId: out.accessClientIds?.[caller],
    accessSecret: out.accessClientSecrets?.[caller],
  };
}

export interface SmokeResult {
  readonly id?: string;
  readonly state: string;
  readonly events: TimelineEvent[];
  readonly error?: string;
}

/** What a refusal or a failure says: the relay's error code when it gave one. */
function describeError(e: unknown): string {
  if (e instanceof RelayApiError) return `${e.status} ${e.code}: ${e.message}`;
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** Sends through client/ (what callers use: Access headers, relay token, Idempotency-Key, safe retries), then waits. */
export async function smoke(o: SmokeOptions, out: StackOutputs): Promise<SmokeResult> {
  const base = (o.url ?? out.relayUrl ?? "").replace(/\/+$/, "");
  if (!base) throw new Error("the stack has no relayUrl (tunnel off): pass --url <base url>");
  const caller = pickCaller(out, o.caller);
  const client = new RelayClient({
    url: base,
    token: caller.relayToken,
    ...(caller.accessId && caller.accessSecret
      ? { accessClientId: caller.accessId, accessClientSecret: caller.accessSecret }
      : {}),
    timeoutMs: 20_000,
  });
  const acceptedAt = new Date();
  let id: string;
  try {
    id = (
      await client.send({
        from: o.from ?? out.defaultSender,
        to: o.to,
        subject: o.subject ?? `mail-relay smoke test ${acceptedAt.toISOString()}`,
        text: `A smoke test of the ${o.stack} stack, sent by \`npm run smoke\` at ${acceptedAt.toISOString()}.\n`,
        tags: ["smoke-test"],
      })
    ).id;
  } catch (e) {
    return { state: "refused", events: [], error: `POST /send: ${describeError(e)}` };
  }
  let last: MessageStatus | undefined;
  let error: string | undefined;
  try {
    last = await client.waitFor(id, { timeoutMs: o.timeoutSeconds * 1000, intervalMs: 1000 });
  } catch (e) {
    if (e instanceof RelayTimeoutError) last = e.last as MessageStatus;
    error = describeError(e);
  }
  const state = last?.state ?? "unknown";
  return {
    id,
    state: FINAL.has(state) ? state : `timeout (${state} after ${o.timeoutSeconds}s)`,
    events: timeline(id, acceptedAt, last),
    ...(error || last?.lastError ? { error: error ?? last?.lastError } : {}),
  };
}

async function main(argv: string[]): Promise<number> {
  const inputs = readInputs("smoke", parseSmokeArgs, argv);
  if (!inputs) return 2;
  const { o, outputs: out } = inputs;
  const r = await smoke(o, out);
  if (o.json) console.log(JSON.stringify(r, null, 2));
  else {
    console.log(`mail-relay smoke test: stack ${o.stack}, to ${o.to} (through client/, as a caller's code sends)`);
    for (const e of r.events) console.log(`  ${e.at}  ${e.event.padEnd(10)}  ${e.detail}`);
    if (r.error) console.log(`  error: ${r.error}`);
    console.log(`result: ${r.state}`);
  }
  return r.state === "delivered" ? 0 : 1;
}

runAsProgram(module, main);
