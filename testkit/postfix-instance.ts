// A real Postfix instance and a real OpenDKIM, both from the rendered files, inside a network namespace the caller
// names. Only instance paths are moved to a scratch dir (queue_directory, data_directory, log file, OpenDKIM's
// files), the next hop is a local smtp-sink and no MTA-STS policy server is asked for it; every other rendered
// setting is exercised as it is.
// Used by the real-software tests (test/cloud-init/postfix-instance.real.test.ts and others) and by
// bench/handoff-bench.ts and bench/chain-bench.ts.
import { spawn, type ChildProcess } from "node:child_process";
import { chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  ed25519Selector,
  renderOpendkimConf,
  renderOpendkimKeyTable,
  renderOpendkimSigningTable,
  renderOpendkimTrustedHosts,
  renderPostfixMainCf,
  renderPostfixMasterCf,
  renderPostfixSenderAccess,
  type HostSettings,
} from "../cloud-init";
import { dkimEd25519KeyPem } from "./node-config";
import { run, safeScratchDir, removeDir, tool } from "./real-tools";

/** The tools an instance needs (callers add their own, e.g. swaks). */
export const INSTANCE_TOOLS = ["postfix", "postconf", "opendkim", "smtp-sink", "ip", "sendmail"];

/** Why network namespaces can't be used here, or undefined when they can. */
export function netnsUnavailable(probe: string): string | undefined {
  const r = run(tool("ip") as string, ["netns", "add", probe]);
  if (r.status !== 0) return `cannot create a network namespace: ${r.stderr.trim()}`;
  run(tool("ip") as string, ["netns", "del", probe]);
  return undefined;
}

export async function waitFor(cond: () => boolean, what: string, ms = 15_000, pollMs = 200): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, pollMs));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const uid = (name: string): number => Number(run("id", ["-u", name]).stdout.trim());
const gid = (name: string): number => Number(run("getent", ["group", name]).stdout.split(":")[2]);
const sleepSync = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

export interface InstanceOptions {
  /** The rendered host settings and the DKIM private key to sign with. */
  readonly host: HostSettings;
  readonly dkimPrivateKeyPem: string;
  /** The Ed25519 key the second OpenDKIM signs with (default: the test kit's own, testkit/node-config.ts). */
  readonly dkimEd25519PrivateKeyPem?: string;
  /** "127.0.0.1:2626": where smtp-sink listens; Postfix's relayhost points there. */
  readonly sink: string;
  /** smtp-sink's connection backlog. */
  readonly sinkBacklog: number;
  /** Runs in the namespace after loopback is up and before anything starts (e.g. add an address). */
  readonly beforeStart?: (inst: PostfixInstance) => void;
  /** Extra `postconf -e` settings after the rendered ones (bench:chain's seed design). */
  readonly postconf?: readonly string[];
  /** OpenDKIM on inet:PORT@127.0.0.1 inside the namespace instead of the rendered unix socket (bench:chain's seed). */
  readonly opendkimInetPort?: number;
}

export class PostfixInstance {
  readonly base: string;
  readonly etc: string;
  readonly queueDir: string;
  readonly sinkDir: string;
  readonly dkimDir: string;
  private opendkim: ChildProcess[] = [];
  private sink: ChildProcess | undefined;
  private nsCreated = false;
  private stopped = false;
  private opendkimInetPort: number | undefined;

  constructor(
    readonly ns: string,
    scratchPrefix: string,
  ) {
    this.base = safeScratchDir(scratchPrefix);
    this.etc = join(this.base, "etc");
    this.queueDir = join(this.base, "queue");
    this.sinkDir = join(this.base, "sink");
    this.dkimDir = join(this.base, "dkim");
  }

  inNs(cmd: string, args: string[], input?: string) {
    return run(tool("ip") as string, ["netns", "exec", this.ns, cmd, ...args], { input, timeout: 60_000 });
  }

  maillog(): string {
    const f = join(this.base, "maillog");
    return existsSync(f) ? readFileSync(f, "utf8") : "";
  }

  sunk(): string[] {
    return readdirSync(this.sinkDir);
  }

