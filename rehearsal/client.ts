/**
 * What the rehearsal does to the deployed host from outside: HTTP through the edge and the tunnel stand-in (so
 * requests reach the relay from 127.0.0.1, as tunnel traffic does), and reading what the MX captured.
 * Every request runs inside `world`.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Capture } from "./capture";
import { run } from "./proc";
import { Names, WORLD } from "./world";

/** The fields of the relay's (and the edge's) JSON answers that the rehearsal reads. */
export interface RelayAnswer {
  readonly id?: string;
  readonly message?: {
    readonly state?: string;
    readonly postfixQueueId?: string;
    readonly recipients?: readonly { readonly state?: string; readonly dsn?: string; readonly remoteReply?: string }[];
  };
  readonly error?: { readonly code?: string };
}

export interface HttpAnswer {
  readonly status: number;
  /** The parsed JSON answer; empty when the answer was not JSON (`raw` has the text). */
  readonly body: RelayAnswer;
  readonly raw: string;
}

export interface CallerCreds {
  readonly caller: string;
  readonly relayToken: string;
  readonly accessId: string;
  readonly accessSecret: string;
}

export function callers(c: Capture): CallerCreds[] {
  const tokens = c.outputs.relayTokens as Record<string, string>;
  const ids = (c.outputs.accessClientIds ?? {}) as Record<string, string>;
  const secrets = (c.outputs.accessClientSecrets ?? {}) as Record<string, string>;
  return Object.keys(tokens).map((caller) => ({
    caller,
    relayToken: tokens[caller],
    accessId: ids[caller] ?? "",
    accessSecret: secrets[caller] ?? "",
  }));
}

export class RelayClient {
  constructor(
    private readonly n: Names,
    private readonly c: Capture,
    private readonly dir: string,
  ) {}

  get hostname(): string {
    return new URL(String(this.c.outputs.relayUrl)).hostname;
  }

  /** One HTTP request through the edge. Headers are passed in a file (curl -H @file), never in argv. */
  async request(
    method: string,
    urlPath: string,
    o: { creds?: Partial<CallerCreds>; body?: string; contentType?: string; headers?: Record<string, string> } = {},
  ): Promise<HttpAnswer> {
    const headers: string[] = [];
    if (o.creds?.accessId) headers.push(`CF-Access-Client-Id: ${o.creds.accessId}`);
    if (o.creds?.accessSecret) headers.push(`CF-Access-Client-Secret: ${o.creds.accessSecret}`);
    if (o.creds?.relayToken) headers.push(`Authorization: Bearer ${o.creds.relayToken}`);
    if (o.body !== undefined) headers.push(`Content-Type: ${o.contentType ?? "application/json"}`);
    for (const [k, v] of Object.entries(o.headers ?? {})) headers.push(`${k}: ${v}`);
    const hfile = path.join(this.dir, `.headers-${process.pid}-${Math.random().toString(36).slice(2)}`);
    fs.writeFileSync(hfile, headers.join("\n") + "\n", { mode: 0o600 });
    try {
      const args = [
        "netns",
        "exec",
        this.n.world,
        "curl",
        "-sS",
        "--max-time",
        "20",
        "-X",
        method,
        "-H",
        `@${hfile}`,
        "-w",
        "\n%{http_code}",
        "--connect-to",
        `${this.hostname}:80:${WORLD.edge}:80`,
        `http://${this.hostname}${urlPath}`,
      ];
      if (o.body !== undefined) args.push("--data-binary", "@-");
      const r = await run("ip", args, { input: o.body ?? "" });
      const cut = r.stdout.lastIndexOf("\n");
      const raw = r.stdout.slice(0, cut);
      let body: RelayAnswer = {};
      try {
        const parsed: unknown = JSON.parse(raw);
        if (parsed !== null && typeof parsed === "object") body = parsed as RelayAnswer;
      } catch {
        /* not JSON: body stays empty, raw has the text */
      }
      return { status: Number(r.stdout.slice(cut + 1)) || 0, body, raw };
    } finally {
      fs.rmSync(hfile, { force: true });
    }
  }

  send(creds: CallerCreds, message: Record<string, unknown>, headers?: Record<string, string>): Promise<HttpAnswer> {
    return this.request("POST", "/send", { creds, body: JSON.stringify(message), headers });
  }
}

export interface Verified {
  readonly file: string;
  readonly rcptTo: string;
  readonly remoteAddress: string;
  /** The session was TLS / authenticated as (smarthost). */
  readonly tls: boolean;
  readonly authUser: string | null;
  readonly dkim: string;
  readonly dkimSelector?: string;
  readonly dkimDomain?: string;
  readonly dkimHeaders?: string;
  /** Every DKIM-Signature's result (RSA and Ed25519). */
  readonly dkimAll?: readonly { result: string; selector?: string; algo?: string }[];
  readonly spf: string;
  readonly dmarc: string;
  readonly hasBcc: boolean;
  readonly subject: string;
  readonly messageId: string;
}

/** mailauth over everything the MX holds, inside `world` against the world's DNS. */
export async function verifyCaptured(n: Names, dir: string): Promise<Verified[]> {
  if (!fs.existsSync(dir)) return [];
  const r = await run(
    "ip",
    [
      "netns",
      "exec",
      n.world,
      process.execPath,
      "--import",
      "tsx",
      path.join(__dirname, "world", "verify.ts"),
      dir,
      WORLD.dns,
    ],
    { timeoutMs: 120_000 },
  );
  if (r.code !== 0) throw new Error(`verify.ts failed: ${r.stderr}`);
  return r.stdout
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Verified);
}

export function capturedCount(dir: string): number {
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith(".eml")).length : 0;
}
