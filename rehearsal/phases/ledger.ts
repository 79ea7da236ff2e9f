/**
 * The ledger: every accepted copy at the MX once, and signed.
 */
import { verifyCaptured } from "../client";
import type { Fail, RehearsalRun } from "./context";

export async function ledger(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const all = (await verifyCaptured(ctx.names, ctx.inbox)).filter((v) => v.subject.includes(ctx.runTag));
  const keys = all.map((v) => `${v.messageId}|${v.rcptTo}`);
  const dup = keys.length - new Set(keys).size;
  const unsigned = all.filter((v) => v.dkim !== "pass").length;
  if (all.length !== ctx.accepted) fail(`${ctx.accepted} copies accepted (202), ${all.length} at the MX`);
  if (dup > 0) fail(`${dup} duplicate(s) at the MX`);
  if (unsigned > 0) fail(`${unsigned} message(s) without a passing DKIM signature`);
  return `accepted ${ctx.accepted}, at the MX ${all.length}, duplicated ${dup}, unsigned ${unsigned}`;
}
