/**
 * Faults, each with mail in flight: the relay killed, OpenDKIM down, Postfix down, a reboot, a broken release (rolled
 * back). Everything accepted must still arrive.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Capture } from "../capture";
import { capturedCount } from "../client";
import { sleep } from "../proc";
import { runStep } from "../replay";
import type { Fail, RehearsalRun } from "./context";

export async function faultKillRelay(ctx: RehearsalRun, fail: Fail): Promise<string> {
  // Postfix stopped first, so the jobs are still in the relay's queue when it dies.
  await ctx.onHost("systemctl stop postfix.service");
  await ctx.batch(fail, "kill -9", 5);
  // A pooled connection may still hand one off while Postfix stops; what matters is that jobs are pending.
  const pending = await ctx.pendingOnHost();
  if (pending < 1) fail("expected jobs pending before the kill, found none");
  const pidBefore = (await ctx.onHost("systemctl show -p MainPID --value mail-relay.service")).stdout.trim();
  await ctx.onHost("systemctl kill -s KILL mail-relay.service");
  await ctx.onHost("systemctl start postfix.service");
  let restarted = "";
  for (let i = 0; i < 30 && !restarted; i++) {
    await sleep(1000);
    const r = await ctx.onHost(
      "systemctl is-active mail-relay.service; systemctl show -p MainPID --value mail-relay.service; " +
        "systemctl show -p NRestarts --value mail-relay.service",
    );
    const [state, pid, restarts] = r.stdout.trim().split("\n");
    if (state === "active" && pid !== pidBefore && pid !== "0")
      restarted = `restarted by systemd (pid ${pidBefore} -> ${pid}, NRestarts ${restarts})`;
  }
  if (!restarted) fail("systemd did not restart the relay within 30s");
  const s = await ctx.expectAllArrive(fail, "after kill -9");
  return `${pending} jobs pending at the kill; ${restarted}; all arrived ${s.toFixed(0)}s later`;
}

export async function faultOpendkim(ctx: RehearsalRun, fail: Fail): Promise<string> {
  await ctx.onHost("systemctl stop opendkim.service");
  const before = capturedCount(ctx.inbox);
  await ctx.batch(fail, "OpenDKIM down", 3);
  await sleep(8000);
  const during = capturedCount(ctx.inbox) - before;
  if (during !== 0) fail(`${during} message(s) left while OpenDKIM was down`);
  const held = await ctx.pendingOnHost();
  await ctx.onHost("systemctl start opendkim.service");
  const s = await ctx.expectAllArrive(fail, "after OpenDKIM restart");
  return (
    `nothing left in 8s while down (${held} held in the relay's queue); ` +
    `all arrived ${s.toFixed(0)}s after the restart (signatures checked in the last phase)`
  );
}

export async function faultPostfix(ctx: RehearsalRun, fail: Fail): Promise<string> {
  await ctx.onHost("systemctl stop postfix.service");
  const statuses: number[] = [];
  for (let i = 1; i <= 3; i++) {
    const a = await ctx.client.send(ctx.creds(), {
      from: ctx.sender(),
      to: ctx.rcpt(`pfdown${i}`),
      subject: `[${ctx.runTag}] Postfix down ${i}/3`,
      text: "x\n",
    });
    statuses.push(a.status);
    if (a.status === 202) {
      ctx.accepted += 1;
      ctx.expected.push({ id: a.body.id ?? "(no id in the 202)", what: "postfix down", copies: 1 });
    }
  }
  if (statuses.some((s) => s !== 202))
    fail(`the relay did not keep answering 202 with Postfix down: ${statuses.join(", ")}`);
  await sleep(3000);
  await ctx.onHost("systemctl start postfix.service");
  const s = await ctx.expectAllArrive(fail, "after Postfix restart");
  return (
    `202 x${statuses.filter((x) => x === 202).length} with Postfix down; ` +
    `all arrived ${s.toFixed(0)}s after its restart`
  );
}

export async function faultReboot(ctx: RehearsalRun, fail: Fail): Promise<string> {
  await ctx.onHost("systemctl stop postfix.service");
  await ctx.batch(fail, "queued across a reboot", 3);
  const pending = await ctx.pendingOnHost();
  const t0 = Date.now();
  const old = ctx.nspawnPid;
  await ctx.onHost("systemctl reboot", 10_000).catch(() => undefined);
  // nspawn ends when the container reboots (exit 133, as systemd-nspawn@.service expects); start it again.
  for (let i = 0; i < 120; i++) {
    if (!ctx.procs.pids().includes(old)) break;
    await sleep(500);
  }
  if (ctx.procs.pids().includes(old)) fail("the container did not go down on reboot within 60s");
  await ctx.startHost();
  const r = await ctx.onHost("systemctl is-system-running --wait || true");
  const up = (Date.now() - t0) / 1000;
  const svc = await ctx.onHost(`for u in ${ctx.units().join(" ")}; do systemctl is-active "$u"; done; nft list tables`);
  const states = svc.stdout.trim().split("\n");
  ctx.units().forEach((u, i) => {
    if (states[i] !== "active") fail(`after reboot ${u} is ${states[i]}`);
  });
  if (!/table inet/.test(svc.stdout)) fail("after reboot no nftables table is loaded");
  const s = await ctx.expectAllArrive(fail, "after reboot");
  return (
    `${pending} jobs pending; back up in ${up.toFixed(0)}s (${r.stdout.trim()}), units active, nftables loaded; ` +
    `all arrived ${s.toFixed(0)}s later`
  );
}

export async function faultBrokenRelease(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const broken = path.join(ctx.dir, "broken-relay.js");
  fs.writeFileSync(
    broken,
    `"use strict";\n// rehearsal: a release that parses but cannot start\n` +
      `console.error("rehearsal: deliberately broken relay release, exiting");\nprocess.exit(1);\n`,
  );
  const bad = await ctx.captureWith({ MAIL_RELAY_BUNDLE: broken });
  const good = (await ctx.onHost("readlink /opt/mail-relay/current")).stdout.trim();
  const pick = (c: Capture, suffix: string) => c.steps.find((s) => s.name.endsWith(suffix))!;
  const up = await runStep(ctx.shell, pick(bad, "-relay-upload"));
  if (!up.ok) fail(`uploading the broken release failed: ${up.stderr}`);
  const act = await runStep(ctx.shell, pick(bad, "-relay-activate"));
  if (act.ok) fail("activating a broken release succeeded");
  if (!/failed its health check/.test(act.stderr)) fail(`the failed step did not say why: ${act.stderr.slice(-500)}`);
  if (!/deliberately broken/.test(act.stderr)) fail("the failed step did not include the relay's log");
  if (!/rolled back: current -> .* \(healthy\)/.test(act.stderr))
    fail(`no healthy rollback: ${act.stderr.slice(-500)}`);
  const now = (await ctx.onHost("readlink /opt/mail-relay/current")).stdout.trim();
  if (now !== good) fail(`current is ${now}, expected the previous ${good}`);
  const h = await ctx.client.request("GET", "/health", { creds: ctx.creds() });
  if (h.status !== 200) fail(`/health after the rollback: ${h.status}`);
  await ctx.post(fail, "after rollback", { to: ctx.rcpt("rollback"), text: "still here\n" }, 1);
  const s = await ctx.expectAllArrive(fail, "after rollback", 60_000);
  return (
    `activation failed (exit ${act.code}) with the relay's log, rolled back to ${good}, /health 200, ` +
    `mail flows (${s.toFixed(0)}s)`
  );
}
