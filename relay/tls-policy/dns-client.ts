// A DNS stub that keeps what Node's dns module hides: the AD (authenticated data) bit of a validating resolver's
// answer. Queries go to one resolver (the host's unbound on 127.0.0.1:53) with DO set, over UDP, and over TCP when
// the answer is truncated.
import { createSocket } from "node:dgram";
import { connect } from "node:net";
import { randomInt } from "node:crypto";
import * as dnsPacket from "dns-packet";

export interface DnsAnswer {
  /** "NOERROR", "NXDOMAIN", "SERVFAIL" (unbound's answer for a bogus, i.e. failed-validation, name) ... */
  readonly rcode: string;
  /** The resolver validated the answer (or the denial) with DNSSEC. */
  readonly authenticated: boolean;
  readonly answers: readonly dnsPacket.Answer[];
}

export type RecordType = "MX" | "TLSA";
/** One question to the validating resolver; rejects on timeout or a broken answer. */
export type DnsLookup = (name: string, type: RecordType) => Promise<DnsAnswer>;

export interface Resolver {
  readonly host: string;
  readonly port: number;
}

function query(name: string, type: RecordType, id: number): dnsPacket.Packet {
  return {
    type: "query",
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: "IN" }],
    // EDNS0 with DO: ask for DNSSEC, so a validating resolver reports AD; 1232 bytes avoids fragmented UDP.
    additionals: [
      {
        type: "OPT",
        name: ".",
        udpPayloadSize: 1232,
        extendedRcode: 0,
        ednsVersion: 0,
        flags: dnsPacket.DNSSEC_OK,
        flag_do: true,
        options: [],
      },
    ],
  };
}

function toAnswer(p: dnsPacket.Packet): DnsAnswer {
  const flags = p.flags ?? 0;
  return {
    rcode: (p as { rcode?: string }).rcode ?? "NOERROR",
    authenticated: (flags & dnsPacket.AUTHENTIC_DATA) !== 0,
    answers: p.answers ?? [],
  };
}

/** Whether a reply answers our question (same id and question); a stray or spoofed datagram does not. */
function matching(p: dnsPacket.Packet, id: number, name: string, type: RecordType): boolean {
  const q = p.questions?.[0];
  return (
    p.type === "response" &&
    p.id === id &&
    q !== undefined &&
    q.type === type &&
    q.name.toLowerCase() === name.replace(/\.$/, "").toLowerCase()
  );
}

function overUdp(r: Resolver, name: string, type: RecordType, timeoutMs: number): Promise<dnsPacket.Packet> {
  return new Promise((resolve, reject) => {
    const id = randomInt(0, 65536);
    const sock = createSocket(r.host.includes(":") ? "udp6" : "udp4");
    let settled = false;
    const done = (err: Error | undefined, p?: dnsPacket.Packet) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(p!);
    };
    const timer = setTimeout(() => done(new Error(`DNS ${type} ${name}: no answer in ${timeoutMs} ms`)), timeoutMs);
    sock.on("error", (e) => done(e));
    sock.on("message", (msg, rinfo) => {
      if (rinfo.port !== r.port) return;
      let p: dnsPacket.Packet;
      try {
        p = dnsPacket.decode(msg);
      } catch {
        return;
      }
      if (matching(p, id, name, type)) done(undefined, p);
    });
    sock.send(dnsPacket.encode(query(name, type, id)), r.port, r.host, (e) => {
      if (e) done(e);
    });
  });
}

function overTcp(r: Resolver, name: string, type: RecordType, timeoutMs: number): Promise<dnsPacket.Packet> {
  return new Promise((resolve, reject) => {
    const id = randomInt(0, 65536);
    const sock = connect({ host: r.host, port: r.port });
    let buf = Buffer.alloc(0);
    let settled = false;
    const done = (err: Error | undefined, p?: dnsPacket.Packet) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(p!);
    };
    const timer = setTimeout(
      () => done(new Error(`DNS ${type} ${name} (TCP): no answer in ${timeoutMs} ms`)),
      timeoutMs,
    );
    sock.on("error", (e) => done(e));
    sock.on("connect", () => sock.write(dnsPacket.streamEncode(query(name, type, id))));
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      try {
        const p = dnsPacket.streamDecode(buf);
        if (matching(p, id, name, type)) done(undefined, p);
        else done(new Error(`DNS ${type} ${name} (TCP): the answer does not match the question`));
      } catch (e) {
        done(e instanceof Error ? e : new Error(String(e)));
      }
    });
    sock.on("close", () => done(new Error(`DNS ${type} ${name} (TCP): connection closed before an answer`)));
  });
}

/** A DnsLookup against `r`: UDP (one retry), then TCP when the UDP answer is truncated. */
export function validatingResolver(r: Resolver, timeoutMs = 3000): DnsLookup {
  return async (name, type) => {
    let p: dnsPacket.Packet;
    try {
      p = await overUdp(r, name, type, timeoutMs);
    } catch {
      p = await overUdp(r, name, type, timeoutMs);
    }
    if (p.flags !== undefined && (p.flags & dnsPacket.TRUNCATED_RESPONSE) !== 0)
      p = await overTcp(r, name, type, timeoutMs);
    return toAnswer(p);
  };
}
