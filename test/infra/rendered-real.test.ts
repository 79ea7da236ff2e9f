/**
 * Real Debian software on the exact files the program renders for the repo's stacks (not on renderer fixtures), for
 * each tested image with that image's own release's tools (test/cloud-init/release-tools.ts): Postfix's own parser on
 * each node's pushed main.cf/master.cf, and cloud-init's schema checker on each server's user-data.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RELEASES, releaseForImage, releaseName } from "../../cloud-init/release";
import type { OfflineRun } from "../../infra/offline";
import { missing, removeDir, safeScratchDir } from "../../testkit/real-tools";
import { eachRelease, type ReleaseTools } from "../cloud-init/release-tools";
import { ofType, pushedFiles, runStack, T } from "../helpers/stack";

const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDir));

for (const { release, tools: found, skip: skip0 } of eachRelease("real tools on the program's rendered files", [
  "postconf",
  "cloud-init",
])) {
  const skip = skip0 ?? missing(`the program's rendered files on ${releaseName(release)}`, { scratch: true });
  const image = RELEASES[release].hetznerImage;
  const t = () => found as ReleaseTools;

  describe.skipIf(skip)(
    `image ${image}: ${releaseName(release)}'s own tools accept what the program renders for it`,
    () => {
      const runs: [string, OfflineRun][] = [];
      beforeAll(async () => {
        runs.push(
          ["prod", await runStack("prod", { image })],
          ["staging", await runStack("staging", { image })],
          ["prod, 2 nodes", await runStack("prod", { image, nodeCount: 2 })],
        );
        // The runs really are this image's: the test would otherwise check one release's files with the other's tools.
        for (const [, r] of runs)
          for (const s of ofType(r.resources, T.server)) expect(releaseForImage(s.props.image)).toBe(release);
      }, 180_000);

      it("Postfix: for every stack and node no unknown parameter, loopback-only, milter tempfail, EHLO name = the node's PTR", () => {
        let checked = 0;
        for (const [name, r] of runs) {
          const files = pushedFiles(r.resources);
          const nodes = [...new Set(files.map((f) => f.node))];
          expect(nodes.length).toBe((r.outputs.nodes as unknown[]).length);
          for (const node of nodes) {
            const dir = safeScratchDir("program-postconf-");
            dirs.push(dir);
            for (const f of ["main.cf", "master.cf"])
              writeFileSync(
                join(dir, f),
                files.find((x) => x.node === node && x.path === `/etc/postfix/${f}`)!.content,
              );
            const postconf = (...args: string[]) => t().run("postconf", ["-c", dir, ...args]);
            const all = postconf("-n");
            expect(all.status, `${name}/${node}: ${all.stderr}`).toBe(0);
            expect(all.stderr, `${name}/${node}`).toBe("");
            expect(postconf("-h", "compatibility_level").stdout.trim()).toBe(
              RELEASES[release].postfix.compatibilityLevel,
            );
            expect(postconf("-h", "inet_interfaces").stdout.trim()).toBe("loopback-only");
            expect(postconf("-h", "milter_default_action").stdout.trim()).toBe("tempfail");
            const ptr = ofType(r.resources, T.rdns).find((p) => p.name.includes(`-${node}-`))!.props.dnsPtr;
            expect(postconf("-h", "myhostname").stdout.trim()).toBe(ptr);
            expect(postconf("-h", "smtp_helo_name").stdout.trim()).toBe(ptr);
            const services = postconf("-M")
              .stdout.trim()
              .split("\n")
              .map((l) => l.split(/\s+/));
            expect(services.filter((s) => s[1] === "inet").map((s) => s[0])).toEqual(["smtp"]);
            checked++;
          }
        }
        expect(checked).toBe(4);
      });

      it("cloud-init: every server's user-data is valid, with no deprecated key", () => {
        let checked = 0;
        for (const [name, r] of runs) {
          for (const s of ofType(r.resources, T.server)) {
            const dir = safeScratchDir("program-userdata-");
            dirs.push(dir);
            const file = join(dir, "user-data.yaml");
            writeFileSync(file, s.props.userData);
            const res = t().run("cloud-init", ["schema", "--config-file", file]);
            expect(res.status, `${name}/${s.name}: ${res.stdout}${res.stderr}`).toBe(0);
            expect(res.stdout + res.stderr).toMatch(/Valid (cloud-config|schema)/i);
            expect(res.stdout + res.stderr).not.toMatch(/deprecat/i);
            checked++;
          }
        }
        expect(checked).toBe(4);
      });
    },
  );
}
