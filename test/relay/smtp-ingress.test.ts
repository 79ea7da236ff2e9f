// The SMTP ingress against real clients (a raw socket, nodemailer, swaks) and a real on-disk queue. Each test is a
// rule the listener keeps; the smuggling tests write the exact bytes of each end-of-data variant.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import nodemailer from "nodemailer";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../relay/app";
import { ConfigError, loadConfig } from "../../relay/config";
import { RelayError } from "../../relay/errors";
import type { Job } from "../../relay/storage/queue";
import { CallerRateWindow, readSmtpTls, smtpRefusalFor } from "../../relay/smtp-ingress";
import { captureLog, okHandoff, TOKEN_APP, TOKEN_BILLING, tempDir, testConfig } from "./fixtures";
import { RawSmtp } from "../../testkit/raw-smtp";
import { haveOpenssl, selfSignedCert } from "../../testkit/self-signed-cert";
import { crlfMessage, ingressClosedAfterEach, type RunningIngress } from "./smtp-client";

const { ingress, loggedIn, closeLater } = ingressClosedAfterEach();

const pending = (r: RunningIngress): Job[] =>
  readdirSync(path.join(r.root, "pending")).map(
    (f) => JSON.parse(readFileSync(path.join(r.root, "pending", f), "utf8")) as Job,
  );

const HEADERS = ["From: Example <noreply@example.com>", "To: user@example.net", "Subject: hello over SMTP"];

/** MAIL, RCPT(s), DATA, the message bytes as given (they must end with the terminator), and the reply to it. */
async function transaction(
  c: RawSmtp,
  data: string | Buffer,
  opts: { from?: string; to?: string[] } = {},
): Promise<string> {
  expect(await c.cmd(`MAIL FROM:<${opts.from ?? "noreply@example.com"}>`)).toMatch(/^250 /);
  for (const to of opts.to ?? ["user@example.net"]) expect(await c.cmd(`RCPT TO:<${to}>`)).toMatch(/^250 /);
  expect(await c.cmd("DATA")).toMatch(/^354 /);
  c.send(data);
  return c.reply();
}

describe.skipIf(!haveOpenssl)("SMTP ingress: authentication", () => {
  it("AUTH is refused before STARTTLS (538) and MAIL before AUTH (530); nothing is queued", async () => {
    const r = await ingress();
    const { client, greeting } = await RawSmtp.connect(r.port);
    closeLater(client);
    expect(greeting).toMatch(/^220 smtp-relay\.example\.com ESMTP/);
    const ehlo = await client.cmd("EHLO client.example");
    expect(ehlo).toMatch(/STARTTLS/);
    expect(await client.cmd(`AUTH PLAIN ${Buffer.from(`\0app\0${TOKEN_APP}`).toString("base64")}`)).toMatch(/^538 /);
    expect(await client.cmd("MAIL FROM:<noreply@example.com>")).toMatch(/^530 /);
    expect(await client.cmd("RCPT TO:<user@example.net>")).toMatch(/^530 /);
    expect(await client.cmd("DATA")).toMatch(/^530 /);
    // after STARTTLS, still nothing before AUTH
    await client.starttls(selfSignedCert().cert);
    expect(await client.cmd("MAIL FROM:<noreply@example.com>")).toMatch(/^530 /);
    expect(pending(r)).toEqual([]);
  });

  it("a wrong password, another caller's token or a token under the wrong name is refused with 535; the third failure closes the connection", async () => {
    const r = await ingress();
    const { client } = await RawSmtp.connect(r.port);
    closeLater(client);
    await client.starttls(selfSignedCert().cert);
    const plain = (u: string, p: string) => `AUTH PLAIN ${Buffer.from(`\0${u}\0${p}`).toString("base64")}`;
    expect(await client.cmd(plain("app", "wrong-token-0123456789abcdefghijklmnop"))).toMatch(/^535 5\.7\.8 /);
    expect(await client.cmd(plain("app", TOKEN_BILLING))).toMatch(/^535 5\.7\.8 /); // billing's token, app's name
    expect(await client.cmd(plain("billing", TOKEN_APP))).toMatch(/^421 4\.7\.0 /);
    expect(await client.reply(2000)).toBe(""); // closed
    expect(r.lines.join("\n")).not.toContain(TOKEN_APP);
    expect(r.lines.join("\n")).not.toContain(TOKEN_BILLING);
  });

  it("AUTH LOGIN works too, and the caller is the token's name", async () => {
    const r = await ingress();
    const { client } = await RawSmtp.connect(r.port);
    closeLater(client);
    await client.starttls(selfSignedCert().cert);
    expect(await client.cmd("AUTH LOGIN")).toMatch(/^334 /);
    expect(await client.cmd(Buffer.from("billing").toString("base64"))).toMatch(/^334 /);
    expect(await client.cmd(Buffer.from(TOKEN_BILLING).toString("base64"))).toMatch(/^235 /);
    expect(await transaction(client, crlfMessage(HEADERS) + ".\r\n")).toMatch(/^250 2\.0\.0 queued as /);
    expect(pending(r).map((j) => j.caller)).toEqual(["billing"]);
  });
});

