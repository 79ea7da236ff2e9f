/**
 * One rehearsal run's state (the capture, the booted host, the mail world, the ledger of accepted mail) and the
 * helpers every phase uses: a shell on the host, posting through the relay, waiting for mail at the MX.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Capture, Connection } from "../capture";
import { callers, capturedCount, RelayClient, type CallerCreds } from "../client";
import { boot, HostShell, type PreparedHost } from "../host";
import { Processes, run, sleep } from "../proc";
import { namesFor, waitTcp, WORLD, type Names, type WorldServices } from "../world";
import { QUEUE_ROOT } from "../../cloud-init/paths";
import { releaseProfile, type DebianRelease } from "../../cloud-init/release";

/** Records a failed check; the phase goes on and reports every one. */
export type Fail = (msg: string) => void;

/** The teardown drain the rehearsal renders with (the stack's default is minutes; the behaviour is the same). */
export const TEARDOWN_DRAIN_SECONDS = 15;

export class RehearsalRun {
  readonly procs = new Processes();
  readonly names: Names;
  capture!: Capture;
  keyFile!: string;
  publicKey!: string;
  rootImage!: string;
  host!: PreparedHost;
  world!: WorldServices;
  shell!: HostShell;
  client!: RelayClient;
  nspawnPid = 0;
  readonly runTag = Date.now().toString(36);
  accepted = 0;
  /** Every accepted message, for the ledger. */
  readonly expected: { id: string; what: string; copies: number }[] = [];
  release!: DebianRelease;
  /** With `upgradeFrom`: what the upgraded stack deploys, and its release's image. */
  target?: { capture: Capture; release: DebianRelease; rootImage?: string };

  /**
   * `image`: the Hetzner image to rehearse instead of the stack's (`--release`). `upgradeFrom`: boot and deploy
   * that image first, then replace the server as `pulumi up` does when `image` changes (`--upgrade-from`).
   */
  constructor(
    readonly stack: string,
    readonly dir: string,
    readonly keep: boolean,
    readonly image?: string,
    readonly upgradeFrom?: string,
  ) {
    this.names = namesFor(stack, this.runTag);
  }

  /** Where delivered mail lands: the smarthost for smarthost stacks, else the recipient MX. */
  get inbox(): string {
    return this.world.smarthostDir ?? this.world.mxDir;
  }

  /** `ip` arguments that run a TypeScript file (tsx) as a program inside the `world` namespace. */
  worldTsx(script: string, ...args: string[]): string[] {
    return ["netns", "exec", this.names.world, process.execPath, "--import", "tsx", script, ...args];
  }

  /**
   * Runs `fn` with the world's DNS as the resolver of what `ip netns exec <world>` starts (it bind-mounts
   * /etc/netns/<world>/resolv.conf over /etc/resolv.conf), and removes that file after.
   */
  async withWorldResolver<T>(fn: () => Promise<T>): Promise<T> {
    const etc = path.join("/etc/netns", this.names.world);
    fs.mkdirSync(etc, { recursive: true });
    fs.writeFileSync(path.join(etc, "resolv.conf"), `nameserver ${WORLD.dns}\n`);
    try {
      return await fn();
    } finally {
      fs.rmSync(etc, { recursive: true, force: true });
    }
  }

  log(msg: string): void {
    console.error(`[rehearsal ${new Date().toISOString().slice(11, 19)}] ${msg}`);
  }

  /**
   * The random outputs (keys, tokens) every capture of this run shares, as a stack's state keeps them between updates.
   */
  get stateFile(): string {
    return path.join(this.dir, "offline-state.json");
  }

  async captureWith(
    extraEnv: Record<string, string> = {},
    image = this.capture?.nodes[0].image ?? this.image,
  ): Promise<Capture> {
    const out = path.join(this.dir, `capture-${Date.now()}.json`);
    const input = JSON.stringify({
      stack: this.stack,
      sshPrivateKey: fs.readFileSync(this.keyFile, "utf8"),
      sshPublicKey: this.publicKey,
      relay: { teardownDrainSeconds: TEARDOWN_DRAIN_SECONDS },
      stateFile: this.stateFile,
      ...(image ? { overrides: { image } } : {}),
    });
    const r = await run(process.execPath, ["--import", "tsx", path.join(__dirname, "..", "capture.ts"), out], {
      input,
      env: { ...process.env, ...extraEnv },
      cwd: path.join(__dirname, "..", ".."),
    });
    if (r.code !== 0) throw new Error(`capturing the program failed: ${r.stderr.slice(-2000)}`);
    const c = JSON.parse(fs.readFileSync(out, "utf8")) as Capture;
    fs.rmSync(out);
    return c;
  }

  async startHost(): Promise<void> {
    const child = boot(this.host, this.names, `mrr-${this.stack}-${this.runTag}`, this.procs);
    this.nspawnPid = child.pid!;
    await waitTcp(this.names.world, this.capture.nodes[0].ipv4, 22, 120_000);
  }

  /** A connection to the host, as the program's steps use it. */
  get conn(): Connection {
    return this.capture.steps[0].connection;
  }

  async onHost(script: string, timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
    return this.shell.exec(this.conn, script, undefined, timeoutMs);
  }

  units(): string[] {
    return [
      releaseProfile(this.release).postfix.masterUnit,
      "opendkim.service",
      "mail-relay.service",
      "nftables.service",
      ...(this.capture.tunnel ? ["cloudflared-mail-relay.service"] : []),
    ];
  }

  sender(): string {
    return String(this.capture.outputs.defaultSender);
  }

  creds(): CallerCreds {
    return callers(this.capture)[0];
  }

  /** Posts and expects 202; counts the message in the ledger. Returns the id. */
  async post(
    fail: (m: string) => void,
    what: string,
    msg: Record<string, unknown>,
    copies: number,
  ): Promise<string | undefined> {
    const a = await this.client.send(this.creds(), {
      from: this.sender(),
      ...msg,
      subject: `[${this.runTag}] ${what}`,
    });
    if (a.status !== 202 || !a.body.id) {
      fail(`${what}: expected 202, got ${a.status} ${a.raw.slice(0, 300)}`);
      return undefined;
    }
    this.accepted += copies;
    this.expected.push({ id: a.body.id, what, copies });
    return a.body.id;
  }

  async waitForCopies(n: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (capturedCount(this.inbox) >= n) return true;
      await sleep(500);
    }
    return capturedCount(this.inbox) >= n;
  }

  rcpt(name: string): string {
    return `${name}@${WORLD.recipientDomain}`;
  }

  async pendingOnHost(): Promise<number> {
    const r = await this.onHost(`find ${QUEUE_ROOT}/pending ${QUEUE_ROOT}/processing -type f 2>/dev/null | wc -l`);
    return Number(r.stdout.trim());
  }

  async batch(fail: (m: string) => void, what: string, n: number): Promise<void> {
    for (let i = 1; i <= n; i++)
      await this.post(fail, `${what} ${i}/${n}`, { to: this.rcpt(`fault${i}`), text: `${what} ${i}\n` }, 1);
  }

  async expectAllArrive(fail: (m: string) => void, what: string, timeoutMs = 150_000): Promise<number> {
    const t0 = Date.now();
    if (!(await this.waitForCopies(this.accepted, timeoutMs)))
      fail(
        `${what}: ${capturedCount(this.inbox)} of ${this.accepted} accepted copies at the MX ` +
          `after ${timeoutMs / 1000}s`,
      );
    return (Date.now() - t0) / 1000;
  }
}
