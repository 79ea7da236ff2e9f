/**
 * Verifies every captured message as a stranger's MX would (runs inside `world`): mailauth, resolving against the
 * world's DNS server only, from the envelope the MX recorded beside each raw message. Prints one JSON line per copy.
 *
 *   node --import tsx rehearsal/world/verify.ts <dir> <dns-server>
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Resolver } from "node:dns/promises";
import { authenticate } from "mailauth";

const [dir, server] = process.argv.slice(2);
const resolver = new Resolver({ timeout: 3000, tries: 2 });
resolver.setServers([server]);
const resolve = (name: string, rr: string) => resolver.resolve(name, rr as "TXT");

async function main() {
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".eml"))
    .sort();
  for (const f of files) {
    const raw = fs.readFileSync(path.join(dir, f));
    const env = JSON.parse(fs.readFileSync(path.join(dir, f.replace(/\.eml$/, ".json")), "utf8"));
    const res = await authenticate(raw, {
      ip: env.remoteAddress,
      helo: env.heloName,
      sender: env.mailFrom,
      mta: "mx.example.net",
      resolver: resolve,
    });
    const head = raw.toString("latin1").split(/\r?\n\r?\n/)[0];
    type Sig = (typeof res.dkim.results)[number] & { signingHeaders?: { keys?: string }; algo?: string };
    const sigs = res.dkim.results as Sig[];
    // Two signatures (RFC 8463): the RSA one is the one DMARC and the fields below report; dkimAll lists every one.
    const sig = sigs.find((x) => x.algo === "rsa-sha256") ?? sigs[0];
    const spf = res.spf ? res.spf.status.result : "none";
    const dmarc = res.dmarc ? res.dmarc.status.result : "none";
    console.log(
      JSON.stringify({
        file: f,
        rcptTo: env.rcptTo,
        remoteAddress: env.remoteAddress,
        tls: env.secure === true,
        authUser: env.user ?? null,
        dkim: sig?.status?.result ?? "none",
        dkimSelector: sig?.selector,
        dkimDomain: sig?.signingDomain,
        dkimHeaders: sig?.signingHeaders?.keys,
        dkimAll: sigs.map((x) => ({ result: x.status?.result ?? "none", selector: x.selector, algo: x.algo })),
        spf,
        dmarc,
        hasBcc: /^bcc:/im.test(head),
        subject: /^subject:\s*(.*)$/im.exec(head)?.[1] ?? "",
        messageId: /^message-id:\s*(.*)$/im.exec(head)?.[1] ?? "",
      }),
    );
  }
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
