/**
 * Phase 2 of the rehearsal: a Debian root filesystem that boots like a fresh Hetzner server. debootstrap with
 * systemd, dbus, sshd and cloud-init; a locale like Hetzner's image; and, standing in for Hetzner's apt mirror,
 * a local apt repository holding the .debs of exactly the packages the user-data installs (the booted host has
 * no network to a mirror). Cached between runs on the same machine, keyed by a hash of everything it is built from.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { DEBIAN_RELEASES, DEFAULT_RELEASE, type DebianRelease } from "../cloud-init/release";
import { HOST_PACKAGES } from "../cloud-init/user-data";
import { run, sh } from "./proc";

export interface ImageSpec {
  /** Debian codename: bookworm (Debian 12), trixie (Debian 13). */
  readonly suite: DebianRelease;
  readonly mirror: string;
  /** Packages the booted image has before cloud-init runs (Hetzner's image has these too). */
  readonly basePackages: readonly string[];
  /** Packages the local apt repository serves (the user-data's package list). */
  readonly repoPackages: readonly string[];
  /** The image's locale, like Hetzner's images (LANG=en_US.UTF-8). */
  readonly locale: string;
}

export const IMAGE_CACHE = process.env.MAIL_RELAY_REHEARSAL_CACHE ?? "/var/cache/mail-relay-rehearsal";
/** Where the booted image finds the local apt repository (file: URI, trusted: it never leaves the image). */
export const LOCAL_REPO = "/srv/rehearsal-apt";

/** Bumped when the build steps below change in a way the spec does not show. */
const BUILD_VERSION = "1";

export function defaultImageSpec(suite: DebianRelease = DEFAULT_RELEASE): ImageSpec {
  return {
    suite,
    mirror: process.env.MAIL_RELAY_REHEARSAL_MIRROR ?? "http://deb.debian.org/debian",
    basePackages: [
      "systemd-sysv",
      "dbus",
      "openssh-server",
      "cloud-init",
      "locales",
      "ifupdown",
      "iproute2",
      "netbase",
      "python3",
    ],
    repoPackages: [...HOST_PACKAGES],
    locale: "en_US.UTF-8",
  };
}

export function imageKey(spec: ImageSpec): string {
  return createHash("sha256")
    .update(JSON.stringify({ ...spec, BUILD_VERSION }))
    .digest("hex")
    .slice(0, 16);
}

export interface BuiltImage {
  readonly dir: string;
  readonly cached: boolean;
}

/** Where the image for `spec` is cached (its root filesystem is `rootfs` inside, complete once `.complete` exists). */
export function imageDir(spec: ImageSpec): string {
  return path.join(IMAGE_CACHE, `${spec.suite}-${imageKey(spec)}`);
}

/** The cached image for `spec`, building it first when it is missing (about 4 minutes). */
export async function ensureImage(spec: ImageSpec, progress: (msg: string) => void): Promise<BuiltImage> {
  return buildOnce(imageDir(spec), progress, (dir) => build(spec, dir, progress));
}

/**
 * The image's tools twin: the same root with the user-data's packages installed from the image's own local
 * repository (its only apt source), so the real-tool tests run the release's own postconf, postfix, opendkim, nft,
 * sshd, systemd-analyze, cloud-init and node on the rendered files. Cached beside the image it is made from.
 */
export function toolsImageDir(spec: ImageSpec): string {
  return `${imageDir(spec)}-tools`;
}

/** The tools image's root filesystem when it is built, else undefined (tests look, `npm run release-tools` builds). */
export function builtToolsImage(spec: ImageSpec): string | undefined {
  const dir = toolsImageDir(spec);
  return fs.existsSync(path.join(dir, ".complete")) ? path.join(dir, "rootfs") : undefined;
}

/** Where the real-tool tests keep their scratch files; bind-mounted into the tools image at the same path. */
export const TOOLS_SCRATCH = "/var/lib/mail-relay-tests";

/**
 * The cached tools image for `spec`, building the image and then the tools image when missing (about 1 minute more).
 */
