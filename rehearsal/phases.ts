/**
 * The rehearsal's phases, in order, each timed and reported: render, image, network, boot, deploy, mail, attack,
 * faults, teardown. A phase collects every failed check instead of stopping at the first, so the report shows all
 * of them; a phase the later ones cannot do without (render, image, network, boot, deploy) ends the run.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Capture, Connection } from "./capture";
import { callers, capturedCount, RelayClient, verifyCaptured, type CallerCreds } from "./client";
import { boot, HostShell, prepareRootfs, removeRootfs, type PreparedHost } from "./host";
import { defaultImageSpec, ensureImage } from "./image";
import type { State } from "./main";
import { Processes, run, sleep } from "./proc";
import { deleteOrder, replay, runStep, type StepResult } from "./replay";
import {
  createNamespaces,
  deleteNamespaces,
  hostAddresses,
  namesFor,
  startWorld,
  waitTcp,
  WORLD,
  type Names,
  type WorldServices,
} from "./world";
import { QUEUE_ROOT } from "../cloud-init/paths";
import { RELEASES, releaseForImage, releaseName, releaseProfile, type DebianRelease } from "../cloud-init/release";

interface PhaseResult {
  readonly phase: string;
  readonly ok: boolean;
  readonly seconds: number;
  readonly detail: string;
}

class Fatal extends Error {}

/** The teardown drain the rehearsal renders with (the stack's default is minutes; the behaviour is the same). */
const TEARDOWN_DRAIN_SECONDS = 15;

export class Rehearsal {
  private readonly procs = new Processes();
  private readonly names: Names;
  private readonly results: PhaseResult[] = [];
  private capture!: Capture;
  private keyFile!: string;
  private publicKey!: string;
  private rootImage!: string;
  private host!: PreparedHost;
  private world!: WorldServices;
  private shell!: HostShell;
  private client!: RelayClient;
  private nspawnPid = 0;
  private readonly runTag = Date.now().toString(36);
  private accepted = 0;
  private release!: DebianRelease;
  /** With `upgradeFrom`: what the upgraded stack deploys, and its release's image. */
  private target?: { capture: Capture; release: DebianRelease; rootImage?: string };

  /**
   * `image`: the Hetzner image to rehearse instead of the stack's (`--release`). `upgradeFrom`: boot and deploy
   * that image first, then replace the server as `pulumi up` does when `image` changes (`--upgrade-from`).
   */
  constructor(
    private readonly stack: string,
    private readonly dir: string,
    private readonly keep: boolean,
    private readonly image?: string,
    private readonly upgradeFrom?: string,
  ) {
    this.names = namesFor(stack, this.runTag);
  }

  /** Where delivered mail lands: the smarthost for smarthost stacks, else the recipient MX. */
  private get inbox(): string {
    return this.world.smarthostDir ?? this.world.mxDir;
  }

  private log(msg: string): void {
    console.error(`[rehearsal ${new Date().toISOString().slice(11, 19)}] ${msg}`);
  }

  private async phase(
    name: string,
    fn: (fail: (msg: string) => void) => Promise<string | void>,
    fatal = false,
  ): Promise<boolean> {
    const t0 = Date.now();
    const failures: string[] = [];
    let detail = "";
    this.log(`--- ${name}`);
    try {
      detail =
        (await fn((m) => {
          failures.push(m);
          this.log(`FAIL ${name}: ${m}`);
        })) ?? "";
    } catch (e) {
      failures.push(e instanceof Error ? e.message : String(e));
      this.log(`FAIL ${name}: ${failures[failures.length - 1]}`);
    }
    const ok = failures.length === 0;
    this.results.push({
      phase: name,
      ok,
      seconds: (Date.now() - t0) / 1000,
      detail: ok ? detail : failures.join("; "),
    });
    if (!ok && fatal) throw new Fatal(`${name} failed`);
    return ok;
  }

  async runAll(): Promise<number> {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(this.dir, 0o700);
    try {
      await this.phase("render", () => this.render(), true);
      await this.phase("image", () => this.buildImage(), true);
      await this.phase("network + mail world", () => this.network(), true);
      await this.phase("boot", () => this.boot(), true);
      await this.phase("deploy", (fail) => this.deploy(fail), true);
      if (this.target) return await this.runUpgrade();
      await this.phase("services", (fail) => this.services(fail));
      await this.phase("mail end to end", (fail) => this.mail(fail));
      await this.phase("attack: from the internet", (fail) => this.attackFromWorld(fail));
      await this.phase("attack: through the tunnel", (fail) => this.attackThroughTunnel(fail));
      await this.phase("attack: local users on the host", (fail) => this.attackLocalUsers(fail));
      await this.phase("local mail stays local", (fail) => this.localMail(fail));
      await this.phase("fault: kill -9 relay", (fail) => this.faultKillRelay(fail));
      await this.phase("fault: OpenDKIM down", (fail) => this.faultOpendkim(fail));
      await this.phase("fault: Postfix down", (fail) => this.faultPostfix(fail));
      await this.phase("fault: reboot", (fail) => this.faultReboot(fail));
      await this.phase("fault: broken release", (fail) => this.faultBrokenRelease(fail));
      await this.phase("no loss, no duplicate, nothing unsigned", (fail) => this.ledger(fail));
      if (!this.keep) await this.phase("teardown", (fail) => this.teardown(fail));
    } catch (e) {
      if (!(e instanceof Fatal)) {
        this.results.push({
          phase: "rehearsal",
          ok: false,
          seconds: 0,
          detail: e instanceof Error ? (e.stack ?? e.message) : String(e),
        });
      }
    }
    return this.finish();
  }