describe.skipIf(!haveOpenssl)("SMTP ingress: an accepted message", () => {
  it("is queued with our id (250 2.0.0 queued as <id>) and GET /messages/:id finds it for that caller only", async () => {
    const r = await ingress();
    const c = await loggedIn(r);
    const reply = await transaction(c, crlfMessage([...HEADERS, "Cc: other@example.org"]) + ".\r\n", {
      to: ["user@example.net", "other@example.org", "hidden@example.com"],
    });
    const id = /^250 2\.0\.0 queued as ([0-9a-f-]{36})$/.exec(reply)?.[1];
    expect(id, reply).toBeDefined();
    const [job] = pending(r);
    expect(job).toMatchObject({
      id,
      caller: "app",
      envelope: { from: "noreply@example.com", to: ["user@example.net", "other@example.org", "hidden@example.com"] },
      subject: "hello over SMTP",
      recipientDomains: ["example.net", "example.org", "example.com"],
    });
    const { log } = captureLog();
    const app = await buildApp({ config: testConfig({ queueRoot: r.root }), queue: r.queue, handoff: okHandoff, log });
    try {
      const mine = await app.inject({
        method: "GET",
        url: `/messages/${id}`,
        headers: { authorization: `Bearer ${TOKEN_APP}` },
      });
      expect(mine.statusCode).toBe(200);
      expect(mine.json().message).toMatchObject({ id, state: "queued" });
      const theirs = await app.inject({
        method: "GET",
        url: `/messages/${id}`,
        headers: { authorization: `Bearer ${TOKEN_BILLING}` },
      });
      expect(theirs.statusCode).toBe(404);
    } finally {
      await app.close();
    }
  });

  it("replies 250 only after the queue says the job is durable (a fake queue that holds the fsync)", async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const jobs: Job[] = [];
    const fakeQueue = {
      accept: async (job: Job) => {
        await held;
        jobs.push(job);
        return { id: job.id, duplicate: false };
      },
    };
    const r = await ingress({ queue: fakeQueue });
    const c = await loggedIn(r);
    const replied = transaction(c, crlfMessage(HEADERS) + ".\r\n");
    const early = await Promise.race([
      replied.then(() => "replied"),
      new Promise((res) => setTimeout(() => res("waiting"), 400)),
    ]);
    expect(early).toBe("waiting");
    release();
    expect(await replied).toBe(`250 2.0.0 queued as ${jobs[0]!.id}`);
  });

  it("keeps the client's message byte for byte, except: Bcc and Idempotency-Key removed, Message-ID and Date added when missing", async () => {
    const r = await ingress({ now: () => Date.UTC(2026, 10, 30, 9, 0, 0) });
    const c = await loggedIn(r);
    const headers = [
      "From: =?UTF-8?B?w4lxdWlwZQ==?= <noreply@example.com>",
      "To: user@example.net,",
      "\tsecond@example.net",
      "Bcc: hidden@example.com",
      "Subject: folded",
      "  subject line",
      "X-Custom:   spacing kept  ",
      "MIME-Version: 1.0",
      "Content-Type: text/plain; charset=utf-8",
      "Content-Transfer-Encoding: 8bit",
    ];
    const body = ["Grüße, ünïcødé body", "", ". a line that starts with a dot", "trailing spaces   "];
    const dotStuffed = crlfMessage(headers, body).replace("\r\n. a line", "\r\n.. a line");
    expect(
      await transaction(c, dotStuffed + ".\r\n", {
        to: ["user@example.net", "second@example.net", "hidden@example.com"],
      }),
    ).toMatch(/^250 /);
    const [job] = pending(r);
    const kept = crlfMessage(
      headers.filter((h) => !h.startsWith("Bcc:")),
      body,
    ).split("\r\n\r\n");
    expect(job!.raw).toBe(
      `${kept[0]}\r\nMessage-ID: <${job!.id}@mail.example.com>\r\nDate: Mon, 30 Nov 2026 09:00:00 +0000\r\n\r\n${kept.slice(1).join("\r\n\r\n")}`,
    );
    expect(job!.raw).not.toMatch(/hidden@example\.com/);
  });

  it("keeps the client's own Date (any capitalisation), and its Message-ID only as X-Original-Message-ID: the Message-ID is always the relay's", async () => {
    const r = await ingress();
    const c = await loggedIn(r);
    const headers = [...HEADERS, "Message-Id: <client-1@app.example.com>", "DATE: Tue, 01 Dec 2026 10:00:00 +0100"];
    expect(await transaction(c, crlfMessage(headers) + ".\r\n")).toMatch(/^250 /);
    const [job] = pending(r);
    const kept = [
      ...HEADERS,
      "X-Original-Message-ID: <client-1@app.example.com>",
      "DATE: Tue, 01 Dec 2026 10:00:00 +0100",
    ];
    expect(job!.raw).toBe(crlfMessage([...kept, `Message-ID: <${job!.id}@mail.example.com>`]));
  });

  it("nodemailer with STARTTLS pinned to the certificate sends through it (requireTLS, AUTH PLAIN)", async () => {
    const r = await ingress();
    const transport = nodemailer.createTransport({
      host: "127.0.0.1",
      port: r.port,
      secure: false,
      requireTLS: true,
      auth: { user: "app", pass: TOKEN_APP },
      tls: { ca: selfSignedCert().cert, servername: "localhost" },
    });
    try {
      const info = await transport.sendMail({
        from: "Example <noreply@example.com>",
        to: "user@example.net",
        bcc: "hidden@example.com",
        subject: "from nodemailer",
        text: "hi",
      });
      expect(info.response).toMatch(/^250 2\.0\.0 queued as [0-9a-f-]{36}$/);
      const [job] = pending(r);
      expect([...job!.envelope.to].sort()).toEqual(["hidden@example.com", "user@example.net"]);
      expect(job!.raw).not.toMatch(/^Bcc:/im);
      // a client that checks the certificate against another CA refuses it
      const other = nodemailer.createTransport({
        host: "127.0.0.1",
        port: r.port,
        secure: false,
        requireTLS: true,
        auth: { user: "app", pass: TOKEN_APP },
      });
      await expect(
        other.sendMail({ from: "noreply@example.com", to: "user@example.net", subject: "x", text: "x" }),
      ).rejects.toThrow(/self[- ]signed|certificate/i);
      other.close();
    } finally {
      transport.close();
    }
  });

  const swaks = spawnSync("swaks", ["--support"], { encoding: "utf8" });
  const swaksTls = swaks.status === 0 && /TLS supported/.test(swaks.stdout + swaks.stderr);
  it.skipIf(!swaksTls)("swaks: STARTTLS verified against the certificate, AUTH LOGIN, queued", async () => {
    const r = await ingress();
    const dir = tempDir("swaks-ca-");
    closeLater({ close: dir.cleanup });
    const ca = path.join(dir.dir, "ca.pem");
    writeFileSync(ca, selfSignedCert().cert);
    const args = [
      "--server",
      `127.0.0.1:${r.port}`,
      "--from",
      "noreply@example.com",
      "--to",
      "user@example.net",
      "--tls",
      "--tls-verify",
      "--tls-ca-path",
      ca,
      "--tls-sni",
      "localhost",
      "--auth",
      "LOGIN",
      "--auth-user",
      "app",
      "--auth-password",
      TOKEN_APP,
      "--header",
      "Subject: swaks",
      "--timeout",
      "10",
    ];
    const out = await new Promise<string>((resolve) => {
      const child = spawn("swaks", args);
      let s = "";
      child.stdout!.on("data", (d: Buffer) => (s += d));
      child.stderr!.on("data", (d: Buffer) => (s += d));
      child.on("close", () => resolve(s));
    });
    expect(out).toMatch(/<~ {2}250 2\.0\.0 queued as [0-9a-f-]{36}/);
    expect(pending(r)).toHaveLength(1);
  });
});

