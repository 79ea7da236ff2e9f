// Each tested Debian release's own tools, for the real-tool tests: this machine's when it runs that release (.ci/run
// installs them), else the release's tools image (rehearsal/image.ts: the rehearsal's debootstrap image with the
// user-data's packages installed from its own local repository, built by `npm run release-tools`), entered with
// chroot inside a private mount namespace: the image under a throw-away overlay, /proc, /dev and tmpfs /run and /tmp
// of the namespace's own, and the tests' scratch directory at the same path inside, so a file the test writes is the
// file the tool reads. Nothing the chroot does outlives the call, and the cached image is never changed.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { DEBIAN_RELEASES, releaseName, type DebianRelease } from "../../cloud-init/release";
import { builtToolsImage, defaultImageSpec, machineRelease, TOOLS_SCRATCH } from "../../rehearsal/image";
import { afterAll, beforeAll } from "vitest";
import { isRoot, missing, removeDir, safeScratchDir, tool } from "../../testkit/real-tools";

const SEARCH = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

export interface RunOptions {
  readonly input?: string;
  readonly env?: Record<string, string>;
  readonly timeout?: number;
  /** Run inside this network namespace (ip netns exec). */
  readonly netns?: string;
}

export interface ReleaseTools {
  readonly release: DebianRelease;
  /** "this machine" or the tools image's root. */
  readonly where: string;
  /** The tool's absolute path in the release's filesystem, or undefined when it is not installed there. */
  path(name: string): string | undefined;
  /** Runs `name` (looked up in the release's filesystem) with `args`; the tools' own exit status and output. */
  run(name: string, args: readonly string[], opts?: RunOptions): SpawnSyncReturns<string>;
  /** How a long-running process is started the same way: [command, ...args] for spawn(). */
  command(name: string, args: readonly string[], opts?: Pick<RunOptions, "netns" | "env">): string[];
}

/**
 * Mounts the namespace's own view of the image, then becomes the tool. $1 = the image root, the rest = the command.
 * The image is the lower layer of an overlay whose upper layer is a tmpfs of this namespace: a tool may write where
 * it would on a host (postfix set-permissions chowns its own directories), and nothing of it outlives the call.
 */
const ENTER = [
  "set -e",
  "image=$1; shift",
  "top=/run/mail-relay-release-tools",
  'mkdir -p "$top"',
  'mount -t tmpfs -o mode=0700 tmpfs "$top"',
  'mkdir "$top/upper" "$top/work" "$top/root"',
  'mount -t overlay overlay -o "lowerdir=$image,upperdir=$top/upper,workdir=$top/work" "$top/root"',
  'root="$top/root"',
  'mount -t proc proc "$root/proc"',
  'mount --rbind /dev "$root/dev"',
  'mount -t tmpfs -o mode=0755 tmpfs "$root/run"',
  'mkdir -p "$root/run/sshd"',
  'mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"',
  `mount --bind ${TOOLS_SCRATCH} "$root${TOOLS_SCRATCH}"`,
  'exec chroot "$root" "$@"',
].join("\n");

const BASE_ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C.UTF-8", HOME: "/root" };

function hostTools(release: DebianRelease): ReleaseTools {
  const wrap = (cmd: string[], netns?: string) => (netns ? [tool("ip") ?? "ip", "netns", "exec", netns, ...cmd] : cmd);
  return {
    release,
    where: "this machine",
    path: tool,
    command: (name, args, opts = {}) => wrap([tool(name) ?? name, ...args], opts.netns),
    run(name, args, opts = {}) {
      const [cmd, ...rest] = wrap([tool(name) ?? name, ...args], opts.netns);
      return spawnSync(cmd, rest, {
        encoding: "utf8",
        input: opts.input,
        env: { ...process.env, ...opts.env },
        timeout: opts.timeout ?? 30_000,
      });
    },
  };
}

function imageTools(release: DebianRelease, root: string): ReleaseTools {
  const path = (name: string) => SEARCH.map((d) => join(d, name)).find((p) => existsSync(join(root, p)));
  const command = (name: string, args: readonly string[], opts: Pick<RunOptions, "netns" | "env"> = {}) => {
    mkdirSync(TOOLS_SCRATCH, { recursive: true, mode: 0o755 });
    const env = Object.entries({ ...BASE_ENV, ...opts.env }).map(([k, v]) => `${k}=${v}`);
    const inner = [
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      ENTER,
      "enter",
      root,
      "/usr/bin/env",
      "-i",
      ...env,
      path(name) ?? name,
      ...args,
    ];
    return opts.netns ? [tool("ip") ?? "ip", "netns", "exec", opts.netns, ...inner] : inner;
  };
  return {
    release,
    where: root,
    path,
    command,
    run(name, args, opts = {}) {
      const [cmd, ...rest] = command(name, args, opts);
      return spawnSync(cmd, rest, { encoding: "utf8", input: opts.input, timeout: opts.timeout ?? 30_000 });
    },
  };
}

/** The release's tools, or why they cannot run here. */
export function releaseTools(release: DebianRelease): ReleaseTools | string {
  if (machineRelease() === release) return hostTools(release);
  const root = builtToolsImage(defaultImageSpec(release));
  if (root === undefined)
    return `the ${releaseName(release)} tools image is not built: run \`npm run release-tools\` as root (npm test does)`;
  if (!isRoot) return `the ${releaseName(release)} tools run in a chroot of their tools image: needs root`;
  if (tool("unshare") === undefined) return "unshare (util-linux) is missing";
  return imageTools(release, root);
}

/**
 * Every tested release with its tools, or the reason it skips (printed once; under MAIL_RELAY_REQUIRE_REAL=1, as for
 * every real-software test, a missing release fails the test file instead). `needs` names the tools a block runs.
 */
export function eachRelease(
  what: string,
  needs: readonly string[] = [],
): { release: DebianRelease; tools?: ReleaseTools; skip?: string }[] {
  return DEBIAN_RELEASES.map((release) => {
    const found = releaseTools(release);
    const absent = typeof found === "string" ? [] : needs.filter((n) => found.path(n) === undefined);
    const reason =
      typeof found === "string"
        ? found
        : absent.length > 0
          ? `${absent.join(", ")} not installed in ${found.where}`
          : undefined;
    const skip = missing(`${what} on ${releaseName(release)}`, { check: () => reason });
    return skip === undefined && typeof found !== "string" ? { release, tools: found } : { release, skip };
  });
}

/**
 * A scratch dir made when the block's tests start and removed when they end (a skipped block makes none: a non-root
 * run can't write /var/lib). Call it inside the describe block that uses it.
 */
export function scratch(prefix: string): () => string {
  let d: string | undefined;
  beforeAll(() => {
    d = safeScratchDir(prefix);
  });
  afterAll(() => {
    if (d) removeDir(d);
  });
  return () => d as string;
}
