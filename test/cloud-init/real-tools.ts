// Finding and running the real Debian tools the "real software" tests use. A missing tool skips its tests with a
// printed reason; .ci/run installs them all (postfix opendkim opendkim-tools cloud-init nftables openssh-server
// systemd iproute2 swaks), so CI runs every one.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
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

/** Returns a skip reason (and prints it once) when any requirement is missing, else undefined. */
export function missing(what: string, needs: { tools?: string[]; root?: boolean; check?: () => string | undefined }): string | undefined {
  const absent = (needs.tools ?? []).filter((t) => tool(t) === undefined);
  let reason: string | undefined;
  if (absent.length > 0) reason = `${absent.join(", ")} not installed (apt-get install postfix opendkim opendkim-tools cloud-init nftables openssh-server systemd iproute2 swaks openssl libnet-ssleay-perl libio-socket-ssl-perl)`;
  else if (needs.root && !isRoot) reason = "needs root";
  else reason = needs.check?.();
  if (reason) console.warn(`[skipped] ${what}: ${reason}`);
  return reason;
}

export function run(cmd: string, args: readonly string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { encoding: "utf8", input: opts.input, env: opts.env ?? process.env, timeout: opts.timeout ?? 30_000 });
}

/**
 * A scratch directory whose parents are all root-owned and not world-writable. OpenDKIM refuses keys below /tmp
 * ("key data is not secure: /tmp can be read or written by other users"), exactly as it would on the host.
 */
export function safeScratchDir(prefix: string): string {
  const base = "/var/lib/mail-relay-tests";
  mkdirSync(base, { recursive: true, mode: 0o755 });
  const dir = mkdtempSync(join(base, prefix));
  chmodSync(dir, 0o755); // daemons that drop to their own user (opendkim, postfix) must traverse it
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