describe.skipIf(!haveOpenssl)("SMTP ingress: /send's rules", () => {
  it("MAIL FROM outside RELAY_ALLOWED_FROM is refused with 550 5.7.1 (and the null sender too)", async () => {
    const r = await ingress();
    const c = await loggedIn(r);
    expect(await c.cmd("MAIL FROM:<ceo@example.com>")).toMatch(
      /^550 5\.7\.1 MAIL FROM ceo@example\.com is not an allowed sender for this caller/,
    );
    expect(await c.cmd("MAIL FROM:<>")).toMatch(/^550 5\.7\.1 /);
    expect(await c.cmd("MAIL FROM:<NoReply@Example.com>")).toMatch(/^250 /); // case-insensitive, as for /send
  });

  it("a From: (or Sender:) header outside the allowlist, two From headers, or none, are refused; nothing is queued", async () => {
    const r = await ingress();
    const c = await loggedIn(r);
    const cases: [string[], RegExp][] = [
      [
        ["From: ceo@example.com", "To: user@example.net"],
        /^550 5\.7\.1 the From: header address ceo@example\.com is not an allowed sender/,
      ],
      [
        ["From: noreply@example.com, ceo@example.com", "To: user@example.net"],
        /^550 5\.7\.1 the From: header is refused: it must be exactly one mailbox/,
      ],
      [
        ["From: noreply@example.com", "From: ceo@example.com", "To: user@example.net"],
        /^554 5\.6\.0 message refused: it has 2 from headers/,
      ],
      [["To: user@example.net", "Subject: no from"], /^554 5\.6\.0 message refused: it has no From header/],
      [
        ["From: noreply@example.com", "Sender: ceo@example.com"],
        /^550 5\.7\.1 the Sender: header address ceo@example\.com/,
      ],
    ];
    for (const [headers, re] of cases) {
      expect(await transaction(c, crlfMessage(headers) + ".\r\n"), headers.join(" | ")).toMatch(re);
    }
    expect(pending(r)).toEqual([]);
  });

  it("more recipients than RELAY_MAX_RECIPIENTS is refused with 550 5.5.3; a repeated address does not count twice", async () => {
    const r = await ingress({ config: { maxRecipients: 2 } });
    const c = await loggedIn(r);
    expect(await c.cmd("MAIL FROM:<noreply@example.com>")).toMatch(/^250 /);
    expect(await c.cmd("RCPT TO:<a@example.net>")).toMatch(/^250 /);
    expect(await c.cmd("RCPT TO:<b@example.net>")).toMatch(/^250 /);
    expect(await c.cmd("RCPT TO:<B@example.net>")).toMatch(/^250 /);
    expect(await c.cmd("RCPT TO:<c@example.net>")).toMatch(/^550 5\.5\.3 more than 2 recipients/);
    expect(await c.cmd("RCPT TO:<-oops@example.net>")).toMatch(/^5\d\d /);
  });

  it("the size limit is RELAY_MAX_MESSAGE_BYTES, advertised in EHLO; a larger SIZE= or DATA is refused with 552 and nothing is queued", async () => {
    const r = await ingress({ config: { maxMessageBytes: 4096 } });
    const { client } = await RawSmtp.connect(r.port);
    closeLater(client);
    expect(await client.starttls(selfSignedCert().cert)).toMatch(/^250[ -]SIZE 4096$/m);
    expect(await client.cmd(`AUTH PLAIN ${Buffer.from(`\0app\0${TOKEN_APP}`).toString("base64")}`)).toMatch(/^235 /);
    expect(await client.cmd("MAIL FROM:<noreply@example.com> SIZE=5000")).toMatch(/^552 /);
    const big = crlfMessage(
      HEADERS,
      Array.from({ length: 80 }, () => "x".repeat(70)),
    );
    expect(await transaction(client, big + ".\r\n")).toMatch(
      /^552 5\.3\.4 the message is \d+ bytes; the limit is 4096/,
    );
    expect(pending(r)).toEqual([]);
    // the session carries on
    expect(await transaction(client, crlfMessage(HEADERS) + ".\r\n")).toMatch(/^250 /);
  });

  it("header fields receivers read as trace or authentication results are refused with 550 5.7.1", async () => {
    const r = await ingress();
    const c = await loggedIn(r);
    for (const h of [
      "DKIM-Signature: v=1; d=example.com; s=x; b=abc",
      "Authentication-Results: mx.example.net; dkim=pass",
      "Return-Path: <x@example.com>",
      "ARC-Seal: i=1; cv=none",
      "Received-SPF: pass",
      "Resent-From: noreply@example.com",
    ]) {
      expect(await transaction(c, crlfMessage([...HEADERS, h]) + ".\r\n"), h).toMatch(
        /^550 5\.7\.1 the [a-z-]+ header is not allowed/,
      );
    }
    expect(pending(r)).toEqual([]);
  });

  it("a message that is not UTF-8, has a NUL, a line over 998 characters or a broken header is refused with 554 5.6.0", async () => {
    const r = await ingress();
    const c = await loggedIn(r);
    const cases: [string | Buffer, RegExp][] = [
      [
        Buffer.from(crlfMessage(HEADERS, ["caf\xe9 latin-1"]) + ".\r\n", "latin1"),
        /^554 5\.6\.0 message refused: it is neither 7-bit ASCII nor UTF-8/,
      ],
      [crlfMessage(HEADERS, ["a\0b"]), /^554 5\.6\.0 message refused: it contains a NUL/],
      [crlfMessage(HEADERS, ["y".repeat(999)]), /^554 5\.6\.0 message refused: a line is longer than 998/],
      [
        crlfMessage([" starts folded", ...HEADERS]),
        /^554 5\.6\.0 message refused: the header starts with a continuation line/,
      ],
      [crlfMessage([...HEADERS, "not a header line"]), /^554 5\.6\.0 message refused: header line "not a header line"/],
    ];
    for (const [data, re] of cases)
      expect(await transaction(c, typeof data === "string" ? `${data}.\r\n` : data)).toMatch(re);
    expect(pending(r)).toEqual([]);
  });

  it("over RELAY_RATE_LIMIT_PER_MIN messages a minute, a caller gets 451 4.7.1 at MAIL FROM; another caller is not affected", async () => {
    let now = 1_000_000;
    const r = await ingress({ config: { rateLimitPerMin: 2 }, now: () => now });
    const c = await loggedIn(r);
    for (let i = 0; i < 2; i++) expect(await transaction(c, crlfMessage(HEADERS) + ".\r\n")).toMatch(/^250 /);
    expect(await c.cmd("MAIL FROM:<noreply@example.com>")).toMatch(
      /^451 4\.7\.1 more than 2 messages per minute for this caller; retry in 60 s/,
    );
    const billing = await loggedIn(r, "billing", TOKEN_BILLING);
    expect(await transaction(billing, crlfMessage(HEADERS) + ".\r\n")).toMatch(/^250 /);
    now += 60_000;
    expect(await transaction(c, crlfMessage(HEADERS) + ".\r\n")).toMatch(/^250 /);
  });

  it("a queue that cannot write answers 451 4.3.0 with a generic text (a fake queue that fails); a full disk 452 4.3.1", async () => {
    let error = new RelayError("queue_unavailable", "write x: EIO secret-path-detail");
    const r = await ingress({ queue: { accept: async () => Promise.reject(error) } });
    const c = await loggedIn(r);
    const reply = await transaction(c, crlfMessage(HEADERS) + ".\r\n");
    expect(reply).toBe("451 4.3.0 the queue is unavailable; retry later");
    error = new RelayError("disk_nearly_full", "free space 1 < 2");
    expect(await transaction(c, crlfMessage(HEADERS) + ".\r\n")).toBe(
      "452 4.3.1 the queue disk is nearly full; retry later",
    );
    expect(r.lines.some((l) => l.includes("secret-path-detail"))).toBe(true); // the detail goes to the log only
  });

  it("Idempotency-Key: the same key and content return the first id and queue nothing; other content with that key is refused; the header never reaches Postfix", async () => {
    const r = await ingress();
    const c = await loggedIn(r);
    const msg = crlfMessage([...HEADERS, "Message-ID: <k1@app.example.com>", "Idempotency-Key: order-42"]) + ".\r\n";
    const first = await transaction(c, msg);
    const id = /queued as (\S+)/.exec(first)?.[1];
    expect(await transaction(c, msg)).toBe(`250 2.0.0 queued as ${id} (idempotent replay)`);
    expect(pending(r)).toHaveLength(1);
    expect(pending(r)[0]!.raw).not.toMatch(/Idempotency-Key/i);
    const other = crlfMessage([...HEADERS, "Message-ID: <k2@app.example.com>", "Idempotency-Key: order-42"]) + ".\r\n";
    expect(await transaction(c, other)).toMatch(
      /^554 5\.6\.0 this Idempotency-Key was used within 24 h with a different body/,
    );
    // scoped per caller, as over HTTP
    const billing = await loggedIn(r, "billing", TOKEN_BILLING);
    expect(await transaction(billing, msg)).not.toContain(id!);
    expect(await transaction(c, crlfMessage([...HEADERS, "Idempotency-Key: has space"]) + ".\r\n")).toMatch(
      /^554 5\.6\.0 Idempotency-Key must be/,
    );
    expect(pending(r)).toHaveLength(2);
  });
});

