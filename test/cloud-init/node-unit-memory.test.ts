import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { hostConfigFiles } from "../../cloud-init/host-files";
import { NODE_V8_POOL_SIZE, nodeFlags } from "../../cloud-init/systemd";
import { missing } from "../../testkit/real-tools";
import { haveNode18, NODE18 } from "../relay/bundle-process";
import type { HostSettings } from "../../cloud-init/types";
import { buildConfig } from "../../testkit/node-config";
import { parseUnit, unitValue } from "./parsers";

// Every systemd unit the host gets, for each shape of host: each one that runs node is checked below.
const hosts: readonly [string, HostSettings][] = [
  ["direct delivery", buildConfig().host],
  ["smarthost", buildConfig({ smarthost: true }).host],
  ["no tunnel", buildConfig({ tunnel: false }).host],
  ["sendmail hand-off", { ...buildConfig().host, relayHandoff: "sendmail" }],
  ["outbound TLS opted out", { ...buildConfig().host, outboundTls: "opportunistic-accepting-downgrade" }],
];

function nodeUnits(s: HostSettings): { path: string; execStart: string; memoryMax: string }[] {
  return hostConfigFiles(s)
    .filter((f) => f.path.endsWith(".service"))
    .map((f) => {
      const unit = parseUnit(f.content);
      return {
        path: f.path,
        execStart: unitValue(unit, "Service", "ExecStart"),
        memoryMax: unit.get("Service")?.get("MemoryMax")?.[0] ?? "",
      };
    })
    .filter((u) => u.execStart.startsWith("/usr/bin/node "));
}

function mib(memoryMax: string): number {
  const m = /^(\d+)M$/.exec(memoryMax);
  if (!m) throw new Error(`MemoryMax ${JSON.stringify(memoryMax)} is not in MiB`);
  return Number(m[1]);
}

describe("every node unit tells V8 its memory budget: the old generation is half the unit's MemoryMax", () => {
  for (const [name, s] of hosts) {
    const units = nodeUnits(s);
    it(`${name}: the relay's own units are among them`, () => {
      expect(units.map((u) => u.path)).toContain("/etc/systemd/system/mail-relay.service");
      expect(units.map((u) => u.path)).toContain("/etc/systemd/system/mail-relay-webhooks.service");
    });
    for (const u of units)
      it(`${name}: ${u.path} caps V8's old generation at half of MemoryMax=${u.memoryMax}`, () => {
        const flag = /^\/usr\/bin\/node (?:\S+ )*--max-old-space-size=(\d+) /.exec(u.execStart);
        expect(
          flag,
          `${u.path} ExecStart has no --max-old-space-size before the script: ${u.execStart}`,
        ).not.toBeNull();
        expect(Number(flag?.[1])).toBe(Math.floor(mib(u.memoryMax) / 2));
      });
  }
  it("the finder sees a node unit without the flag (a unit rendered the old way fails the rule)", () => {
    const old = parseUnit("[Service]\nExecStart=/usr/bin/node /opt/mail-relay/current/relay.js\nMemoryMax=512M\n");
    expect(/--max-old-space-size=(\d+) /.exec(unitValue(old, "Service", "ExecStart"))).toBeNull();
  });
});

describe("every node unit runs V8 with one background thread, and node honours the flag", () => {
  for (const [name, s] of hosts)
    for (const u of nodeUnits(s))
      it(`${name}: ${u.path} passes --v8-pool-size=${NODE_V8_POOL_SIZE} before the script`, () => {
        expect(u.execStart).toMatch(new RegExp(`^/usr/bin/node (?:\\S+ )*--v8-pool-size=${NODE_V8_POOL_SIZE} /`));
      });

  // The flag's effect, on the node the test runs on and on Debian 12's: the process has 3 fewer threads than with
  // node's default of 4 (V8's workers; libuv's pool starts later, on first use).
  const threads = (bin: string, env: Record<string, string>, flags: readonly string[]): number => {
    const r = spawnSync(
      bin,
      [...flags, "-e", 'setTimeout(() => console.log(require("fs").readdirSync("/proc/self/task").length), 300)'],
      { env: { ...process.env, ...env }, encoding: "utf8" },
    );
    expect(r.status, r.stderr).toBe(0);
    return Number(r.stdout.trim());
  };
  const runtimes = [
    { name: `this machine's node (${process.version})`, bin: process.execPath, env: {} as Record<string, string> },
    ...(haveNode18 ? [{ name: "Debian 12's node 18", bin: NODE18.bin, env: NODE18.env }] : []),
  ];
  const noNode18 = missing("the Node 18 variant of the V8 thread-pool test", {
    check: () => (haveNode18 ? undefined : `${NODE18.bin} is missing; run bash .ci/node18.sh`),
  });
  if (noNode18) it.skip(`node 18: ${noNode18}`, () => undefined);
  for (const { name, bin, env } of runtimes)
    it(`on ${name}: the unit's flags leave ${4 - NODE_V8_POOL_SIZE} fewer threads than node's default pool of 4`, () => {
      const withDefault = threads(bin, env, ["--v8-pool-size=4"]);
      const withUnitFlags = threads(bin, env, nodeFlags(256));
      expect(withDefault - withUnitFlags).toBe(4 - NODE_V8_POOL_SIZE);
    });
});
