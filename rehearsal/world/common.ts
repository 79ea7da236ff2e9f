/**
 * What the rehearsal's world and its parts share (rehearsal/world.ts, world/resolver.ts, world/tls-world.ts): the
 * world's addresses, the per-run namespace names, the world CA and its certificates, and a TCP wait. Kept apart from
 * world.ts, which starts the parts, so that no part imports the module that imports it.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { run, sleep } from "../proc";

/** Addresses in `world` (documentation ranges only). */
export const WORLD = {
  dns: "198.51.100.53",
  mx4: "198.51.100.25",
  mx6: "2001:db8:ff::25",
  edge: "198.51.100.44",
  smarthost: "198.51.100.87",
  stranger4: "198.51.100.66",
  stranger6: "2001:db8:ff::66",
  recipientDomain: "example.net",
  mxHost: "mx.example.net",
} as const;

export interface Names {
  readonly vps: string;
  readonly world: string;
  /** veth end inside vps (renamed to eth0 there) and inside world. */
  readonly vethVps: string;
  readonly vethWorld: string;
}

/**
 * Names for one run: the stack plus a run id, so two rehearsals on one machine (two stacks, two checkouts, CI
 * beside a developer) never touch each other's namespaces. veth names stay within the kernel's 15 characters.
 */
export function namesFor(stack: string, runId: string): Names {
  const s = stack.replace(/[^a-z0-9]/gi, "").slice(0, 10);
  const id = runId.replace(/[^a-z0-9]/gi, "").slice(-6);
  return { vps: `mrr-${s}-${id}-vps`, world: `mrr-${s}-${id}-world`, vethVps: `mrrv${id}`, vethWorld: `mrrw${id}` };
}

/**
 * The world's CA (in `<dir>/world-ca`). The host trusts it (the rehearsal adds it to the image's CA store, standing in
 * for the public CAs that sign real providers' certificates), so Postfix's verified TLS to the smarthost
 * (smtp_tls_security_level = secure) and to MTA-STS recipients, and postfix-mta-sts-resolver's HTTPS fetch of their
 * policies, are exercised for real.
 */
export interface WorldCa {
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
}

async function openssl(args: string[]): Promise<void> {
  const r = await run("openssl", args);
  if (r.code !== 0) throw new Error(`openssl ${args.slice(0, 2).join(" ")}: ${r.stderr}`);
}

export async function worldCa(dir: string): Promise<WorldCa> {
  const ca = path.join(dir, "world-ca");
  fs.rmSync(ca, { recursive: true, force: true });
  fs.mkdirSync(ca, { recursive: true, mode: 0o700 });
  const caCert = path.join(ca, "ca.crt");
  const caKey = path.join(ca, "ca.key");
  await openssl([
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mail-relay rehearsal world CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    "-keyout", caKey, "-out", caCert,
  ]); // prettier-ignore
  return { dir: ca, caCert, caKey };
}

/**
 * A server certificate `<base>.crt` (and its key `<base>.key`, P-256, unless `key` names an existing one to reuse)
 * for `names` (the first is the CN): issued by the world CA, or self-signed with `selfSigned` (a DANE-EE pin).
 */
export async function issueCert(
  ca: WorldCa,
  base: string,
  names: readonly string[],
  opts: { selfSigned?: boolean; key?: string } = {},
): Promise<{ key: string; cert: string }> {
  const f = (ext: string) => path.join(ca.dir, `${base}.${ext}`);
  const key = opts.key ?? f("key");
  if (!opts.key) await openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key]);
  // What a strict verifier (Python 3.13's ssl: VERIFY_X509_STRICT, as postfix-mta-sts-resolver uses it) demands.
  const ext = [
    `subjectAltName=${names.map((n) => `DNS:${n}`).join(",")}`,
    "extendedKeyUsage=serverAuth",
    "keyUsage=critical,digitalSignature",
    "subjectKeyIdentifier=hash",
    "authorityKeyIdentifier=keyid,issuer",
    "",
  ].join("\n");
  fs.writeFileSync(f("ext"), ext);
  if (opts.selfSigned) {
    await openssl([
      "req", "-x509", "-new", "-key", key, "-days", "2", "-subj", `/CN=${names[0]}`,
      "-addext", `subjectAltName=${names.map((n) => `DNS:${n}`).join(",")}`, "-addext", "extendedKeyUsage=serverAuth",
      "-out", f("crt"),
    ]); // prettier-ignore
  } else {
    await openssl(["req", "-new", "-key", key, "-subj", `/CN=${names[0]}`, "-out", f("csr")]);
    await openssl([
      "x509", "-req", "-in", f("csr"), "-CA", ca.caCert, "-CAkey", ca.caKey, "-CAcreateserial", "-days", "2",
      "-extfile", f("ext"), "-out", f("crt"),
    ]); // prettier-ignore
  }
  return { key, cert: f("crt") };
}

/** Waits until something accepts TCP at a:p, probing from inside `ns`. */
export async function waitTcp(ns: string, a: string, p: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = await run("ip", ["netns", "exec", ns, "bash", "-c", `exec 3<>/dev/tcp/${a}/${p}`], { timeoutMs: 3000 });
    if (r.code === 0) return;
    await sleep(300);
  }
  throw new Error(`nothing answered on ${a}:${p} in ${ns} within ${timeoutMs / 1000}s`);
}
