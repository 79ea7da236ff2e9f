/**
 * DNSSEC and DANE material made with Debian's tools, shared by the rehearsal's mail world and the DANE test
 * (test/cloud-init/dane.real.test.ts): a zone signed with ldns-signzone (one Ed25519 key, KSK flag) and its DS
 * record as a trust anchor; the SHA-256 of a certificate's SubjectPublicKeyInfo for a TLSA 3 1 1 record.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export interface SignedZone {
  readonly zone: string;
  /** The signed zone file (`<zone>.zone.signed` in the directory). */
  readonly signedFile: string;
  /** The zone's DS record(s), one presentation-format line each: a trust anchor for a validating resolver. */
  readonly ds: readonly string[];
  /** The file holding those lines (ldns-keygen's `.ds`), for `trust-anchor-file:`. */
  readonly dsFile: string;
}

/**
 * Writes `<zone>.zone` in `dir` from `records` (relative or absolute owner names, one RR per line, without the SOA,
 * which is added) and signs it with a fresh Ed25519 key (`ldns-keygen -a ED25519 -k`, `ldns-signzone`, NSEC).
 * `tools` names the binaries where they are not on PATH.
 */
export function signZone(
  dir: string,
  zone: string,
  records: readonly string[],
  tools: { keygen?: string; signzone?: string } = {},
): SignedZone {
  const z = zone.replace(/\.$/, "");
  const zoneFile = path.join(dir, `${z}.zone`);
  fs.writeFileSync(
    zoneFile,
    [`$ORIGIN ${z}.`, "$TTL 300", `@ IN SOA ns.${z}. hostmaster.${z}. 1 3600 600 86400 300`, ...records, ""].join("\n"),
  );
  const key = execFileSync(tools.keygen ?? "ldns-keygen", ["-a", "ED25519", "-k", z], { cwd: dir })
    .toString()
    .trim();
  execFileSync(tools.signzone ?? "ldns-signzone", [`${z}.zone`, key], { cwd: dir });
  const dsFile = path.join(dir, `${key}.ds`);
  const ds = fs
    .readFileSync(dsFile, "utf8")
    .split("\n")
    .map((l) => l.trim().replace(/\s+/g, " "))
    .filter((l) => /\sDS\s/.test(l));
  if (ds.length === 0) throw new Error(`ldns-keygen wrote no DS record for ${z} in ${dsFile}`);
  return { zone: z, signedFile: `${zoneFile}.signed`, ds, dsFile };
}

/** TLSA 3 1 1's data: the SHA-256 (hex) of the certificate's public key (SubjectPublicKeyInfo, DER). */
export function spkiSha256(certFile: string): string {
  const pub = execFileSync("openssl", ["x509", "-in", certFile, "-pubkey", "-noout"]);
  const der = execFileSync("openssl", ["pkey", "-pubin", "-outform", "DER"], { input: pub });
  return execFileSync("openssl", ["dgst", "-sha256", "-r"], { input: der }).toString().split(" ")[0]!.trim();
}
