/**
 * The doctor and the smoke test against the booted host and its world (docs/doctor.md), then one fault at a time,
 * each restored before the next: the doctor must fail exactly the check that covers it, with its fix. The doctor
 * runs inside `world` with the world's DNS as its resolver and the world's MX as the "well-known MX", reading the
 * outputs the render captured (a file, as `pulumi stack output --json --show-secrets` would print them).
 */
import { generateKeyPairSync } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Check } from "../../doctor/report";
import type { DnsRecord } from "../capture";
import { run } from "../proc";
import { renderDnsmasqConf, restartDns, reverseName, WORLD } from "../world";
import type { Fail, RehearsalRun } from "./context";

const ROOT = path.join(__dirname, "..", "..");
/** Seconds the doctor waits for a DNS answer, an SSH dial, the remote SMTP banner: short, the world is local. */
const DOCTOR_TIMEOUT = 3;

function outputsFile(ctx: RehearsalRun, outputs: Record<string, unknown> = ctx.capture.outputs): string {
  const f = path.join(ctx.dir, "stack-outputs.json");
  fs.writeFileSync(f, JSON.stringify(outputs, null, 2), { mode: 0o600 });
  return f;
}

interface DoctorRun {
  readonly code: number;
  readonly checks: Check[];
  readonly text: string;
}

/** Runs `npm run doctor` (its module) inside `world`; returns its exit code and its checks (--json). */
async function doctor(ctx: RehearsalRun, outputs?: Record<string, unknown>): Promise<DoctorRun> {
  const args = ctx.worldTsx(
    path.join(ROOT, "doctor", "main.ts"),
    ctx.stack,
    "--outputs",
    outputsFile(ctx, outputs),
    "--resolver",
    WORLD.dns,
    "--identity",
    ctx.keyFile,
    "--smtp-probe",
    `${WORLD.mxHost}:25`,
    "--timeout",
    String(DOCTOR_TIMEOUT),
    "--json",
  );
  const r = await run("ip", args, { cwd: ROOT, timeoutMs: 90_000 });
  let checks: Check[];
  try {
    checks = (JSON.parse(r.stdout) as { checks: Check[] }).checks;
  } catch {
    throw new Error(`the doctor printed no JSON (exit ${r.code}): ${r.stderr.slice(-1500)} ${r.stdout.slice(-500)}`);
  }
  const { formatLine } = await import("../../doctor/report");
  const text = checks.map(formatLine).join("\n");
  ctx.log(`doctor (exit ${r.code}):\n${text}`);
  return { code: r.code, checks, text };
}

/** A check the fault must produce: its id, a word of its subject, its status, and what its fix must say. */
interface Expected {
  readonly id: string;
  readonly subject: RegExp;
  readonly status: "warn" | "fail";
  readonly fix: RegExp;
}

/** The container runs no NTP: the clock check reports what it saw, and a warn there is accepted. */
const clockWarn = (c: Check) => c.id === "host.clock" && c.status === "warn";

/**
 * Exactly the expected checks are not `pass` (besides the clock's warn), each with its fix; the exit code is 1
 * when one of them is a fail, else 0.
 */
function expectExactly(run: DoctorRun, expected: readonly Expected[], fail: Fail): string {
  const bad = run.checks.filter((c) => c.status !== "pass" && !clockWarn(c));
  const describe = (c: Check) => `${c.status} ${c.id} ${c.subject}: ${c.saw} -> ${c.fix ?? ""}`;
  for (const e of expected) {
    const hit = bad.find((c) => c.id === e.id && e.subject.test(c.subject));
    if (!hit)
      fail(`expected ${e.status} ${e.id} ${e.subject}, not reported; non-pass: ${bad.map(describe).join(" | ")}`);
    else {
      if (hit.status !== e.status) fail(`${e.id} ${hit.subject}: ${hit.status}, expected ${e.status}`);
      if (!e.fix.test(hit.fix ?? "")) fail(`${e.id} ${hit.subject}: fix "${hit.fix}" does not say ${e.fix}`);
    }
  }
  for (const c of bad)
    if (!expected.some((e) => c.id === e.id && e.subject.test(c.subject))) fail(`unexpected: ${describe(c)}`);
  const wantCode = expected.some((e) => e.status === "fail") ? 1 : 0;
  if (run.code !== wantCode) fail(`the doctor exited ${run.code}, expected ${wantCode}`);
  return bad.map((c) => `${c.status} ${c.id} ${c.subject}: ${c.saw.slice(0, 140)} -> fix: ${c.fix}`).join(" | ");
}

