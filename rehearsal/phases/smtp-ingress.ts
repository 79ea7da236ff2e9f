/**
 * The SMTP ingress end to end (docs/smtp-ingress.md): an SMTP-only app in the world sends through
 * `cloudflared access tcp` on its own loopback (rehearsal/world/access-tcp.ts), the edge's Access check, the
 * tunnel's tcp:// route (the stand-in connector) and the relay's SMTP listener, with STARTTLS verified against the
 * stack's smtpIngressCertificate and AUTH as a caller. The message must arrive at the MX signed (dkim, spf, dmarc
 * pass); the caller's forbidden sender must be refused there as POST /send refuses it; and a connection without an
 * Access service token must not reach the relay at all.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { callers, capturedCount, verifyCaptured, type CallerCreds } from "../client";
import { run } from "../proc";
import { waitTcp, WORLD } from "../world";
import { PROJECT_ROOT } from "../../infra/offline";
import type { Fail, RehearsalRun } from "./context";

/** Where the caller's `cloudflared access tcp` listens inside `world`, with and without a service token. */
const PORT = 1025;
const PORT_NO_TOKEN = 1026;

interface SendResult {
  readonly ok: boolean;
  readonly response?: string;
  readonly command?: string;
  readonly responseCode?: number;
  readonly code?: string;
}

/**
 * The first caller in the stack file with a sender list of its own (`callers: [{name, allowedSenders}]`), one
 * address it may use and one the stack allows that it may not.
 */
export function restrictedCaller(stack: string): { caller: string; allowed: string; forbidden: string } | undefined {
  const doc = parseYaml(fs.readFileSync(path.join(PROJECT_ROOT, `Pulumi.${stack}.yaml`), "utf8")) as {
    config?: Record<string, unknown>;
  };
  const stackSenders = (doc.config?.["mail-relay:allowedSenders"] ?? []) as string[];
  for (const c of (doc.config?.["mail-relay:callers"] ?? []) as (
    string | { name: string; allowedSenders?: string[] }
  )[]) {
    if (typeof c === "string" || !c.allowedSenders?.length) continue;
    const own = c.allowedSenders.map((a) => a.toLowerCase());
    const forbidden = stackSenders.find((a) => !own.includes(a.toLowerCase()));
    if (forbidden) return { caller: c.name, allowed: c.allowedSenders[0] as string, forbidden };
  }
  return undefined;
}

/** Starts the caller's `cloudflared access tcp` (stand-in) inside `world`; the service token goes in its env. */
async function accessTcp(ctx: RehearsalRun, hostname: string, port: number, creds?: CallerCreds): Promise<number> {
  const log = fs.openSync(path.join(ctx.dir, `access-tcp-${port}.log`), "a");
  const child = ctx.procs.start(
    `cloudflared access tcp (stand-in) on 127.0.0.1:${port}`,
    "ip",
    ctx.worldTsx(
      path.join(__dirname, "..", "world", "access-tcp.ts"),
      ...["--hostname", hostname, "--url", `127.0.0.1:${port}`, "--edge", `${WORLD.edge}:80`],
    ),
    {
      stdio: ["ignore", log, log],
      env: {
        ...process.env,
        ...(creds ? { TUNNEL_SERVICE_TOKEN_ID: creds.accessId, TUNNEL_SERVICE_TOKEN_SECRET: creds.accessSecret } : {}),
      },
    },
  );
  await waitTcp(ctx.names.world, "127.0.0.1", port, 20_000);
  return child.pid!;
}

async function smtpSend(
  ctx: RehearsalRun,
  input: { port: number; user?: string; pass?: string; ca: string; messages: object[] },
): Promise<SendResult[]> {
  const r = await run("ip", ctx.worldTsx(path.join(__dirname, "..", "world", "smtp-send.ts")), {
    input: JSON.stringify(input),
    timeoutMs: 90_000,
  });
  if (r.code !== 0) throw new Error(`smtp-send.ts failed: ${r.stderr.slice(-1000)}`);
  return r.stdout
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as SendResult);
}

