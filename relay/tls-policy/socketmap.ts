// Postfix's socketmap protocol (socketmap_table(5)) on both sides: the server Postfix asks, and a one-shot client
// for asking postfix-mta-sts-resolver's testing zone. Requests are netstrings "<name> <key>"; replies are
// "OK <data>", "NOTFOUND ", "TEMP <reason>", "TIMEOUT <reason>" or "PERM <reason>".
import { connect, createServer, type Server, type Socket } from "node:net";
import { encodeNetstring, NetstringError, NetstringReader } from "./netstring";

/** socketmap_table(5): Postfix's own request limit is 10000 bytes; a reply may be up to 100000. */
const MAX_REQUEST = 10_000;
const MAX_REPLY = 100_000;

export type SocketmapReply =
  | { readonly status: "OK"; readonly data: string }
  | { readonly status: "NOTFOUND" }
  | { readonly status: "TEMP" | "TIMEOUT" | "PERM"; readonly reason: string };

export function formatReply(r: SocketmapReply): string {
  if (r.status === "OK") return `OK ${r.data}`;
  if (r.status === "NOTFOUND") return "NOTFOUND ";
  // One line, bounded: Postfix logs the reason.
  return `${r.status} ${r.reason.replace(/[\r\n]+/g, " ").slice(0, 500)}`;
}

export function parseReply(text: string): SocketmapReply {
  const sp = text.indexOf(" ");
  const status = sp === -1 ? text : text.slice(0, sp);
  const rest = sp === -1 ? "" : text.slice(sp + 1);
  switch (status) {
    case "OK":
      return { status, data: rest };
    case "NOTFOUND":
      return { status };
    case "TEMP":
    case "TIMEOUT":
    case "PERM":
      return { status, reason: rest };
    default:
      return { status: "PERM", reason: `unknown socketmap reply: ${text.slice(0, 80)}` };
  }
}

/** Answers one lookup; never rejects (an exception becomes TEMP). */
export type SocketmapHandler = (name: string, key: string) => Promise<SocketmapReply>;

/**
 * A socketmap server: each connection's requests are answered in order (Postfix keeps a connection open and waits for
 * each reply). A malformed request drops the connection.
 */
export function socketmapServer(handle: SocketmapHandler, onError: (msg: string) => void): Server {
  return createServer((sock: Socket) => {
    const reader = new NetstringReader(MAX_REQUEST);
    let chain = Promise.resolve();
    sock.setTimeout(300_000, () => sock.destroy());
    sock.on("error", () => sock.destroy());
    sock.on("data", (chunk: Buffer) => {
      let requests: string[];
      try {
        requests = reader.push(chunk);
      } catch (e) {
        onError(`socketmap: dropping a connection: ${e instanceof NetstringError ? e.message : String(e)}`);
        sock.destroy();
        return;
      }
      for (const req of requests) {
        chain = chain.then(async () => {
          const sp = req.indexOf(" ");
          let reply: SocketmapReply;
          if (sp <= 0) reply = { status: "PERM", reason: 'request must be "<name> <key>"' };
          else {
            try {
              reply = await handle(req.slice(0, sp), req.slice(sp + 1));
            } catch (e) {
              reply = { status: "TEMP", reason: e instanceof Error ? e.message : String(e) };
            }
          }
          if (!sock.destroyed) sock.write(encodeNetstring(formatReply(reply)));
        });
      }
    });
  });
}

/** Asks a socketmap server one question on a fresh connection. */
export function socketmapQuery(
  server: { readonly host: string; readonly port: number },
  name: string,
  key: string,
  timeoutMs: number,
): Promise<SocketmapReply> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: server.host, port: server.port });
    const reader = new NetstringReader(MAX_REPLY);
    let settled = false;
    const done = (err: Error | undefined, r?: SocketmapReply) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(r!);
    };
    const timer = setTimeout(() => done(new Error(`socketmap ${name} ${key}: no reply in ${timeoutMs} ms`)), timeoutMs);
    sock.on("error", (e) => done(e));
    sock.on("connect", () => sock.write(encodeNetstring(`${name} ${key}`)));
    sock.on("data", (chunk: Buffer) => {
      try {
        const [first] = reader.push(chunk);
        if (first !== undefined) done(undefined, parseReply(first));
      } catch (e) {
        done(e instanceof Error ? e : new Error(String(e)));
      }
    });
    sock.on("close", () => done(new Error(`socketmap ${name} ${key}: closed before a reply`)));
  });
}