async function serveDns(
  ctx: RehearsalRun,
  records: DnsRecord[],
  ptrs: { ip: string; name: string }[],
  extra: string[] = [],
): Promise<void> {
  await restartDns(
    renderDnsmasqConf({ records, ptrs, smarthost: ctx.capture.smarthost }, extra),
    ctx.names,
    ctx.dir,
    ctx.procs,
  );
}

const restoreDns = (ctx: RehearsalRun) => serveDns(ctx, ctx.capture.records, ctx.capture.ptrs);

/** The healthy host: every check passes (the clock may warn), and the smoke test reports delivered. */
export async function doctorHealthy(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const r = await doctor(ctx);
  expectExactly(r, [], fail);
  const clock = r.checks.find((c) => c.id === "host.clock");
  return (
    `${r.checks.length} checks, ${r.checks.filter((c) => c.status === "pass").length} pass; exit ${r.code}; ` +
    `clock: ${clock?.status} (${clock?.saw})`
  );
}

/** `npm run smoke` from `world`: the relay's public name resolves through the world's DNS, as callers' does. */
export async function smokeTest(ctx: RehearsalRun, fail: Fail): Promise<string> {
  if (!ctx.capture.tunnel) return "the stack has no tunnel: no public path to send through";
  return ctx.withWorldResolver(async () => {
    const host = new URL(String(ctx.capture.outputs.relayUrl)).hostname;
    const to = ctx.rcpt("smoke");
    const r = await run(
      "ip",
      ctx.worldTsx(
        path.join(ROOT, "doctor", "smoke.ts"),
        ctx.stack,
        "--outputs",
        outputsFile(ctx),
        "--to",
        to,
        // The world's edge speaks plain HTTP on 80 (Cloudflare's would be HTTPS): the stack's name, the edge's scheme.
        "--url",
        `http://${host}`,
        // The ledger counts this run's copies by the run tag in the subject.
        "--subject",
        `[${ctx.runTag}] smoke test`,
        "--timeout",
        "60",
        "--json",
      ),
      { cwd: ROOT, timeoutMs: 90_000 },
    );
    const res = JSON.parse(r.stdout || "{}") as {
      id?: string;
      state?: string;
      events?: { at: string; event: string; detail: string }[];
      error?: string;
    };
    if (res.id) {
      ctx.accepted += 1;
      ctx.expected.push({ id: res.id, what: "smoke test", copies: 1 });
    }
    const lines = (res.events ?? []).map((e) => `${e.at} ${e.event} ${e.detail}`);
    ctx.log(`smoke test (exit ${r.code}):\n  ${lines.join("\n  ")}\n  result: ${res.state}`);
    if (r.code !== 0 || res.state !== "delivered")
      fail(`smoke: exit ${r.code}, state ${res.state}, ${res.error ?? ""} ${r.stderr.slice(-800)}`);
    const delivered = res.events?.find((e) => e.event === "delivered");
    if (!delivered || !/remote reply: 250/.test(delivered.detail))
      fail(`smoke: no delivered event with the MX's 250 reply: ${lines.join(" | ")}`);
    if (!res.events?.some((e) => e.event === "handed off")) fail("smoke: no hand-off in the timeline");
    return `${res.state}: ${lines.join("; ")}`;
  });
}

export async function doctorWrongSpf(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const ipv4 = ctx.capture.nodes[0].ipv4;
  const records = ctx.capture.records.map((r) =>
    r.type === "TXT" && r.content.includes("v=spf1") ? { ...r, content: r.content.replace(`ip4:${ipv4} `, "") } : r,
  );
  if (JSON.stringify(records) === JSON.stringify(ctx.capture.records)) throw new Error("no SPF record with the IPv4");
  await serveDns(ctx, records, ctx.capture.ptrs);
  try {
    return expectExactly(
      await doctor(ctx),
      [
        { id: "dns.record", subject: /\(SPF\)/, status: "fail", fix: /pulumi up --stack/ },
        { id: "dns.spf", subject: new RegExp(`^SPF for ${ipv4.replace(/\./g, "\\.")} `), status: "fail", fix: /ip4:/ },
      ],
      fail,
    );
  } finally {
    await restoreDns(ctx);
  }
}

export async function doctorDkimMismatch(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const other = generateKeyPairSync("rsa", { modulusLength: 2048 })
    .publicKey.export({ type: "spki", format: "der" })
    .toString("base64");
  const selector = String(ctx.capture.outputs.dkimSelector);
  const records = ctx.capture.records.map((r) =>
    r.type === "TXT" && r.name.startsWith(`${selector}._domainkey.`)
      ? { ...r, content: `"v=DKIM1; k=rsa; p=${other.slice(0, 200)}" "${other.slice(200)}"` }
      : r,
  );
  await serveDns(ctx, records, ctx.capture.ptrs);
  try {
    return expectExactly(
      await doctor(ctx),
      [
        { id: "dns.record", subject: /\(DKIM\)/, status: "fail", fix: /pulumi up --stack/ },
        { id: "host.dkim", subject: new RegExp(selector), status: "fail", fix: /pulumi up --stack/ },
      ],
      fail,
    );
  } finally {
    await restoreDns(ctx);
  }
}