export async function smtpIngress(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const hostname = ctx.capture.outputs.smtpIngressHostname as string | undefined;
  if (!hostname) return "not checked: this stack has no SMTP ingress behind the tunnel (smtpIngress or tunnel off)";
  const ca = String(ctx.capture.outputs.smtpIngressCertificate);
  const who = restrictedCaller(ctx.stack);
  const creds = who ? callers(ctx.capture).find((c) => c.caller === who.caller) : ctx.creds();
  if (!creds) throw new Error(`caller ${who?.caller} has no relay token in the stack outputs`);
  const allowed = who?.allowed ?? ctx.sender();
  const before = capturedCount(ctx.inbox);
  const pids = [await accessTcp(ctx, hostname, PORT, creds), await accessTcp(ctx, hostname, PORT_NO_TOKEN)];
  const message = (from: string, what: string) => ({
    from,
    to: ctx.rcpt("smtp-ingress"),
    subject: `[${ctx.runTag}] SMTP ingress: ${what}`,
    text: `${what}, sent over SMTP through cloudflared access tcp and the tunnel.\n`,
  });
  let results: SendResult[];
  let noToken: SendResult[];
  try {
    results = await smtpSend(ctx, {
      port: PORT,
      user: creds.caller,
      pass: creds.relayToken,
      ca,
      messages: [
        message(allowed, `${creds.caller} as ${allowed}`),
        ...(who ? [message(who.forbidden, `${creds.caller} as ${who.forbidden} (must be refused)`)] : []),
      ],
    });
    noToken = await smtpSend(ctx, {
      port: PORT_NO_TOKEN,
      user: creds.caller,
      pass: creds.relayToken,
      ca,
      messages: [message(allowed, "no Access service token (must not reach the relay)")],
    });
  } finally {
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        /* already gone */
      }
    }
  }

  const [sent, forbidden] = results;
  const id = /queued as (\S+)/.exec(sent?.response ?? "")?.[1];
  if (!sent?.ok || !id) fail(`${creds.caller} as ${allowed}: expected 250 queued, got ${JSON.stringify(sent)}`);
  else {
    ctx.accepted += 1;
    ctx.expected.push({ id, what: `SMTP ingress: ${creds.caller} as ${allowed}`, copies: 1 });
  }
  if (who) {
    if (forbidden?.ok) {
      // It will arrive: the ledger counts it, so only this check fails.
      ctx.accepted += 1;
      fail(
        `${creds.caller} sent as ${who.forbidden} (not in its allowedSenders) and the SMTP ingress accepted it ` +
          `(${forbidden.response}); POST /send refuses it (from_not_allowed), so must the SMTP door`,
      );
    } else if (!forbidden || !(Number(forbidden.responseCode) >= 500) || /^AUTH|^CONN/.test(forbidden.command ?? ""))
      fail(`${creds.caller} as ${who.forbidden}: expected a 5xx refusal after AUTH, got ${JSON.stringify(forbidden)}`);
  }
  const [blocked] = noToken;
  if (blocked?.ok || blocked?.responseCode !== undefined)
    fail(`without an Access service token the SMTP session reached the relay: ${JSON.stringify(blocked)}`);

  const arrived = id ? await ctx.waitForCopies(before + 1, 30_000) : false;
  if (id && !arrived) fail(`the message sent over SMTP (${id}) did not reach the MX within 30 s`);
  const verified = (await verifyCaptured(ctx.names, ctx.inbox)).filter((v) =>
    v.subject.startsWith(`[${ctx.runTag}] SMTP ingress: `),
  );
  for (const v of verified) {
    if (v.dkim !== "pass" || v.dkimDomain !== ctx.capture.domain)
      fail(`${v.subject}: dkim=${v.dkim} d=${v.dkimDomain}, expected pass for ${ctx.capture.domain}`);
    if (v.spf !== "pass" || v.dmarc !== "pass") fail(`${v.subject}: spf=${v.spf} dmarc=${v.dmarc}`);
  }
  if (id && arrived && verified.length === 0) fail("the MX holds no message with the SMTP ingress subject");
  if (id) {
    const s = await ctx.client.request("GET", `/messages/${id}`, { creds });
    if (s.status !== 200) fail(`GET /messages/${id} as ${creds.caller}: ${s.status} ${s.raw.slice(0, 200)}`);
  }
  return (
    `${creds.caller} over SMTP via cloudflared access tcp -> edge (Access) -> tunnel tcp route -> ` +
    `127.0.0.1:2587 (STARTTLS verified, AUTH): ${sent?.response}; at the MX dkim=${verified[0]?.dkim}, ` +
    `spf=${verified[0]?.spf}, dmarc=${verified[0]?.dmarc}` +
    (who ? `; as ${who.forbidden}: ${forbidden?.responseCode} at ${forbidden?.command}` : "") +
    `; no service token: ${blocked?.code ?? "refused"} before any SMTP reply`
  );
}
