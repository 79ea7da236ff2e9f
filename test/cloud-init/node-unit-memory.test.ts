import { describe, expect, it } from "vitest";
import { hostConfigFiles } from "../../cloud-init/host-files";
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
