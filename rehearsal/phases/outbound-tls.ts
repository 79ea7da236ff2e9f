/**
 * Outbound TLS in the mail world (issue 22): the host's Postfix meets recipients with no policy, an MTA-STS policy
 * (enforce, testing), DANE (a DNSSEC-signed TLSA record, validated by the host's own unbound) and both at once.
 * Each case sends one message through the relay, reads its state and reason from `GET /messages/:id`, and prints the
 * host's Postfix log lines for it. A refused delivery is then repaired at the MX and flushed (`postqueue -f`), and
 * must arrive: nothing is left in the queue for the later phases.
 *
 * These messages go to the TLS world's own MXs (rehearsal/world/tls-world.ts), not to the main MX: the ledger and
 * the fault phases count the main MX only.
 */
import { capturedCount } from "../client";
import { sleep } from "../proc";
import { TlsWorld, type MxMode, type TlsDomainKey } from "../world/tls-world";
import { POSTFIX_LOG, TLS_POLICY_UNIT_NAME } from "../../cloud-init/paths";
import { DANE_POLICY_MAP, MTA_STS_POLICY_MAP } from "../../cloud-init/outbound-tls";
import type { Fail, RehearsalRun } from "./context";

/** Postfix's TLS failure texts, as the relay reports them in a recipient's reason. */
const NOT_VERIFIED = /Server certificate not (verified|trusted)/;
const NOT_OFFERED = /TLS is required, but was not offered/;

interface Seen {
  readonly state: string;
  readonly reply: string;
  readonly raw: string;
}

class TlsCase {
  constructor(
    private readonly ctx: RehearsalRun,
    private readonly fail: Fail,
    readonly k: TlsDomainKey,
  ) {}

  get d() {
    return TlsWorld.domain(this.k);
  }

  get world(): TlsWorld {
    return this.ctx.world.tls;
  }

  /** Posts one message to this domain; not counted in the ledger (it lands at the domain's own MX). */
  async send(what: string): Promise<string | undefined> {
    const a = await this.ctx.client.send(this.ctx.creds(), {
      from: this.ctx.sender(),
      to: `tls@${this.d.domain}`,
      subject: `[${this.ctx.runTag}] outbound TLS: ${what}`,
      text: `${what}\n`,
    });
    if (a.status !== 202 || !a.body.id) {
      this.fail(`${what}: expected 202, got ${a.status} ${a.raw.slice(0, 300)}`);
      return undefined;
    }
    return a.body.id;
  }

  /** Polls `GET /messages/:id` until the state is one of `states` (or the time is up); returns the last answer. */
  async waitState(id: string, states: readonly string[], timeoutMs = 30_000): Promise<Seen> {
    const deadline = Date.now() + timeoutMs;
    let seen: Seen = { state: "", reply: "", raw: "" };
    while (Date.now() < deadline) {
      const s = await this.ctx.client.request("GET", `/messages/${id}`, { creds: this.ctx.creds() });
      const m = s.body?.message;
      seen = {
        state: String(m?.state ?? ""),
        reply: (m?.recipients ?? []).map((r) => r.remoteReply ?? "").join(" | "),
        raw: s.raw.slice(0, 500),
      };
      if (states.includes(seen.state)) return seen;
      await sleep(500);
    }
    return seen;
  }

  /** Lines in the host's Postfix log so far (a mark: the lines after it are this case's). */
  async mark(): Promise<number> {
    const r = await this.ctx.onHost(`wc -l < ${POSTFIX_LOG}`);
    return Number(r.stdout.trim()) || 0;
  }

  /** The Postfix log lines after `mark` about this domain or its MX, without the syslog prefix. */
  async logSince(mark: number): Promise<string[]> {
    const r = await this.ctx.onHost(
      `tail -n +${mark + 1} ${POSTFIX_LOG} | grep -F -e '${this.d.mx}' -e '@${this.d.domain}>' || true`,
    );
    return r.stdout
      .split("\n")
      .filter(Boolean)
      .map((l) =>
        l
          .replace(/^.*?(postfix[^:]*: )/, "$1")
          .replace(/, (delay|delays|dsn)=[^,]*/g, "")
          .replace(/: (TLSv[\d.]+) with cipher .*$/, ": $1 ..."),
      );
  }

  /** Prints a case's host log lines in the rehearsal's output (the table's detail is cut at 400 characters). */
  show(what: string, lines: readonly string[]): void {
    this.ctx.log(`${what}: host Postfix log:\n    ${lines.join("\n    ") || "(nothing)"}`);
  }

  /** What the host's MTA-STS resolver answers Postfix for this domain (the socketmap in smtp_tls_policy_maps). */
  async stsAnswer(): Promise<string> {
    return this.mapAnswer(MTA_STS_POLICY_MAP);
  }