describe.skipIf(!haveOpenssl)("SMTP ingress: SMTP smuggling (CVE-2023-51766 class) is refused", () => {
  // Each is sent as raw bytes, then the real terminator. The smuggled part is a whole second transaction.
  const SMUGGLED =
    "MAIL FROM:<noreply@example.com>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nFrom: noreply@example.com\r\nSubject: smuggled\r\n\r\nevil\r\n";
  const variants: [string, string][] = [
    ["<LF>.<LF>", `hello\n.\n${SMUGGLED}`],
    ["<CR>.<CR>", `hello\r.\r${SMUGGLED}`],
    ["<CR><LF>.<LF>", `hello\r\n.\n${SMUGGLED}`],
    ["<LF>.<CR><LF>", `hello\n.\r\n${SMUGGLED}`],
    ["<CR>.<CR><LF>", `hello\r.\r\n${SMUGGLED}`],
    ["a bare <LF> in the body", "line one\nline two\r\n"],
    ["a bare <CR> in the body", "line one\rline two\r\n"],
    ["a bare <LF> in the header", "X-Note: a\nb\r\n"],
  ];
  for (const [name, payload] of variants) {
    it(`${name}: 554 5.5.2, nothing queued, no smuggled transaction`, async () => {
      const r = await ingress();
      const c = await loggedIn(r);
      const headers = name.includes("header") ? ["From: noreply@example.com", "To: user@example.net"] : HEADERS;
      const data = name.includes("header")
        ? `${headers.join("\r\n")}\r\n${payload}\r\nbody\r\n`
        : `${headers.join("\r\n")}\r\n\r\n${payload}`;
      const reply = await transaction(c, `${data}.\r\n`);
      expect(reply).toMatch(/^554 5\.5\.2 message refused: bare <(LF|CR)> in DATA/);
      expect(pending(r)).toEqual([]);
      // the connection is in a clean state: no pending transaction, no queued second message
      expect(await c.cmd("RSET")).toMatch(/^250 /);
      expect(await c.cmd("NOOP")).toMatch(/^250 /);
      expect(pending(r)).toEqual([]);
    });
  }

  it("the terminator split over TCP segments still ends DATA only at <CR><LF>.<CR><LF> (bytes written one at a time)", async () => {
    const r = await ingress();
    const c = await loggedIn(r);
    expect(await c.cmd("MAIL FROM:<noreply@example.com>")).toMatch(/^250 /);
    expect(await c.cmd("RCPT TO:<user@example.net>")).toMatch(/^250 /);
    expect(await c.cmd("DATA")).toMatch(/^354 /);
    const bytes = Buffer.from(crlfMessage(HEADERS) + ".\r\n");
    for (const b of bytes) {
      c.send(Buffer.from([b]));
      await new Promise((res) => setImmediate(res));
    }
    expect(await c.reply()).toMatch(/^250 2\.0\.0 queued as /);
    const [job] = pending(r);
    expect(job!.raw.startsWith(`${HEADERS.join("\r\n")}\r\nMessage-ID: <${job!.id}@mail.example.com>\r\nDate: `)).toBe(
      true,
    );
    expect(job!.raw).toMatch(/\r\n\r\nhello\r\n$/);
  });
});

