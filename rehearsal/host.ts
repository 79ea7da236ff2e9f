/**
 * Phase 4: boot the server. A copy of the cached image gets a NoCloud seed (the rendered user-data byte for
 * byte, meta-data with the root public key as Hetzner injects it, a network-config with the static addresses
 * that stand in for Hetzner's DHCP), the tunnel stand-in in place of cloudflared's binary, and boots under
 * systemd-nspawn inside the `vps` namespace.
 */
import { REHEARSAL_UNBOUND_DROPIN } from "./world/resolver";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { stringify } from "yaml";
import type { Capture, Connection } from "./capture";
import { Processes, run, RunResult, sleep } from "./proc";
import { hostAddresses, Names, WORLD } from "./world";

export const STANDIN_CONFIG = "/etc/mail-relay-rehearsal/tunnel.json";

export function renderMetaData(c: Capture, instanceId: string, publicKey: string): string {
  const n = c.nodes[0];
  return stringify({ "instance-id": instanceId, "local-hostname": n.hostname, "public-keys": [publicKey.trim()] });
}

/**
 * Network config v1, as Hetzner's metadata service serves it: static addresses with their gateways (v2's
 * gateway4/gateway6 are deprecated in cloud-init 25.1, Debian 13's, and its v2 `routes` need net-tools' `route`
 * under the ifupdown renderer).
 */
export function renderNetworkConfig(c: Capture): string {
  const h = hostAddresses(c);
  return stringify({
    version: 1,
    config: [
      {
        type: "physical",
        name: "eth0",
        subnets: [
          { type: "static", address: `${h.ipv4}/24`, gateway: h.gw4, dns_nameservers: [WORLD.dns] },
          ...(h.ipv6 ? [{ type: "static6", address: `${h.ipv6}/64`, ...(h.gw6 ? { gateway: h.gw6 } : {}) }] : []),
        ],
      },
    ],
  });
}

export interface PreparedHost {
  readonly root: string;
  readonly log: string;
}

/** A fresh copy of the image with the seed and the stand-in; returns its root. */
export async function prepareRootfs(
  image: string,
  c: Capture,
  dir: string,
  publicKey: string,
  progress: (m: string) => void,
  trustCa: string,
  /** The host's unbound drop-in (rehearsal/world/resolver.ts), rendered for this world. */
  unboundDropIn: string,
): Promise<PreparedHost> {
  const root = path.join(dir, "rootfs");
  await removeRootfs(root);
  // An overlay over the cached image: instant, and the image stays untouched. A full copy where overlayfs is missing.
  const upper = `${root}.upper`;
  const work = `${root}.work`;
  fs.mkdirSync(root, { recursive: true });
  fs.mkdirSync(upper, { recursive: true });
  fs.mkdirSync(work, { recursive: true });
  const ovl = await run("mount", [
    "-t",
    "overlay",
    "overlay",
    "-o",
    `lowerdir=${image},upperdir=${upper},workdir=${work}`,
    root,
  ]);
  if (ovl.code !== 0) {
    progress(`overlayfs unavailable (${ovl.stderr.trim()}); copying the image instead`);
    fs.rmSync(root, { recursive: true, force: true });
    const cp = await run("cp", ["-a", "--reflink=auto", image, root]);
    if (cp.code !== 0) throw new Error(`copying the image: ${cp.stderr}`);
  }
  const seed = path.join(root, "var/lib/cloud/seed/nocloud");
  fs.mkdirSync(seed, { recursive: true });
  fs.writeFileSync(path.join(seed, "user-data"), c.nodes[0].userData);
  fs.writeFileSync(path.join(seed, "meta-data"), renderMetaData(c, `rehearsal-${c.stack}-${Date.now()}`, publicKey));
  fs.writeFileSync(path.join(seed, "network-config"), renderNetworkConfig(c));
  // ifupdown has no resolvconf here: the resolver Hetzner's DHCP would give, written directly.
  fs.writeFileSync(path.join(root, "etc/resolv.conf"), `nameserver ${WORLD.dns}\n`);
  // The deploy points resolv.conf at the host's unbound; here it must use the world (no signed root), validating the
  // world's signed zones from their own trust anchors.
  fs.mkdirSync(path.dirname(path.join(root, REHEARSAL_UNBOUND_DROPIN)), { recursive: true });
  fs.writeFileSync(path.join(root, REHEARSAL_UNBOUND_DROPIN), unboundDropIn);
  {
    // Stands in for the public CAs that signed the real smarthost's and recipients' (MTA-STS) certificates.
    fs.mkdirSync(path.join(root, "usr/local/share/ca-certificates"), { recursive: true });
    fs.copyFileSync(trustCa, path.join(root, "usr/local/share/ca-certificates/mail-relay-rehearsal-world.crt"));
    if (fs.existsSync(path.join(root, "usr/sbin/update-ca-certificates")))
      await run("chroot", [root, "update-ca-certificates"]);
    progress("the host trusts the rehearsal world's CA (standing in for the public CAs of the smarthost and the MXs)");
  }
  if (c.tunnel) {
    fs.copyFileSync(path.join(__dirname, "tunnel-standin.py"), path.join(root, "usr/bin/cloudflared"));
    fs.chmodSync(path.join(root, "usr/bin/cloudflared"), 0o755);
    fs.mkdirSync(path.dirname(path.join(root, STANDIN_CONFIG.slice(1))), { recursive: true });
    const tunnelId = String(c.records.find((r) => r.type === "CNAME" && r.proxied)?.content.split(".")[0] ?? "unknown");
    fs.writeFileSync(
      path.join(root, STANDIN_CONFIG.slice(1)),
      JSON.stringify(
        {
          tokenSha256: createHash("sha256").update(c.tunnel.token).digest("hex"),
          ingress: c.tunnel.ingress,
          edgeHost: WORLD.edge,
          edgePort: 7844,
          tunnelId,
        },
        null,
        2,
      ),
    );
    progress(
      "cloudflared: its binary is replaced by the rehearsal's stand-in (rehearsal/tunnel-standin.py); " +
        "the unit, env file and ingress are the program's",
    );
  }
  return { root, log: path.join(dir, "boot.log") };
}

