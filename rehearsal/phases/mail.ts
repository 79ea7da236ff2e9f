/**
 * Mail through the deployed host: its services, mail end to end (DKIM, SPF, DMARC checked at the MX, with a control
 * that must fail), and local mail that must stay on the host.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { capturedCount, verifyCaptured } from "../client";
import { run, sleep } from "../proc";
import type { Fail, RehearsalRun } from "./context";

export async function services(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const r = await ctx.onHost(
    `for u in ${ctx.units().join(" ")}; do printf '%s %s %s\\n' "$u" "$(systemctl is-active "$u")" ` +
      `"$(systemctl is-enabled "$u" 2>/dev/null || echo -)"; done; node --version; ` +
      `cloudflared --version 2>&1 | head -1; nft list tables; postconf -h mail_version`,
  );
  const lines = r.stdout.trim().split("\n");
  for (const u of ctx.units()) {
    const l = lines.find((x) => x.startsWith(`${u} `)) ?? "";
    if (!/ active /.test(`${l} `)) fail(`${u} is not active: ${l}`);
  }
  if (!/table inet/.test(r.stdout)) fail(`no nftables table loaded: ${r.stdout}`);
  return lines.slice(ctx.units().length).join(", ");
}

export async function mail(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const before = capturedCount(ctx.inbox);
  const ids = [
    await ctx.post(fail, "text only", { to: ctx.rcpt("alice"), text: "Hello from the rehearsal.\n" }, 1),
    await ctx.post(fail, "HTML only", { to: ctx.rcpt("bob"), html: "<p>Hello <b>from</b> the rehearsal.</p>" }, 1),
    await ctx.post(fail, "text and HTML", { to: ctx.rcpt("carol"), text: "plain part\n", html: "<p>html part</p>" }, 1),
    await ctx.post(
      fail,
      "attachment",
      {
        to: ctx.rcpt("dave"),
        text: "see attached\n",
        attachments: [
          {
            filename: "report.txt",
            contentType: "text/plain",
            content: Buffer.from("attached report\n").toString("base64"),
          },
        ],
      },
      1,
    ),
    await ctx.post(
      fail,
      "several recipients",
      { to: ctx.rcpt("erin"), cc: [ctx.rcpt("frank")], bcc: [ctx.rcpt("grace")], text: "to, cc and bcc\n" },
      3,
    ),
  ];
  if (!(await ctx.waitForCopies(before + 7, 60_000)))
    fail(`expected ${before + 7} copies at the MX within 60s, got ${capturedCount(ctx.inbox)}`);
  const verified = (await verifyCaptured(ctx.names, ctx.inbox)).filter((v) => v.subject.includes(ctx.runTag));
  const selector = String(ctx.capture.outputs.dkimSelector);
  for (const v of verified) {
    if (v.dkim !== "pass" || v.dkimSelector !== selector || v.dkimDomain !== ctx.capture.domain)
      fail(`${v.subject} to ${v.rcptTo}: dkim=${v.dkim} s=${v.dkimSelector} d=${v.dkimDomain}`);
    // RFC 8463: a second signature, Ed25519, with the selector's own -ed25519 twin; both must pass.
    const ed = (v.dkimAll ?? []).filter((x) => x.algo === "ed25519-sha256");
    if (ed.length !== 1 || ed[0]!.result !== "pass" || ed[0]!.selector !== `${selector}-ed25519`)
      fail(
        `${v.subject} to ${v.rcptTo}: Ed25519 signatures ${JSON.stringify(ed)}; want one pass, s=${selector}-ed25519`,
      );
    if (v.spf !== "pass") fail(`${v.subject} to ${v.rcptTo}: spf=${v.spf} from ${v.remoteAddress}`);
    if (v.dmarc !== "pass") fail(`${v.subject} to ${v.rcptTo}: dmarc=${v.dmarc}`);
    if (v.hasBcc) fail(`${v.subject} to ${v.rcptTo} carries a Bcc header`);
  }
  if (!verified.some((v) => v.rcptTo === ctx.rcpt("grace"))) fail("the bcc recipient got nothing");
  const sh = ctx.capture.smarthost;
  if (sh)
    for (const v of verified)
      if (!v.tls || v.authUser !== sh.username)
        fail(
          `${v.subject}: the smarthost session was tls=${v.tls}, user=${v.authUser}; ` +
            `expected STARTTLS and AUTH as ${sh.username}`,
        );
  // The copies are at the MX: the relay's tracker reads Postfix's log (maillog_file) within a second or two.
  for (const id of ids.filter((x): x is string => x !== undefined)) {
    let s = await ctx.client.request("GET", `/messages/${id}`, { creds: ctx.creds() });
    for (let i = 0; i < 20 && s.body?.message?.state !== "delivered"; i++) {
      await new Promise((r) => setTimeout(r, 500));
      s = await ctx.client.request("GET", `/messages/${id}`, { creds: ctx.creds() });
    }
    const m = s.body?.message;
    const rcpts = m?.recipients ?? [];
    const allDelivered = rcpts.length > 0 && rcpts.every((r) => r.state === "delivered" && /^2\./.test(String(r.dsn)));
    if (
      s.status !== 200 ||
      m?.state !== "delivered" ||
      !allDelivered ||
      !/^[0-9A-Za-z]+$/.test(String(m?.postfixQueueId ?? ""))
    )
      fail(`/messages/${id}: ${s.status} ${s.raw.slice(0, 300)}`);
  }
  // Control: the same check on a copy altered in transit must fail, or the passes above prove nothing.
  if (verified.length > 0) {
    const ctl = path.join(ctx.dir, "control");
    fs.rmSync(ctl, { recursive: true, force: true });
    fs.mkdirSync(ctl);
    const src = path.join(ctx.inbox, verified[0].file);
    fs.writeFileSync(
      path.join(ctl, verified[0].file),
      fs.readFileSync(src, "latin1").replace(/\r?\n\r?\n/, "\r\n\r\nALTERED IN TRANSIT\r\n"),
      "latin1",
    );
    fs.copyFileSync(src.replace(/\.eml$/, ".json"), path.join(ctl, verified[0].file.replace(/\.eml$/, ".json")));
    const [altered] = await verifyCaptured(ctx.names, ctl);
    // (DMARC may still pass on aligned SPF; the DKIM result is what the control is about.)
    if (!altered || altered.dkim === "pass")
      fail(`control: a message altered after signing still has dkim=${altered?.dkim}`);
  }
  const sample = verified[0];
  const via = sh ? ` via the smarthost ${sh.host}:${sh.port} (verified STARTTLS, AUTH as ${sh.username})` : "";
  return (
    `${verified.length} copies${via} (control: an altered copy fails DKIM): all dkim=pass twice ` +
    `(rsa-sha256 s=${selector}, ` +
    `ed25519-sha256 s=${selector}-ed25519, ` +
    `d=${ctx.capture.domain}, h=${sample?.dkimHeaders}), spf=pass, dmarc=pass; no Bcc header; ` +
    `/messages/:id delivered for every recipient (read from Postfix's log), with Postfix queue ids`
  );
}

export async function localMail(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const before = capturedCount(ctx.inbox);
  const marker = `rehearsal-local-${ctx.runTag}`;
  const r = await ctx.onHost(
    `printf 'Subject: ${marker}\\n\\nnotice\\n' | /usr/sbin/sendmail root; for _ in $(seq 1 30); ` +
      `do grep -q '${marker}' /var/mail/root 2>/dev/null && break; sleep 0.5; done; ` +
      `grep -c '${marker}' /var/mail/root || true; postqueue -p | tail -1`,
  );
  if (!/^1$/m.test(r.stdout))
    fail(`mail to root did not reach /var/mail/root on the host: ${r.stdout.trim()} ${r.stderr.trim()}`);
  await sleep(2000);
  if (capturedCount(ctx.inbox) !== before) fail("mail to root left the host (the MX received it)");
  return `mail to root delivered to /var/mail/root; nothing left the host (${r.stdout.trim().split("\n").pop()})`;
}

/**
 * A caller's app: client/ and its nodemailer transport each send one message from `world` through the edge and the
 * tunnel (Access headers + relay token), wait for `delivered`, and the copies are checked at the MX like the rest.
 */
