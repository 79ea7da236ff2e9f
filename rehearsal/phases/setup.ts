/**
 * The phases that build the run and deploy it: render (capture the program), image, network + mail world, boot,
 * deploy, and (--upgrade-from) the server replaced as `pulumi up` replaces it.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Capture } from "../capture";
import { callers, capturedCount, RelayClient } from "../client";
import { HostShell, prepareRootfs, removeRootfs } from "../host";
import { defaultImageSpec, ensureImage } from "../image";
import { sleep } from "../proc";
import { deleteOrder, replay, runStep } from "../replay";
import { createNamespaces, hostAddresses, startWorld, WORLD } from "../world";
import { RELEASES, releaseForImage, type DebianRelease } from "../../cloud-init/release";
import { TEARDOWN_DRAIN_SECONDS, type Fail, type RehearsalRun } from "./context";

export async function render(ctx: RehearsalRun): Promise<string> {
  ctx.keyFile = path.join(ctx.dir, "id_ed25519");
  fs.rmSync(ctx.keyFile, { force: true });
  fs.rmSync(`${ctx.keyFile}.pub`, { force: true });
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `rehearsal-${ctx.stack}`, "-f", ctx.keyFile]);
  ctx.publicKey = fs.readFileSync(`${ctx.keyFile}.pub`, "utf8").trim();
  fs.rmSync(ctx.stateFile, { force: true });
  const releaseOf = (c: Capture): DebianRelease => {
    if (c.nodes.length !== 1) throw new Error(`the rehearsal boots one node; stack ${ctx.stack} has ${c.nodes.length}`);
    const r = releaseForImage(c.nodes[0].image);
    if (!r)
      throw new Error(
        `the rehearsal has images for ${Object.values(RELEASES)
          .map((x) => x.hetznerImage)
          .join(", ")} only; the stack deploys ${c.nodes[0].image}`,
      );
    return r;
  };
  if (ctx.upgradeFrom) {
    const target = await ctx.captureWith({}, ctx.image);
    ctx.target = { capture: target, release: releaseOf(target) };
    ctx.capture = await ctx.captureWith({}, ctx.upgradeFrom);
    // Both renders share the state (keys, tokens): the DNS the world serves is the same before and after.
    if (JSON.stringify(target.records) !== JSON.stringify(ctx.capture.records))
      throw new Error("the two renders disagree on the DNS records");
  } else {
    ctx.capture = await ctx.captureWith();
  }
  const c = ctx.capture;
  ctx.release = releaseOf(c);
  fs.writeFileSync(path.join(ctx.dir, "callers.json"), JSON.stringify(callers(c), null, 2), { mode: 0o600 });
  const copies = c.steps.filter((s) => s.kind === "copy").length;
  return (
    `${c.steps.length - copies} commands, ${copies} upload(s), ${c.records.length} DNS records, ${c.ptrs.length} ` +
    `PTRs, user-data ${c.nodes[0].userData.length} bytes, ` +
    `image ${c.nodes[0].image}${ctx.target ? ` (then ${ctx.target.capture.nodes[0].image})` : ""}; ` +
    `teardown drain rendered as ${TEARDOWN_DRAIN_SECONDS}s`
  );
}

export async function buildImage(ctx: RehearsalRun): Promise<string> {
  const suite = ctx.release;
  const built = await ensureImage(defaultImageSpec(suite), (m) => ctx.log(m));
  ctx.rootImage = built.dir;
  if (ctx.target) {
    const next = await ensureImage(defaultImageSpec(ctx.target.release), (m) => ctx.log(m));
    ctx.target = { ...ctx.target, rootImage: next.dir };
    return (
      `${suite} ${built.cached ? "(cached)" : "(built)"}, ` +
      `then ${ctx.target.release} ${next.cached ? "(cached)" : "(built)"}`
    );
  }
  return `${suite} ${built.cached ? "(cached)" : "(built)"} ${built.dir}`;
}

export async function network(ctx: RehearsalRun): Promise<string> {
  const h = hostAddresses(ctx.capture);
  await createNamespaces(ctx.names, h);
  ctx.world = await startWorld(ctx.capture, ctx.names, ctx.dir, ctx.procs);
  ctx.client = new RelayClient(ctx.names, ctx.capture, ctx.dir);
  ctx.shell = new HostShell(ctx.names, ctx.keyFile, ctx.dir);
  return (
    `netns ${ctx.names.vps} (host ${h.ipv4}${h.ipv6 ? `, ${h.ipv6}` : ""}) + ${ctx.names.world} (gateway, ` +
    `DNS ${WORLD.dns}, MX ${WORLD.mx4}/${WORLD.mx6}${ctx.capture.tunnel ? `, edge ${WORLD.edge}` : ""})`
  );
}

export async function boot(ctx: RehearsalRun): Promise<string> {
  const t0 = Date.now();
  ctx.host = await prepareRootfs(
    ctx.rootImage,
    ctx.capture,
    ctx.dir,
    ctx.publicKey,
    (m) => ctx.log(m),
    ctx.world.caCert,
    ctx.world.unboundDropIn,
  );
  const copied = (Date.now() - t0) / 1000;
  await ctx.startHost();
  return (
    `rootfs ready in ${copied.toFixed(1)}s; sshd answered ${((Date.now() - t0) / 1000 - copied).toFixed(1)}s ` +
    `after boot; log ${path.relative(process.cwd(), ctx.host.log)}`
  );
}

/**
 * Replays every captured step over SSH, logging each as it ends, writes all their output to `logName` in the run's
 * directory, and fails the phase for each step that failed (not for those skipped after it).
 */
