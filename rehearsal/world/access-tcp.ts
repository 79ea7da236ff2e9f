/**
 * The caller's side of the SMTP ingress (runs inside `world`): a stand-in for `cloudflared access tcp --hostname <h>
 * --url <listen>`, which is what docs/smtp-ingress.md tells callers to run. Like cloudflared it listens on a local
 * address and turns each TCP connection into one WebSocket to `<hostname>` at Cloudflare's edge, carrying the Access
 * service token from TUNNEL_SERVICE_TOKEN_ID / TUNNEL_SERVICE_TOKEN_SECRET (never argv) as CF-Access-Client-Id and
 * -Secret, and then streams the bytes both ways in binary messages. The WebSocket is the `ws` package's, so the
 * stand-in connector's framing (tunnel-standin.py) is checked by an independent implementation. `--edge` names where
 * the edge is, as the rehearsal's curl calls do with --connect-to (the world's DNS would say the same).
 *
 *   node --import tsx rehearsal/world/access-tcp.ts --hostname <h> --url 127.0.0.1:1025 --edge 198.51.100.44:80
 */
import * as net from "node:net";
import WebSocket, { createWebSocketStream } from "ws";

function arg(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (!v) {
    console.error("usage: access-tcp.ts --hostname <h> --url <addr:port> --edge <addr:port>");
    process.exit(2);
  }
  return v;
}

const hostname = arg("hostname");
const [listenHost, listenPort] = arg("url").split(":") as [string, string];
const [edgeHost, edgePort] = arg("edge").split(":") as [string, string];
const headers: Record<string, string> = {};
if (process.env.TUNNEL_SERVICE_TOKEN_ID) headers["CF-Access-Client-Id"] = process.env.TUNNEL_SERVICE_TOKEN_ID;
if (process.env.TUNNEL_SERVICE_TOKEN_SECRET)
  headers["CF-Access-Client-Secret"] = process.env.TUNNEL_SERVICE_TOKEN_SECRET;

net
  .createServer((local) => {
    local.pause();
    const ws = new WebSocket(`ws://${hostname}/`, {
      headers,
      createConnection: () => net.connect(Number(edgePort), edgeHost),
      handshakeTimeout: 10_000,
    });
    ws.on("unexpected-response", (_req, res) => {
      console.error(`${hostname}: the edge answered ${res.statusCode} to the WebSocket upgrade`);
      local.destroy();
      ws.terminate();
    });
    ws.on("error", (e) => {
      console.error(`${hostname}: ${e.message}`);
      local.destroy();
    });
    ws.on("open", () => {
      const stream = createWebSocketStream(ws);
      stream.on("error", () => local.destroy());
      local.on("error", () => stream.destroy());
      local.pipe(stream).pipe(local);
    });
  })
  .listen(Number(listenPort), listenHost, () =>
    console.log(`listening on ${listenHost}:${listenPort} for ${hostname} (via the edge ${edgeHost}:${edgePort})`),
  );

process.on("SIGTERM", () => process.exit(0));
