/**
 * The DANE-first TLS policy socketmap's decisions, against a FAKE validating resolver (fake-dns.ts) and a FAKE
 * postfix-mta-sts-resolver: DANE wins only where every MX has validated, usable TLSA records; anything it cannot
 * trust defers (TEMP) instead of falling through to a weaker policy; testing MTA-STS policies are logged, not enforced.
 */
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { decide } from "../../../relay/tls-policy/decide";
import { validatingResolver } from "../../../relay/tls-policy/dns-client";
import { encodeNetstring, NetstringReader } from "../../../relay/tls-policy/netstring";
import { socketmapServer, type SocketmapReply } from "../../../relay/tls-policy/socketmap";
import {
  startTlsPolicyServer,
  tlsPolicyConfig,
  tlsPolicyHandler,
  type TlsPolicyLog,
} from "../../../relay/tls-policy/service";
import { mx, startFakeDns, tlsa, type FakeDns, type FakeRecordSet } from "./fake-dns";

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

async function fake(table: Record<string, FakeRecordSet>): Promise<FakeDns> {
  const f = await startFakeDns(table);
  closers.push(() => f.close());
  return f;
}
const lookupVia = (f: FakeDns, timeoutMs = 300) => validatingResolver({ host: f.host, port: f.port }, timeoutMs);

/** A signed domain with two MXs, both with DANE-EE TLSA records, all answers validated. */
const SIGNED: Record<string, FakeRecordSet> = {
  "signed.example MX": {
    ad: true,
    answers: [mx("signed.example", "mx1.signed.example"), mx("signed.example", "mx2.signed.example", 20)],
  },
  "_25._tcp.mx1.signed.example TLSA": { ad: true, answers: [tlsa("mx1.signed.example")] },
  "_25._tcp.mx2.signed.example TLSA": { ad: true, answers: [tlsa("mx2.signed.example", 2)] },
};

describe("decide: dane-only only where every MX has validated, usable TLSA records (fake resolver)", () => {
  it("validated MX + validated TLSA for every MX -> dane-only, asked with DO set", async () => {
    const f = await fake(SIGNED);
    expect(await decide("Signed.Example.", lookupVia(f))).toEqual({
      kind: "dane-only",
      mxs: ["mx1.signed.example", "mx2.signed.example"],
    });
    expect(f.allAskedWithDo()).toBe(true);
  });

  it.each<[string, Record<string, FakeRecordSet>]>([
    [
      "the MX answer is not validated (unsigned zone)",
      { ...SIGNED, "signed.example MX": { ...SIGNED["signed.example MX"], ad: false } },
    ],
    [
      "one MX's TLSA answer is not validated",
      { ...SIGNED, "_25._tcp.mx2.signed.example TLSA": { ad: false, answers: [tlsa("mx2.signed.example")] } },
    ],
    [
      "one MX has no TLSA record (validated NXDOMAIN)",
      { ...SIGNED, "_25._tcp.mx2.signed.example TLSA": { rcode: "NXDOMAIN", ad: true } },
    ],
    [
      "one MX has only PKIX-EE (usage 1) TLSA records, unusable for SMTP",
      { ...SIGNED, "_25._tcp.mx2.signed.example TLSA": { ad: true, answers: [tlsa("mx2.signed.example", 1)] } },
    ],
    ["the domain does not exist", { "signed.example MX": { rcode: "NXDOMAIN", ad: true } }],
    ["the domain publishes a null MX", { "signed.example MX": { ad: true, answers: [mx("signed.example", ".", 0)] } }],
  ])("NOTFOUND when %s", async (_why, table) => {
    const d = await decide("signed.example", lookupVia(await fake(table)));
    expect(d.kind).toBe("notfound");
  });

  it.each<[string, Record<string, FakeRecordSet>]>([
    ["the MX answer is SERVFAIL (bogus: validation failed)", { "signed.example MX": { rcode: "SERVFAIL" } }],
    [
      "one MX's TLSA answer is SERVFAIL (bogus)",
      { ...SIGNED, "_25._tcp.mx2.signed.example TLSA": { rcode: "SERVFAIL" } },
    ],
    ["the resolver does not answer the MX question", { "signed.example MX": { silent: true } }],
    [
      "the resolver does not answer a TLSA question",
      { ...SIGNED, "_25._tcp.mx1.signed.example TLSA": { silent: true } },
    ],
  ])("TEMP (Postfix defers, no weaker fallback) when %s", async (_why, table) => {
    const d = await decide("signed.example", lookupVia(await fake(table)));
    expect(d.kind).toBe("temp");
  });

  it("a validated domain without MX is its own MX: its TLSA records decide", async () => {
    const f = await fake({
      "bare.example MX": { ad: true, answers: [] },
      "_25._tcp.bare.example TLSA": { ad: true, answers: [tlsa("bare.example")] },
    });
    expect(await decide("bare.example", lookupVia(f))).toEqual({ kind: "dane-only", mxs: ["bare.example"] });
  });

  it("a reply with another id (a spoofer's guess) is ignored: the real answer decides", async () => {
    const f = await fake({
      ...SIGNED,
      "_25._tcp.mx2.signed.example TLSA": { rcode: "SERVFAIL", forgedFirst: true },
    });
    // The forged reply says "validated, no TLSA" (NOTFOUND); the resolver's real one says SERVFAIL.
    expect((await decide("signed.example", lookupVia(f))).kind).toBe("temp");
  });

  it("a truncated UDP answer is asked again over TCP", async () => {
    const f = await fake({
      ...SIGNED,
      "_25._tcp.mx1.signed.example TLSA": { ...SIGNED["_25._tcp.mx1.signed.example TLSA"], truncateUdp: true },
    });
    expect((await decide("signed.example", lookupVia(f))).kind).toBe("dane-only");
    expect(f.asked).toContain("_25._tcp.mx1.signed.example TLSA tcp");
  });
});

