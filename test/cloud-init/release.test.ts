// The release table (cloud-init/release.ts) is the one place a release difference lives: each row is complete, the
// renderers read it, and nothing else in the rendered output differs between releases.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import {
  DEBIAN_RELEASES,
  DEFAULT_RELEASE,
  RELEASES,
  hostConfigFiles,
  releaseForImage,
  releaseName,
  releaseProfile,
  renderApplyMailConfig,
  type DebianRelease,
  type HostFile,
} from "../../cloud-init";
import { buildConfig } from "../../testkit/node-config";
import { parseMainCf } from "./parsers";

const other = (r: DebianRelease): DebianRelease => DEBIAN_RELEASES.find((x) => x !== r)!;

describe("the release table", () => {
  it("has a row per release, oldest first, each with its own Hetzner image and version", () => {
    expect(DEBIAN_RELEASES).toEqual(["bookworm", "trixie"]);
    expect(DEBIAN_RELEASES.map((r) => RELEASES[r].version)).toEqual([12, 13]);
    expect(DEBIAN_RELEASES.map((r) => RELEASES[r].hetznerImage)).toEqual(["debian-12", "debian-13"]);
    for (const r of DEBIAN_RELEASES) expect(RELEASES[r].codename).toBe(r);
  });
  it("maps each tested image to its release and nothing else", () => {
    expect(releaseForImage("debian-13")).toBe("trixie");
    expect(releaseForImage("debian-12")).toBe("bookworm");
    for (const image of ["debian-11", "ubuntu-24.04", "debian-13-arm", "12345678", ""])
      expect(releaseForImage(image)).toBeUndefined();
  });
  it("defaults to Debian 13", () => {
    expect(DEFAULT_RELEASE).toBe("trixie");
    expect(releaseName(DEFAULT_RELEASE)).toBe("Debian 13 (trixie)");
  });
  it("refuses a release it has no row for", () => {
    expect(() => releaseProfile("buster" as DebianRelease)).toThrow(
      /release must be one of bookworm, trixie, got "buster"/,
    );
    expect(() => renderApplyMailConfig({ ...buildConfig().host, release: "sid" as DebianRelease })).toThrow(
      /release must be one of/,
    );
  });
  it("the relay bundle's esbuild target is the oldest release's Node, so it runs on every release's own nodejs", () => {
    const build = fs.readFileSync(path.join(__dirname, "../../relay/build.mjs"), "utf8");
    const oldest = Math.min(...DEBIAN_RELEASES.map((r) => RELEASES[r].ships.node));
    expect(/target: "node(\d+)"/.exec(build)?.[1]).toBe(String(oldest));
  });
});

describe.each(DEBIAN_RELEASES)("the renderers read %s's row", (release) => {
  const host = buildConfig({ release }).host;
  it("main.cf: compatibility_level", () => {
    expect(
      parseMainCf(hostConfigFiles(host).find((f) => f.path === "/etc/postfix/main.cf")!.content).get(
        "compatibility_level",
      ),
    ).toBe(RELEASES[release].postfix.compatibilityLevel);
  });
  it("the mail step reads the log of the unit that runs Postfix's master", () => {
    const script = renderApplyMailConfig(host);
    expect(script).toContain(`journalctl -u ${RELEASES[release].postfix.masterUnit} `);
    expect(script).not.toContain(`journalctl -u ${RELEASES[other(release)].postfix.masterUnit} `);
  });
});

describe("nothing else differs between the releases' rendered files", () => {
  // If this fails after a renderer change, the difference belongs in cloud-init/release.ts and in the list below.
  // User-data takes no release at all (BootstrapSettings): cloud-init 22.4 and 25.1 accept the same document.
  const lines = (files: HostFile[]) => new Map(files.map((f) => [f.path, f.content.split("\n")]));
  const differing = (a: string[], b: string[]) =>
    a.filter((l) => !b.includes(l)).concat(b.filter((l) => !a.includes(l)));

  it("host files: only main.cf's compatibility_level line", () => {
    for (const variant of [{}, { smarthost: true, ipv6: true }, { tunnel: false }]) {
      const [old, now] = DEBIAN_RELEASES.map((release) =>
        lines(hostConfigFiles(buildConfig({ ...variant, release }).host)),
      );
      expect([...now.keys()]).toEqual([...old.keys()]);
      const diffs = [...now.keys()].flatMap((p) => differing(old.get(p)!, now.get(p)!).map((l) => `${p}: ${l}`));
      expect(diffs.sort()).toEqual(
        DEBIAN_RELEASES.map(
          (r) => `/etc/postfix/main.cf: compatibility_level = ${RELEASES[r].postfix.compatibilityLevel}`,
        ).sort(),
      );
    }
  });
  it("deploy steps: only the mail step's journal line", () => {
    const [old, now] = DEBIAN_RELEASES.map((release) =>
      renderApplyMailConfig(buildConfig({ release }).host).split("\n"),
    );
    expect(differing(old, now).every((l) => l.includes("journalctl -u postfix"))).toBe(true);
    expect(differing(old, now)).toHaveLength(2);
  });
});
