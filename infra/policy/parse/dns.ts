/**
 * DNS record values: names, TXT chunks, DKIM/DMARC/BIMI tags, SPF terms. Written independently of infra/records.ts
 * on purpose: a checker that shares the code it checks would share its bugs.
 */
import { createPrivateKey, createPublicKey } from "node:crypto";

/** DNS names compare case-insensitively and without the root dot. */
export function normName(n: string): string {
  return n.trim().toLowerCase().replace(/\.$/, "");
}

/**
 * The value a resolver assembles from TXT content written as quoted strings ("a" "b" -> ab; \" \\ and
 * \DDD escapes, RFC 1035 section 5.1). Content without quotes is taken as-is.
 */
export function txtJoin(content: string): string {
  const s = content.trim();
  if (!s.startsWith('"')) return s;
  let out = "";
  let i = 0;
  while (i < s.length) {
    while (i < s.length && /\s/.test(s[i])) i++;
    if (i >= s.length) break;
    if (s[i] !== '"') {
      // Unquoted word between strings: take it literally up to the next whitespace.
      const m = /^\S+/.exec(s.slice(i))!;
      out += m[0];
      i += m[0].length;
      continue;
    }
    i++;
    while (i < s.length && s[i] !== '"') {
      if (s[i] === "\\" && i + 1 < s.length) {
        const dec = /^\d{3}/.exec(s.slice(i + 1));
        if (dec) {
          out += String.fromCharCode(Number(dec[0]));
          i += 4;
        } else {
          out += s[i + 1];
          i += 2;
        }
      } else out += s[i++];
    }
    i++;
  }
  return out;
}

/** `k=v; k=v` tag lists (DKIM RFC 6376 section 3.2, DMARC RFC 7489 section 6.4, BIMI). Tag names lower-cased. */
export function parseTags(value: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of value.split(";")) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    m.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  return m;
}

/** RSA modulus size of a DKIM p= value (base64 SubjectPublicKeyInfo DER); undefined if it is not a key. */
export function dkimKeyBits(p: string): number | undefined {
  try {
    const key = createPublicKey({ key: Buffer.from(p.replace(/\s+/g, ""), "base64"), format: "der", type: "spki" });
    return key.asymmetricKeyDetails?.modulusLength;
  } catch {
    return undefined;
  }
}

/** The base64 SPKI of a private key PEM (what its DKIM record's p= must carry); undefined if not a key. */
export function spkiOfPrivateKey(pem: string): string | undefined {
  try {
    return createPublicKey(createPrivateKey(pem)).export({ type: "spki", format: "der" }).toString("base64");
  } catch {
    return undefined;
  }
}

export interface SpfTerm {
  readonly qualifier: "+" | "-" | "~" | "?";
  readonly mechanism: string;
  readonly value?: string;
  readonly raw: string;
}

/** SPF terms after `v=spf1` (RFC 7208 section 4.6.1); modifiers (name=value) come back with mechanism "name=". */
export function parseSpf(value: string): SpfTerm[] | undefined {
  const words = value.trim().split(/\s+/);
  if (words[0]?.toLowerCase() !== "v=spf1") return undefined;
  return words.slice(1).map((raw) => {
    const mod = /^([a-z][a-z0-9_.-]*)=(.*)$/i.exec(raw);
    if (mod) return { qualifier: "+", mechanism: `${mod[1].toLowerCase()}=`, value: mod[2], raw };
    const q = /^[+\-~?]/.test(raw) ? (raw[0] as SpfTerm["qualifier"]) : "+";
    const body = /^[+\-~?]/.test(raw) ? raw.slice(1) : raw;
    const m = /^([a-z0-9]+)(?::(.*))?$/i.exec(body.replace(/^(ip[46]|a|mx|include|exists|ptr)\//i, "$1:/"));
    return m
      ? { qualifier: q, mechanism: m[1].toLowerCase(), value: m[2], raw }
      : { qualifier: q, mechanism: body.toLowerCase(), raw };
  });
}
