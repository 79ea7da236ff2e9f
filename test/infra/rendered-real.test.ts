/**
 * Real Debian software on the exact files the program renders for the repo's stacks (not on renderer fixtures):
 * Postfix's own parser on each node's pushed main.cf/master.cf, and cloud-init's schema checker on each
 * server's user-data.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { OfflineRun } from "../../infra/offline";
import { missing, removeDir, run, safeScratchDir, tool } from "../cloud-init/real-tools";
import { ofType, pushedFiles, runStack, T } from "../helpers/stack";

const skipPostconf = missing("postconf on the program's rendered main.cf", { tools: ["postconf"], scratch: true });
const skipSchema = missing("cloud-init schema on the program's user-data", { tools: ["cloud-init"], scratch: true });

const runs: [string, OfflineRun][] = [];
const dirs: string[] = [];
beforeAll(async () => {
  runs.push(["prod", await runStack("prod")], ["staging", await runStack("staging")], ["prod, 2 nodes", await runStack("prod", { nodeCount: 2 })]);
}, 120_000);
afterAll(() => dirs.forEach(removeDir));

describe.skipIf(skipPostconf)("Postfix accepts the program's main.cf/master.cf as they are pushed", () => {
  it("for every stack and node: no unknown parameter, loopback-only, milter tempfail, EHLO name = the node's PTR", () => {
    let checked = 0;
    for (const [name, r] of runs) {
      const files = pushedFiles(r.resources);
      const nodes = [...new Set(files.map((f) => f.node))];
      expect(nodes.length).toBe((r.outputs.nodes as unknown[]).length);
      for (const node of nodes) {
        const dir = safeScratchDir("program-postconf-");
        dirs.push(dir);
        for (const f of ["main.cf", "master.cf"]) writeFileSync(join(dir, f), files.find((x) => x.node === node && x.path === `/etc/postfix/${f}`)!.content);
        const postconf = (...args: string[]) => run(tool("postconf")!, ["-c", dir, ...args]);
        const all = postconf("-n");
        expect(all.status, `${name}/${node}: ${all.stderr}`).toBe(0);
        expect(all.stderr, `${name}/${node}`).toBe("");
        expect(postconf("-h", "inet_interfaces").stdout.trim()).toBe("loopback-only");
        expect(postconf("-h", "milter_default_action").stdout.trim()).toBe("tempfail");
        const ptr = ofType(r.resources, T.rdns).find((p) => p.name.includes(`-${node}-`))!.props.dnsPtr;
        expect(postconf("-h", "myhostname").stdout.trim()).toBe(ptr);
        expect(postconf("-h", "smtp_helo_name").stdout.trim()).toBe(ptr);
        const services = postconf("-M").stdout.trim().split("\n").map((l) => l.split(/\s+/));
        expect(services.filter((s) => s[1] === "inet").map((s) => s[0])).toEqual(["smtp"]);
        checked++;
      }
    }
    expect(checked).toBe(4);
  });
});

describe.skipIf(skipSchema)("cloud-init's schema checker accepts the program's user-data", () => {
  it("for every stack and server", () => {
    let checked = 0;
    for (const [name, r] of runs) {
      for (const s of ofType(r.resources, T.server)) {
        const dir = safeScratchDir("program-userdata-");
        dirs.push(dir);
        const file = join(dir, "user-data.yaml");
        writeFileSync(file, s.props.userData);
        const res = run(tool("cloud-init")!, ["schema", "--config-file", file]);
        expect(res.status, `${name}/${s.name}: ${res.stdout}${res.stderr}`).toBe(0);
        expect(res.stdout + res.stderr).toMatch(/Valid cloud-config/i);
        checked++;
      }
    }
    expect(checked).toBe(4);
  });
});
