/**
 * A FAKE validating resolver for the tls-policy tests: answers from a table over UDP and TCP on one loopback port,
 * setting the AD bit where the table says the answer is "validated". It validates nothing itself.
 */
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, type Server } from "node:net";
import * as dnsPacket from "dns-packet";

export interface FakeRecordSet {
  readonly rcode?: "NOERROR" | "NXDOMAIN" | "SERVFAIL";
  /** Set the AD bit (what unbound does for a DNSSEC-validated answer). */
  readonly ad?: boolean;
  readonly answers?: readonly dnsPacket.Answer[];
  /** Over UDP, answer truncated (TC) and empty: the client must ask again over TCP. */
  readonly truncateUdp?: boolean;
  /** Never answer: the client must time out. */
  readonly silent?: boolean;
  /** Over UDP, first send a forged reply (another id, AD set, no records), as an off-path spoofer would. */
  readonly forgedFirst?: boolean;
}

export interface FakeDns {
  readonly host: string;
  readonly port: number;
  /** Questions asked, "name TYPE tcp|udp", in order. */
  readonly asked: string[];
  /** Every query had EDNS0 with DO set (the client asks for DNSSEC). */
  readonly allAskedWithDo: () => boolean;
  close(): Promise<void>;
}

const RCODES = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3 } as const;

export const mx = (name: string, exchange: string, preference = 10): dnsPacket.Answer => ({
  type: "MX",
  name,
  ttl: 300,
  class: "IN",
  data: { preference, exchange },
});
export const tlsa = (host: string, usage = 3): dnsPacket.Answer => ({
  type: "TLSA",
  name: `_25._tcp.${host}`,
  ttl: 300,
  class: "IN",
  data: { usage, selector: 1, matchingType: 1, certificate: Buffer.alloc(32, 7) },
});

/** Starts the fake on 127.0.0.1 (UDP and TCP on one port); `table` is keyed "name TYPE". */
export async function startFakeDns(table: Record<string, FakeRecordSet>): Promise<FakeDns> {
  const asked: string[] = [];
  let withDo = true;
  const answer = (query: dnsPacket.Packet, tcp: boolean): Buffer | undefined => {
    const q = query.questions![0]!;
    asked.push(`${q.name} ${q.type} ${tcp ? "tcp" : "udp"}`);
    const opt = (query.additionals ?? []).find((a) => a.type === "OPT") as dnsPacket.OptAnswer | undefined;
    if (!opt || (opt.flags! & dnsPacket.DNSSEC_OK) === 0) withDo = false;
    const set = table[`${q.name} ${q.type}`] ?? { rcode: "NXDOMAIN", ad: true };
    if (set.silent) return undefined;
    const truncated = !tcp && set.truncateUdp === true;
    const flags =
      (set.ad ? dnsPacket.AUTHENTIC_DATA : 0) |
      (truncated ? dnsPacket.TRUNCATED_RESPONSE : 0) |
      dnsPacket.RECURSION_DESIRED |
      dnsPacket.RECURSION_AVAILABLE |
      RCODES[set.rcode ?? "NOERROR"];
    return dnsPacket.encode({
      type: "response",
      id: query.id,
      flags,
      questions: query.questions,
      answers: truncated ? [] : [...(set.answers ?? [])],
    });
  };

  const tcp: Server = createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on("error", () => sock.destroy());
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      const out = answer(dnsPacket.streamDecode(buf), true);
      buf = Buffer.alloc(0);
      if (out) {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(out.length);
        sock.end(Buffer.concat([len, out]));
      }
    });
  });
  await new Promise<void>((r) => tcp.listen(0, "127.0.0.1", r));
  const port = (tcp.address() as { port: number }).port;
  const udp: UdpSocket = createSocket("udp4");
  udp.on("message", (msg, rinfo) => {
    const query = dnsPacket.decode(msg);
    const q = query.questions![0]!;
    if (table[`${q.name} ${q.type}`]?.forgedFirst) {
      const forged = dnsPacket.encode({
        type: "response",
        id: (query.id! + 1) % 65536,
        flags: dnsPacket.AUTHENTIC_DATA | dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
        questions: query.questions,
        answers: [],
      });
      udp.send(forged, rinfo.port, rinfo.address);
    }
    const out = answer(query, false);
    if (out) udp.send(out, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    udp.once("error", reject);
    udp.bind(port, "127.0.0.1", () => resolve());
  });
  return {
    host: "127.0.0.1",
    port,
    asked,
    allAskedWithDo: () => withDo,
    close: async () => {
      await new Promise<void>((r) => udp.close(() => r()));
      await new Promise<void>((r) => tcp.close(() => r()));
    },
  };
}
