// The hand-off's own SMTP client (relay/handoff/smtp-client.ts) through SmtpHandoff, against fakes on loopback: a raw
// `net` fake that records every TCP read it gets (so pipelining is visible), and smtp-server for the body round trip.
// The fake speaks BDAT (RFC 3030) when it offers CHUNKING, as Postfix does; smtp-server has no BDAT, so it keeps the
// DATA path covered.
import * as net from "node:net";
import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";
import { afterEach, describe, expect, it } from "vitest";
import { SmtpHandoff } from "../../relay/handoff/smtp";
import { chunkBlock, dataBlock } from "../../relay/handoff/smtp-client";
import { HandoffError } from "../../relay/handoff/types";

type Answer = string | "close" | "silent";
interface FakeOptions {
  pipelining?: boolean;
  /** Offer CHUNKING and take `BDAT <n> [LAST]` (default: not offered, so DATA is used). */
  chunking?: boolean;
  /** Reply to a command (upper-cased verb line), or "close"/"silent"; default 250 ok (354 to DATA). */
  answer?: (cmd: string) => Answer | undefined;
  /** Reply after the body; default a Postfix-like 250 with a queue id. */
  afterBody?: (body: string, n: number) => Answer;
  /** Write every reply one byte at a time (replies split across TCP reads). */
  dribble?: boolean;
}

/**
 * A raw SMTP fake: records each TCP read per connection, the commands and the bodies (DATA's still dot-stuffed,
 * BDAT's chunks joined as they came).
 */
