import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it, vi } from "vitest";
import { runStack } from "../helpers/stack";

const root = path.join(__dirname, "../..");
const run = promisify(execFile);

describe("npm run plan: the offline plan", () => {
  it("prints every resource and output of a stack, masks secrets, and writes the rendered files", async () => {
    const { stdout } = await run(
      process.execPath,
      [path.join(root, "node_modules/tsx/dist/cli.mjs"), "infra/plan.ts", "prod"],
      { cwd: root, timeout: 120_000, maxBuffer: 10 << 20 },
    );
    expect(stdout).toMatch(/Resources `pulumi up` would create for stack "prod" \(\d+\):/);
    for (const t of [
      "hcloud:Server",
      "hcloud:Firewall",
      "hcloud:PrimaryIp",
      "hcloud:Rdns",
      "cloudflare:DnsRecord",
      "cloudflare:ZeroTrustAccessApplication",
      "command:Command",
    ])
      expect(stdout).toContain(t);
    expect(stdout).toContain('"relayTokens": "[secret]"');
    expect(stdout).toContain('"accessClientSecrets": "[secret]"');
    expect(stdout).not.toMatch(/SMTP_RELAY_TOKEN=|PRIVATE KEY-----/);
    // Every credential with a date, with its renewal (output credentialExpiry).
    expect(stdout).toMatch(
      /Credentials that expire \(output credentialExpiry.*\n {2}\d{4}-\d\d-\d\dT\S+Z {2}cloudflare-access-service-token {2}mail-relay-prod-app\n {6}renew: pulumi config set --path /,
    );
    const dir = path.join(root, "plan-out/prod/node1");
    const userData = fs.readFileSync(path.join(dir, "user-data.yaml"), "utf8");
    expect(userData.startsWith("#cloud-config")).toBe(true);
    expect(fs.readFileSync(path.join(dir, "etc/postfix/main.cf"), "utf8")).toMatch(
      /^inet_interfaces\s*=\s*loopback-only/m,
    );
    // Secret files are listed, never written.
    expect(fs.existsSync(path.join(dir, "etc/mail-relay.env"))).toBe(false);
    expect(stdout).toMatch(/Secret files pushed over SSH, not written here: .*\/etc\/mail-relay\.env/);
  }, 150_000);

  it("refuses an unknown stack with the list of stacks", async () => {
    const err = await run(
      process.execPath,
      [path.join(root, "node_modules/tsx/dist/cli.mjs"), "infra/plan.ts", "nope"],
      { cwd: root, timeout: 60_000 },
    ).catch((e) => e);
    expect(err.code).toBe(2);
    expect(err.stderr).toMatch(/no stack "nope".*stacks here: prod, staging/);
  }, 90_000);

  it("a stack with nodeCount > 1 prints the nodeCount warning (pulumi.log.warn; the plan runs this same offline run)", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    try {
      await runStack("prod", { nodeCount: 2 });
      expect(warn.mock.calls.map((c) => String(c[0]))).toContainEqual(
        expect.stringMatching(/^warning: \[runtime\] mail-relay:nodeCount is 2: .*404.*twice.*per node/),
      );
      warn.mockClear();
      await runStack("prod");
      expect(warn.mock.calls.map((c) => String(c[0])).filter((m) => m.includes("nodeCount"))).toEqual([]);
    } finally {
      warn.mockRestore();
    }
  }, 120_000);
});