describe("SMTP ingress: pure parts", () => {
  it("CallerRateWindow counts per caller in fixed 60 s windows", () => {
    const w = new CallerRateWindow(2);
    expect(w.take("a", 0)).toEqual({ ok: true });
    expect(w.take("a", 1)).toEqual({ ok: true });
    expect(w.take("a", 30_000)).toEqual({ ok: false, retryInMs: 30_000 });
    expect(w.take("b", 30_000)).toEqual({ ok: true });
    expect(w.take("a", 60_000)).toEqual({ ok: true });
  });

  it("every relay error maps to a 4xx (temporary) or 5xx (permanent) SMTP reply; server-side failures are 4xx", () => {
    expect(smtpRefusalFor(new RelayError("queue_unavailable", "x")).responseCode).toBe(451);
    expect(smtpRefusalFor(new RelayError("rate_limited", "x")).responseCode).toBe(451);
    expect(smtpRefusalFor(new RelayError("from_not_allowed", "x")).responseCode).toBe(550);
    expect(smtpRefusalFor(new RelayError("message_too_large", "x")).responseCode).toBe(552);
    expect(smtpRefusalFor(new RelayError("too_many_recipients", "x")).responseCode).toBe(550);
    expect(smtpRefusalFor(new RelayError("internal", "stack detail")).message).toBe("4.3.0 internal error");
  });
});

