/**
 * Teardown in the engine's delete order: with mail queued the relay guard refuses and leaves the relay running;
 * after the drain every delete succeeds.
 */
import { sleep } from "../proc";
import { deleteOrder, runStep, type StepResult } from "../replay";
import type { Fail, RehearsalRun } from "./context";

export async function teardown(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const order = deleteOrder(ctx.capture.steps);
  const names = order.map((s) => s.name.replace(/^mail-relay-/, ""));
  // Mail still queued: with OpenDKIM down Postfix answers 451 (milter tempfail), so the job stays in the relay's
  // queue whatever the timing (stopping Postfix raced a pooled connection that handed the job off first).
  await ctx.onHost("systemctl stop opendkim.service");
  await ctx.batch(fail, "queued at teardown", 1);
  await sleep(2000);
  const queued = await ctx.pendingOnHost();
  if (queued < 1) fail("the job meant to be queued at teardown is not in the relay's queue");
  const first: StepResult[] = [];
  for (const s of order) {
    const r = await runStep(ctx.shell, s, "delete");
    first.push(r);
    if (!r.ok) break;
  }
  const refused = first.find((r) => !r.ok);
  if (!refused || !/refusing to tear down/.test(refused.stderr))
    fail(`with mail queued the guard did not refuse: ${first.map((r) => `${r.name} ${r.code}`).join(", ")}`);
  const relayState = (await ctx.onHost("systemctl is-active mail-relay.service || true")).stdout.trim();
  if (relayState !== "active") fail(`after the refusal the relay is ${relayState}, expected it left running`);
  await ctx.onHost("systemctl start opendkim.service");
  await ctx.expectAllArrive(fail, "drain before teardown");
  const second: StepResult[] = [];
  for (const s of order.filter((x) => !first.some((r) => r.ok && r.name === x.name)))
    second.push(await runStep(ctx.shell, s, "delete"));
  for (const r of second.filter((x) => !x.ok))
    fail(`delete of ${r.name} failed after the drain: ${r.stderr.slice(-500)}`);
  const after = (
    await ctx.onHost("systemctl is-active mail-relay.service cloudflared-mail-relay.service || true")
  ).stdout
    .trim()
    .replace(/\n/g, ", ");
  if (/^active/m.test(after.replace(/, /g, "\n"))) fail(`services still active after teardown: ${after}`);
  return (
    `delete order ${names.join(" -> ")}; with ${queued} job(s) queued (OpenDKIM down): ` +
    `${refused?.name.replace(/^mail-relay-/, "")} refused (exit ${refused?.code}), ` +
    `relay left ${relayState}; after the drain: all deletes ok, units ${after}`
  );
}