  /** What the DANE-first socketmap (first in smtp_tls_policy_maps) answers Postfix for this domain. */
  async daneAnswer(): Promise<string> {
    return this.mapAnswer(DANE_POLICY_MAP);
  }

  private async mapAnswer(map: string): Promise<string> {
    const r = await this.ctx.onHost(`postmap -q '${this.d.domain}' '${map}'; echo "exit=$?"`);
    return r.stdout
      .trim()
      .replace(/\n?exit=1$/, "(no policy)")
      .replace(/\n?exit=0$/, "");
  }

  copies(): number {
    return capturedCount(this.world.mxDir(this.k));
  }

  /** Sends with the MX as it is and expects delivery; returns the host's log lines for it. */
  async expectDelivered(what: string, logMatch?: RegExp): Promise<string> {
    const [mark, before] = [await this.mark(), this.copies()];
    const id = await this.send(what);
    if (!id) return "not sent";
    const s = await this.waitState(id, ["delivered", "deferred", "bounced"]);
    const lines = await this.logSince(mark);
    this.show(what, lines);
    if (s.state !== "delivered") this.fail(`${what}: ${s.state || "no state"} (${s.reply}); log: ${lines.join(" / ")}`);
    else if (this.copies() !== before + 1)
      this.fail(`${what}: delivered, but ${this.copies() - before} copies at the MX`);
    if (logMatch && !lines.some((l) => logMatch.test(l)))
      this.fail(`${what}: no host log line matching ${logMatch}; got: ${lines.join(" / ")}`);
    return summary(lines);
  }

  /**
   * Sends while the MX presents `broken`: the message must stay deferred with `reason` and not reach the MX. Then
   * the MX presents `fixed`, the queue is flushed, and it must arrive. Returns the host's log lines for the refusal.
   */
  async expectRefusedThenFixed(what: string, broken: MxMode, reason: RegExp, fixed: MxMode): Promise<string> {
    await this.world.setMx(this.k, broken);
    const [mark, before] = [await this.mark(), this.copies()];
    const id = await this.send(what);
    if (!id) return "not sent";
    const s = await this.waitState(id, ["deferred", "delivered", "bounced"]);
    const lines = await this.logSince(mark);
    this.show(`${what} (GET /messages/:id: ${s.state}, reason "${s.reply}")`, lines);
    if (s.state !== "deferred" || !reason.test(s.reply))
      this.fail(
        `${what}: expected deferred with ${reason} in its reason, got ${s.state || "no state"} ` +
          `(${s.reply || s.raw}); log: ${lines.join(" / ")}`,
      );
    if (this.copies() !== before) this.fail(`${what}: the copy reached the MX although the policy refuses it`);
    await this.world.setMx(this.k, fixed);
    const fixMark = await this.mark();
    await this.ctx.onHost("postqueue -f");
    const after = await this.waitState(id, ["delivered", "bounced"]);
    const afterLines = await this.logSince(fixMark);
    this.show(`${what}, after the MX was fixed and postqueue -f (GET /messages/:id: ${after.state})`, afterLines);
    if (after.state !== "delivered" || this.copies() !== before + 1)
      this.fail(
        `${what}: after the MX was fixed and the queue flushed: ${after.state} (${after.reply}), ` +
          `${this.copies() - before} copies at the MX; log: ${afterLines.join(" / ")}`,
      );
    return `deferred "${s.reply}", ${summary(afterLines)} after the fix`;
  }
}

/** "Verified TLS, sent": the TLS line's first word and the delivery status, from a case's host log lines. */
function summary(lines: readonly string[]): string {
  const tls = lines.map((l) => /: (\w+) TLS connection established/.exec(l)?.[1]).find(Boolean);
  const status = lines.map((l) => /status=(\w+)/.exec(l)?.[1]).filter(Boolean);
  return `${tls ? `${tls} TLS` : "no TLS"}, ${status.join("/") || "no status line"}`;
}

export async function outboundOpportunistic(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const c = new TlsCase(ctx, fail, "opportunistic");
  const policy = await c.stsAnswer();
  if (policy !== "(no policy)") fail(`${c.d.domain} has no MTA-STS policy, yet the resolver answered ${policy}`);
  const got = await c.expectDelivered(`${c.d.domain}, no policy, MX without STARTTLS`, /status=sent/);
  if (!got.startsWith("no TLS")) fail(`TLS with an MX that offers none? ${got}`);
  return `${c.d.domain} (no MTA-STS record, no TLSA, ${c.d.mx} without STARTTLS): ${got}; delivered in clear, as asked`;
}

