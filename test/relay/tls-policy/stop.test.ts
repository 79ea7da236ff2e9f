// The DANE-first socketmap's unit must stop promptly: Postfix keeps its socketmap connections open between lookups,
// and a server that waits for them would hold `systemctl stop`/`restart` (a release's activation, its rollback) until
// systemd's stop timeout and a SIGKILL.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { connect, createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const BUNDLE = join(__dirname, "..", "..", "..", "relay", "dist", "relay.js");

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe.skipIf(!existsSync(BUNDLE))("relay.js tls-policy stops on SIGTERM", () => {
  it("exits within 3 s of SIGTERM while a client (as Postfix does) holds a connection open", async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [BUNDLE, "tls-policy"], {
      env: { PATH: process.env.PATH, TLS_POLICY_LISTEN: `127.0.0.1:${port}` },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      const deadline = Date.now() + 10_000;
      while (!/listening/.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(out).toMatch(/listening/);
      const held = connect(port, "127.0.0.1");
      await new Promise<void>((r, j) => held.once("connect", () => r()).once("error", j));
      held.on("error", () => undefined);
      const closedByServer = new Promise<void>((r) => held.once("close", () => r()));
      const t0 = Date.now();
      child.kill("SIGTERM");
      const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r("still running"), 3000))]);
      expect(code).toBe(0);
      expect(Date.now() - t0).toBeLessThan(3000);
      await closedByServer;
      expect(out).toMatch(/tls-policy socketmap stopped/);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });
});
