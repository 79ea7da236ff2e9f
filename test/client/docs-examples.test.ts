// docs/clients.md's curl block, run as written against the real relay (relay/server.ts on 127.0.0.1:0): only the
// host is replaced. The Access headers go to the relay, which ignores them (Cloudflare checks them in production).
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { missing } from "../../testkit/real-tools";
import { FROM, startRealRelay, TOKEN, type RealRelay } from "./real-relay";

const skip = missing("docs/clients.md's curl example", { tools: ["curl"] });
const doc = readFileSync(path.join(__dirname, "../../docs/clients.md"), "utf8");
const curlBlock = /## curl\n\n```sh\n([\s\S]*?)```/.exec(doc)?.[1] ?? "";

let relay: RealRelay;
beforeAll(async () => {
  relay = await startRealRelay();
});
afterAll(() => relay?.close());

describe.skipIf(skip)("the docs' examples match the API", () => {
  it("docs/clients.md's curl block sends (202 with an id) and its DELETE reaches the relay's suppression route", async () => {
    expect(curlBlock).toContain("/send");
    const script = curlBlock
      .replaceAll("https://mail-relay.example.com", relay.url)
      .replaceAll("noreply@example.com", FROM);
    // Asynchronously: the relay answers from this process's event loop.
    const { stdout: out } = await promisify(execFile)("bash", ["-euo", "pipefail", "-c", script], {
      encoding: "utf8",
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        CF_ACCESS_CLIENT_ID: "id",
        CF_ACCESS_CLIENT_SECRET: "secret",
        SMTP_RELAY_TOKEN: TOKEN,
      },
    });
    const answers = out
      .replace(/}\s*{/g, "}\n{") // curl -sS prints each answer without a newline
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { ok: boolean; id?: string; error?: { code: string; message: string } });
    expect(answers[0]).toMatchObject({ ok: true, queued: true });
    expect(answers[0]?.id).toMatch(/^[0-9a-f-]{36}$/);
    // Not on the list: the relay's own answer, naming the decoded address.
    expect(answers[1]?.error?.code).toBe("not_found");
    expect(answers[1]?.error?.message).toContain("gone@example.net");
  });
});