/** Unmounts (if it is an overlay) and deletes a host's root and its overlay directories. Never touches the image. */
export async function removeRootfs(root: string): Promise<void> {
  if (!root) return;
  await run("umount", [root]);
  for (const d of [root, `${root}.upper`, `${root}.work`]) await run("rm", ["-rf", "--one-file-system", d]);
}

/** Boots the prepared root under systemd-nspawn in the vps namespace. Returns the nspawn process. */
export function boot(h: PreparedHost, n: Names, machine: string, procs: Processes) {
  const out = fs.openSync(h.log, "a");
  return procs.start(
    "host (systemd-nspawn)",
    "systemd-nspawn",
    [
      "-b",
      "-D",
      h.root,
      `--machine=${machine}`,
      "--register=no",
      "--keep-unit",
      `--network-namespace-path=/run/netns/${n.vps}`,
      "--capability=CAP_NET_ADMIN",
      "--resolv-conf=off",
      "--timezone=off",
      "--link-journal=no",
      "--console=read-only",
    ],
    { stdio: ["ignore", out, out] },
  );
}

/** SSH into the host from `world`, as @pulumi/command does: the script is the session's command, stdin piped. */
export class HostShell {
  private calls = 0;

  constructor(
    private readonly n: Names,
    private readonly keyFile: string,
    private readonly dir: string,
  ) {}

  private sshOpts(c: Connection): string[] {
    const pinned = c.hostKey !== undefined;
    // One file per host and key, written once and renamed into place: steps run in parallel, and an ssh reading a
    // file another step is rewriting would see it empty ("No ED25519 host key is known", seen in a CI run).
    const known = path.join(
      this.dir,
      `known_hosts-${createHash("sha256")
        .update(`${c.host} ${c.hostKey ?? ""}`)
        .digest("hex")
        .slice(0, 16)}`,
    );
    if (pinned && !fs.existsSync(known)) {
      const tmp = `${known}.${process.pid}.${Math.random().toString(36).slice(2)}`;
      fs.writeFileSync(tmp, `${c.host} ${c.hostKey!.trim()}\n`);
      fs.renameSync(tmp, known);
    }
    return [
      "-i",
      this.keyFile,
      "-p",
      String(c.port),
      "-o",
      "BatchMode=yes",
      "-o",
      "IdentitiesOnly=yes",
      "-o",
      `ConnectTimeout=${c.perDialTimeout}`,
      "-o",
      "ServerAliveInterval=15",
      "-o",
      `UserKnownHostsFile=${pinned ? known : "/dev/null"}`,
      // Without a pinned key @pulumi/command ignores the host key; with one it must match.
      "-o",
      `StrictHostKeyChecking=${pinned ? "yes" : "no"}`,
      "-o",
      "LogLevel=ERROR",
    ];
  }

  /**
   * Runs `script` on the host; retries the dial (not the script) up to the connection's dialErrorLimit. As with
   * @pulumi/command (Go's ssh.Dial), the dial is everything up to authentication: a connection sshd drops before
   * that (cloud-init restarting ssh.service on first boot) is a dial error. ssh's own log goes to a file, so the
   * script's stderr stays the script's, and "Authenticated to" in it tells the two apart.
   */
  async exec(
    c: Connection,
    script: string,
    stdin?: string | Buffer,
    timeoutMs = 15 * 60_000,
  ): Promise<RunResult & { dials: number }> {
    for (let dial = 1; ; dial++) {
      const log = path.join(this.dir, `ssh-${process.pid}-${++this.calls}.log`);
      const opts = this.sshOpts(c).map((o) => (o === "LogLevel=ERROR" ? "LogLevel=VERBOSE" : o));
      const r = await run(
        "ip",
        ["netns", "exec", this.n.world, "ssh", ...opts, "-E", log, `${c.user}@${c.host}`, script],
        { input: stdin, timeoutMs },
      );
      const sshLog = fs.existsSync(log) ? fs.readFileSync(log, "utf8") : "";
      fs.rmSync(log, { force: true });
      const dialFailed = r.code === 255 && !/^Authenticated to /m.test(sshLog);
      if (!dialFailed || dial >= c.dialErrorLimit)
        return { ...r, stderr: dialFailed ? `${r.stderr}${sshLog}` : r.stderr, dials: dial };
      await sleep(1000);
    }
  }

  /** scp (SFTP) a local file to the host, as CopyToRemote does. */
  async copy(c: Connection, source: string, remotePath: string): Promise<RunResult & { dials: number }> {
    for (let dial = 1; ; dial++) {
      const r = await run(
        "ip",
        [
          "netns",
          "exec",
          this.n.world,
          "scp",
          "-q",
          ...this.sshOpts(c).map((o) => (o === "-p" ? "-P" : o)),
          source,
          `${c.user}@${c.host}:${remotePath}`,
        ],
        { timeoutMs: 10 * 60_000 },
      );
      const dialFailed =
        r.code !== 0 &&
        /connect to host|Connection (refused|reset|closed|timed out)|kex_exchange_identification|No route/i.test(
          r.stderr,
        );
      if (!dialFailed || dial >= c.dialErrorLimit) return { ...r, dials: dial };
      await sleep(1000);
    }
  }
}