  /** main.cf/master.cf as rendered, then postconf -e of the instance paths and the caller's overrides. */
  writePostfixConfig(host: HostSettings, overrides: string[]): void {
    writeFileSync(join(this.etc, "main.cf"), renderPostfixMainCf(host));
    writeFileSync(join(this.etc, "master.cf"), renderPostfixMasterCf(host));
    // main.cf names it as $config_directory/sender_access, so it moves with -c like main.cf itself.
    writeFileSync(join(this.etc, "sender_access"), renderPostfixSenderAccess(host));
    const r = run(tool("postconf") as string, [
      "-c",
      this.etc,
      "-e",
      `queue_directory=${this.queueDir}`,
      `data_directory=${join(this.base, "data")}`,
      `maillog_file_prefixes=${this.base}`,
      `maillog_file=${join(this.base, "maillog")}`,
      "alias_maps=",
      "alias_database=",
      // The next hop is the local sink, not a recipient domain: no MTA-STS policy server is asked (the policy map
      // is exercised by test/cloud-init/outbound-tls.real.test.ts against the real resolver).
      "smtp_tls_policy_maps=",
      ...overrides,
    ]);
    if (r.status !== 0) throw new Error(`postconf: ${r.stderr}`);
  }

  /** Both OpenDKIM instances, as on the host: RSA (opendkim.conf) and Ed25519 (opendkim-ed25519.conf). */
  async startOpendkim(): Promise<void> {
    const ed = spawn(tool("opendkim") as string, ["-f", "-x", join(this.dkimDir, "opendkim-ed25519.conf")], {
      stdio: "ignore",
    });
    this.opendkim.push(ed);
    await waitFor(
      () => existsSync(join(this.queueDir, "opendkim", "opendkim-ed25519.sock")),
      "the Ed25519 OpenDKIM socket",
    );
    const args = ["-f", "-x", join(this.dkimDir, "opendkim.conf")];
    const port = this.opendkimInetPort;
    if (port !== undefined) {
      // A TCP listener must be inside the namespace: on the host's loopback it would be out of Postfix's reach.
      this.opendkim.push(
        spawn(tool("ip") as string, ["netns", "exec", this.ns, tool("opendkim") as string, ...args], {
          stdio: "ignore",
        }),
      );
      return waitFor(
        () => this.inNs(tool("ss") as string, ["-Hltn", `sport = :${port}`]).stdout.trim() !== "",
        "OpenDKIM's TCP socket",
      );
    }
    this.opendkim.push(spawn(tool("opendkim") as string, args, { stdio: "ignore" }));
    return waitFor(() => existsSync(join(this.queueDir, "opendkim", "opendkim.sock")), "the OpenDKIM socket");
  }

  /** Stops both OpenDKIM instances (with either down, milter_default_action = tempfail holds the mail). */
  async stopOpendkim(): Promise<void> {
    const ps = this.opendkim;
    this.opendkim = [];
    for (const p of ps) p.kill("SIGTERM");
    await waitFor(() => ps.every((p) => p.exitCode !== null || p.signalCode !== null), "OpenDKIM to stop");
  }

