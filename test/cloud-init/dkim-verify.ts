// Verifies a DKIM-Signature (a=rsa-sha256 or a=ed25519-sha256, c=relaxed/simple, as the rendered opendkim confs sign)
// against the public half of the test's own key, without DNS: RFC 6376 sections 3.4.2 (relaxed header), 3.4.3
// (simple body), 3.7; RFC 8463 section 3 (Ed25519 signs the SHA-256 hash of the canonicalized data).
import { createHash, createPublicKey, createVerify, verify } from "node:crypto";

export interface DkimCheck {
  readonly d?: string;
  readonly s?: string;
  /** Body hash matches and the signature verifies over the signed header fields. */
  readonly valid: boolean;
}

/** Relaxed header canonicalization of one field (with its continuation lines), without the trailing CRLF. */
function relaxedHeader(field: string): string {
  const i = field.indexOf(":");
  const value = field
    .slice(i + 1)
    .replace(/\r\n(?=[ \t])/g, "")
    .replace(/[ \t]+/g, " ")
    .trim();
  return `${field.slice(0, i).trim().toLowerCase()}:${value}`;
}

/** Simple body canonicalization: trailing empty lines removed, one CRLF at the end. */
function simpleBody(body: string): string {
  const b = body.replace(/(\r\n)*$/, "");
  return `${b}\r\n`;
}

/** The a= tag a key of this type signs with. */
function algorithmOf(privateKeyPem: string): string {
  return createPublicKey(privateKeyPem).asymmetricKeyType === "ed25519" ? "ed25519-sha256" : "rsa-sha256";
}

/** Verifies the message's DKIM-Signature made with the key's algorithm (a message may carry one per algorithm). */
export function verifyDkim(message: string, privateKeyPem: string): DkimCheck {
  const text = message.replace(/\r?\n/g, "\r\n");
  const end = text.indexOf("\r\n\r\n");
  const fields = text.slice(0, end).split(/\r\n(?![ \t])/);
  const body = text.slice(end + 4);
  const alg = algorithmOf(privateKeyPem);
  const sigField = fields.find(
    (f) => /^dkim-signature:/i.test(f) && new RegExp(`[;\\s]a=${alg};`).test(f.replace(/\s+/g, " ")),
  );
  if (!sigField) return { valid: false };
  const tags = new Map(
    sigField
      .slice(sigField.indexOf(":") + 1)
      .split(";")
      .map((t) => t.replace(/\s+/g, ""))
      .filter(Boolean)
      .map((t) => [t.slice(0, t.indexOf("=")), t.slice(t.indexOf("=") + 1)] as const),
  );
  const result = { d: tags.get("d"), s: tags.get("s") };
  if (tags.get("a") !== alg || tags.get("c") !== "relaxed/simple") return { ...result, valid: false };

  const bodyHash = createHash("sha256").update(simpleBody(body), "utf8").digest("base64");
  if (bodyHash !== tags.get("bh")) return { ...result, valid: false };

  // Signed fields, each name taking the last unused instance from the bottom (RFC 6376 5.4.2).
  const unused = [...fields];
  const signed: string[] = [];
  for (const name of (tags.get("h") ?? "").split(":")) {
    const idx = unused.map((f) => f.slice(0, f.indexOf(":")).trim().toLowerCase()).lastIndexOf(name.toLowerCase());
    if (idx === -1) continue;
    signed.push(`${relaxedHeader(unused[idx] as string)}\r\n`);
    unused.splice(idx, 1);
  }
  const sigWithoutB = relaxedHeader(sigField.replace(/(\bb=)[^;]*/, "$1"));
  const data = signed.join("") + sigWithoutB;
  const key = createPublicKey(privateKeyPem);
  const b = Buffer.from(tags.get("b") ?? "", "base64");
  const valid =
    alg === "ed25519-sha256"
      ? verify(null, createHash("sha256").update(data, "utf8").digest(), key, b)
      : createVerify("RSA-SHA256").update(data, "utf8").verify(key, b);
  return { ...result, valid };
}
