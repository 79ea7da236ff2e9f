/**
 * Issue 19, finding 8: postfix-loopback-only judges every master.cf service by what its daemon does, not only smtpd
 * and postscreen services. Generated over Postfix's daemons and every spelling of a listen address, so a daemon or
 * address form the rule forgot fails here.
 */
import { describe, expect, it } from "vitest";
import { masterServiceProblem, MAIL_RECEIVING_DAEMONS } from "../../infra/policy/rules/postfix";
import { parseMasterCf } from "../../infra/policy/parse/postfix";
import { firedPolicies } from "./crossguard";
import { appendMasterCf, baseline, mutate, MASTER_CF } from "./fixtures";

const base = baseline();
/** Every daemon master(8) can run, plus the programs spawn/pipe start (they accept whatever connects). */
const DAEMONS = [
  "smtpd",
  "postscreen",
  "qmqpd",
  "spawn",
  "pipe",
  "tlsproxy",
  "local",
  "virtual",
  "showq",
  "flush",
  "proxymap",
  "verify",
  "anvil",
  "cleanup",
  "lmtp",
  "smtp",
  "/usr/lib/postfix/sbin/qmqpd",
];
const ADDRESSES = ["628", "smtp-alt", "*:628", "0.0.0.0:628", "[::]:628", "203.0.113.9:628", "[2001:db8::9]:628"];
const LOOPBACK_ADDRESSES = ["127.0.0.1:628", "[::1]:628", "localhost:628", "2526"];

describe("master.cf: every service is judged by its daemon (postfix-loopback-only)", () => {
  it("the fixture's own master.cf (one smtp inet smtpd, unix services) has no problem", () => {
    const services = parseMasterCf(MASTER_CF);
    expect(services.map((s) => masterServiceProblem(s, services))).toEqual(services.map(() => undefined));
  });

  it.each(DAEMONS.flatMap((d) => [...ADDRESSES, ...LOOPBACK_ADDRESSES].map((a) => [d, a] as const)))(
    "an added inet service running %s on %s fires the rule",
    async (daemon, address) => {
      const stack = mutate(base, (s) => appendMasterCf(s, `${address} inet n - n - - ${daemon}`));
      expect(await firedPolicies(stack)).toEqual(["postfix-loopback-only"]);
    },
  );

  it.each(
    [...MAIL_RECEIVING_DAEMONS].flatMap((d) => ["unix", "fifo", "pass", "unix-dgram"].map((t) => [d, t] as const)),
  )("a mail-receiving daemon (%s) on a %s service fires the rule", async (daemon, type) => {
    const stack = mutate(base, (s) => appendMasterCf(s, `inbound ${type} n - n - - ${daemon}`));
    expect(await firedPolicies(stack)).toEqual(["postfix-loopback-only"]);
  });

  it.each(["tlsproxy", "verify", "discard", "error", "bounce"])(
    "an internal daemon (%s) on a unix service is allowed",
    async (daemon) => {
      const stack = mutate(base, (s) => appendMasterCf(s, `extra${daemon} unix - - n - - ${daemon}`));
      expect(await firedPolicies(stack)).toEqual([]);
    },
  );
});
