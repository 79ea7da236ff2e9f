// The host-key bootstrap step and the pinned-key semantics, with the real OpenSSH: the step installs the program's
// ed25519 key (in a scratch root, with cloud-init and systemctl stubbed), a real sshd in a private network namespace
// serves it, and OpenSSH's client with StrictHostKeyChecking=yes and a known_hosts file holding exactly one key (what
// @pulumi/command's connection.hostKey holds) connects only when that key is the one the server offers.
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderInstallHostKey } from "../../cloud-init";
import { ed25519Key } from "../../infra/offline";
import { netnsUnavailable, waitFor } from "../../testkit/postfix-instance";
import { missing, removeDir, run, safeScratchDir, tool } from "../../testkit/real-tools";

const skip = missing("SSH host key pinning with the real sshd", {
  tools: ["sshd", "ssh", "ssh-keygen", "ip"],
  root: true,
  check: () => netnsUnavailable(`mrsshprobe${process.pid}`),
});

const NS = `mrssh${process.pid}`;
const PORT = 2222;
const programKey = ed25519Key("test-node1-ssh-host-key");
const otherKey = ed25519Key("an-impostor");

let dir = "";
let sshd: ChildProcess | undefined;

/** Runs the bootstrap step against a scratch root: cloud-init and systemctl are stubs, ssh-keygen is real. */
function installHostKey(stdin: string) {
  const stubs = join(dir, "stubs");
  mkdirSync(stubs, { recursive: true });
  for (const name of ["cloud-init", "systemctl"]) {
    writeFileSync(join(stubs, name), `#!/bin/sh\necho "${name} $*" >> "${join(dir, "calls.log")}"\nexit 0\n`);
    chmodSync(join(stubs, name), 0o755);
  }
  return run("bash", ["-c", renderInstallHostKey()], {
    input: stdin,
    env: { ...process.env, MAIL_RELAY_ROOT: join(dir, "root"), PATH: `${stubs}:${process.env.PATH}` },
  });
}

function startSshd(hostKeyConfig: string): Promise<void> {
  const clientKey = join(dir, "client");
  const conf = join(dir, "sshd_config");
  writeFileSync(
    conf,
    [
      hostKeyConfig,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      "PermitRootLogin prohibit-password",
      "PasswordAuthentication no",
      "StrictModes no",
      "UsePAM no",
      `PidFile ${join(dir, "sshd.pid")}`,
      "",
    ].join("\n"),
  );
  writeFileSync(join(dir, "authorized_keys"), readFileSync(`${clientKey}.pub`, "utf8"));
  sshd = spawn(
    tool("ip") as string,
    ["netns", "exec", NS, tool("sshd") as string, "-D", "-e", "-f", conf, "-p", String(PORT)],
    { stdio: "ignore" },
  );
  return waitFor(
    () => run(tool("ip") as string, ["netns", "exec", NS, "ss", "-ltnH"]).stdout.includes(`:${PORT}`),
    "sshd to listen",
    10_000,
  );
}

async function stopSshd(): Promise<void> {
  const p = sshd;
  if (!p) return;
  p.kill("SIGTERM");
  await waitFor(() => p.exitCode !== null || p.signalCode !== null, "sshd to stop");
  sshd = undefined;
}

/** OpenSSH's client, pinned to exactly `pinned` (an authorized_keys-style line, like connection.hostKey). */
function sshPinned(pinned: string) {
  const kh = join(dir, "known_hosts");
  writeFileSync(kh, `[127.0.0.1]:${PORT} ${pinned.trim()}\n`);
  return run(tool("ip") as string, [
    "netns",
    "exec",
    NS,
    tool("ssh") as string,
    "-i",
    join(dir, "client"),
    "-p",
    String(PORT),
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    `UserKnownHostsFile=${kh}`,
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "ConnectTimeout=5",
    "root@127.0.0.1",
    "echo pinned-ok",
  ]);
}

describe.skipIf(skip)("the SSH host key: installed by the bootstrap step, pinned by every later step", () => {
  beforeAll(() => {
    dir = safeScratchDir("ssh-");
    chmodSync(dir, 0o700);
    expect(run(tool("ssh-keygen") as string, ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "client")]).status).toBe(
      0,
    );
    mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
    expect(run(tool("ip") as string, ["netns", "add", NS]).status).toBe(0);
    run(tool("ip") as string, ["netns", "exec", NS, tool("ip") as string, "link", "set", "lo", "up"]);
  });

  afterAll(async () => {
    await stopSshd();
    run(tool("ip") as string, ["netns", "del", NS]);
    if (dir) removeDir(dir);
  });

  it("the bootstrap step refuses what is not an OpenSSH private key, and installs nothing", () => {
    const r = installHostKey("not a key\n");
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/not an unencrypted OpenSSH private key/);
    expect(existsSync(join(dir, "root/etc/ssh/ssh_host_ed25519_key"))).toBe(false);
  });

  it("installs the program's key as the only host key sshd offers and removes the image's others", () => {
    const sshDir = join(dir, "root/etc/ssh");
    mkdirSync(sshDir, { recursive: true });
    for (const k of ["ssh_host_rsa_key", "ssh_host_ecdsa_key", "ssh_host_ed25519_key"]) {
      writeFileSync(join(sshDir, k), "image key\n");
      writeFileSync(join(sshDir, `${k}.pub`), "image key\n");
    }
    const r = installHostKey(programKey.privateKeyOpenssh);
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(join(sshDir, "ssh_host_ed25519_key.pub"), "utf8").trim()).toBe(
      programKey.publicKeyOpenssh.trim(),
    );
    for (const k of ["ssh_host_rsa_key", "ssh_host_ecdsa_key"]) expect(existsSync(join(sshDir, k)), k).toBe(false);
    expect(readFileSync(join(sshDir, "sshd_config.d/05-mail-relay-host-key.conf"), "utf8")).toMatch(
      /^HostKey \/etc\/ssh\/ssh_host_ed25519_key$/m,
    );
    expect(readFileSync(join(dir, "calls.log"), "utf8")).toMatch(/systemctl restart ssh\.service/);
  });

  it("a client pinned to the program's key connects to the sshd serving it", async () => {
    await startSshd(`HostKey ${join(dir, "root/etc/ssh/ssh_host_ed25519_key")}`);
    const r = sshPinned(programKey.publicKeyOpenssh);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe("pinned-ok");
  });

  it("a client pinned to another key is refused before anything is sent (a machine in the path gets nothing)", () => {
    const r = sshPinned(otherKey.publicKeyOpenssh);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
    expect(r.stdout).not.toMatch(/pinned-ok/);
  });

  it("an impostor serving its own key is refused by the pinned client", async () => {
    await stopSshd();
    const impostor = join(dir, "impostor_key");
    writeFileSync(impostor, otherKey.privateKeyOpenssh, { mode: 0o600 });
    await startSshd(`HostKey ${impostor}`);
    const r = sshPinned(programKey.publicKeyOpenssh);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
  });
});
