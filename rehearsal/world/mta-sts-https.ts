/**
 * The MTA-STS policy server of the rehearsal's mail world (runs inside `world`): HTTPS on 443 with a certificate
 * from the world CA, answering `GET /.well-known/mta-sts.txt` for each `mta-sts.<domain>` by its Host header
 * (RFC 8461 section 3.2: text/plain, no redirects), 404 for anything else.
 *
 *   node --import tsx rehearsal/world/mta-sts-https.ts <address> <key.pem> <cert.pem> <policies.json>
 *
 * policies.json: { "mta-sts.<domain>": "<policy text>" }.
 */
import * as fs from "node:fs";
import * as https from "node:https";

const [address, key, cert, file] = process.argv.slice(2);
if (!address || !key || !cert || !file) {
  console.error("usage: mta-sts-https.ts <address> <key.pem> <cert.pem> <policies.json>");
  process.exit(2);
}
const policies = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, string>;
const server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (req, res) => {
  const host = String(req.headers.host ?? "")
    .replace(/:\d+$/, "")
    .toLowerCase();
  const policy = policies[host];
  const ok = req.method === "GET" && req.url === "/.well-known/mta-sts.txt" && policy !== undefined;
  console.log(`${new Date().toISOString()} ${req.method} https://${host}${req.url} ${ok ? 200 : 404}`);
  if (!ok) {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    return;
  }
  res.writeHead(200, { "content-type": "text/plain", "content-length": Buffer.byteLength(policy) }).end(policy);
});
server.listen(443, address, () => console.log(`listening https://${address}:443`));
process.on("SIGTERM", () => process.exit(0));