export async function outboundMtaSts(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const c = new TlsCase(ctx, fail, "stsEnforce");
  const policy = await c.stsAnswer();
  if (!policy.includes(`secure match=${c.d.mx}`))
    fail(`the MTA-STS resolver should answer "secure match=${c.d.mx}" for ${c.d.domain}; it answered ${policy}`);
  const ok = await c.expectDelivered("MTA-STS enforce, matching certificate", /Verified TLS connection established/);
  const name = await c.expectRefusedThenFixed(
    "MTA-STS enforce, certificate for another name",
    "wrong-name",
    NOT_VERIFIED,
    "sts-good",
  );
  const clear = await c.expectRefusedThenFixed("MTA-STS enforce, no STARTTLS", "no-starttls", NOT_OFFERED, "sts-good");
  return `resolver: "${policy}"; (a) matching certificate: ${ok}; (b) another name: ${name}; (c) no STARTTLS: ${clear}`;
}

export async function outboundMtaStsTesting(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const c = new TlsCase(ctx, fail, "stsTesting");
  const policy = await c.stsAnswer();
  if (/secure/.test(policy)) fail(`a testing policy must not be enforced; the resolver answered ${policy}`);
  const got = await c.expectDelivered("MTA-STS testing, certificate for another name", /status=sent/);
  // Logged, not enforced: the DANE-first socketmap asks the resolver's testing zone and logs what would apply.
  let logged = "";
  for (let i = 0; i < 20 && !logged; i++) {
    const grep = `grep -F 'MTA-STS testing policy for ${c.d.domain}' | tail -1`;
    const r = await ctx.onHost(`journalctl -u ${TLS_POLICY_UNIT_NAME} --no-pager -o cat | ${grep}`);
    logged = r.stdout.trim();
    if (!logged) await sleep(500);
  }
  if (!logged) fail(`${TLS_POLICY_UNIT_NAME} logged no "MTA-STS testing policy for ${c.d.domain}" line within 10 s`);
  c.show("MTA-STS testing, the DANE-first socketmap's log", [logged]);
  return (
    `mode: testing, resolver: ${policy}; MX certificate for another name: ${got} (not enforced); ` +
    `logged by ${TLS_POLICY_UNIT_NAME}`
  );
}

export async function outboundDane(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const c = new TlsCase(ctx, fail, "dane");
  const ok = await c.expectDelivered("DANE, the key the TLSA names", /Verified TLS connection established/);
  const bad = await c.expectRefusedThenFixed("DANE, another key", "dane-other", NOT_VERIFIED, "dane-pinned");
  return (
    `${c.d.domain} signed (ldns-signzone), TLSA 3 1 1 for ${c.d.mx}, validated by the host's unbound: ` +
    `the pinned key: ${ok}; another key: ${bad}`
  );
}

export async function outboundDaneAndSts(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const c = new TlsCase(ctx, fail, "daneAndSts");
  // Postfix takes the first map that answers: the DANE-first socketmap's "dane-only" before the MTA-STS resolver's.
  const policy = `DANE-first socketmap: "${await c.daneAnswer()}", MTA-STS resolver: "${await c.stsAnswer()}"`;
  const [mark, before] = [await c.mark(), c.copies()];
  const id = await c.send("DANE and MTA-STS, a self-signed certificate the TLSA pins");
  if (!id) return "";
  const s = await c.waitState(id, ["delivered", "deferred", "bounced"]);
  const lines = await c.logSince(mark);
  c.show(`DANE and MTA-STS (GET /messages/:id: ${s.state}, reason "${s.reply}")`, lines);
  const applied =
    s.state === "delivered" && c.copies() === before + 1 && lines.some((l) => /Verified TLS/.test(l))
      ? "DANE"
      : s.state === "deferred" && NOT_VERIFIED.test(s.reply)
        ? "MTA-STS"
        : `neither (${s.state}: ${s.reply})`;
  // RFC 8461 section 2: where a domain has both a DNSSEC-signed TLSA record and an MTA-STS policy, DANE wins.
  if (applied !== "DANE")
    fail(
      `expected DANE to apply (RFC 8461 section 2), ${applied} applied (${policy}; ${summary(lines)}, "${s.reply}")`,
    );
  if (s.state !== "delivered") {
    // Nothing stays queued for the later phases: a certificate both accept (the world CA's, on the pinned key).
    await c.world.setMx(c.k, "both-ca");
    const fixMark = await c.mark();
    await ctx.onHost("postqueue -f");
    const after = await c.waitState(id, ["delivered", "bounced"]);
    c.show(
      `DANE and MTA-STS, after a certificate both accept and postqueue -f (${after.state})`,
      await c.logSince(fixMark),
    );
    if (after.state !== "delivered") fail(`after the MX presented a certificate both accept: ${after.state}`);
    await c.world.setMx(c.k, "both-pinned");
  }
  return `${applied} applied (${policy}; ${summary(lines)}, "${s.reply}")`;
}
