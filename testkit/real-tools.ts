// Finding and running the real Debian tools the "real software" tests (and the benches) use. A missing tool skips its
// tests with a printed reason; .ci/run installs them all (postfix opendkim opendkim-tools cloud-init nftables
// openssh-server systemd iproute2 swaks python3 shellcheck, and Debian's Node 18) and sets MAIL_RELAY_REQUIRE_REAL=1,
// under which a missing requirement fails the run instead: in CI a real-software test cannot pass by skipping.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { accessSync, chmodSync, constants, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";

const SEARCH = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

export function tool(name: string): string | undefined {
  for (const dir of SEARCH) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

export const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

/** Set by .ci/run: a missing requirement throws instead of skipping. */
export const REQUIRE_REAL = process.env.MAIL_RELAY_REQUIRE_REAL === "1";

/** Where safeScratchDir puts its directories: root-owned parents, as OpenDKIM demands. */
const SAFE_SCRATCH_BASE = "/var/lib/mail-relay-tests";

/** Why safeScratchDir can't work here (a non-root user can't write under /var/lib), or undefined when it can. */
function scratchUnavailable(): string | undefined {
  try {
    mkdirSync(SAFE_SCRATCH_BASE, { recursive: true, mode: 0o755 });
    accessSync(SAFE_SCRATCH_BASE, constants.W_OK);
    return undefined;
  } catch (e) {
    return `cannot write ${SAFE_SCRATCH_BASE} (${(e as NodeJS.ErrnoException).code ?? String(e)}): run as root`;
  }
}

/**
 * Returns a skip reason (and prints it once) when any requirement is missing, else undefined. Under
 * MAIL_RELAY_REQUIRE_REAL=1 it throws instead, so the test file fails. `scratch`: the tests write under
 * /var/lib/mail-relay-tests (safeScratchDir).
 */
export function missing(
  what: string,
  needs: { tools?: string[]; root?: boolean; scratch?: boolean; check?: () => string | undefined },
): string | undefined {
  const absent = (needs.tools ?? []).filter((t) => tool(t) === undefined);
  let reason: string | undefined;
  if (absent.length > 0)
    reason =
      `${absent.join(", ")} not installed (apt-get install postfix opendkim opendkim-tools cloud-init nftables ` +
      `openssh-server systemd iproute2 swaks openssl libnet-ssleay-perl libio-socket-ssl-perl shellcheck)`;
  else if (needs.root && !isRoot) reason = "needs root";
  else if (needs.scratch) reason = scratchUnavailable();
  if (reason === undefined) reason = needs.check?.();
  if (reason === undefined) return undefined;
  if (REQUIRE_REAL)
    throw new Error(
      `${what}: ${reason}. MAIL_RELAY_REQUIRE_REAL=1 (set by .ci/run) ` +
        `requires every real-software test to run; install what is missing or unset it`,
    );
  console.warn(`[skipped] ${what}: ${reason}`);
  return reason;
}

export function run(
  cmd: string,
  args: readonly string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {},
): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, {
    encoding: "utf8",
    input: opts.input,
    env: opts.env ?? process.env,
    timeout: opts.timeout ?? 30_000,
  });
}

/**
 * A scratch directory whose parents are all root-owned and not world-writable. OpenDKIM refuses keys below /tmp
 * ("key data is not secure: /tmp can be read or written by other users"), exactly as it would on the host.
 */
export function safeScratchDir(prefix: string): string {
  mkdirSync(SAFE_SCRATCH_BASE, { recursive: true, mode: 0o755 });
  const dir = mkdtempSync(join(SAFE_SCRATCH_BASE, prefix));
  chmodSync(dir, 0o755); // daemons that drop to their own user (opendkim, postfix) must traverse it
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
