// A real Postfix instance and a real OpenDKIM, both from the rendered files, inside a network namespace this test
// creates. Only instance paths are moved to a scratch dir (queue_directory, data_directory, log file) and the next
// hop is pointed at a local smtp-sink; every other rendered setting is exercised as it is.
import { generateKeyPairSync } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerResult, WorkerSpec } from "../../bench/handoff-worker";
import { verifyDkim } from "./dkim-verify";
import { buildConfig } from "../../testkit/node-config";
import { INSTANCE_TOOLS, netnsUnavailable, PostfixInstance, waitFor } from "../../testkit/postfix-instance";
import { missing, run, tool } from "../../testkit/real-tools";

const REPO = join(__dirname, "..", "..");

const skip = missing("Postfix + OpenDKIM instance in a network namespace", {
  tools: [...INSTANCE_TOOLS, "postmap", "swaks"],
  root: true,
  scratch: true,
  check: () => netnsUnavailable(`mrprobe${process.pid}`),
});

const direct = buildConfig({ ipv6: false });
const smarthost = buildConfig({ smarthost: true, ipv6: false });
const SINK = "127.0.0.1:2626";
const otherKeyPem = generateKeyPairSync("rsa", { modulusLength: 2048 })
  .privateKey.export({ type: "pkcs8", format: "pem" })
  .toString();
const OTHER_ADDR = "10.99.0.1";

let inst: PostfixInstance;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const inNs = (cmd: string, args: string[], input?: string) => inst.inNs(cmd, args, input);
const maillog = () => inst.maillog();
const sunk = () => inst.sunk();

/**
 * Runs bench/handoff-worker.ts (the relay's composeMessage, SmtpHandoff and SendmailHandoff, one message at a time as
 * relay/worker.ts does) inside the namespace, where 127.0.0.1:25 is this instance; MAIL_CONFIG points sendmail at it.
 */
