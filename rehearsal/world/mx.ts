/**
 * The recipient MX of the rehearsal's mail world (runs inside the `world` namespace). It writes every message
 * exactly as it arrived: one raw RFC 5322 file per recipient copy, and beside it the envelope as JSON.
 * With --auth-file it is the smarthost instead: STARTTLS and AUTH required before MAIL.
 *
 *   node --import tsx rehearsal/world/mx.ts <dir> <listen-address>...
 *     [--auth-file f (user:pass) --tls key.pem,cert.pem] [--port 25] [--no-starttls] [--name host]
 *
 * Without --tls it offers STARTTLS with smtp-server's built-in self-signed certificate; --no-starttls offers none
 * (the outbound TLS phases' MX that cannot be reached securely).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { SMTPServer } from "smtp-server";

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const authFile = opt("--auth-file");
const auth = authFile ? fs.readFileSync(authFile, "utf8").trim() : undefined;
const tls = opt("--tls");
const port = Number(opt("--port") ?? 25);
const name = opt("--name");
const noStarttls = args.indexOf("--no-starttls");
if (noStarttls >= 0) args.splice(noStarttls, 1);
const [dir, ...addresses] = args;
if (!dir || addresses.length === 0) {
  console.error("usage: mx.ts <dir> <listen-address>... [--auth-file f --tls key.pem,cert.pem] [--port 25]");
  process.exit(2);
}
fs.mkdirSync(dir, { recursive: true });
let seq = 0;

const [key, cert] = tls ? tls.split(",").map((f) => fs.readFileSync(f)) : [undefined, undefined];
for (const address of addresses) {
  const server = new SMTPServer({
    name: name ?? (auth ? "smarthost" : "mx.example.net"),
    banner: "rehearsal world",
    size: 50 * 1024 * 1024,
    authOptional: !auth,
    authMethods: ["PLAIN", "LOGIN"],
    // A smarthost never takes a password in clear text.
    allowInsecureAuth: false,
    ...(key && cert ? { key, cert } : {}),
    disabledCommands: [...(auth ? [] : ["AUTH"]), ...(noStarttls >= 0 ? ["STARTTLS"] : [])],
    logger: false,
    onAuth(a, session, cb) {
      if (!auth) return cb(new Error("no AUTH here"));
      if (!session.secure) return cb(new Error("STARTTLS first"));
      const [u, p] = [auth.slice(0, auth.indexOf(":")), auth.slice(auth.indexOf(":") + 1)];
      if (a.username === u && a.password === p) return cb(null, { user: u });
      return cb(Object.assign(new Error("authentication failed"), { responseCode: 535 }));
    },
    onMailFrom(_a, session, cb) {
      if (auth && !session.user) return cb(Object.assign(new Error("authentication required"), { responseCode: 530 }));
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        const raw = Buffer.concat(chunks);
        for (const rcpt of session.envelope.rcptTo) {
          const base = path.join(dir, `${Date.now()}-${process.pid}-${++seq}`);
          fs.writeFileSync(`${base}.eml`, raw);
          fs.writeFileSync(
            `${base}.json`,
            JSON.stringify({
              mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
              rcptTo: rcpt.address,
              remoteAddress: session.remoteAddress,
              heloName: session.hostNameAppearsAs,
              secure: session.secure,
              user: session.user ?? null,
              receivedAt: new Date().toISOString(),
            }),
          );
        }
        cb(null, "2.0.0 captured by the rehearsal world");
      });
    },
  });
  server.on("error", (e) => console.error(`mx ${address}: ${e.message}`));
  server.listen(port, address, () => console.log(`listening ${address}:${port}`));
}
process.on("SIGTERM", () => process.exit(0));
