/**
 * Attacks: from the internet (no port but SSH from an admin address answers), through the tunnel (every
 * refusal with its status and code), and local users on the host (who may talk SMTP to Postfix on loopback).
 */
import * as path from "node:path";
import { capturedCount, type HttpAnswer } from "../client";
import { run, sleep } from "../proc";
import { WORLD } from "../world";
import type { Fail, RehearsalRun } from "./context";

export async function attackFromWorld(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const n = ctx.capture.nodes[0];
  const hosts = [n.ipv4, ...(n.ipv6 ? [`[${n.ipv6}]`] : [])];
  // 22 too: SSH is for the admin ranges only, on the host as at the cloud firewall; the stranger is outside them.
  const targets = hosts.flatMap((h) => [22, 25, 465, 587, 2525, 8891].map((p) => `${h}:${p}`));
  const out: string[] = [];
  for (const [src, list] of [
    [WORLD.stranger4, targets.filter((t) => !t.startsWith("["))],
    [WORLD.stranger6, targets.filter((t) => t.startsWith("["))],
  ] as const) {
    const r = await run("ip", ctx.worldTsx(path.join(__dirname, "..", "world", "probe.ts"), src, ...list), {
      timeoutMs: 120_000,
    });
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
  const control = await run("ip", ["netns", "exec", ctx.names.world, "bash", "-c", `exec 3<>/dev/tcp/${n.ipv4}/22`], {
    timeoutMs: 5000,
  });
  if (control.code !== 0) fail("control: SSH from the admin range did not connect either, so the probe proves nothing");
  return (
    `${lines.length} targets (22, 25, 465, 587, 2525, 8891 ` +
    `on ${hosts.join(", ")}): ${[...new Set(lines.map((l) => l.outcome))].join(", ")}; control: ` +
    `SSH from an admin address connects`
  );
}

export async function attackThroughTunnel(ctx: RehearsalRun, fail: Fail): Promise<string> {
  if (!ctx.capture.tunnel) return "tunnel disabled in this stack: nothing to attack through it";
  const before = capturedCount(ctx.inbox);
  const c = ctx.creds();
  const good = { from: ctx.sender(), to: ctx.rcpt("victim"), subject: `[${ctx.runTag}] attack`, text: "x" };
  const cases: {
    what: string;
    status: number;
    code?: string;
    run: () => Promise<HttpAnswer>;
  }[] = [
    {
      what: "no Access token",
      status: 403,
      run: () =>
        ctx.client.request("POST", "/send", { creds: { relayToken: c.relayToken }, body: JSON.stringify(good) }),
    },
    {
      what: "no relay token",
      status: 401,
      code: "unauthorized",
      run: () =>
        ctx.client.request("POST", "/send", {
          creds: { accessId: c.accessId, accessSecret: c.accessSecret },
          body: JSON.stringify(good),
        }),
    },
    {
      what: "wrong relay token",
      status: 401,
      code: "unauthorized",
      run: () => ctx.client.send({ ...c, relayToken: `${c.relayToken.slice(0, -4)}XXXX` }, good),
    },
    {
      what: "From outside the allowlist",
      status: 400,
      code: "from_not_allowed",
      run: () => ctx.client.send(c, { ...good, from: `ceo@${ctx.capture.domain}` }),
    },
    {
      what: "CR/LF in subject",
      status: 400,
      code: "header_injection",
      run: () => ctx.client.send(c, { ...good, subject: "hi\r\nBcc: victim2@example.net" }),
    },
    {
      what: "CR/LF in name",
      status: 400,
      code: "header_injection",
      run: () => ctx.client.send(c, { ...good, from: { email: ctx.sender(), name: "x\r\nBcc: v@example.net" } }),
    },
    {
      what: "CR/LF in reply-to",
      status: 400,
      run: () => ctx.client.send(c, { ...good, replyTo: "a@example.net\r\nBcc: v@example.net" }),
    },
    {
      what: "oversized body",
      status: 413,
      code: "payload_too_large",
      run: () => ctx.client.send(c, { ...good, text: "x".repeat(2 * 1024 * 1024) }),
    },
    {
      what: "too many recipients",
      status: 400,
      code: "too_many_recipients",
      run: () => ctx.client.send(c, { ...good, to: Array.from({ length: 1001 }, (_, i) => ctx.rcpt(`r${i}`)) }),
    },
    {
      what: "non-JSON",
      status: 400,
      code: "invalid_json",
      run: () => ctx.client.request("POST", "/send", { creds: c, body: "{not json" }),
    },
    {
      what: "/metrics through the tunnel",
      status: 404,
      run: () => ctx.client.request("GET", "/metrics", { creds: c }),
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
  const after = capturedCount(ctx.inbox);
  if (after !== before) fail(`the MX received ${after - before} message(s) during the attacks`);
  return seen.join("; ");
}

/** On the host: who may talk SMTP to Postfix on loopback (it trusts every loopback client). */
export async function attackLocalUsers(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const probe = (who: string, port: number) =>
    `${who === "root" ? "" : `setpriv --reuid=${who} --regid=${who} --clear-groups `}timeout 5 bash -c 'exec ` +
    `3<>/dev/tcp/127.0.0.1/${port} && head -c 3 <&3' >/dev/null 2>&1 && echo "${who}:${port}:connected" || ` +
    `echo "${who}:${port}:refused"`;
  const cases: [string, number, boolean][] = [
    ["nobody", 25, false],
    ["nobody", 587, false],
    ["mailrelay", 25, true],
    ["root", 25, true],
  ];
  const r = await ctx.onHost(cases.map(([w, p]) => probe(w, p)).join("; "));
  const got = r.stdout.trim().split("\n");
  cases.forEach(([w, p, allowed], i) => {
    const expected = `${w}:${p}:${allowed ? "connected" : "refused"}`;
    if (got[i] !== expected) fail(`expected ${expected}, got ${got[i] ?? r.stderr}`);
  });
  return got.join(", ");
}
