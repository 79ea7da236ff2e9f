/**
 * `npm run rehearse -- <stack> [--release 12|13] [--upgrade-from 12] [--keep]` and
 * `npm run rehearse -- --down [<stack>]`.
 *
 * Boots what `pulumi up` builds on a real systemd Debian, deploys it over real SSH, sends signed mail into a
 * mail world, attacks it and breaks it, then prints one table: phase, pass/fail, seconds. Stands in for exactly
 * four things: the two cloud APIs (the program runs under Pulumi's mocks), cloudflared's binary, the DHCP-assigned
 * address (a static network-config) and Hetzner's apt mirror (a local repository in the image).
 * See docs/rehearsal.md.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { PROJECT_ROOT, listStacks } from "../infra/offline";
import { DEBIAN_RELEASES, RELEASES } from "../cloud-init/release";
import { removeRootfs } from "./host";
import { deleteNamespaces } from "./world";
import { Rehearsal } from "./phases";
import { workDir, type State } from "./state";

/** Why the rehearsal cannot run here, or undefined when it can. */
export function unavailable(): string | undefined {
  if (process.platform !== "linux") return "the rehearsal needs Linux (network namespaces, systemd-nspawn)";
  if (process.getuid?.() !== 0) return "the rehearsal needs root (network namespaces, systemd-nspawn, debootstrap)";
  for (const tool of [
    "ip",
    "systemd-nspawn",
    "debootstrap",
    "dnsmasq",
    "dpkg-scanpackages",
    "ssh",
    "scp",
    "ssh-keygen",
    "curl",
    "chroot",
    "openssl",
    // The world's signed zones (outbound TLS phases): signed with ldnsutils, served by an authoritative unbound.
    "unbound",
    "ldns-keygen",
    "ldns-signzone",
  ]) {
    try {
      execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    } catch {
      return (
        `the rehearsal needs \`${tool}\` (apt-get install debootstrap systemd-container dnsmasq-base dpkg-dev ` +
        `openssh-client curl iproute2 openssl unbound ldnsutils)`
      );
    }
  }
  const probe = `mrrprobe${process.pid}`;
  try {
    execFileSync("ip", ["netns", "add", probe], { stdio: "ignore" });
    execFileSync("ip", ["netns", "del", probe], { stdio: "ignore" });
  } catch {
    return "network namespaces are not available here (`ip netns add` failed)";
  }
  return undefined;
}

async function down(stack?: string): Promise<number> {
  const stacks = stack
    ? [stack]
    : fs.existsSync(path.join(PROJECT_ROOT, ".rehearsal"))
      ? fs.readdirSync(path.join(PROJECT_ROOT, ".rehearsal"))
      : [];
  for (const s of stacks) {
    const file = path.join(workDir(s), "state.json");
    if (!fs.existsSync(file)) continue;
    const state = JSON.parse(fs.readFileSync(file, "utf8")) as State;
    for (const pid of state.pids) {
      try {
        process.kill(pid, "SIGTERM");
        console.log(`stopped pid ${pid}`);
      } catch {
        /* gone */
      }
    }
    await new Promise((r) => setTimeout(r, 3000));
    await deleteNamespaces({ vps: state.namespaces.vps, world: state.namespaces.world, vethVps: "", vethWorld: "" });
    await removeRootfs(state.rootfs);
    fs.rmSync(file);
    console.log(
      `rehearsal for ${s}: stopped, namespaces ${state.namespaces.vps} and ${state.namespaces.world} deleted`,
    );
  }
  if (stacks.length === 0) console.log("nothing to stop: no kept rehearsal");
  return 0;
}

/**
 * `--release 12` (or 13, bookworm, trixie, debian-12, debian-13; `flag` names the option): a tested Hetzner image
 * instead of the stack's `image`. Returns the image, undefined without the flag, or an error message.
 */
export function releaseImageArg(
  argv: readonly string[],
  flag = "--release",
): { image?: string; error?: string; rest: string[] } {
  const rest: string[] = [];
  let value: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === flag) value = argv[++i] ?? "";
    else if (a.startsWith(`${flag}=`)) value = a.slice(flag.length + 1);
    else rest.push(a);
  }
  if (value === undefined) return { rest };
  const release = DEBIAN_RELEASES.find((r) =>
    [String(RELEASES[r].version), r, RELEASES[r].hetznerImage].includes(value!.toLowerCase()),
  );
  if (!release) {
    const known = DEBIAN_RELEASES.map((r) => `${RELEASES[r].version} (${r}, ${RELEASES[r].hetznerImage})`).join(", ");
    return { rest, error: `${flag} ${JSON.stringify(value)}: the rehearsal knows ${known}` };
  }
  return { rest, image: RELEASES[release].hetznerImage };
}

async function main(argv0: string[]): Promise<number> {
  const release = releaseImageArg(argv0);
  const upgrade = releaseImageArg(release.rest, "--upgrade-from");
  const { image } = release;
  const argv = upgrade.rest;
  const error = release.error ?? upgrade.error;
  const keep = argv.includes("--keep");
  const args = argv.filter((a) => !a.startsWith("--"));
  if (argv.includes("--down")) return down(args[0]);
  const stacks = listStacks();
  const stack = args[0];
  if (error || !stack || args.length > 1 || !stacks.includes(stack)) {
    if (error) console.error(error);
    console.error(
      "usage: npm run rehearse -- <stack> [--release 12|13] [--upgrade-from 12] [--keep]   |   " +
        `npm run rehearse -- --down [<stack>]   (stacks: ${stacks.join(", ")})`,
    );
    return 2;
  }
  const why = unavailable();
  if (why) {
    if (process.env.MAIL_RELAY_REQUIRE_REAL === "1") {
      console.error(`rehearsal: cannot run: ${why}. MAIL_RELAY_REQUIRE_REAL=1 (CI): failing instead of skipping.`);
      return 1;
    }
    console.error(`rehearsal: SKIPPED: ${why}.`);
    return 0;
  }
  const r = new Rehearsal(stack, workDir(stack), keep, image, upgrade.image);
  const stop = async (signal: string) => {
    console.error(`\nrehearsal: ${signal}: stopping everything it started`);
    await r.cleanup(false);
    process.exit(130);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
  return r.runAll();
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(e instanceof Error ? (e.stack ?? e.message) : e);
      process.exit(1);
    },
  );
}