export async function clients(ctx: RehearsalRun, fail: Fail): Promise<string> {
  const before = capturedCount(ctx.inbox);
  const creds = ctx.creds();
  const subjects = [`[${ctx.runTag}] client/ send()`, `[${ctx.runTag}] nodemailer transport`] as const;
  const jobFile = path.join(ctx.dir, "clients-job.json");
  fs.writeFileSync(
    jobFile,
    JSON.stringify({
      url: String(ctx.capture.outputs.relayUrl).replace(/^https:/, "http:"),
      token: creds.relayToken,
      accessClientId: creds.accessId,
      accessClientSecret: creds.accessSecret,
      from: ctx.sender(),
      to: [ctx.rcpt("sdk"), ctx.rcpt("nodemailer")],
      subjects,
    }),
    { mode: 0o600 },
  );
  let out;
  try {
    // The app resolves the relay's name through the world's DNS, as a caller's app does.
    out = await ctx.withWorldResolver(() =>
      run("ip", ctx.worldTsx(path.join(__dirname, "..", "world", "clients.ts"), jobFile), { timeoutMs: 90_000 }),
    );
  } finally {
    fs.rmSync(jobFile, { force: true });
  }
  if (out.code !== 0) {
    fail(`clients.ts exited ${out.code}: ${out.stderr.trim().slice(0, 600)}`);
    return "";
  }
  const r = JSON.parse(out.stdout.trim().split("\n").pop() as string) as {
    client: { id: string; state: string; reply?: string };
    transport: { id: string; state: string; accepted: string[]; reply?: string };
    suppressionDelete: string;
  };
  ctx.accepted += 2;
  ctx.expected.push(
    { id: r.client.id, what: subjects[0], copies: 1 },
    { id: r.transport.id, what: subjects[1], copies: 1 },
  );
  if (r.client.state !== "delivered") fail(`client/ send(): ${r.client.id} is ${r.client.state}`);
  if (r.transport.state !== "delivered") fail(`nodemailer transport: ${r.transport.id} is ${r.transport.state}`);
  if (r.suppressionDelete !== "relay 404 not_found")
    fail(`DELETE /suppressions/<addr with %40> did not reach the relay: ${r.suppressionDelete}`);
  if (!(await ctx.waitForCopies(before + 2, 30_000))) fail(`the two copies did not reach the MX within 30s`);
  const verified = (await verifyCaptured(ctx.names, ctx.inbox)).filter((v) => subjects.includes(v.subject as never));
  if (verified.length !== 2) fail(`expected 2 copies at the MX, found ${verified.length}`);
  for (const v of verified)
    if (v.dkim !== "pass" || v.spf !== "pass" || v.dmarc !== "pass")
      fail(`${v.subject}: dkim=${v.dkim} spf=${v.spf} dmarc=${v.dmarc}`);
  return (
    `client/ send() and the nodemailer transport through the edge and the tunnel: both delivered ` +
    `(${r.client.reply ?? "?"}), at the MX with dkim=spf=dmarc=pass; DELETE /suppressions/…%40… reached the relay ` +
    `(${r.suppressionDelete})`
  );
}
