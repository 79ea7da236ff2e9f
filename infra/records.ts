/**
 * Pure functions that produce the DNS record contents of the sending identity.
 *
 * TXT contents are written the way Cloudflare returns them: each string quoted, long values split into
 * <=255-character strings separated by one space. Writing them any other way makes every `pulumi preview`
 * after `up` show a spurious diff.
 */
import { createPublicKey } from "node:crypto";

/** RFC 1035 character-strings are at most 255 bytes. */
export const TXT_CHUNK = 255;

/** Quote a TXT value as Cloudflare stores it, splitting it into <=255-character strings. */
export function txtContent(value: string): string {
  if (/["\\\r\n]/.test(value))
    throw new Error(`TXT value must not contain quotes, backslashes or newlines: ${value.slice(0, 40)}`);
  if (value.length === 0) throw new Error("TXT value must not be empty");
  const chunks: string[] = [];
  for (let i = 0; i < value.length; i += TXT_CHUNK) chunks.push(value.slice(i, i + TXT_CHUNK));
  return chunks.map((c) => `"${c}"`).join(" ");
}

/** The value a resolver assembles from a quoted TXT content (inverse of txtContent). */
export function txtValue(content: string): string {
  const parts = content.match(/"((?:[^"\\]|\\.)*)"/g);
  if (!parts) return content;
  return parts.map((p) => p.slice(1, -1)).join("");
}

export interface SpfInput {
  readonly ipv4: readonly string[];
  readonly ipv6: readonly string[];
  readonly includes: readonly string[];
  readonly all: "~all" | "-all";
}

/** `v=spf1 ip4:... ip6:... include:... ~all`: one record authorizing every node and configured include. */
export function spfRecord(s: SpfInput): string {
  const uniq = <T>(xs: readonly T[]) => [...new Set(xs)];
  const terms = [
    "v=spf1",
    ...uniq(s.ipv4).map((ip) => `ip4:${ip}`),
    ...uniq(s.ipv6).map((ip) => `ip6:${ip}`),
    ...uniq(s.includes).map((d) => `include:${d}`),
    s.all,
  ];
  return terms.join(" ");
}

/** The base64 SubjectPublicKeyInfo DER inside a PEM public key: what DKIM's p= carries. */
export function dkimPublicKeyFromPem(pem: string): string {
  const body = pem
    .replace(/-----BEGIN PUBLIC KEY-----/, "")
    .replace(/-----END PUBLIC KEY-----/, "")
    .replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]+=*$/.test(body)) throw new Error("DKIM public key must be a PEM 'PUBLIC KEY' block");
  return body;
}

/**
 * `<selector>._domainkey.<domain>`: `v=DKIM1; k=rsa; p=<SubjectPublicKeyInfo>` for an RSA key, and
 * `v=DKIM1; k=ed25519; p=<the raw 32-byte public key>` for an Ed25519 key (RFC 8463 section 4.2: not the SPKI DER).
 * The key's type decides, so a record can never name one algorithm and carry the other's key.
 */
export function dkimRecord(publicKeyPem: string): string {
  const spki = dkimPublicKeyFromPem(publicKeyPem);
  const key = createPublicKey({ key: Buffer.from(spki, "base64"), format: "der", type: "spki" });
  switch (key.asymmetricKeyType) {
    case "rsa":
      return `v=DKIM1; k=rsa; p=${spki}`;
    case "ed25519": {
      const raw = Buffer.from(key.export({ format: "jwk" }).x as string, "base64url");
      if (raw.length !== 32) throw new Error(`an Ed25519 public key is 32 bytes, got ${raw.length}`);
      return `v=DKIM1; k=ed25519; p=${raw.toString("base64")}`;
    }
    default:
      throw new Error(`DKIM keys must be RSA or Ed25519, got ${key.asymmetricKeyType ?? "an unknown key type"}`);
  }
}

export interface DmarcInput {
  readonly policy: "none" | "quarantine" | "reject";
  readonly pct: number;
  readonly rua: readonly string[];
  readonly adkim: "r" | "s";
  readonly aspf: "r" | "s";
}

/** `v=DMARC1; p=quarantine; pct=100; rua=mailto:...; adkim=s; aspf=s` */
export function dmarcRecord(d: DmarcInput): string {
  const tags = [`v=DMARC1`, `p=${d.policy}`, `pct=${d.pct}`];
  if (d.rua.length > 0) tags.push(`rua=${d.rua.join(",")}`);
  tags.push(`adkim=${d.adkim}`, `aspf=${d.aspf}`);
  return tags.join("; ");
}

export interface BimiInput {
  readonly logoUrl: string;
  readonly authorityUrl?: string;
}

/** `v=BIMI1; l=<svg>; a=<vmc>` (a= is empty without a mark certificate). */
export function bimiRecord(b: BimiInput): string {
  return `v=BIMI1; l=${b.logoUrl}; a=${b.authorityUrl ?? ""}`;
}

/** One record as a zone-file line, so the whole identity reads at a glance. */
export interface ZoneLine {
  readonly name: string;
  readonly type: string;
  readonly ttl: number;
  readonly content: string;
  readonly priority?: number;
  readonly proxied?: boolean;
}

export function zoneFileLine(r: ZoneLine): string {
  const ttl = r.ttl === 1 ? "auto" : String(r.ttl);
  const data = r.type === "MX" ? `${r.priority ?? 0} ${r.content}.` : r.type === "CNAME" ? `${r.content}.` : r.content;
  const note = r.proxied ? " ; proxied by Cloudflare" : "";
  return `${r.name}.\t${ttl}\tIN\t${r.type}\t${data}${note}`;
}