  private async finish(): Promise<number> {
    this.report();
    await this.cleanup(this.keep);
    return this.results.every((r) => r.ok) ? 0 : 1;
  }

  /**
   * `--upgrade-from`: the old release deployed and sending, then the server replaced by the stack's, then the same
   * checks.
   */
  private async runUpgrade(): Promise<number> {
    try {
      const from = releaseName(this.release);
      await this.phase(`services (${from})`, (fail) => this.services(fail));
      await this.phase(`mail end to end (${from})`, (fail) => this.mail(fail));
      await this.phase("upgrade: the server replaced", (fail) => this.replaceServer(fail), true);
      const to = releaseName(this.release);
      await this.phase(`services (${to})`, (fail) => this.services(fail));
      await this.phase(`mail end to end (${to})`, (fail) => this.mail(fail));
      await this.phase("no loss, no duplicate, nothing unsigned", (fail) => this.ledger(fail));
      if (!this.keep) await this.phase("teardown", (fail) => this.teardown(fail));
    } catch (e) {
      if (!(e instanceof Fatal)) {
        this.results.push({
          phase: "rehearsal",
          ok: false,
          seconds: 0,
          detail: e instanceof Error ? (e.stack ?? e.message) : String(e),
        });
      }
    }
    return this.finish();
  }

  private report(): void {
    const w = Math.max(...this.results.map((r) => r.phase.length));
    const image = this.capture?.nodes[0]?.image ?? "?";
    console.log(
      `\nRehearsal of stack "${this.stack}" (${this.upgradeFrom && this.capture ? `upgrade ${this.upgradeFrom} -> ${this.target?.capture.nodes[0].image ?? image}` : image}):`,
    );
    console.log(`  ${"phase".padEnd(w)}  result  seconds  detail`);
    for (const r of this.results)
      console.log(
        `  ${r.phase.padEnd(w)}  ${r.ok ? "pass  " : "FAIL  "}  ${r.seconds.toFixed(1).padStart(7)}  ${r.detail.replace(/\s+/g, " ").slice(0, 400)}`,
      );
    const total = this.results.reduce((a, r) => a + r.seconds, 0);
    console.log(
      `  ${"total".padEnd(w)}  ${this.results.every((r) => r.ok) ? "pass  " : "FAIL  "}  ${total.toFixed(1).padStart(7)}`,
    );
  }

  async cleanup(keep: boolean): Promise<void> {
    if (keep && this.capture && this.nspawnPid) {
      const state: State = {
        stack: this.stack,
        namespaces: { vps: this.names.vps, world: this.names.world },
        host: { ipv4: this.capture.nodes[0].ipv4, ipv6: this.capture.nodes[0].ipv6 },
        sshKey: this.keyFile,
        tunnelUrl:
          this.capture.tunnel && this.client
            ? `http://${WORLD.edge}:80 (Host: ${this.client.hostname}; run clients with ip netns exec ${this.names.world})`
            : undefined,
        relayTokensFile: path.join(this.dir, "callers.json"),
        mxDir: this.world ? this.inbox : "",
        dns: WORLD.dns,
        pids: this.procs.pids(),
        rootfs: this.host?.root ?? "",
      };
      fs.writeFileSync(path.join(this.dir, "state.json"), JSON.stringify(state, null, 2), { mode: 0o600 });
      console.log(
        `\nkept running; state in ${path.relative(process.cwd(), path.join(this.dir, "state.json"))}. Stop it with: npm run rehearse -- --down ${this.stack}`,
      );
      return;
    }
    const stopped = await this.procs.stopAll(10_000);
    await deleteNamespaces(this.names);
    if (this.host) await removeRootfs(this.host.root);
    this.log(
      `stopped ${stopped.length} process(es): ${stopped.join(", ") || "none"}; namespaces ${this.names.vps}, ${this.names.world} deleted`,
    );
  }

  // ---------------------------------------------------------------- phases

  /**
   * The random outputs (keys, tokens) every capture of this run shares, as a stack's state keeps them between updates.
   */
  private get stateFile(): string {
    return path.join(this.dir, "offline-state.json");
  }

  private async captureWith(
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
    const r = await run(process.execPath, ["--import", "tsx", path.join(__dirname, "capture.ts"), out], {
      input,
      env: { ...process.env, ...extraEnv },
      cwd: path.join(__dirname, ".."),
    });
    if (r.code !== 0) throw new Error(`capturing the program failed: ${r.stderr.slice(-2000)}`);
    const c = JSON.parse(fs.readFileSync(out, "utf8")) as Capture;
    fs.rmSync(out);
    return c;
  }