/** A FAKE postfix-mta-sts-resolver: a socketmap answering per zone from a table. */
async function fakeMtaSts(zones: Record<string, Record<string, SocketmapReply>>) {
  const asked: string[] = [];
  const server = socketmapServer(
    async (zone, key) => {
      asked.push(`${zone} ${key}`);
      return zones[zone]?.[key] ?? { status: "NOTFOUND" };
    },
    () => {},
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  closers.push(() => new Promise((r) => server.close(() => r())));
  return { host: "127.0.0.1", port: (server.address() as { port: number }).port, asked };
}

function recordingLog() {
  const lines: { level: string; msg: string }[] = [];
  const log: TlsPolicyLog = (level, msg) => lines.push({ level, msg });
  return { lines, log };
}

const POLICY = "secure match=mx.testing.example servername=hostname";

describe("testing MTA-STS policies are logged, not enforced (fake resolver, fake mta-sts-daemon)", () => {
  it("a domain with only a testing policy: NOTFOUND, and one log line saying what would be enforced", async () => {
    const dns = await fake({
      "testing.example MX": { ad: false, answers: [mx("testing.example", "mx.testing.example")] },
    });
    const sts = await fakeMtaSts({ testing: { "testing.example": { status: "OK", data: POLICY } } });
    const { lines, log } = recordingLog();
    let t = 0;
    const h = tlsPolicyHandler({ lookup: lookupVia(dns), mtaSts: sts, log, now: () => t, testingLogIntervalMs: 1000 });
    expect(await h.handle("dane", "testing.example")).toEqual({ status: "NOTFOUND" });
    await h.idle();
    expect(lines).toEqual([
      { level: "info", msg: `MTA-STS testing policy for testing.example: not enforced (would be: ${POLICY})` },
    ]);
    // Each delivery attempt asks again; the line is not repeated within the interval, and is after it.
    await h.handle("dane", "testing.example");
    await h.idle();
    expect(lines).toHaveLength(1);
    t = 1000;
    await h.handle("dane", "testing.example");
    await h.idle();
    expect(lines).toHaveLength(2);
  });

  it("an enforce policy (answered by both zones) is Postfix's to apply: nothing logged as testing", async () => {
    const dns = await fake({
      "enforce.example MX": { ad: false, answers: [mx("enforce.example", "mx.enforce.example")] },
    });
    const ok: SocketmapReply = { status: "OK", data: POLICY };
    const sts = await fakeMtaSts({ testing: { "enforce.example": ok }, postfix: { "enforce.example": ok } });
    const { lines, log } = recordingLog();
    const h = tlsPolicyHandler({ lookup: lookupVia(dns), mtaSts: sts, log });
    expect(await h.handle("dane", "enforce.example")).toEqual({ status: "NOTFOUND" });
    await h.idle();
    expect(sts.asked).toEqual(["testing enforce.example", "postfix enforce.example"]);
    expect(lines).toEqual([]);
  });

  it("a DANE domain answers dane-only and never asks the MTA-STS resolver (DANE wins)", async () => {
    const sts = await fakeMtaSts({ testing: { "signed.example": { status: "OK", data: POLICY } } });
    const { log } = recordingLog();
    const h = tlsPolicyHandler({ lookup: lookupVia(await fake(SIGNED)), mtaSts: sts, log });
    expect(await h.handle("dane", "signed.example")).toEqual({ status: "OK", data: "dane-only" });
    await h.idle();
    expect(sts.asked).toEqual([]);
  });
});

/** One socketmap request over TCP, as Postfix sends it. */
async function ask(port: number, request: string | Buffer): Promise<string | "closed"> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: "127.0.0.1", port });
    const reader = new NetstringReader(100_000);
    sock.on("error", reject);
    sock.on("connect", () => sock.write(typeof request === "string" ? encodeNetstring(request) : request));
    sock.on("data", (c: Buffer) => {
      const [r] = reader.push(c);
      if (r !== undefined) {
        sock.destroy();
        resolve(r);
      }
    });
    sock.on("close", () => resolve("closed"));
  });
}