export async function doctorPtrElsewhere(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const ipv4 = ctx.capture.nodes[0].ipv4;
  const ptrs = ctx.capture.ptrs.map((p) => (p.ip === ipv4 ? { ...p, name: "elsewhere.example.net" } : p));
  await serveDns(ctx, ctx.capture.records, ptrs);
  try {
    return expectExactly(
      await doctor(ctx),
      [{ id: "dns.fcrdns", subject: new RegExp(ipv4.replace(/\./g, "\\.")), status: "fail", fix: /set-rdns|Rdns/ }],
      fail,
    );
  } finally {
    await restoreDns(ctx);
  }
}

/** Outbound SMTP dropped in the world: port 25 (or, for smarthost stacks, the smarthost's port). */
export async function doctorPort25Dropped(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const nft = (script: string) => run("ip", ["netns", "exec", ctx.names.world, "nft", "-f", "-"], { input: script });
  const sh = ctx.capture.smarthost;
  // In `world` (the internet), never on this machine: SYNs from the host to that port vanish, as on a blocked network.
  const add = await nft(
    `table inet mrr_doctor_fault {\n  chain input {\n    type filter hook input priority -10; policy accept;\n` +
      `    iifname "${ctx.names.vethWorld}" tcp dport ${sh ? sh.port : 25} drop\n  }\n}\n`,
  );
  if (add.code !== 0) throw new Error(`nft in world: ${add.stderr}`);
  try {
    return expectExactly(
      await doctor(ctx),
      [
        sh
          ? { id: "host.smarthost", subject: /^smarthost /, status: "fail", fix: /smarthost/ }
          : { id: "host.smtp-out", subject: /outbound TCP 25/, status: "fail", fix: /Hetzner|smarthost/ },
      ],
      fail,
    );
  } finally {
    await nft("delete table inet mrr_doctor_fault\n");
  }
}

export async function doctorBlocklisted(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const ipv4 = ctx.capture.nodes[0].ipv4;
  // The list's real zone, served by the world: 127.0.0.2 is what Spamhaus ZEN answers for an SBL listing.
  const listed = reverseName(ipv4).replace(/\.in-addr\.arpa$/, ".zen.spamhaus.org");
  await serveDns(ctx, ctx.capture.records, ctx.capture.ptrs, [`host-record=${listed},127.0.0.2`]);
  try {
    return expectExactly(
      await doctor(ctx),
      [
        {
          id: "reputation.dnsbl",
          subject: new RegExp(`${ipv4.replace(/\./g, "\\.")} .* on zen\\.spamhaus\\.org`),
          status: "fail",
          fix: /check\.spamhaus\.org/,
        },
      ],
      fail,
    );
  } finally {
    await restoreDns(ctx);
  }
}

export async function doctorTokenExpiring(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const in10 = new Date(Date.now() + 10 * 86_400_000).toISOString();
  const rows = (ctx.capture.outputs.credentialExpiry ?? []) as {
    credential: string;
    kind: string;
    expiresAt: string;
    renew: string;
  }[];
  const access = rows.find((r) => /access/i.test(`${r.kind} ${r.credential}`));
  const caller = Object.keys(ctx.capture.outputs.relayTokens as Record<string, string>)[0];
  const changed = access
    ? rows.map((r) => (r === access ? { ...r, expiresAt: in10 } : r))
    : [
        ...rows,
        {
          credential: `accessServiceToken/${caller}`,
          kind: "Access service token",
          expiresAt: in10,
          renew: "`pulumi up` rotates it",
        },
      ];
  const r = await doctor(ctx, { ...ctx.capture.outputs, credentialExpiry: changed });
  const name = access?.credential ?? `accessServiceToken/${caller}`;
  return (
    (access ? "" : "(the outputs have no credentialExpiry: the row was added) ") +
    expectExactly(
      r,
      [{ id: "expiry", subject: new RegExp(name.replace(/[/.]/g, "\\$&")), status: "warn", fix: /\S/ }],
      fail,
    )
  );
}

export async function doctorOpendkimStopped(ctx: RehearsalRun, fail: Fail): Promise<string> {
  await ctx.onHost("systemctl stop opendkim.service");
  try {
    return expectExactly(
      await doctor(ctx),
      [{ id: "host.service", subject: /^opendkim\.service/, status: "fail", fix: /systemctl start opendkim/ }],
      fail,
    );
  } finally {
    await ctx.onHost("systemctl start opendkim.service");
  }
}