  private async render(): Promise<string> {
    this.keyFile = path.join(this.dir, "id_ed25519");
    fs.rmSync(this.keyFile, { force: true });
    fs.rmSync(`${this.keyFile}.pub`, { force: true });
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `rehearsal-${this.stack}`, "-f", this.keyFile]);
    this.publicKey = fs.readFileSync(`${this.keyFile}.pub`, "utf8").trim();
    fs.rmSync(this.stateFile, { force: true });
    const releaseOf = (c: Capture): DebianRelease => {
      if (c.nodes.length !== 1)
        throw new Error(`the rehearsal boots one node; stack ${this.stack} has ${c.nodes.length}`);
      const r = releaseForImage(c.nodes[0].image);
      if (!r)
        throw new Error(
          `the rehearsal has images for ${Object.values(RELEASES)
            .map((x) => x.hetznerImage)
            .join(", ")} only; the stack deploys ${c.nodes[0].image}`,
        );
      return r;
    };
    if (this.upgradeFrom) {
      const target = await this.captureWith({}, this.image);
      this.target = { capture: target, release: releaseOf(target) };
      this.capture = await this.captureWith({}, this.upgradeFrom);
      // Both renders share the state (keys, tokens): the DNS the world serves is the same before and after.
      if (JSON.stringify(target.records) !== JSON.stringify(this.capture.records))
        throw new Error("the two renders disagree on the DNS records");
    } else {
      this.capture = await this.captureWith();
    }
    const c = this.capture;
    this.release = releaseOf(c);
    fs.writeFileSync(path.join(this.dir, "callers.json"), JSON.stringify(callers(c), null, 2), { mode: 0o600 });
    const copies = c.steps.filter((s) => s.kind === "copy").length;
    return `${c.steps.length - copies} commands, ${copies} upload(s), ${c.records.length} DNS records, ${c.ptrs.length} PTRs, user-data ${c.nodes[0].userData.length} bytes, image ${c.nodes[0].image}${this.target ? ` (then ${this.target.capture.nodes[0].image})` : ""}; teardown drain rendered as ${TEARDOWN_DRAIN_SECONDS}s`;
  }

  private async buildImage(): Promise<string> {
    const suite = this.release;
    const built = await ensureImage(defaultImageSpec(suite), (m) => this.log(m));
    this.rootImage = built.dir;
    if (this.target) {
      const next = await ensureImage(defaultImageSpec(this.target.release), (m) => this.log(m));
      this.target = { ...this.target, rootImage: next.dir };
      return `${suite} ${built.cached ? "(cached)" : "(built)"}, then ${this.target.release} ${next.cached ? "(cached)" : "(built)"}`;
    }
    return `${suite} ${built.cached ? "(cached)" : "(built)"} ${built.dir}`;
  }

  private async network(): Promise<string> {
    const h = hostAddresses(this.capture);
    await createNamespaces(this.names, h);
    this.world = await startWorld(this.capture, this.names, this.dir, this.procs);
    this.client = new RelayClient(this.names, this.capture, this.dir);
    this.shell = new HostShell(this.names, this.keyFile, this.dir);
    return `netns ${this.names.vps} (host ${h.ipv4}${h.ipv6 ? `, ${h.ipv6}` : ""}) + ${this.names.world} (gateway, DNS ${WORLD.dns}, MX ${WORLD.mx4}/${WORLD.mx6}${this.capture.tunnel ? `, edge ${WORLD.edge}` : ""})`;
  }

  private async startHost(): Promise<void> {
    const child = boot(this.host, this.names, `mrr-${this.stack}-${this.runTag}`, this.procs);
    this.nspawnPid = child.pid!;
    await waitTcp(this.names.world, this.capture.nodes[0].ipv4, 22, 120_000);
  }

  private async boot(): Promise<string> {
    const t0 = Date.now();
    this.host = await prepareRootfs(
      this.rootImage,
      this.capture,
      this.dir,
      this.publicKey,
      (m) => this.log(m),
      this.world.caCert,
    );
    const copied = (Date.now() - t0) / 1000;
    await this.startHost();
    return `rootfs ready in ${copied.toFixed(1)}s; sshd answered ${((Date.now() - t0) / 1000 - copied).toFixed(1)}s after boot; log ${path.relative(process.cwd(), this.host.log)}`;
  }

  private async deploy(fail: (m: string) => void): Promise<string> {
    const results = await replay(this.shell, this.capture.steps, (r) =>
      this.log(
        `${r.ok ? "ok  " : "FAIL"} ${r.name.replace(/^mail-relay-/, "")} ${r.seconds.toFixed(1)}s${r.dials > 1 ? ` (${r.dials} dials)` : ""}${r.skipped ? ` ${r.skipped}` : ""}`,
      ),
    );
    fs.writeFileSync(
      path.join(this.dir, "deploy.log"),
      results.map((r) => `### ${r.name} exit ${r.code} ${r.seconds}s\n${r.stdout}\n${r.stderr}`).join("\n"),
    );
    for (const r of results.filter((x) => !x.ok && !x.skipped))
      fail(`step ${r.name} exited ${r.code}: ${r.stderr.trim().slice(-1500)}`);
    // The first step waits for cloud-init before it does anything, so its time is cloud-init's.
    const first = results.find((r) => !this.capture.steps.find((s) => s.name === r.name)?.after.length);
    const slowest = [...results].sort((a, b) => b.seconds - a.seconds)[0];
    return `${results.filter((r) => r.ok).length}/${results.length} steps ok; first step (${first?.name.replace(/^mail-relay-/, "")}, waits for cloud-init) ${first?.seconds.toFixed(1)}s; slowest ${slowest?.name.replace(/^mail-relay-/, "")} ${slowest?.seconds.toFixed(1)}s; max dials ${Math.max(...results.map((r) => r.dials))}`;
  }

  /** A connection to the host, as the program's steps use it. */
  private get conn(): Connection {
    return this.capture.steps[0].connection;
  }

  private async onHost(script: string, timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
    return this.shell.exec(this.conn, script, undefined, timeoutMs);
  }

  private units(): string[] {
    return [
      releaseProfile(this.release).postfix.masterUnit,
      "opendkim.service",
      "mail-relay.service",
      "nftables.service",
      ...(this.capture.tunnel ? ["cloudflared-mail-relay.service"] : []),
    ];
  }

  /**
   * What `pulumi up` does when `image` changes (docs/upgrade.md): with mail in flight, the old server's teardown
   * guards run in the engine's delete order (tunnel, then the relay guard's drain); the old server is shut down and
   * its disk deleted; the new release boots on the same addresses with the new render's user-data and gets every
   * step, pinning the same host key.
   */
  private async replaceServer(fail: (m: string) => void): Promise<string> {
    const target = this.target!;
    const from = this.capture.nodes[0].image;
    await this.batch(fail, "in flight at the upgrade", 3);
    const order = deleteOrder(this.capture.steps);
    for (const s of order) {
      const r = await runStep(this.shell, s, "delete");
      if (!r.ok)
        throw new Error(`on the old server, the delete of ${r.name} failed (exit ${r.code}): ${r.stderr.slice(-800)}`);
    }
    // The relay guard succeeds only once the relay's and Postfix's queues are empty: everything accepted has left.
    if (capturedCount(this.inbox) < this.accepted)
      fail(`after the guards, ${capturedCount(this.inbox)} of ${this.accepted} accepted copies at the MX`);
    const oldPid = this.nspawnPid;
    await this.onHost("systemctl poweroff", 10_000).catch(() => undefined);
    for (let i = 0; i < 120 && this.procs.pids().includes(oldPid); i++) await sleep(500);
    if (this.procs.pids().includes(oldPid)) throw new Error("the old server did not shut down within 60s");
    await removeRootfs(this.host.root);

    const sameKey =
      this.capture.steps.find((s) => s.connection.hostKey)?.connection.hostKey ===
      target.capture.steps.find((s) => s.connection.hostKey)?.connection.hostKey;
    if (!sameKey) fail("the new render pins another host key (the key must outlive the server)");
    this.capture = target.capture;
    this.release = target.release;
    this.rootImage = target.rootImage!;
    this.host = await prepareRootfs(
      this.rootImage,
      this.capture,
      this.dir,
      this.publicKey,
      (m) => this.log(m),
      this.world.caCert,
    );
    await this.startHost();
    const results = await replay(this.shell, this.capture.steps, (r) =>
      this.log(
        `${r.ok ? "ok  " : "FAIL"} ${r.name.replace(/^mail-relay-/, "")} ${r.seconds.toFixed(1)}s${r.dials > 1 ? ` (${r.dials} dials)` : ""}${r.skipped ? ` ${r.skipped}` : ""}`,
      ),
    );
    fs.writeFileSync(
      path.join(this.dir, "deploy-upgrade.log"),
      results.map((r) => `### ${r.name} exit ${r.code} ${r.seconds}s\n${r.stdout}\n${r.stderr}`).join("\n"),
    );
    for (const r of results.filter((x) => !x.ok && !x.skipped))
      fail(`on the new server, step ${r.name} exited ${r.code}: ${r.stderr.trim().slice(-1500)}`);
    const n = this.capture.nodes[0];
    return `on ${from}: ${order.map((s) => s.name.replace(/^mail-relay-/, "")).join(" -> ")} deleted, 3 jobs in flight drained to the MX, powered off, disk deleted; ${n.image} booted on ${n.ipv4}${n.ipv6 ? `, ${n.ipv6}` : ""}: ${results.filter((r) => r.ok).length}/${results.length} steps ok, host key ${sameKey ? "unchanged" : "CHANGED"}`;
  }

  private async services(fail: (m: string) => void): Promise<string> {
    const r = await this.onHost(
      `for u in ${this.units().join(" ")}; do printf '%s %s %s\\n' "$u" "$(systemctl is-active "$u")" "$(systemctl is-enabled "$u" 2>/dev/null || echo -)"; done; node --version; cloudflared --version 2>&1 | head -1; nft list tables; postconf -h mail_version`,
    );
    const lines = r.stdout.trim().split("\n");
    for (const u of this.units()) {
      const l = lines.find((x) => x.startsWith(`${u} `)) ?? "";
      if (!/ active /.test(`${l} `)) fail(`${u} is not active: ${l}`);
    }
    if (!/table inet/.test(r.stdout)) fail(`no nftables table loaded: ${r.stdout}`);
    return lines.slice(this.units().length).join(", ");
  }

  private sender(): string {
    return String(this.capture.outputs.defaultSender);
  }

  private creds(): CallerCreds {
    return callers(this.capture)[0];
  }

  /** Posts and expects 202; counts the message in the ledger. Returns the id. */
  private async post(
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
    if (a.status !== 202 || !a.body?.id) {
      fail(`${what}: expected 202, got ${a.status} ${a.raw.slice(0, 300)}`);
      return undefined;
    }
    this.accepted += copies;
    this.expected.push({ id: a.body.id, what, copies });
    return a.body.id as string;
  }

  private readonly expected: { id: string; what: string; copies: number }[] = [];

  private async waitForCopies(n: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (capturedCount(this.inbox) >= n) return true;
      await sleep(500);
    }
    return capturedCount(this.inbox) >= n;
  }

  private rcpt(name: string): string {
    return `${name}@${WORLD.recipientDomain}`;
  }

  private async mail(fail: (m: string) => void): Promise<string> {
    const before = capturedCount(this.inbox);
    const ids = [
      await this.post(fail, "text only", { to: this.rcpt("alice"), text: "Hello from the rehearsal.\n" }, 1),
      await this.post(fail, "HTML only", { to: this.rcpt("bob"), html: "<p>Hello <b>from</b> the rehearsal.</p>" }, 1),
      await this.post(
        fail,
        "text and HTML",
        { to: this.rcpt("carol"), text: "plain part\n", html: "<p>html part</p>" },
        1,
      ),
      await this.post(
        fail,
        "attachment",
        {
          to: this.rcpt("dave"),
          text: "see attached\n",
          attachments: [
            {
              filename: "report.txt",
              contentType: "text/plain",
              content: Buffer.from("attached report\n").toString("base64"),
            },
          ],
        },
        1,
      ),
      await this.post(
        fail,
        "several recipients",
        { to: this.rcpt("erin"), cc: [this.rcpt("frank")], bcc: [this.rcpt("grace")], text: "to, cc and bcc\n" },
        3,
      ),
    ];
    if (!(await this.waitForCopies(before + 7, 60_000)))
      fail(`expected ${before + 7} copies at the MX within 60s, got ${capturedCount(this.inbox)}`);
    const verified = (await verifyCaptured(this.names, this.inbox)).filter((v) => v.subject.includes(this.runTag));
    const selector = String(this.capture.outputs.dkimSelector);
    for (const v of verified) {
      if (v.dkim !== "pass" || v.dkimSelector !== selector || v.dkimDomain !== this.capture.domain)
        fail(`${v.subject} to ${v.rcptTo}: dkim=${v.dkim} s=${v.dkimSelector} d=${v.dkimDomain}`);
      if (v.spf !== "pass") fail(`${v.subject} to ${v.rcptTo}: spf=${v.spf} from ${v.remoteAddress}`);
      if (v.dmarc !== "pass") fail(`${v.subject} to ${v.rcptTo}: dmarc=${v.dmarc}`);
      if (v.hasBcc) fail(`${v.subject} to ${v.rcptTo} carries a Bcc header`);
    }
    if (!verified.some((v) => v.rcptTo === this.rcpt("grace"))) fail("the bcc recipient got nothing");
    const sh = this.capture.smarthost;
    if (sh)
      for (const v of verified)
        if (!v.tls || v.authUser !== sh.username)
          fail(
            `${v.subject}: the smarthost session was tls=${v.tls}, user=${v.authUser}; expected STARTTLS and AUTH as ${sh.username}`,
          );
    // The copies are at the MX: the relay's tracker reads Postfix's log (maillog_file) within a second or two.
    for (const id of ids.filter((x): x is string => x !== undefined)) {
      let s = await this.client.request("GET", `/messages/${id}`, { creds: this.creds() });
      for (let i = 0; i < 20 && s.body?.message?.state !== "delivered"; i++) {
        await new Promise((r) => setTimeout(r, 500));
        s = await this.client.request("GET", `/messages/${id}`, { creds: this.creds() });
      }
      const m = s.body?.message;
      const rcpts = (m?.recipients ?? []) as { state?: string; dsn?: string }[];
      const allDelivered =
        rcpts.length > 0 && rcpts.every((r) => r.state === "delivered" && /^2\./.test(String(r.dsn)));
      if (
        s.status !== 200 ||
        m?.state !== "delivered" ||
        !allDelivered ||
        !/^[0-9A-Za-z]+$/.test(String(m?.postfixQueueId ?? ""))
      )
        fail(`/messages/${id}: ${s.status} ${s.raw.slice(0, 300)}`);
    }
    // Control: the same check on a copy altered in transit must fail, or the passes above prove nothing.
    if (verified.length > 0) {
      const ctl = path.join(this.dir, "control");
      fs.rmSync(ctl, { recursive: true, force: true });
      fs.mkdirSync(ctl);
      const src = path.join(this.inbox, verified[0].file);
      fs.writeFileSync(
        path.join(ctl, verified[0].file),
        fs.readFileSync(src, "latin1").replace(/\r?\n\r?\n/, "\r\n\r\nALTERED IN TRANSIT\r\n"),
        "latin1",
      );
      fs.copyFileSync(src.replace(/\.eml$/, ".json"), path.join(ctl, verified[0].file.replace(/\.eml$/, ".json")));
      const [altered] = await verifyCaptured(this.names, ctl);
      // (DMARC may still pass on aligned SPF; the DKIM result is what the control is about.)
      if (!altered || altered.dkim === "pass")
        fail(`control: a message altered after signing still has dkim=${altered?.dkim}`);
    }
    const sample = verified[0];
    const via = sh ? ` via the smarthost ${sh.host}:${sh.port} (verified STARTTLS, AUTH as ${sh.username})` : "";
    return `${verified.length} copies${via} (control: an altered copy fails DKIM): all dkim=pass (s=${selector}, d=${this.capture.domain}, h=${sample?.dkimHeaders}), spf=pass, dmarc=pass; no Bcc header; /messages/:id delivered for every recipient (read from Postfix's log), with Postfix queue ids`;
  }

  private async attackFromWorld(fail: (m: string) => void): Promise<string> {
    const n = this.capture.nodes[0];
    const hosts = [n.ipv4, ...(n.ipv6 ? [`[${n.ipv6}]`] : [])];
    // 22 too: SSH is for the admin ranges only, on the host as at the cloud firewall; the stranger is outside them.
    const targets = hosts.flatMap((h) => [22, 25, 465, 587, 2525, 8891].map((p) => `${h}:${p}`));
    const out: string[] = [];
    for (const [src, list] of [
      [WORLD.stranger4, targets.filter((t) => !t.startsWith("["))],
      [WORLD.stranger6, targets.filter((t) => t.startsWith("["))],
    ] as const) {
      const r = await run(
        "ip",
        [
          "netns",
          "exec",
          this.names.world,
          process.execPath,
          "--import",
          "tsx",
          path.join(__dirname, "world", "probe.ts"),
          src,
          ...list,
        ],
        { timeoutMs: 120_000 },
      );
      out.push(r.stdout);
    }
    const lines = out
      .join("\n")
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { target: string; connected: boolean; outcome: string });
    for (const l of lines)
      if (l.connected) fail(`${l.target} accepted a TCP connection from the internet (${l.outcome})`);
    // The probe itself can connect: the host's SSH answers an admin address (else every "refused" above proves
    // nothing).
    const control = await run(
      "ip",
      ["netns", "exec", this.names.world, "bash", "-c", `exec 3<>/dev/tcp/${n.ipv4}/22`],
      { timeoutMs: 5000 },
    );
    if (control.code !== 0)
      fail("control: SSH from the admin range did not connect either, so the probe proves nothing");
    return `${lines.length} targets (22, 25, 465, 587, 2525, 8891 on ${hosts.join(", ")}): ${[...new Set(lines.map((l) => l.outcome))].join(", ")}; control: SSH from an admin address connects`;
  }

  private async attackThroughTunnel(fail: (m: string) => void): Promise<string> {
    if (!this.capture.tunnel) return "tunnel disabled in this stack: nothing to attack through it";
    const before = capturedCount(this.inbox);
    const c = this.creds();
    const good = { from: this.sender(), to: this.rcpt("victim"), subject: `[${this.runTag}] attack`, text: "x" };
    const cases: {
      what: string;
      status: number;
      code?: string;
      run: () => Promise<{ status: number; body: any; raw: string }>;
    }[] = [
      {
        what: "no Access token",
        status: 403,
        run: () =>
          this.client.request("POST", "/send", { creds: { relayToken: c.relayToken }, body: JSON.stringify(good) }),
      },
      {
        what: "no relay token",
        status: 401,
        code: "unauthorized",
        run: () =>
          this.client.request("POST", "/send", {
            creds: { accessId: c.accessId, accessSecret: c.accessSecret },
            body: JSON.stringify(good),
          }),
      },
      {
        what: "wrong relay token",
        status: 401,
        code: "unauthorized",
        run: () => this.client.send({ ...c, relayToken: `${c.relayToken.slice(0, -4)}XXXX` }, good),
      },
      {
        what: "From outside the allowlist",
        status: 400,
        code: "from_not_allowed",
        run: () => this.client.send(c, { ...good, from: `ceo@${this.capture.domain}` }),
      },
      {
        what: "CR/LF in subject",
        status: 400,
        code: "header_injection",
        run: () => this.client.send(c, { ...good, subject: "hi\r\nBcc: victim2@example.net" }),
      },
      {
        what: "CR/LF in name",
        status: 400,
        code: "header_injection",
        run: () => this.client.send(c, { ...good, from: { email: this.sender(), name: "x\r\nBcc: v@example.net" } }),
      },
      {
        what: "CR/LF in reply-to",
        status: 400,
        run: () => this.client.send(c, { ...good, replyTo: "a@example.net\r\nBcc: v@example.net" }),
      },
      {
        what: "oversized body",
        status: 413,
        code: "payload_too_large",
        run: () => this.client.send(c, { ...good, text: "x".repeat(2 * 1024 * 1024) }),
      },
      {
        what: "too many recipients",
        status: 400,
        code: "too_many_recipients",
        run: () => this.client.send(c, { ...good, to: Array.from({ length: 1001 }, (_, i) => this.rcpt(`r${i}`)) }),
      },
      {
        what: "non-JSON",
        status: 400,
        code: "invalid_json",
        run: () => this.client.request("POST", "/send", { creds: c, body: "{not json" }),
      },
      {
        what: "/metrics through the tunnel",
        status: 404,
        run: () => this.client.request("GET", "/metrics", { creds: c }),
      },
    ];
    const seen: string[] = [];
    for (const k of cases) {
      const a = await k.run();
      const code = a.body?.error?.code;
      seen.push(`${k.what}: ${a.status}${code ? ` ${code}` : ""}`);
      if (a.status !== k.status || (k.code && code !== k.code))
        fail(`${k.what}: expected ${k.status}${k.code ? ` ${k.code}` : ""}, got ${a.status} ${a.raw.slice(0, 200)}`);
    }
    await sleep(3000);
    const after = capturedCount(this.inbox);
    if (after !== before) fail(`the MX received ${after - before} message(s) during the attacks`);
    return seen.join("; ");
  }

  /** On the host: who may talk SMTP to Postfix on loopback (it trusts every loopback client). */
  private async attackLocalUsers(fail: (m: string) => void): Promise<string> {
    const probe = (who: string, port: number) =>
      `${who === "root" ? "" : `setpriv --reuid=${who} --regid=${who} --clear-groups `}timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/${port} && head -c 3 <&3' >/dev/null 2>&1 && echo "${who}:${port}:connected" || echo "${who}:${port}:refused"`;
    const cases: [string, number, boolean][] = [
      ["nobody", 25, false],
      ["nobody", 587, false],
      ["mailrelay", 25, true],
      ["root", 25, true],
    ];
    const r = await this.onHost(cases.map(([w, p]) => probe(w, p)).join("; "));
    const got = r.stdout.trim().split("\n");
    cases.forEach(([w, p, allowed], i) => {
      const expected = `${w}:${p}:${allowed ? "connected" : "refused"}`;
      if (got[i] !== expected) fail(`expected ${expected}, got ${got[i] ?? r.stderr}`);
    });
    return got.join(", ");
  }

  private async localMail(fail: (m: string) => void): Promise<string> {
    const before = capturedCount(this.inbox);
    const marker = `rehearsal-local-${this.runTag}`;
    const r = await this.onHost(
      `printf 'Subject: ${marker}\\n\\nnotice\\n' | /usr/sbin/sendmail root; for _ in $(seq 1 30); do grep -q '${marker}' /var/mail/root 2>/dev/null && break; sleep 0.5; done; grep -c '${marker}' /var/mail/root || true; postqueue -p | tail -1`,
    );
    if (!/^1$/m.test(r.stdout))
      fail(`mail to root did not reach /var/mail/root on the host: ${r.stdout.trim()} ${r.stderr.trim()}`);
    await sleep(2000);
    if (capturedCount(this.inbox) !== before) fail("mail to root left the host (the MX received it)");
    return `mail to root delivered to /var/mail/root; nothing left the host (${r.stdout.trim().split("\n").pop()})`;
  }

  private async pendingOnHost(): Promise<number> {
    const r = await this.onHost(`find ${QUEUE_ROOT}/pending ${QUEUE_ROOT}/processing -type f 2>/dev/null | wc -l`);
    return Number(r.stdout.trim());
  }

  private async batch(fail: (m: string) => void, what: string, n: number): Promise<void> {
    for (let i = 1; i <= n; i++)
      await this.post(fail, `${what} ${i}/${n}`, { to: this.rcpt(`fault${i}`), text: `${what} ${i}\n` }, 1);
  }

  private async expectAllArrive(fail: (m: string) => void, what: string, timeoutMs = 150_000): Promise<number> {
    const t0 = Date.now();
    if (!(await this.waitForCopies(this.accepted, timeoutMs)))
      fail(
        `${what}: ${capturedCount(this.inbox)} of ${this.accepted} accepted copies at the MX after ${timeoutMs / 1000}s`,
      );
    return (Date.now() - t0) / 1000;
  }

  private async faultKillRelay(fail: (m: string) => void): Promise<string> {
    // Postfix stopped first, so the jobs are still in the relay's queue when it dies.
    await this.onHost("systemctl stop postfix.service");
    await this.batch(fail, "kill -9", 5);
    // A pooled connection may still hand one off while Postfix stops; what matters is that jobs are pending.
    const pending = await this.pendingOnHost();
    if (pending < 1) fail("expected jobs pending before the kill, found none");
    const pidBefore = (await this.onHost("systemctl show -p MainPID --value mail-relay.service")).stdout.trim();
    await this.onHost("systemctl kill -s KILL mail-relay.service");
    await this.onHost("systemctl start postfix.service");
    let restarted = "";
    for (let i = 0; i < 30 && !restarted; i++) {
      await sleep(1000);
      const r = await this.onHost(
        "systemctl is-active mail-relay.service; systemctl show -p MainPID --value mail-relay.service; systemctl show -p NRestarts --value mail-relay.service",
      );
      const [state, pid, restarts] = r.stdout.trim().split("\n");
      if (state === "active" && pid !== pidBefore && pid !== "0")
        restarted = `restarted by systemd (pid ${pidBefore} -> ${pid}, NRestarts ${restarts})`;
    }
    if (!restarted) fail("systemd did not restart the relay within 30s");
    const s = await this.expectAllArrive(fail, "after kill -9");
    return `${pending} jobs pending at the kill; ${restarted}; all arrived ${s.toFixed(0)}s later`;
  }

  private async faultOpendkim(fail: (m: string) => void): Promise<string> {
    await this.onHost("systemctl stop opendkim.service");
    const before = capturedCount(this.inbox);
    await this.batch(fail, "OpenDKIM down", 3);
    await sleep(8000);
    const during = capturedCount(this.inbox) - before;
    if (during !== 0) fail(`${during} message(s) left while OpenDKIM was down`);
    const held = await this.pendingOnHost();
    await this.onHost("systemctl start opendkim.service");
    const s = await this.expectAllArrive(fail, "after OpenDKIM restart");
    return `nothing left in 8s while down (${held} held in the relay's queue); all arrived ${s.toFixed(0)}s after the restart (signatures checked in the last phase)`;
  }

  private async faultPostfix(fail: (m: string) => void): Promise<string> {
    await this.onHost("systemctl stop postfix.service");
    const statuses: number[] = [];
    for (let i = 1; i <= 3; i++) {
      const a = await this.client.send(this.creds(), {
        from: this.sender(),
        to: this.rcpt(`pfdown${i}`),
        subject: `[${this.runTag}] Postfix down ${i}/3`,
        text: "x\n",
      });
      statuses.push(a.status);
      if (a.status === 202) {
        this.accepted += 1;
        this.expected.push({ id: a.body.id, what: "postfix down", copies: 1 });
      }
    }
    if (statuses.some((s) => s !== 202))
      fail(`the relay did not keep answering 202 with Postfix down: ${statuses.join(", ")}`);
    await sleep(3000);
    await this.onHost("systemctl start postfix.service");
    const s = await this.expectAllArrive(fail, "after Postfix restart");
    return `202 x${statuses.filter((x) => x === 202).length} with Postfix down; all arrived ${s.toFixed(0)}s after its restart`;
  }

  private async faultReboot(fail: (m: string) => void): Promise<string> {
    await this.onHost("systemctl stop postfix.service");
    await this.batch(fail, "queued across a reboot", 3);
    const pending = await this.pendingOnHost();
    const t0 = Date.now();
    const old = this.nspawnPid;
    await this.onHost("systemctl reboot", 10_000).catch(() => undefined);
    // nspawn ends when the container reboots (exit 133, as systemd-nspawn@.service expects); start it again.
    for (let i = 0; i < 120; i++) {
      if (!this.procs.pids().includes(old)) break;
      await sleep(500);
    }
    if (this.procs.pids().includes(old)) fail("the container did not go down on reboot within 60s");
    await this.startHost();
    const r = await this.onHost("systemctl is-system-running --wait || true");
    const up = (Date.now() - t0) / 1000;
    const svc = await this.onHost(
      `for u in ${this.units().join(" ")}; do systemctl is-active "$u"; done; nft list tables`,
    );
    const states = svc.stdout.trim().split("\n");
    this.units().forEach((u, i) => {
      if (states[i] !== "active") fail(`after reboot ${u} is ${states[i]}`);
    });
    if (!/table inet/.test(svc.stdout)) fail("after reboot no nftables table is loaded");
    const s = await this.expectAllArrive(fail, "after reboot");
    return `${pending} jobs pending; back up in ${up.toFixed(0)}s (${r.stdout.trim()}), units active, nftables loaded; all arrived ${s.toFixed(0)}s later`;
  }

  private async faultBrokenRelease(fail: (m: string) => void): Promise<string> {
    const broken = path.join(this.dir, "broken-relay.js");
    fs.writeFileSync(
      broken,
      `"use strict";\n// rehearsal: a release that parses but cannot start\nconsole.error("rehearsal: deliberately broken relay release, exiting");\nprocess.exit(1);\n`,
    );
    const bad = await this.captureWith({ MAIL_RELAY_BUNDLE: broken });
    const good = (await this.onHost("readlink /opt/mail-relay/current")).stdout.trim();
    const pick = (c: Capture, suffix: string) => c.steps.find((s) => s.name.endsWith(suffix))!;
    const up = await runStep(this.shell, pick(bad, "-relay-upload"));
    if (!up.ok) fail(`uploading the broken release failed: ${up.stderr}`);
    const act = await runStep(this.shell, pick(bad, "-relay-activate"));
    if (act.ok) fail("activating a broken release succeeded");
    if (!/failed its health check/.test(act.stderr)) fail(`the failed step did not say why: ${act.stderr.slice(-500)}`);
    if (!/deliberately broken/.test(act.stderr)) fail("the failed step did not include the relay's log");
    if (!/rolled back: current -> .* \(healthy\)/.test(act.stderr))
      fail(`no healthy rollback: ${act.stderr.slice(-500)}`);
    const now = (await this.onHost("readlink /opt/mail-relay/current")).stdout.trim();
    if (now !== good) fail(`current is ${now}, expected the previous ${good}`);
    const h = await this.client.request("GET", "/health", { creds: this.creds() });
    if (h.status !== 200) fail(`/health after the rollback: ${h.status}`);
    await this.post(fail, "after rollback", { to: this.rcpt("rollback"), text: "still here\n" }, 1);
    const s = await this.expectAllArrive(fail, "after rollback", 60_000);
    return `activation failed (exit ${act.code}) with the relay's log, rolled back to ${good}, /health 200, mail flows (${s.toFixed(0)}s)`;
  }

  private async ledger(fail: (m: string) => void): Promise<string> {
    const all = (await verifyCaptured(this.names, this.inbox)).filter((v) => v.subject.includes(this.runTag));
    const keys = all.map((v) => `${v.messageId}|${v.rcptTo}`);
    const dup = keys.length - new Set(keys).size;
    const unsigned = all.filter((v) => v.dkim !== "pass").length;
    if (all.length !== this.accepted) fail(`${this.accepted} copies accepted (202), ${all.length} at the MX`);
    if (dup > 0) fail(`${dup} duplicate(s) at the MX`);
    if (unsigned > 0) fail(`${unsigned} message(s) without a passing DKIM signature`);
    return `accepted ${this.accepted}, at the MX ${all.length}, duplicated ${dup}, unsigned ${unsigned}`;
  }

  private async teardown(fail: (m: string) => void): Promise<string> {
    const order = deleteOrder(this.capture.steps);
    const names = order.map((s) => s.name.replace(/^mail-relay-/, ""));
    // Mail still queued: with OpenDKIM down Postfix answers 451 (milter tempfail), so the job stays in the relay's
    // queue whatever the timing (stopping Postfix raced a pooled connection that handed the job off first).
    await this.onHost("systemctl stop opendkim.service");
    await this.batch(fail, "queued at teardown", 1);
    await sleep(2000);
    const queued = await this.pendingOnHost();
    if (queued < 1) fail("the job meant to be queued at teardown is not in the relay's queue");
    const first: StepResult[] = [];
    for (const s of order) {
      const r = await runStep(this.shell, s, "delete");
      first.push(r);
      if (!r.ok) break;
    }
    const refused = first.find((r) => !r.ok);
    if (!refused || !/refusing to tear down/.test(refused.stderr))
      fail(`with mail queued the guard did not refuse: ${first.map((r) => `${r.name} ${r.code}`).join(", ")}`);
    const relayState = (await this.onHost("systemctl is-active mail-relay.service || true")).stdout.trim();
    if (relayState !== "active") fail(`after the refusal the relay is ${relayState}, expected it left running`);
    await this.onHost("systemctl start opendkim.service");
    await this.expectAllArrive(fail, "drain before teardown");
    const second: StepResult[] = [];
    for (const s of order.filter((x) => !first.some((r) => r.ok && r.name === x.name)))
      second.push(await runStep(this.shell, s, "delete"));
    for (const r of second.filter((x) => !x.ok))
      fail(`delete of ${r.name} failed after the drain: ${r.stderr.slice(-500)}`);
    const after = (
      await this.onHost("systemctl is-active mail-relay.service cloudflared-mail-relay.service || true")
    ).stdout
      .trim()
      .replace(/\n/g, ", ");
    if (/^active/m.test(after.replace(/, /g, "\n"))) fail(`services still active after teardown: ${after}`);
    return `delete order ${names.join(" -> ")}; with ${queued} job(s) queued (OpenDKIM down): ${refused?.name.replace(/^mail-relay-/, "")} refused (exit ${refused?.code}), relay left ${relayState}; after the drain: all deletes ok, units ${after}`;
  }
}