  /** Namespace, OpenDKIM, smtp-sink and Postfix, from the rendered files. */
  async start(o: InstanceOptions): Promise<void> {
    for (const d of [
      this.etc,
      this.queueDir,
      join(this.base, "data"),
      this.sinkDir,
      join(this.dkimDir, "keys", "example.com"),
    ])
      mkdirSync(d, { recursive: true, mode: 0o755 });
    chownSync(join(this.base, "data"), uid("postfix"), 0);
    chownSync(this.sinkDir, uid("postfix"), gid("postfix"));

    const add = run(tool("ip") as string, ["netns", "add", this.ns]);
    if (add.status !== 0) throw new Error(`ip netns add: ${add.stderr}`);
    this.nsCreated = true;
    this.inNs(tool("ip") as string, ["link", "set", "lo", "up"]);
    o.beforeStart?.(this);

    // OpenDKIM: rendered conf and tables, only paths moved; socket dir made exactly as user-data makes it.
    const dk = this.dkimDir;
    const place = (t: string): string =>
      t.replaceAll("/etc/opendkim", dk).replaceAll("/var/spool/postfix", this.queueDir).replaceAll("/run/opendkim", dk);
    this.opendkimInetPort = o.opendkimInetPort;
    const conf = place(renderOpendkimConf(o.host));
    writeFileSync(
      join(dk, "opendkim.conf"),
      o.opendkimInetPort === undefined
        ? conf
        : conf.replace(/^Socket\s+.*$/m, `Socket inet:${o.opendkimInetPort}@127.0.0.1`),
    );
    writeFileSync(join(dk, "KeyTable"), place(renderOpendkimKeyTable(o.host)));
    writeFileSync(join(dk, "SigningTable"), renderOpendkimSigningTable(o.host));
    // The Ed25519 instance: its own conf, tables and pid file (OPENDKIM_INSTANCE.ed25519), the same moves.
    const placeEd = (t: string): string =>
      place(t.replaceAll("/run/opendkim-ed25519/opendkim.pid", join(dk, "opendkim-ed25519.pid")));
    writeFileSync(join(dk, "opendkim-ed25519.conf"), placeEd(renderOpendkimConf(o.host, "ed25519")));
    writeFileSync(join(dk, "KeyTable.ed25519"), placeEd(renderOpendkimKeyTable(o.host, "ed25519")));
    writeFileSync(join(dk, "SigningTable.ed25519"), renderOpendkimSigningTable(o.host, "ed25519"));
    writeFileSync(join(dk, "TrustedHosts"), renderOpendkimTrustedHosts());
    const keys: [string, string][] = [
      [o.host.dkimSelector, o.dkimPrivateKeyPem],
      [ed25519Selector(o.host.dkimSelector), o.dkimEd25519PrivateKeyPem ?? dkimEd25519KeyPem()],
    ];
    for (const [sel, pem] of keys) {
      const key = join(dk, "keys", "example.com", `${sel}.private`);
      writeFileSync(key, pem, { mode: 0o600 });
      chownSync(key, uid("opendkim"), gid("opendkim"));
    }

    const [sinkHost, sinkPort] = o.sink.split(":") as [string, string];
    this.writePostfixConfig(o.host, [`relayhost=[${sinkHost}]:${sinkPort}`, ...(o.postconf ?? [])]);
    const sp = run(tool("postfix") as string, ["-c", this.etc, "set-permissions"]);
    if (sp.status !== 0) throw new Error(`postfix set-permissions: ${sp.stderr}`);
    run("install", ["-d", "-o", "opendkim", "-g", "postfix", "-m", "2750", join(this.queueDir, "opendkim")]);
    await this.startOpendkim();

    this.sink = spawn(
      tool("ip") as string,
      [
        "netns",
        "exec",
        this.ns,
        tool("smtp-sink") as string,
        "-u",
        "postfix",
        "-d",
        `${this.sinkDir}/%M.`,
        o.sink,
        String(o.sinkBacklog),
      ],
      { stdio: "ignore" },
    );
    const start = this.inNs(tool("postfix") as string, ["-c", this.etc, "start"]);
    if (start.status !== 0) throw new Error(`postfix start: ${start.stderr}${start.stdout}`);
    await waitFor(() => /daemon started/.test(this.maillog()), "the Postfix master");
  }

  /**
   * Synchronous and idempotent (it also runs from exit and signal handlers): stops Postfix, OpenDKIM and the sink,
   * kills anything left in the namespace, deletes it, and removes the scratch dir (after copying the mail log to
   * keepMaillog, when given).
   */
  stop(keepMaillog?: string): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.nsCreated) this.inNs(tool("postfix") as string, ["-c", this.etc, "stop"]);
    for (const p of this.opendkim) p.kill("SIGTERM");
    this.sink?.kill("SIGTERM");
    sleepSync(500);
    if (this.nsCreated) {
      // Anything still alive in our namespace is a Postfix child or the sink we started.
      for (const pid of run(tool("ip") as string, ["netns", "pids", this.ns])
        .stdout.split(/\s+/)
        .filter(Boolean)) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // already gone
        }
      }
      run(tool("ip") as string, ["netns", "del", this.ns]);
    }
    const log = join(this.base, "maillog");
    if (keepMaillog && existsSync(log)) copyFileSync(log, keepMaillog);
    removeDir(this.base);
  }
}