describe("the socketmap server speaks Postfix's socketmap protocol (fake resolver)", () => {
  it("answers OK dane-only / NOTFOUND / TEMP / PERM as netstrings, and drops a malformed request", async () => {
    const dns = await fake({ ...SIGNED, "bogus.example MX": { rcode: "SERVFAIL" } });
    const sts = await fakeMtaSts({});
    const { log } = recordingLog();
    const cfg = tlsPolicyConfig({ TLS_POLICY_LISTEN: "127.0.0.1:0", TLS_POLICY_MTA_STS: `127.0.0.1:${sts.port}` });
    const { server } = await startTlsPolicyServer(cfg, log, lookupVia(dns));
    closers.push(() => new Promise((r) => server.close(() => r())));
    const port = (server.address() as { port: number }).port;
    expect(await ask(port, "dane signed.example")).toBe("OK dane-only");
    expect(await ask(port, "dane unsigned.example")).toBe("NOTFOUND ");
    expect(await ask(port, "dane [mx.signed.example]:25")).toBe("NOTFOUND ");
    expect(await ask(port, "dane .signed.example")).toBe("NOTFOUND ");
    expect(await ask(port, "dane bogus.example")).toMatch(/^TEMP MX bogus\.example: SERVFAIL/);
    expect(await ask(port, "postfix signed.example")).toMatch(/^PERM unknown map name/);
    expect(await ask(port, Buffer.from("99999999:x,"))).toBe("closed");
  });

  it("a bad environment names the variable and the fix", () => {
    expect(() => tlsPolicyConfig({ TLS_POLICY_RESOLVER: "localhost:53" })).toThrow(
      /TLS_POLICY_RESOLVER: must be IP:PORT such as 127\.0\.0\.1:53, got "localhost:53"/,
    );
  });
});

describe("netstrings", () => {
  it("reassembles frames split across chunks and splits frames sharing one", () => {
    const r = new NetstringReader(100);
    expect(r.push(Buffer.from("5:he"))).toEqual([]);
    expect(r.push(Buffer.from("llo,3:abc,0:,"))).toEqual(["hello", "abc", ""]);
  });
  it.each(["x:abc,", "3:abcX", "0005:hello,", "101:"])("refuses %s", (s) => {
    expect(() => new NetstringReader(100).push(Buffer.from(s))).toThrow();
  });
});
