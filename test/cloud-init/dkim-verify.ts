// Verifies a DKIM-Signature (a=rsa-sha256, c=relaxed/simple, as the rendered opendkim.conf signs) against the public
// half of the test's own key, without DNS: RFC 6376 sections 3.4.2 (relaxed header), 3.4.3 (simple body), 3.7.
import { createHash, createPublicKey, createVerify } from "node:crypto";

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

export function verifyDkim(message: string, privateKeyPem: string): DkimCheck {
  const text = message.replace(/\r?\n/g, "\r\n");
  const end = text.indexOf("\r\n\r\n");
  const fields = text.slice(0, end).split(/\r\n(?![ \t])/);
  const body = text.slice(end + 4);
  const sigField = fields.find((f) => /^dkim-signature:/i.test(f));
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
  if (tags.get("a") !== "rsa-sha256" || tags.get("c") !== "relaxed/simple") return { ...result, valid: false };

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
  const verifier = createVerify("RSA-SHA256").update(signed.join("") + sigWithoutB, "utf8");
  const valid = verifier.verify(createPublicKey(privateKeyPem), tags.get("b") ?? "", "base64");
  return { ...result, valid };
}