function relayHandoff(spec: WorkerSpec): WorkerResult {
  const r = inNsEnv([
    "env",
    `MAIL_CONFIG=${inst.etc}`,
    process.execPath,
    "--import",
    "tsx",
    join(REPO, "bench", "handoff-worker.ts"),
    JSON.stringify(spec),
  ]);
  if (r.status !== 0) throw new Error(`handoff worker (${spec.kind}) exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop() as string) as WorkerResult;
}
const inNsEnv = (argv: string[]) => run(tool("ip") as string, ["netns", "exec", inst.ns, ...argv], { timeout: 60_000 });

/** The sink's messages carrying X-Bench-Phase: <phase>. */
function atSink(phase: string): string[] {
  return sunk()
    .map((f) => readFileSync(join(inst.sinkDir, f), "utf8"))
    .filter((m) => new RegExp(`^X-Bench-Phase: *${phase}\\s*$`, "mi").test(m));
}

function smtpSend(server: string, extra: string[] = []) {
  return inNs(tool("swaks") as string, [
    "--server",
    server,
    "--from",
    "noreply@example.com",
    "--to",
    "someone@example.org",
    "--header",
    "Subject: mail-relay instance test",
    "--body",
    "hello",
    "--timeout",
    "10",
    ...extra,
  ]);
}

describe.skipIf(skip)("Postfix + OpenDKIM from the rendered files, in a private network namespace", () => {
  beforeAll(async () => {
    inst = new PostfixInstance(`mrpf${process.pid}`, "instance-");
    await inst.start({
      host: direct.host,
      dkimPrivateKeyPem: direct.secrets.dkimPrivateKeyPem,
      dkimEd25519PrivateKeyPem: direct.secrets.dkimEd25519PrivateKeyPem,
      sink: SINK,
      sinkBacklog: 10,
      // A non-loopback address, present before Postfix starts: it must not listen there.
      beforeStart: (i) => void i.inNs(tool("ip") as string, ["addr", "add", `${OTHER_ADDR}/32`, "dev", "lo"]),
    });
  });

  afterAll(() => inst?.stop());

  it("listens on 127.0.0.1:25 only: nothing on another address, nothing on 465 or 587", () => {
    const listening = inNs(tool("ss") ?? "/usr/bin/ss", ["-ltnH"])
      .stdout.trim()
      .split("\n")
      .map((l) => l.split(/\s+/)[3]);
    expect(listening.filter((a) => a !== SINK).sort()).toEqual(["127.0.0.1:25"]);
    for (const target of [`${OTHER_ADDR}:25`, "127.0.0.1:465", "127.0.0.1:587"]) {
      const r = smtpSend(target);
      expect(r.status, target).not.toBe(0);
      expect(r.stdout + r.stderr, target).toMatch(/Connection refused/);
    }
  });

  it("signs a message submitted over SMTP with d=<domain> s=<active selector> and delivers it", async () => {
    const before = sunk().length;
    const r = smtpSend("127.0.0.1:25");
    expect(r.stdout + r.stderr).toMatch(/250 2\.0\.0 Ok: queued/);
    await waitFor(() => sunk().length > before, "delivery to the sink");
    const msg = readFileSync(join(inst.sinkDir, sunk().sort().pop() as string), "utf8");
    const sigs = [...msg.matchAll(/^DKIM-Signature:([^\n]*(?:\n[ \t][^\n]*)*)/gm)].map((m) =>
      (m[1] as string).replace(/\s+/g, " "),
    );
    expect(sigs).toHaveLength(2);
    const rsa = sigs.find((x) => /\ba=rsa-sha256;/.test(x)) ?? "";
    expect(rsa).toMatch(/\bd=example\.com;/);
    expect(rsa).toMatch(/\bs=mail202611;/);
    expect(rsa).toMatch(/\bc=relaxed\/simple;/);
    expect(msg).toMatch(/^From: noreply@example\.com/m);
  });

  it("signs every message twice (RFC 8463): RSA with the selector, Ed25519 with <selector>-ed25519, both valid", async () => {
    const before = sunk().length;
    const r = smtpSend("127.0.0.1:25");
    expect(r.stdout + r.stderr).toMatch(/250 2\.0\.0 Ok: queued/);
    await waitFor(() => sunk().length > before, "delivery to the sink");
    const msg = readFileSync(join(inst.sinkDir, sunk().sort().pop() as string), "utf8");
    expect(verifyDkim(msg, direct.secrets.dkimPrivateKeyPem)).toEqual({
      d: "example.com",
      s: "mail202611",
      valid: true,
    });
    expect(verifyDkim(msg, direct.secrets.dkimEd25519PrivateKeyPem)).toEqual({
      d: "example.com",
      s: "mail202611-ed25519",
      valid: true,
    });
    // The check can fail: a changed body breaks both signatures.
    const tampered = msg.replace("hello", "hallo");
    expect(verifyDkim(tampered, direct.secrets.dkimPrivateKeyPem).valid).toBe(false);
    expect(verifyDkim(tampered, direct.secrets.dkimEd25519PrivateKeyPem).valid).toBe(false);
  });

  it("the signature covers every header a reader acts on (h=), and oversigns the ones that must not be added later", async () => {
    const before = sunk().length;
    const msg = [
      "From: noreply@example.com",
      "To: someone@example.org",
      "Cc: other@example.org",
      "Reply-To: support@example.com",
      "Subject: signed headers",
      "Date: Mon, 30 Nov 2026 10:00:00 +0000",
      "Message-ID: <h-list-test@mail.example.com>",
      "MIME-Version: 1.0",
      "Content-Type: text/plain; charset=utf-8",
      "Content-Transfer-Encoding: 7bit",
      "",
      "hello",
      "",
    ].join("\r\n");
    const r = inNs(
      tool("swaks") as string,
      [
        "--server",
        "127.0.0.1:25",
        "--from",
        "noreply@example.com",
        "--to",
        "someone@example.org",
        "--data",
        "-",
        "--timeout",
        "10",
      ],
      msg,
    );
    expect(r.stdout + r.stderr).toMatch(/250 2\.0\.0 Ok: queued/);
    // Wait for this very message, complete: smtp-sink writes as it receives, and other tests' mail lands here too.
    const mine = () =>
      sunk()
        .map((f) => readFileSync(join(inst.sinkDir, f), "utf8"))
        .find((m) => m.includes("Subject: signed headers") && /\r?\nhello\r?\n/.test(m));
    await waitFor(() => sunk().length > before && mine() !== undefined, "delivery to the sink");
    const out = mine()!;
    const sig = (/^DKIM-Signature:([^\n]*(?:\n[ \t][^\n]*)*)/m.exec(out)?.[1] ?? "").replace(/\s+/g, "");
    const h = (/;h=([^;]*)/.exec(sig)?.[1] ?? "").toLowerCase().split(":");
    const count = (name: string) => h.filter((x) => x === name).length;
    for (const name of [
      "from",
      "to",
      "cc",
      "reply-to",
      "subject",
      "date",
      "message-id",
      "mime-version",
      "content-type",
      "content-transfer-encoding",
    ]) {
      // Present once, signed twice: a copy added in transit breaks the signature.
      expect(count(name), `${name} in h=${h.join(":")}`).toBe(2);
    }
    // Absent, but oversigned: nobody can add a List-Unsubscribe or a Sender after signing.
    expect(count("list-unsubscribe")).toBe(1);
    expect(count("sender")).toBe(1);
  });

  it("signs a message submitted with sendmail too (non_smtpd_milters through the relative socket path)", async () => {
    const before = sunk().length;
    const r = inNs(
      tool("sendmail") as string,
      ["-C", inst.etc, "-f", "noreply@example.com", "-i", "someone@example.org"],
      "From: noreply@example.com\nTo: someone@example.org\nSubject: via sendmail\n\nhello\n",
    );
    expect(r.status, r.stderr).toBe(0);
    await waitFor(() => sunk().length > before, "sendmail delivery to the sink");
    const files = sunk().sort();
    const msgs = files
      .map((f) => readFileSync(join(inst.sinkDir, f), "utf8"))
      .filter((m) => m.includes("Subject: via sendmail"));
    expect(msgs).toHaveLength(1);
    expect(msgs[0]).toMatch(/^DKIM-Signature:.*d=example\.com;/m);
  });

  it("the relay's own SmtpHandoff and SendmailHandoff hand a composed message to this Postfix, and it reaches the sink DKIM-signed", async () => {
    for (const kind of ["smtp", "sendmail"] as const) {
      const phase = `relay-${kind}-${process.pid}`;
      const result = relayHandoff({
        kind,
        phase,
        count: 1,
        from: "noreply@example.com",
        to: "someone@example.org",
        sendmailPath: tool("sendmail") as string,
        timeoutMs: 30_000,
      });
      expect(result.outcomes, kind).toHaveLength(1);
      const outcome = result.outcomes[0]!;
      expect(outcome.ok, `${kind}: ${outcome.error}`).toBe(true);
      // Over SMTP the relay learns Postfix's queue id from the 250 reply; it must be a real id of this instance.
      if (kind === "smtp") expect(maillog()).toContain(`${outcome.queueId}: `);
      // This Postfix offers PIPELINING and CHUNKING, so the client sent MAIL + RCPT + BDAT LAST and the body in one
      // write (relay/handoff/smtp-client.ts): smtpd's per-session command counts show BDAT, not DATA.
      if (kind === "smtp")
        await waitFor(
          () => /disconnect from \S+ ehlo=1 mail=1 rcpt=1 bdat=1 /.test(maillog()),
          "smtpd's disconnect line counting one BDAT",
        );
      await waitFor(() => atSink(phase).length === 1, `the ${kind} hand-off's message at the sink`);
      const msg = atSink(phase)[0]!;
      expect(verifyDkim(msg, direct.secrets.dkimPrivateKeyPem), `${kind}: ${msg.slice(0, 2000)}`).toEqual({
        d: "example.com",
        s: direct.host.dkimSelector,
        valid: true,
      });
      // The verification can fail: one changed body character breaks it, and so does another key.
      expect(
        verifyDkim(msg.replace("Thanks for your order.", "Thanks for your ordre."), direct.secrets.dkimPrivateKeyPem)
          .valid,
      ).toBe(false);
      expect(verifyDkim(msg, otherKeyPem).valid).toBe(false);
    }
  });

  it("accepts only the allowed envelope senders, whoever the loopback client is (smtpd_sender_restrictions)", async () => {
    // A local process that is not the relay (it got past the host firewall, e.g. as root) still can't get a
    // signed message out for an address outside allowedSenders.
    const stranger = inNs(tool("swaks") as string, [
      "--server",
      "127.0.0.1:25",
      "--from",
      "ceo@example.com",
      "--to",
      "someone@example.org",
      "--header",
      "Subject: forged",
      "--body",
      "x",
      "--timeout",
      "10",
    ]);
    expect(stranger.stdout + stranger.stderr).toMatch(/<\*\* 5\d\d .*Sender address rejected/);
    expect(stranger.stdout + stranger.stderr).not.toMatch(/Ok: queued/);
    const foreign = inNs(tool("swaks") as string, [
      "--server",
      "127.0.0.1:25",
      "--from",
      "noreply@evil.example",
      "--to",
      "someone@example.org",
      "--body",
      "x",
      "--timeout",
      "10",
    ]);
    expect(foreign.stdout + foreign.stderr).toMatch(/<\*\* 5\d\d .*Sender address rejected/);
    for (const allowed of direct.host.allowedSenders) {
      const ok = inNs(tool("swaks") as string, [
        "--server",
        "127.0.0.1:25",
        "--from",
        allowed,
        "--to",
        "someone@example.org",
        "--body",
        "x",
        "--timeout",
        "10",
      ]);
      expect(ok.stdout + ok.stderr, allowed).toMatch(/250 2\.0\.0 Ok: queued/);
    }
  });

  it("smarthost mode never sends without TLS: a smarthost that offers no STARTTLS gets nothing", async () => {
    const sasl = join(inst.etc, "sasl_passwd");
    writeFileSync(sasl, `[127.0.0.1]:2626 ${smarthost.host.smarthost?.username}:test-password\n`, { mode: 0o600 });
    expect(run(tool("postmap") as string, [`hash:${sasl}`]).status).toBe(0);
    inst.writePostfixConfig(smarthost.host, ["relayhost=[127.0.0.1]:2626", `smtp_sasl_password_maps=hash:${sasl}`]);
    expect(inNs(tool("postfix") as string, ["-c", inst.etc, "reload"]).status).toBe(0);
    await sleep(1000);
    const before = sunk().length;
    const r = smtpSend("127.0.0.1:25");
    expect(r.stdout + r.stderr).toMatch(/250 2\.0\.0 Ok: queued/);
    await waitFor(() => /TLS is required, but was not offered/.test(maillog()), "the smtp client's TLS refusal");
    expect(sunk().length).toBe(before);
    // back to direct mode for the next test
    inst.writePostfixConfig(direct.host, [`relayhost=[127.0.0.1]:2626`]);
    expect(inNs(tool("postfix") as string, ["-c", inst.etc, "reload"]).status).toBe(0);
    await sleep(1000);
  });

  it("when OpenDKIM is down, mail is deferred with a 4xx (milter_default_action = tempfail), never sent unsigned", async () => {
    await inst.stopOpendkim();
    const before = sunk().length;
    const r = smtpSend("127.0.0.1:25");
    const out = r.stdout + r.stderr;
    expect(out).toMatch(/<\*\* 4\d\d /);
    expect(out).not.toMatch(/Ok: queued/);
    await sleep(2000);
    expect(sunk().length).toBe(before);
  });
});