async function replayLogged(ctx: RehearsalRun, fail: Fail, logName: string, where: string) {
  const results = await replay(ctx.shell, ctx.capture.steps, (r) =>
    ctx.log(
      `${r.ok ? "ok  " : "FAIL"} ${r.name.replace(/^mail-relay-/, "")} ` +
        `${r.seconds.toFixed(1)}s${r.dials > 1 ? ` (${r.dials} dials)` : ""}${r.skipped ? ` ${r.skipped}` : ""}`,
    ),
  );
  fs.writeFileSync(
    path.join(ctx.dir, logName),
    results.map((r) => `### ${r.name} exit ${r.code} ${r.seconds}s\n${r.stdout}\n${r.stderr}`).join("\n"),
  );
  for (const r of results.filter((x) => !x.ok && !x.skipped))
    fail(`${where}step ${r.name} exited ${r.code}: ${r.stderr.trim().slice(-1500)}`);
  return results;
}

export async function deploy(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const results = await replayLogged(ctx, fail, "deploy.log", "");
  // The first step waits for cloud-init before it does anything, so its time is cloud-init's.
  const first = results.find((r) => !ctx.capture.steps.find((s) => s.name === r.name)?.after.length);
  const slowest = [...results].sort((a, b) => b.seconds - a.seconds)[0];
  return (
    `${results.filter((r) => r.ok).length}/${results.length} steps ok; ` +
    `first step (${first?.name.replace(/^mail-relay-/, "")}, waits for cloud-init) ${first?.seconds.toFixed(1)}s; ` +
    `slowest ${slowest?.name.replace(/^mail-relay-/, "")} ${slowest?.seconds.toFixed(1)}s; ` +
    `max dials ${Math.max(...results.map((r) => r.dials))}`
  );
}

/**
 * What `pulumi up` does when `image` changes (docs/upgrade.md): with mail in flight, the old server's teardown
 * guards run in the engine's delete order (tunnel, then the relay guard's drain); the old server is shut down and
 * its disk deleted; the new release boots on the same addresses with the new render's user-data and gets every
 * step, pinning the same host key.
 */
export async function replaceServer(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const target = ctx.target!;
  const from = ctx.capture.nodes[0].image;
  await ctx.batch(fail, "in flight at the upgrade", 3);
  const order = deleteOrder(ctx.capture.steps);
  for (const s of order) {
    const r = await runStep(ctx.shell, s, "delete");
    if (!r.ok)
      throw new Error(`on the old server, the delete of ${r.name} failed (exit ${r.code}): ${r.stderr.slice(-800)}`);
  }
  // The relay guard succeeds only once the relay's and Postfix's queues are empty: everything accepted has left.
  if (capturedCount(ctx.inbox) < ctx.accepted)
    fail(`after the guards, ${capturedCount(ctx.inbox)} of ${ctx.accepted} accepted copies at the MX`);
  const oldPid = ctx.nspawnPid;
  await ctx.onHost("systemctl poweroff", 10_000).catch(() => undefined);
  for (let i = 0; i < 120 && ctx.procs.pids().includes(oldPid); i++) await sleep(500);
  if (ctx.procs.pids().includes(oldPid)) throw new Error("the old server did not shut down within 60s");
  await removeRootfs(ctx.host.root);

  const sameKey =
    ctx.capture.steps.find((s) => s.connection.hostKey)?.connection.hostKey ===
    target.capture.steps.find((s) => s.connection.hostKey)?.connection.hostKey;
  if (!sameKey) fail("the new render pins another host key (the key must outlive the server)");
  ctx.capture = target.capture;
  ctx.release = target.release;
  ctx.rootImage = target.rootImage!;
  ctx.host = await prepareRootfs(
    ctx.rootImage,
    ctx.capture,
    ctx.dir,
    ctx.publicKey,
    (m) => ctx.log(m),
    ctx.world.caCert,
    ctx.world.unboundDropIn,
  );
  await ctx.startHost();
  const results = await replayLogged(ctx, fail, "deploy-upgrade.log", "on the new server, ");
  const n = ctx.capture.nodes[0];
  return (
    `on ${from}: ${order.map((s) => s.name.replace(/^mail-relay-/, "")).join(" -> ")} deleted, ` +
    `3 jobs in flight drained to the MX, powered off, disk deleted; ${n.image} booted ` +
    `on ${n.ipv4}${n.ipv6 ? `, ${n.ipv6}` : ""}: ${results.filter((r) => r.ok).length}/${results.length} steps ` +
    `ok, host key ${sameKey ? "unchanged" : "CHANGED"}`
  );
}
