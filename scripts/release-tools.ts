/**
 * `npm run release-tools`: builds (or finds cached) the tools image of every tested Debian release this machine does
 * not run itself, so the real-tool tests can run each release's own postconf, postfix, opendkim, nft, sshd,
 * systemd-analyze, cloud-init and node on the rendered files (rehearsal/image.ts, ensureToolsImage). The machine's
 * own release uses the machine's tools (.ci/run installs them). `npm test` runs this before vitest.
 *
 * Needs root and debootstrap; without them it says why and exits 0, or 1 under MAIL_RELAY_REQUIRE_REAL=1 (CI).
 */
import { execFileSync } from "node:child_process";
import { DEBIAN_RELEASES, releaseName } from "../cloud-init/release";
import { defaultImageSpec, ensureToolsImage, machineRelease } from "../rehearsal/image";

function unavailable(): string | undefined {
  if (process.platform !== "linux") return "tools images need Linux";
  if (process.getuid?.() !== 0) return "tools images need root (debootstrap, chroot)";
  for (const t of ["debootstrap", "dpkg-scanpackages", "chroot", "unshare"]) {
    try {
      execFileSync("sh", ["-c", `command -v ${t}`], { stdio: "ignore" });
    } catch {
      return `tools images need \`${t}\` (apt-get install debootstrap dpkg-dev util-linux)`;
    }
  }
  return undefined;
}

async function main(): Promise<number> {
  const own = machineRelease();
  const wanted = DEBIAN_RELEASES.filter((r) => r !== own);
  const why = unavailable();
  if (why) {
    const msg = `release-tools: cannot build the tools images for ${wanted.map(releaseName).join(", ")}: ${why}`;
    if (process.env.MAIL_RELAY_REQUIRE_REAL === "1") {
      console.error(`${msg}. MAIL_RELAY_REQUIRE_REAL=1 (CI): failing instead of skipping.`);
      return 1;
    }
    console.error(`${msg}; the tests that need them skip.`);
    return 0;
  }
  for (const r of wanted) {
    const t0 = Date.now();
    const built = await ensureToolsImage(defaultImageSpec(r), (m) => console.error(`[release-tools ${r}] ${m}`));
    console.log(
      `release-tools: ${releaseName(r)} ` +
        `${built.cached ? "cached" : `built in ${((Date.now() - t0) / 1000).toFixed(0)} s`}: ${built.dir}`,
    );
  }
  if (own)
    console.log(`release-tools: ${releaseName(own)} is this machine's own release: its tests use this machine's tools`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    process.exit(1);
  },
);