function rawFake(opts: FakeOptions = {}) {
  const rec = { connections: 0, reads: [] as string[][], commands: [] as string[], bodies: [] as string[] };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    const reads: string[] = [];
    rec.reads.push(reads);
    rec.connections++;
    const send = (text: string): void => {
      if (!opts.dribble) return void socket.write(text);
      let i = 0;
      const next = (): void => {
        if (i >= text.length || socket.destroyed) return;
        socket.write(text[i++]!);
        setTimeout(next, 1);
      };
      next();
    };
    const act = (a: Answer, out: string[]): boolean => {
      if (a === "close") {
        if (out.length) socket.write(out.join(""));
        socket.destroy();
        return false;
      }
      if (a !== "silent") out.push(a);
      return true;
    };
    send("220 fake ESMTP\r\n");
    let buf = "";
    let inData = false;
    /** Bytes of a BDAT chunk still to read, and whether it was the LAST one; the chunks so far. */
    let chunkLeft = -1;
    let lastChunk = false;
    let chunks = "";
    socket.on("data", (c: Buffer) => {
      const s = c.toString("latin1");
      reads.push(s);
      buf += s;
      const out: string[] = []; // replies to one read leave in one write, as Postfix answers a pipelined group
      for (;;) {
        if (chunkLeft >= 0) {
          if (buf.length < chunkLeft) break;
          chunks += buf.slice(0, chunkLeft);
          buf = buf.slice(chunkLeft);
          chunkLeft = -1;
          if (!lastChunk) {
            out.push("250 2.0.0 chunk ok\r\n");
            continue;
          }
          rec.bodies.push(chunks);
          chunks = "";
          const custom = opts.answer?.("BDAT-END");
          const a =
            custom ??
            opts.afterBody?.(rec.bodies.at(-1)!, rec.bodies.length) ??
            `250 2.0.0 Ok: queued as F${rec.bodies.length}\r\n`;
          if (!act(a, out)) return;
          continue;
        }
        if (inData) {
          const end = buf.startsWith(".\r\n") ? 0 : buf.indexOf("\r\n.\r\n");
          if (end < 0) break;
          const body = end === 0 ? "" : buf.slice(0, end + 2);
          buf = buf.slice(end === 0 ? 3 : end + 5);
          inData = false;
          rec.bodies.push(body);
          const a = opts.afterBody?.(body, rec.bodies.length) ?? `250 2.0.0 Ok: queued as F${rec.bodies.length}\r\n`;
          if (!act(a, out)) return;
          continue;
        }
        const nl = buf.indexOf("\r\n");
        if (nl < 0) break;
        const cmd = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        rec.commands.push(cmd);
        const verb = cmd.toUpperCase();
        const bdat = opts.chunking ? /^BDAT (\d+)( LAST)?$/.exec(verb) : null;
        if (bdat) {
          // the chunk is read whatever the answer; the answer comes after it (as "BDAT-END" to `answer`)
          chunkLeft = Number(bdat[1]);
          lastChunk = bdat[2] !== undefined;
          continue;
        }
        const custom = opts.answer?.(verb);
        if (custom !== undefined) {
          if (!act(custom, out)) return;
          if (verb === "DATA" && custom.startsWith("354")) inData = true;
          continue;
        }
        if (verb.startsWith("EHLO"))
          out.push(
            `250-fake\r\n${opts.pipelining === false ? "" : "250-PIPELINING\r\n"}` +
              `${opts.chunking ? "250-CHUNKING\r\n" : ""}250 8BITMIME\r\n`,
          );
        else if (verb === "DATA") {
          inData = true;
          out.push("354 End data with <CR><LF>.<CR><LF>\r\n");
        } else if (verb === "QUIT") {
          socket.end("221 bye\r\n");
          return;
        } else out.push("250 2.1.0 Ok\r\n");
      }
      if (out.length) send(out.join(""));
    });
  });
  return {
    rec,
    listen: () =>
      new Promise<number>((r) => server.listen(0, "127.0.0.1", () => r((server.address() as AddressInfo).port))),
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

const body = "From: a@example.com\r\nTo: b@example.net\r\nSubject: t\r\n\r\nhello\r\n";
const msg = (to: string[] = ["b@example.net", "c@example.org"], raw: string | Buffer = body) => ({
  id: "m",
  from: "a@example.com",
  to,
  raw,
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(opts: FakeOptions = {}, timeoutMs = 5000) {
  const fake = rawFake(opts);
  const port = await fake.listen();
  const h = new SmtpHandoff({ host: "127.0.0.1", port, timeoutMs, maxConnections: 1 });
  cleanups.push(
    () => fake.close(),
    () => h.close(),
  );
  return { fake, h };
}

async function failure(p: Promise<unknown>): Promise<HandoffError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(HandoffError);
  return e as HandoffError;
}

describe("pipelining (raw net fake recording each TCP read)", () => {
  it("with PIPELINING offered, MAIL + every RCPT + DATA arrive in one read, and the body with its final dot in one more", async () => {
    const { fake, h } = await setup({ pipelining: true });
    expect(await h.send(msg(["b@example.net", "c@example.org", "d@example.com"]))).toEqual({ queueId: "F1" });
    const reads = fake.rec.reads[0]!;
    // greeting-time EHLO, then the envelope group, then the body
    expect(reads[0]).toBe("EHLO localhost\r\n");
    expect(reads[1]).toBe(
      "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.org>\r\nRCPT TO:<d@example.com>\r\nDATA\r\n",
    );
    expect(reads[2]).toBe(`${body}.\r\n`);
    expect(reads).toHaveLength(3);
  });

  it("without PIPELINING, each command waits for its reply: one command per read", async () => {
    const { fake, h } = await setup({ pipelining: false });
    expect(await h.send(msg())).toEqual({ queueId: "F1" });
    const reads = fake.rec.reads[0]!;
    expect(reads.slice(0, 5)).toEqual([
      "EHLO localhost\r\n",
      "MAIL FROM:<a@example.com>\r\n",
      "RCPT TO:<b@example.net>\r\n",
      "RCPT TO:<c@example.org>\r\n",
      "DATA\r\n",
    ]);
    expect(reads[5]).toBe(`${body}.\r\n`);
  });

  it("replies split byte by byte across TCP reads, and multi-line replies, are read whole (fake dribbling replies)", async () => {
    const { fake, h } = await setup({
      dribble: true,
      afterBody: (_b, n) => `250-2.0.0 Ok\r\n250-second line\r\n250 2.0.0 Ok: queued as M${n}\r\n`,
    });
    expect(await h.send(msg())).toEqual({ queueId: "M1" });
    expect(await h.send(msg())).toEqual({ queueId: "M2" });
    expect(fake.rec.connections).toBe(1);
  });

  it("a multi-line EHLO offering PIPELINING is parsed keyword by keyword, whatever the case (fake)", async () => {
    const { fake, h } = await setup({
      answer: (c) =>
        c.startsWith("EHLO")
          ? "250-fake.example\r\n250-SIZE 10240000\r\n250-pipelining\r\n250 8BITMIME\r\n"
          : undefined,
    });
    await h.send(msg());
    expect(fake.rec.reads[0]![1]).toMatch(/^MAIL FROM:<a@example\.com>\r\nRCPT .*\r\nRCPT .*\r\nDATA\r\n$/);
  });
});

describe("BDAT: with PIPELINING and CHUNKING offered (as Postfix does), one write per message (raw net fake)", () => {
  it("MAIL + every RCPT + BDAT <bytes> LAST + the body arrive in one read, and the reply to BDAT is the final one", async () => {
    const { fake, h } = await setup({ chunking: true });
    expect(await h.send(msg(["b@example.net", "c@example.org", "d@example.com"]))).toEqual({ queueId: "F1" });
    expect(await h.send(msg(["b@example.net"]))).toEqual({ queueId: "F2" });
    const reads = fake.rec.reads[0]!;
    expect(reads[0]).toBe("EHLO localhost\r\n");
    expect(reads[1]).toBe(
      "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.org>\r\nRCPT TO:<d@example.com>\r\n" +
        `BDAT ${body.length} LAST\r\n${body}`,
    );
    expect(reads[2]).toBe(
      `MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nBDAT ${body.length} LAST\r\n${body}`,
    );
    expect(reads).toHaveLength(3);
    expect(fake.rec.commands.filter((c) => c === "DATA")).toEqual([]);
  });

  it("CHUNKING without PIPELINING: DATA, one command per read (BDAT is only worth it in the one write)", async () => {
    const { fake, h } = await setup({ chunking: true, pipelining: false });
    expect(await h.send(msg())).toEqual({ queueId: "F1" });
    expect(fake.rec.reads[0]!.slice(1, 5)).toEqual([
      "MAIL FROM:<a@example.com>\r\n",
      "RCPT TO:<b@example.net>\r\n",
      "RCPT TO:<c@example.org>\r\n",
      "DATA\r\n",
    ]);
  });

  it("a non-ASCII body and address: BDAT counts bytes, not characters, and MAIL says SMTPUTF8", async () => {
    const { fake, h } = await setup({
      chunking: true,
      answer: (c) =>
        c.startsWith("EHLO") ? "250-fake\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n" : undefined,
    });
    const utf8Body = "Subject: caf\u00e9 \u2603\r\n\r\n8-bit body \u00e9\u{1F600}\r\n";
    await h.send({ ...msg(["j\u00fcrgen@example.net"]), raw: utf8Body });
    const bytes = Buffer.from(utf8Body, "utf8");
    expect(fake.rec.commands).toContain(`BDAT ${bytes.length} LAST`);
    expect(fake.rec.commands).toContain("MAIL FROM:<a@example.com> SMTPUTF8");
    expect(Buffer.from(fake.rec.bodies[0]!, "latin1")).toEqual(bytes);
  });

  const tricky = [".", "..", "...", ".x", "x.", "", "plain", "From x", "BDAT 5 LAST", "QUIT"];
  const bodies: string[] = [];
  for (const a of tricky) for (const b of tricky) bodies.push(`${a}\r\n${b}\r\n`);
  it(`${bodies.length} bodies with ".", "..", command-like lines arrive byte-exact: BDAT doubles no dot and sends no final dot`, async () => {
    const { fake, h } = await setup({ chunking: true });
    for (const b of bodies) await h.send(msg(["b@example.net"], Buffer.from(b, "latin1")));
    expect(fake.rec.bodies).toEqual(bodies);
    expect(fake.rec.connections).toBe(1);
  });

  it("the chunk makes bare LF CRLF and ends in CRLF, as DATA's wire form does, without its dots", () => {
    expect(chunkBlock(".a\r\n..b\r\nc").toString()).toBe(".a\r\n..b\r\nc\r\n");
    expect(chunkBlock("a\n.b\nc\r\n").toString()).toBe("a\r\n.b\r\nc\r\n");
    expect(chunkBlock("\n\n").toString()).toBe("\r\n\r\n");
    expect(chunkBlock("plain\r\n").toString()).toBe("plain\r\n");
    expect(chunkBlock("").toString()).toBe("");
    // every body: the chunk is DATA's wire form with the dot-stuffing and the final dot taken off
    for (const b of [...bodies, "a\nb", "\n.\n", ".\n..\n"]) {
      const unstuffed = dataBlock(b)
        .toString("latin1")
        .slice(0, -3)
        .replace(/(^|\r\n)\./g, "$1");
      expect(chunkBlock(b).toString("latin1"), JSON.stringify(b)).toBe(unstuffed);
    }
  });

  it("a 4xx to MAIL is temporary and the connection is not reused; the next message goes on a new one", async () => {
    let refuse = true;
    const { fake, h } = await setup({
      chunking: true,
      answer: (c) => (c.startsWith("MAIL") && refuse ? "451 4.3.0 Error: queue file write error\r\n" : undefined),
    });
    const e = await failure(h.send(msg()));
    expect([e.permanent, e.message]).toEqual([false, "SMTP 451 4.3.0 Error: queue file write error"]);
    refuse = false;
    expect(await h.send(msg())).toEqual({ queueId: "F2" });
    expect(fake.rec.connections).toBe(2);
  });

  for (const [codes, permanent] of [
    [["550", "550"], true],
    [["450", "550"], false],
    [["550", "450"], false],
  ] as const) {
    it(`every RCPT refused (${codes.join(", ")}), BDAT answered 554: ${permanent ? "permanent" : "temporary"}, with the RCPT's reply`, async () => {
      let i = 0;
      const { fake, h } = await setup({
        chunking: true,
        answer: (c) =>
          c.startsWith("RCPT")
            ? `${codes[i++ % 2]} x.x.x refused\r\n`
            : c === "BDAT-END"
              ? "554 5.5.1 Error: no valid recipients\r\n"
              : undefined,
      });
      const e = await failure(h.send(msg()));
      expect(e.permanent).toBe(permanent);
      expect(e.message).toMatch(/^SMTP [45]50 x\.x\.x refused$/);
      await h.send(msg()).catch(() => undefined);
      expect(fake.rec.connections).toBe(2);
    });
  }

  it("a server that never answers the BDAT: the message fails after timeoutMs, temporary", async () => {
    const { h } = await setup({ chunking: true, answer: (c) => (c === "BDAT-END" ? "silent" : undefined) }, 300);
    const t0 = Date.now();
    const e = await failure(h.send(msg()));
    expect([e.permanent, e.message]).toEqual([false, "no SMTP reply within 300 ms: timed out"]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  });
});

describe("envelope parameters, as nodemailer sent them (raw net fake)", () => {
  it("SMTPUTF8 is added to MAIL only when an address is not ASCII and the server offers it; BODY= never", async () => {
    const offers = (utf8: boolean) => (c: string) =>
      c.startsWith("EHLO")
        ? `250-fake\r\n250-PIPELINING\r\n${utf8 ? "250-SMTPUTF8\r\n" : ""}250 8BITMIME\r\n`
        : undefined;
    const { fake, h } = await setup({ answer: offers(true) });
    await h.send(msg(["b@example.net"], "Subject: caf\u00e9\r\n\r\n8-bit body \u00e9\r\n"));
    await h.send({ ...msg(["j\u00fcrgen@example.net"]), from: "a@example.com" });
    const { fake: plain, h: h2 } = await setup({ answer: offers(false) });
    await h2.send(msg(["j\u00fcrgen@example.net"]));
    const mails = (f: typeof fake) => f.rec.commands.filter((c) => c.startsWith("MAIL"));
    expect(mails(fake)).toEqual(["MAIL FROM:<a@example.com>", "MAIL FROM:<a@example.com> SMTPUTF8"]);
    expect(mails(plain)).toEqual(["MAIL FROM:<a@example.com>"]);
  });
});

describe("failures: permanence, no body after refusals, the connection discarded (raw net fake)", () => {
  it("a 4xx to MAIL is temporary, keeps the SMTP <reply> text, and the connection is not reused", async () => {
    let refuse = true;
    const { fake, h } = await setup({
      answer: (c) => (c.startsWith("MAIL") && refuse ? "451 4.3.0 Error: queue file write error\r\n" : undefined),
    });
    const e = await failure(h.send(msg()));
    expect(e.permanent).toBe(false);
    expect(e.message).toBe("SMTP 451 4.3.0 Error: queue file write error");
    expect(fake.rec.bodies).toHaveLength(0);
    refuse = false;
    expect(await h.send(msg())).toEqual({ queueId: "F1" });
    expect(fake.rec.connections).toBe(2);
  });

  for (const pipelining of [true, false]) {
    it(`every RCPT refused with 5xx: permanent, no body is sent (PIPELINING ${pipelining ? "on" : "off"})`, async () => {
      const { fake, h } = await setup({
        pipelining,
        answer: (c) =>
          c.startsWith("RCPT")
            ? "550 5.1.1 <x>: Recipient address rejected: User unknown\r\n"
            : c === "DATA"
              ? "554 5.5.1 Error: no valid recipients\r\n"
              : undefined,
      });
      const e = await failure(h.send(msg()));
      expect(e.permanent).toBe(true);
      expect(e.message).toMatch(/^SMTP 550 5\.1\.1/);
      expect(fake.rec.bodies).toHaveLength(0);
      expect(fake.rec.commands.filter((c) => c === "DATA")).toHaveLength(pipelining ? 1 : 0);
      await h.send(msg()).catch(() => undefined);
      expect(fake.rec.connections).toBe(2);
    });
  }

  it("every RCPT refused but one with 4xx: temporary, whichever order the refusals come in (fake)", async () => {
    for (const order of [
      ["450", "550"],
      ["550", "450"],
    ]) {
      let i = 0;
      const { h } = await setup({
        answer: (c) =>
          c.startsWith("RCPT")
            ? `${order[i++ % 2]} x.x.x refused\r\n`
            : c === "DATA"
              ? "554 5.5.1 Error: no valid recipients\r\n"
              : undefined,
      });
      const e = await failure(h.send(msg()));
      expect(e.permanent, order.join(",")).toBe(false);
    }
  });

  // Over DATA and over BDAT (CHUNKING offered, as Postfix does) alike.
  for (const chunking of [false, true]) {
    const path = chunking ? "BDAT" : "DATA";
    it(`some recipients refused: the body is sent to the rest and the refusals are counted, not retried (${path}, fake)`, async () => {
      const { fake, h } = await setup({
        chunking,
        answer: (c) => (c === "RCPT TO:<C@EXAMPLE.ORG>" ? "550 5.1.1 User unknown\r\n" : undefined),
      });
      expect(await h.send(msg())).toEqual({ queueId: "F1", rejectedRecipients: 1 });
      expect(fake.rec.bodies).toEqual([body]);
    });

    it(`a 5xx after the body is permanent, a 4xx temporary (milter tempfail), and either discards the connection (${path}, fake)`, async () => {
      const { fake, h } = await setup({
        chunking,
        afterBody: (_b, n) =>
          n === 1 ? "554 5.7.1 milter says no\r\n" : n === 2 ? "451 4.7.1 try later\r\n" : "250 ok\r\n",
      });
      const e1 = await failure(h.send(msg()));
      expect([e1.permanent, e1.message]).toEqual([true, "SMTP 554 5.7.1 milter says no"]);
      const e2 = await failure(h.send(msg()));
      expect([e2.permanent, e2.message]).toEqual([false, "SMTP 451 4.7.1 try later"]);
      expect(fake.rec.connections).toBe(2);
    });
  }

  it("a connection closed in the middle of the body fails the message at once, temporary (fake)", async () => {
    const big = `${body}${"x".repeat(70)}\r\n`.repeat(20_000); // ~1.5 MB: the fake hangs up before the end
    const { fake, h } = await setup({ answer: (c) => (c === "DATA" ? "354 go\r\n" : undefined) });
    const t0 = Date.now();
    const p = h.send(msg(undefined, big));
    // The fake sees the first part of the body and drops the session.
    for (let i = 0; i < 200 && (fake.rec.reads[0]?.length ?? 0) < 3; i++) await new Promise((r) => setTimeout(r, 5));
    await fake.close();
    const e = await failure(p);
    expect(e.permanent).toBe(false);
    expect(Date.now() - t0).toBeLessThan(4000);
  });

  it("an idle connection the server ends with 421 leaves the pool; the next message opens a new one (fake)", async () => {
    let sockets = 0;
    const { fake, h } = await setup({
      afterBody: (_b, n) => {
        sockets = n;
        return n === 1 ? "250 2.0.0 Ok: queued as I1\r\n421 4.4.2 fake Error: timeout exceeded\r\n" : "250 ok\r\n";
      },
    });
    expect(await h.send(msg())).toEqual({ queueId: "I1" });
    await new Promise((r) => setTimeout(r, 50));
    expect(await h.send(msg())).toEqual({});
    expect([sockets, fake.rec.connections]).toEqual([2, 2]);
  });

  it("a server that never answers MAIL: the message fails after timeoutMs, temporary, and the connection is dropped (fake)", async () => {
    let silent = true;
    const { fake, h } = await setup({ answer: (c) => (c.startsWith("MAIL") && silent ? "silent" : undefined) }, 300);
    const t0 = Date.now();
    const e = await failure(h.send(msg()));
    expect(e.permanent).toBe(false);
    expect(e.message).toMatch(/timed out/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    silent = false;
    expect(await h.send(msg())).toEqual({ queueId: "F1" });
    expect(fake.rec.connections).toBe(2);
  });
});

describe("envelope injection guard (raw net fake)", () => {
  const bad = ["\r", "\n", "\0", "<", ">", "\r\n"];
  const variants: { from: string; to: string[] }[] = [];
  for (const ch of bad) {
    variants.push({ from: `a${ch}@example.com`, to: ["b@example.net"] });
    variants.push({ from: "a@example.com", to: [`b@example.net${ch}`] });
    variants.push({ from: "a@example.com", to: ["b@example.net", `${ch}c@example.org`] });
  }
  variants.push({ from: "a@example.com>\r\nRCPT TO:<evil@example.org", to: ["b@example.net"] });
  variants.push({ from: "a@example.com", to: ["b@example.net> NOTIFY=NEVER"] });

  it(`refuses ${variants.length} addresses with CR, LF, NUL, < or > as permanent, before writing anything, on send and trySend`, async () => {
    const { fake, h } = await setup();
    await h.send(msg()); // an open, idle connection that would carry an injected command
    const before = fake.rec.reads.flat().join("");
    for (const v of variants) {
      for (const call of ["send", "trySend"] as const) {
        const m = { id: "x", from: v.from, to: v.to, raw: body };
        const p = call === "send" ? h.send(m) : h.trySend(m);
        const e = await failure(p as Promise<unknown>);
        expect(e.permanent, JSON.stringify(v)).toBe(true);
        expect(e.message).toMatch(/CR, LF, NUL/);
      }
    }
    expect(fake.rec.reads.flat().join("")).toBe(before);
    expect(await h.send(msg())).toEqual({ queueId: "F2" }); // the connection was not spoiled
    expect(fake.rec.connections).toBe(1);
  });
});

describe("dot-stuffing and line endings round-trip byte-exact (smtp-server as the fake receiver)", () => {
  const lines = [".", "..", "...", ".x", "..x", "x.", " .", "", "plain"];
  const bodies: string[] = [];
  // Every ordered pair of tricky lines, first and last in the body too.
  for (const a of lines) for (const b of lines) bodies.push(`${a}\r\n${b}\r\n`);
  bodies.push(".\r\n", "..\r\n", "Subject: x\r\n\r\n.\r\n.\r\n..\r\n");

  it(`${bodies.length} bodies with lines starting with ".", "..", a lone "." arrive exactly as sent`, async () => {
    const received: string[] = [];
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS", "AUTH"],
      logger: false,
      onData(stream, _s, cb) {
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => {
          received.push(Buffer.concat(chunks).toString("latin1"));
          cb(null, "2.0.0 Ok: queued as R1");
        });
      },
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const h = new SmtpHandoff({
      host: "127.0.0.1",
      port: (server.server.address() as AddressInfo).port,
      timeoutMs: 5000,
      maxConnections: 1,
    });
    cleanups.push(
      () => new Promise<void>((r) => server.close(() => r())),
      () => h.close(),
    );
    for (const b of bodies) await h.send(msg(["b@example.net"], Buffer.from(b, "latin1")));
    expect(received).toEqual(bodies);
  });

  it("the wire form doubles a leading dot, makes bare LF CRLF, ends in CRLF, then the final dot", () => {
    expect(dataBlock(".a\r\n..b\r\nc").toString()).toBe("..a\r\n...b\r\nc\r\n.\r\n");
    expect(dataBlock("a\n.b\nc\r\n").toString()).toBe("a\r\n..b\r\nc\r\n.\r\n");
    expect(dataBlock("plain\r\n").toString()).toBe("plain\r\n.\r\n");
    expect(dataBlock(".a\r\nb\r\n").toString()).toBe("..a\r\nb\r\n.\r\n");
    expect(dataBlock("").toString()).toBe(".\r\n");
  });
});
