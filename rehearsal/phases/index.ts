/**
 * The rehearsal's phases, in order, each timed and reported: render, image, network, boot, deploy, mail, SMTP
 * ingress, attack, faults, teardown. A phase collects every failed check instead of stopping at the first, so the
 * report shows all of them; a phase the later ones cannot do without (render, image, network, boot, deploy) ends
 * the run.
 * The phases themselves are in this directory, one file per concern; the state they share is RehearsalRun.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { removeRootfs } from "../host";
import type { State } from "../state";
import { deleteNamespaces, WORLD } from "../world";
import { releaseName } from "../../cloud-init/release";
import { attackFromWorld, attackLocalUsers, attackThroughTunnel } from "./attacks";
import { RehearsalRun } from "./context";
import {
  doctorBlocklisted,
  doctorDkimMismatch,
  doctorHealthy,
  doctorOpendkimStopped,
  doctorPort25Dropped,
  doctorPtrElsewhere,
  doctorTokenExpiring,
  doctorWrongSpf,
  smokeTest,
} from "./doctor";
import { faultBrokenRelease, faultKillRelay, faultOpendkim, faultPostfix, faultReboot } from "./faults";
import { ledger } from "./ledger";
import {
  outboundDane,
  outboundDaneAndSts,
  outboundMtaSts,
  outboundMtaStsTesting,
  outboundOpportunistic,
} from "./outbound-tls";
import { clients, localMail, mail, services } from "./mail";
import { boot, buildImage, deploy, network, render, replaceServer } from "./setup";
import { smtpIngress } from "./smtp-ingress";
import { teardown } from "./teardown";

interface PhaseResult {
  readonly phase: string;
  readonly ok: boolean;
  readonly seconds: number;
  readonly detail: string;
}

class Fatal extends Error {}

export class Rehearsal {
  private readonly ctx: RehearsalRun;
  private readonly results: PhaseResult[] = [];

  /**
   * `image`: the Hetzner image to rehearse instead of the stack's (`--release`). `upgradeFrom`: boot and deploy
   * that image first, then replace the server as `pulumi up` does when `image` changes (`--upgrade-from`).
   */
  constructor(stack: string, dir: string, keep: boolean, image?: string, upgradeFrom?: string) {
    this.ctx = new RehearsalRun(stack, dir, keep, image, upgradeFrom);
  }

  private async phase(
    name: string,
    fn: (fail: (msg: string) => void) => Promise<string | void>,
    fatal = false,
  ): Promise<boolean> {
    const t0 = Date.now();
    const failures: string[] = [];
    let detail = "";
    this.ctx.log(`--- ${name}`);
    try {
      detail =
        (await fn((m) => {
          failures.push(m);
          this.ctx.log(`FAIL ${name}: ${m}`);
        })) ?? "";
    } catch (e) {
      failures.push(e instanceof Error ? e.message : String(e));
      this.ctx.log(`FAIL ${name}: ${failures[failures.length - 1]}`);
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
    fs.mkdirSync(this.ctx.dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(this.ctx.dir, 0o700);
    try {
      await this.phase("render", () => render(this.ctx), true);
      await this.phase("image", () => buildImage(this.ctx), true);
      await this.phase("network + mail world", () => network(this.ctx), true);
      await this.phase("boot", () => boot(this.ctx), true);
      await this.phase("deploy", (fail) => deploy(this.ctx, fail), true);
      if (this.ctx.target) return await this.runUpgrade();
      await this.phase("services", (fail) => services(this.ctx, fail));
      await this.phase("mail end to end", (fail) => mail(this.ctx, fail));
      await this.phase("clients: client/ and nodemailer", (fail) => clients(this.ctx, fail));
      await this.phase("SMTP ingress through the tunnel", (fail) => smtpIngress(this.ctx, fail));
      // Direct delivery only: a smarthost stack sends everything to its smarthost (verified, `secure`).
      if (!this.ctx.capture.smarthost) {
        await this.phase("outbound TLS: opportunistic", (fail) => outboundOpportunistic(this.ctx, fail));
        await this.phase("outbound TLS: MTA-STS enforce", (fail) => outboundMtaSts(this.ctx, fail));
        await this.phase("outbound TLS: MTA-STS testing", (fail) => outboundMtaStsTesting(this.ctx, fail));
        await this.phase("outbound TLS: DANE", (fail) => outboundDane(this.ctx, fail));
        await this.phase("outbound TLS: DANE and MTA-STS on one domain", (fail) => outboundDaneAndSts(this.ctx, fail));
      }
      await this.phase("attack: from the internet", (fail) => attackFromWorld(this.ctx, fail));
      await this.phase("attack: through the tunnel", (fail) => attackThroughTunnel(this.ctx, fail));
      await this.phase("attack: local users on the host", (fail) => attackLocalUsers(this.ctx, fail));
      await this.phase("local mail stays local", (fail) => localMail(this.ctx, fail));
      await this.phase("fault: kill -9 relay", (fail) => faultKillRelay(this.ctx, fail));
      await this.phase("fault: OpenDKIM down", (fail) => faultOpendkim(this.ctx, fail));
      await this.phase("fault: Postfix down", (fail) => faultPostfix(this.ctx, fail));
      await this.phase("fault: reboot", (fail) => faultReboot(this.ctx, fail));
      await this.phase("fault: broken release", (fail) => faultBrokenRelease(this.ctx, fail));
      await this.phase("doctor: healthy host", (fail) => doctorHealthy(this.ctx, fail));
      await this.phase("smoke test through the public path", (fail) => smokeTest(this.ctx, fail));
      await this.phase("doctor fault: wrong SPF record", (fail) => doctorWrongSpf(this.ctx, fail));
      await this.phase("doctor fault: DKIM TXT not the host's key", (fail) => doctorDkimMismatch(this.ctx, fail));
      await this.phase("doctor fault: PTR points elsewhere", (fail) => doctorPtrElsewhere(this.ctx, fail));
      await this.phase("doctor fault: outbound 25 dropped", (fail) => doctorPort25Dropped(this.ctx, fail));
      await this.phase("doctor fault: IP on zen.spamhaus.org", (fail) => doctorBlocklisted(this.ctx, fail));
      await this.phase("doctor fault: Access token expires in 10 days", (fail) => doctorTokenExpiring(this.ctx, fail));
      await this.phase("doctor fault: OpenDKIM stopped", (fail) => doctorOpendkimStopped(this.ctx, fail));
      await this.phase("no loss, no duplicate, nothing unsigned", (fail) => ledger(this.ctx, fail));
      if (!this.ctx.keep) await this.phase("teardown", (fail) => teardown(this.ctx, fail));
    } catch (e) {
      this.recordCrash(e);
    }
    return this.finish();
  }

  /** A phase marked fatal has already recorded its failure; anything else thrown is recorded as the run's. */
  private recordCrash(e: unknown): void {
    if (e instanceof Fatal) return;
    this.results.push({
      phase: "rehearsal",
      ok: false,
      seconds: 0,
      detail: e instanceof Error ? (e.stack ?? e.message) : String(e),
    });
  }

  private async finish(): Promise<number> {
    this.report();
    await this.cleanup(this.ctx.keep);
    return this.results.every((r) => r.ok) ? 0 : 1;
  }

  /**
   * `--upgrade-from`: the old release deployed and sending, then the server replaced by the stack's, then the same
   * checks.
   */
  private async runUpgrade(): Promise<number> {
    try {
      const from = releaseName(this.ctx.release);
      await this.phase(`services (${from})`, (fail) => services(this.ctx, fail));
      await this.phase(`mail end to end (${from})`, (fail) => mail(this.ctx, fail));
      await this.phase("upgrade: the server replaced", (fail) => replaceServer(this.ctx, fail), true);
      const to = releaseName(this.ctx.release);
      await this.phase(`services (${to})`, (fail) => services(this.ctx, fail));
      await this.phase(`mail end to end (${to})`, (fail) => mail(this.ctx, fail));
      await this.phase("no loss, no duplicate, nothing unsigned", (fail) => ledger(this.ctx, fail));
      if (!this.ctx.keep) await this.phase("teardown", (fail) => teardown(this.ctx, fail));
    } catch (e) {
      this.recordCrash(e);
    }
    return this.finish();
  }

  private report(): void {
    const w = Math.max(...this.results.map((r) => r.phase.length));
    const image = this.ctx.capture?.nodes[0]?.image ?? "?";
    console.log(
      `\nRehearsal of stack "${this.ctx.stack}" ` +
        `(${
          this.ctx.upgradeFrom && this.ctx.capture
            ? `upgrade ${this.ctx.upgradeFrom} -> ${this.ctx.target?.capture.nodes[0].image ?? image}`
            : image
        }):`,
    );
    console.log(`  ${"phase".padEnd(w)}  result  seconds  detail`);
    for (const r of this.results)
      console.log(
        `  ${r.phase.padEnd(w)}  ${r.ok ? "pass  " : "FAIL  "}  ${r.seconds.toFixed(1).padStart(7)}  ` +
          `${r.detail.replace(/\s+/g, " ").slice(0, 400)}`,
      );
    const total = this.results.reduce((a, r) => a + r.seconds, 0);
    console.log(
      `  ${"total".padEnd(w)}  ${this.results.every((r) => r.ok) ? "pass  " : "FAIL  "}  ` +
        `${total.toFixed(1).padStart(7)}`,
    );
  }

  async cleanup(keep: boolean): Promise<void> {
    if (keep && this.ctx.capture && this.ctx.nspawnPid) {
      const state: State = {
        stack: this.ctx.stack,
        namespaces: { vps: this.ctx.names.vps, world: this.ctx.names.world },
        host: { ipv4: this.ctx.capture.nodes[0].ipv4, ipv6: this.ctx.capture.nodes[0].ipv6 },
        sshKey: this.ctx.keyFile,
        tunnelUrl:
          this.ctx.capture.tunnel && this.ctx.client
            ? `http://${WORLD.edge}:80 (Host: ${this.ctx.client.hostname}; ` +
              `run clients with ip netns exec ${this.ctx.names.world})`
            : undefined,
        relayTokensFile: path.join(this.ctx.dir, "callers.json"),
        mxDir: this.ctx.world ? this.ctx.inbox : "",
        dns: WORLD.dns,
        pids: this.ctx.procs.pids(),
        rootfs: this.ctx.host?.root ?? "",
      };
      fs.writeFileSync(path.join(this.ctx.dir, "state.json"), JSON.stringify(state, null, 2), { mode: 0o600 });
      console.log(
        `\nkept running; state in ${path.relative(process.cwd(), path.join(this.ctx.dir, "state.json"))}. ` +
          `Stop it with: npm run rehearse -- --down ${this.ctx.stack}`,
      );
      return;
    }
    const stopped = await this.ctx.procs.stopAll(10_000);
    await deleteNamespaces(this.ctx.names);
    if (this.ctx.host) await removeRootfs(this.ctx.host.root);
    this.ctx.log(
      `stopped ${stopped.length} process(es): ${stopped.join(", ") || "none"}; ` +
        `namespaces ${this.ctx.names.vps}, ${this.ctx.names.world} deleted`,
    );
  }
}