describe.skipIf(!haveOpenssl)("SMTP ingress: configuration", () => {
  const base = { SMTP_RELAY_TOKEN: `app=${TOKEN_APP}`, RELAY_ALLOWED_FROM: "noreply@example.com" };
  it("is off unless RELAY_SMTP_LISTEN is set", () => {
    expect(loadConfig(base).smtpIngress).toBeUndefined();
  });
  it("a listener without its key and certificate refuses to start, naming both variables", () => {
    try {
      loadConfig({ ...base, RELAY_SMTP_LISTEN: "127.0.0.1:2587" });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).variables).toEqual(["RELAY_SMTP_TLS_KEY", "RELAY_SMTP_TLS_CERT"]);
    }
    expect(() => loadConfig({ ...base, RELAY_SMTP_LISTEN: "localhost:2587" })).toThrow(
      /RELAY_SMTP_LISTEN: must be IP:PORT/,
    );
  });
  it("reads the listener settings; the hostname defaults to the Message-ID domain", () => {
    const c = loadConfig({
      ...base,
      RELAY_SMTP_LISTEN: "127.0.0.1:2587",
      RELAY_SMTP_TLS_KEY: "/k.pem",
      RELAY_SMTP_TLS_CERT: "/c.pem",
    });
    expect(c.smtpIngress).toEqual({
      listen: { host: "127.0.0.1", port: 2587 },
      hostname: "example.com",
      tlsKeyFile: "/k.pem",
      tlsCertFile: "/c.pem",
    });
  });
  it("an unreadable or mismatched key/certificate pair is a ConfigError (exit 78), never a start with smtp-server's built-in key", () => {
    const dir = tempDir("smtp-tls-");
    closeLater({ close: dir.cleanup });
    const key = path.join(dir.dir, "k.pem");
    const cert = path.join(dir.dir, "c.pem");
    writeFileSync(cert, selfSignedCert().cert);
    expect(() => readSmtpTls({ tlsKeyFile: key, tlsCertFile: cert })).toThrow(
      /RELAY_SMTP_TLS_KEY: cannot read .*ENOENT/,
    );
    writeFileSync(
      key,
      execFileSync("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]).toString(),
    );
    expect(() => readSmtpTls({ tlsKeyFile: key, tlsCertFile: cert })).toThrow(ConfigError);
    writeFileSync(key, selfSignedCert().key);
    expect(readSmtpTls({ tlsKeyFile: key, tlsCertFile: cert }).cert).toBe(selfSignedCert().cert);
  });
});
