/**
 * The Cloudflare edge of the rehearsal's world (runs inside `world`). Stands in for Access + the tunnel's edge:
 *  - connectors (the stand-in cloudflared on the host) dial OUT to <addr>:7844 and wait there, as the real
 *    connector keeps outbound connections to Cloudflare; nothing on the host listens for the tunnel;
 *  - callers send HTTP to <addr>:80; a request without a valid Access service token (CF-Access-Client-Id and
 *    -Secret) gets 403 as from Access; any other is handed, bytes as they are plus `Connection: close` and the
 *    `Cf-Access-Jwt-Assertion` Access adds (JWT-shaped, with the application's aud and the team's issuer, but NOT
 *    signed with Cloudflare's keys, which the rehearsal does not have), down an idle connector connection, and the
 *    answer comes back the same way;
 *  - a WebSocket upgrade (what `cloudflared access tcp` opens for each TCP connection to a tcp:// route, here
 *    rehearsal/world/access-tcp.ts) passes the same Access check, goes down a connector with its Upgrade headers
 *    kept, and once the connector answers 101 the bytes flow both ways until either side closes.
 * The JWT's aud is the Access application of the requested hostname, as each hostname has its own application.
 *
 *   node --import tsx rehearsal/world/edge.ts <addr> <access.json>   ({tokens, apps: {hostname: aud}, teamName?})
 */
import * as fs from "node:fs";
import * as net from "node:net";

const [addr, tokensFile] = process.argv.slice(2);
if (!addr || !tokensFile) {
  console.error("usage: edge.ts <addr> <tokens.json>");
  process.exit(2);
}
const access = JSON.parse(fs.readFileSync(tokensFile, "utf8")) as {
  tokens: { clientId: string; clientSecret: string }[];
  apps?: Record<string, string>;
  teamName?: string;
};
const tokens = access.tokens;
const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
function assertion(clientId: string, hostname: string): string {
  const now = Math.floor(Date.now() / 1000);
  const aud = access.apps?.[hostname];
  const payload = {
    aud: aud ? [aud] : [],
    iss: `https://${access.teamName ?? "rehearsal"}.cloudflareaccess.com`,
    common_name: clientId,
    type: "app",
    iat: now,
    exp: now + 300,
  };
  return `${b64url({ alg: "RS256", kid: "rehearsal-unsigned" })}.${b64url(payload)}.rehearsal-unsigned`;
}
const idle: net.Socket[] = [];
const waiting: ((s: net.Socket) => void)[] = [];
let connectors = 0;

net
  .createServer((s) => {
    let hello = "";
    const onData = (b: Buffer) => {
      hello += b.toString("latin1");
      if (!hello.includes("\n")) return;
      s.off("data", onData);
      if (!hello.startsWith("CONNECTOR ")) return void s.destroy();
      connectors++;
      s.on("error", () => undefined);
      s.once("close", () => {
        const i = idle.indexOf(s);
        if (i >= 0) idle.splice(i, 1);
      });
      const w = waiting.shift();
      if (w) w(s);
      else idle.push(s);
    };
    s.on("data", onData);
    s.on("error", () => undefined);
  })
  .listen(7844, addr, () => console.log(`connectors: ${addr}:7844`));

function connector(timeoutMs: number): Promise<net.Socket | undefined> {
  const s = idle.shift();
  if (s) return Promise.resolve(s);
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      const i = waiting.indexOf(take);
      if (i >= 0) waiting.splice(i, 1);
      resolve(undefined);
    }, timeoutMs);
    const take = (x: net.Socket) => {
      clearTimeout(t);
      resolve(x);
    };
    waiting.push(take);
  });
}

function answer(s: net.Socket, status: number, text: string): void {
  const body = JSON.stringify({ edge: "rehearsal", status, error: text });
  s.end(
    `HTTP/1.1 ${status} ${text}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

net
  .createServer((client) => {
    let buf = Buffer.alloc(0);
    client.on("error", () => undefined);
    const onData = async (b: Buffer) => {
      buf = Buffer.concat([buf, b]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end).toString("latin1");
      const lines = head.split("\r\n");
      const headers = new Map(
        lines
          .slice(1)
          .map((l) => [l.slice(0, l.indexOf(":")).trim().toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]),
      );
      const length = Number(headers.get("content-length") ?? 0);
      if (buf.length < end + 4 + length) return;
      client.off("data", onData);
      client.pause();
      const id = headers.get("cf-access-client-id");
      const secret = headers.get("cf-access-client-secret");
      if (!tokens.some((t) => t.clientId === id && t.clientSecret === secret))
        return answer(client, 403, "Forbidden (Access: no valid service token)");
      const upgrade = /^websocket$/i.test(headers.get("upgrade") ?? "");
      const hostname = (headers.get("host") ?? "").replace(/:\d+$/, "");
      const kept = lines
        .slice(1)
        .filter(
          (l) =>
            !/^(keep-alive|proxy-connection|cf-access-client-secret|cf-access-jwt-assertion):/i.test(l) &&
            (upgrade || !/^connection:/i.test(l)),
        );
      // Cloudflare adds these; the relay must not trust them for anything.
      const request = Buffer.concat([
        Buffer.from(
          [
            lines[0],
            ...kept,
            `cf-connecting-ip: ${client.remoteAddress}`,
            `cf-access-jwt-assertion: ${assertion(id!, hostname)}`,
            ...(upgrade ? [] : ["connection: close"]),
            "",
            "",
          ].join("\r\n"),
          "latin1",
        ),
        buf.subarray(end + 4),
      ]);
      const c = await connector(10_000);
      if (!c) return answer(client, 502, "Bad Gateway (no connector)");
      c.write(request);
      c.pipe(client);
      c.on("close", () => client.end());
      if (upgrade) {
        // A WebSocket: the caller's frames go down the same connection for as long as it lasts.
        client.pipe(c);
        client.on("close", () => c.destroy());
      }
    };
    client.on("data", onData);
  })
  .listen(80, addr, () => console.log(`callers: ${addr}:80 (connectors so far: ${connectors})`));

process.on("SIGTERM", () => process.exit(0));
