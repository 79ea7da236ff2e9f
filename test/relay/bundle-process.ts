import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { expect } from "vitest";

export const BUNDLE = path.resolve(__dirname, "../../relay/dist/relay.js");
export const NODE18_DIR = path.resolve(__dirname, "../../.cache/node18");
export const NODE18 = {
  bin: path.join(NODE18_DIR, "usr/bin/node"),
  env: { LD_LIBRARY_PATH: path.join(NODE18_DIR, "usr/lib/x86_64-linux-gnu") },
};

export interface BundleProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly dir: string;
  readonly stdout: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * A node interpreter: its path and environment, and for one inside another root (a release's tools image), how to
 * turn [bin, ...args] with an environment into the command that runs it there (test/cloud-init/release-tools.ts).
 */
export interface NodeRuntime {
  readonly bin: string;
  readonly env: Record<string, string>;
  readonly command?: (argv: readonly string[], env: Record<string, string>) => string[];
}

/** Copies the bundle into an empty directory (no node_modules next to it) and starts it with a fake sendmail. */
export async function startBundle(
  dir: string,
  token: string,
  node: NodeRuntime,
  extraEnv: Record<string, string> = {},
): Promise<BundleProcess> {
  mkdirSync(path.join(dir, "app"), { recursive: true });
  copyFileSync(BUNDLE, path.join(dir, "app", "relay.js"));
  const sendmail = path.join(dir, "fake-sendmail");
  writeFileSync(
    sendmail,
    `#!/bin/sh\nn=$(date +%s%N)\nprintf '%s\\n' "$@" > ${dir}/sendmail-args.$n\ncat > ${dir}/sendmail-msg.$n\n`,
  );
  chmodSync(sendmail, 0o755);
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    ...node.env,
    RELAY_LISTEN: "127.0.0.1:0",
    SMTP_RELAY_TOKEN: `app=${token}`,
    RELAY_ALLOWED_FROM: "noreply@example.com",
    RELAY_MESSAGE_ID_DOMAIN: "mail.example.com",
    QUEUE_ROOT: path.join(dir, "queue"),
    RELAY_HANDOFF: "sendmail",
    SENDMAIL_PATH: sendmail,
    ...extraEnv,
  };
  const [cmd, ...args] = node.command
    ? node.command([node.bin, path.join(dir, "app", "relay.js")], env)
    : [node.bin, path.join(dir, "app", "relay.js")];
  const child = spawn(cmd, args, {
    cwd: path.join(dir, "app"),
    env: node.command ? process.env : env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (out += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start:\n${out}`)), 15_000);
    const onData = () => {
      const m = /"address":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    };
    child.stdout?.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`relay exited with ${code}:\n${out}`));
    });
  });
  return {
    child,
    url,
    dir,
    stdout: () => out,
    stop: (signal = "SIGTERM") =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
        child.once("exit", (code) => resolve(code));
        child.kill(signal);
      }),
  };
}

export const haveBundle = existsSync(BUNDLE);
export const haveNode18 = existsSync(NODE18.bin);

/** What GET /messages/:id said of a job: its state ("" before the relay answered with one) and Postfix's queue id. */
export interface MessageStatus {
  readonly state: string;
  readonly postfixQueueId?: string;
}

/** Polls GET /messages/:id until the job is handed off, or 5 s pass; returns what the relay said last. */
export async function waitHandedOff(r: BundleProcess, token: string, id: string): Promise<MessageStatus> {
  let message: MessageStatus = { state: "" };
  for (let i = 0; i < 100 && message.state !== "handed_off"; i++) {
    await new Promise((res) => setTimeout(res, 50));
    const res = await fetch(`${r.url}/messages/${id}`, { headers: { authorization: `Bearer ${token}` } });
    message = ((await res.json()) as { message?: MessageStatus }).message ?? { state: "" };
  }
  return message;
}

/** POST /send (expects 202), then waits for the job to be handed off (waitHandedOff). */
export async function sendAndWait(
  r: BundleProcess,
  token: string,
  body: Record<string, unknown>,
): Promise<MessageStatus> {
  const res = await fetch(`${r.url}/send`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as { id: string };
  return waitHandedOff(r, token, id);
}