export async function ensureToolsImage(spec: ImageSpec, progress: (msg: string) => void): Promise<BuiltImage> {
  return buildOnce(toolsImageDir(spec), progress, async (dir) => {
    const image = await ensureImage(spec, progress);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const root = path.join(dir, "rootfs");
    progress(
      `tools image: a copy of ${image.dir} with ${spec.repoPackages.join(" ")} installed from its local repository`,
    );
    const cp = await run("cp", ["-a", "--reflink=auto", image.dir, root]);
    if (cp.code !== 0) throw new Error(`copying the image: ${cp.stderr}`);
    // As the user-data preseeds it: a loopback-only Postfix from the moment it is installed.
    await chroot(
      root,
      "echo 'postfix postfix/main_mailer_type select Local only' | debconf-set-selections && " +
        "echo 'postfix postfix/mailname string tools.invalid' | debconf-set-selections",
    );
    // policy-rc.d: nothing may start in a chroot (systemctl already refuses; this keeps sysvinit fallbacks quiet).
    fs.writeFileSync(path.join(root, "usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n", { mode: 0o755 });
    await chroot(root, `apt-get install -y -qq ${spec.repoPackages.join(" ")}`);
    await chroot(root, `dpkg -s ${spec.repoPackages.join(" ")} >/dev/null`);
    fs.mkdirSync(path.join(root, TOOLS_SCRATCH.slice(1)), { recursive: true });
    fs.writeFileSync(path.join(dir, ".complete"), new Date().toISOString());
    progress(`tools image ready: ${root}`);
    return { dir: root, cached: false };
  });
}

/** The Debian release this machine runs (its own tools are that release's), or undefined on anything else. */
export function machineRelease(osRelease = "/etc/os-release"): DebianRelease | undefined {
  const text = fs.existsSync(osRelease) ? fs.readFileSync(osRelease, "utf8") : "";
  const id = /^ID=(.*)$/m.exec(text)?.[1]?.replace(/"/g, "");
  const codename = /^VERSION_CODENAME=(.*)$/m.exec(text)?.[1]?.replace(/"/g, "");
  return id === "debian" ? DEBIAN_RELEASES.find((r) => r === codename) : undefined;
}

/** Runs `make(dir)` unless `dir` is complete; one builder per directory on this machine (a lock file with its pid). */
async function buildOnce(
  dir: string,
  progress: (msg: string) => void,
  make: (dir: string) => Promise<BuiltImage>,
): Promise<BuiltImage> {
  if (fs.existsSync(path.join(dir, ".complete"))) return { dir: path.join(dir, "rootfs"), cached: true };
  // One builder per image: another rehearsal on this machine may be building the same one.
  fs.mkdirSync(IMAGE_CACHE, { recursive: true });
  const lock = `${dir}.lock`;
  for (let waited = 0; ; waited++) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: "wx" });
      break;
    } catch {
      const holder = Number(fs.readFileSync(lock, "utf8"));
      let alive = true;
      try {
        process.kill(holder, 0);
      } catch {
        alive = false;
      }
      if (!alive) fs.rmSync(lock, { force: true });
      else if (waited % 30 === 0) progress(`waiting for pid ${holder}, which is building ${dir}`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  try {
    if (fs.existsSync(path.join(dir, ".complete"))) return { dir: path.join(dir, "rootfs"), cached: true };
    return await make(dir);
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

async function build(spec: ImageSpec, dir: string, progress: (msg: string) => void): Promise<BuiltImage> {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const root = path.join(dir, "rootfs");
  progress(`debootstrap ${spec.suite} from ${spec.mirror} into ${root} (a few minutes; cached afterwards)`);
  const boot = await run(
    "debootstrap",
    ["--variant=minbase", `--include=${spec.basePackages.join(",")}`, spec.suite, root, spec.mirror],
    { timeoutMs: 30 * 60_000 },
  );
  if (boot.code !== 0) {
    // Seen here: debootstrap stops on python3-cryptography's virtual dependency; apt can finish the job.
    progress(`debootstrap exited ${boot.code}; finishing with apt-get -f install in the chroot`);
    await chroot(root, "apt-get -o Dpkg::Options::=--force-confdef -f install -y");
  }
  await chroot(root, `dpkg -s ${spec.basePackages.join(" ")} >/dev/null`);

  progress("locale, NoCloud datasource, local apt repository with the user-data's packages");
  fs.writeFileSync(path.join(root, "etc/locale.gen"), `${spec.locale} ${spec.locale.split(".")[1] ?? "UTF-8"}\n`);
  fs.writeFileSync(path.join(root, "etc/default/locale"), `LANG=${spec.locale}\n`);
  await chroot(root, "locale-gen");
  fs.writeFileSync(
    path.join(root, "etc/cloud/cloud.cfg.d/90-rehearsal-datasource.cfg"),
    "# mail-relay rehearsal: the seed is in /var/lib/cloud/seed/nocloud\ndatasource_list: [NoCloud, None]\n",
  );

  // The .debs of the user-data's packages and whatever they pull in, resolved against this very image.
  fs.copyFileSync("/etc/resolv.conf", path.join(root, "etc/resolv.conf"));
  // Like Hetzner's mirror: the release with its updates and security suites, so the host gets current packages.
  const security = spec.mirror.replace(/\/debian\/?$/, "/debian-security");
  fs.writeFileSync(
    path.join(root, "etc/apt/sources.list"),
    [
      `deb ${spec.mirror} ${spec.suite} main`,
      `deb ${spec.mirror} ${spec.suite}-updates main`,
      `deb ${security} ${spec.suite}-security main`,
      "",
    ].join("\n"),
  );
  await chroot(
    root,
    `apt-get update -qq && apt-get clean && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ` +
      `--download-only ${spec.repoPackages.join(" ")}`,
  );
  const repo = path.join(root, LOCAL_REPO.slice(1));
  fs.mkdirSync(repo, { recursive: true });
  const archives = path.join(root, "var/cache/apt/archives");
  const debs = fs.readdirSync(archives).filter((f) => f.endsWith(".deb"));
  for (const f of debs) fs.renameSync(path.join(archives, f), path.join(repo, f));
  await sh(`cd ${repo} && dpkg-scanpackages --multiversion . /dev/null > Packages 2>/dev/null`);
  fs.rmSync(path.join(root, "etc/apt/sources.list.d"), { recursive: true, force: true });
  fs.mkdirSync(path.join(root, "etc/apt/sources.list.d"));
  fs.writeFileSync(
    path.join(root, "etc/apt/sources.list"),
    `# mail-relay rehearsal: stands in for Hetzner's mirror; the booted host has no other source\n` +
      `deb [trusted=yes] file:${LOCAL_REPO} ./\n`,
  );
  await sh(`rm -rf ${root}/var/lib/apt/lists/*`);
  await chroot(root, "apt-get update -qq");
  fs.writeFileSync(path.join(root, "etc/resolv.conf"), "");

  // No service would start on package install with these left behind.
  fs.rmSync(path.join(root, "usr/sbin/policy-rc.d"), { force: true });
  const diverted = await chroot(root, "dpkg-divert --list", true);
  if (/start-stop-daemon/.test(diverted.stdout))
    await chroot(root, "rm -f /sbin/start-stop-daemon && dpkg-divert --rename --remove /sbin/start-stop-daemon");
  // First boot makes its own machine id, as a fresh server does.
  fs.writeFileSync(path.join(root, "etc/machine-id"), "");
  fs.writeFileSync(path.join(dir, "spec.json"), JSON.stringify({ ...spec, debs: debs.length }, null, 2));
  fs.writeFileSync(path.join(dir, ".complete"), new Date().toISOString());
  progress(`image ready: ${debs.length} .debs in the local repository`);
  return { dir: root, cached: false };
}

async function chroot(root: string, script: string, allowFail = false) {
  const r = await run("chroot", [root, "/bin/sh", "-c", script], {
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C" },
    timeoutMs: 20 * 60_000,
  });
  if (r.code !== 0 && !allowFail)
    throw new Error(`in the image chroot, \`${script}\` exited ${r.code}:\n${r.stderr.slice(-3000)}`);
  return r;
}
