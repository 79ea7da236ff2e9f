/**
 * Expiry: every dated credential the stack reports (the `credentialExpiry` output: Access service tokens and others;
 * the SMTP ingress certificate's notAfter) warns 30 days before it ends and fails once it has.
 */
import { X509Certificate } from "node:crypto";
import type { CredentialExpiry } from "./outputs";
import { type Check, fail, pass, warn } from "./report";

export const WARN_DAYS = 30;
const DAY = 86_400_000;

export function checkExpiry(c: CredentialExpiry, now: Date): Check {
  const id = "expiry";
  const subject = `${c.kind} ${c.credential}`;
  const at = new Date(c.expiresAt);
  if (Number.isNaN(at.getTime()))
    return warn(id, "expiry", subject, `expiresAt ${JSON.stringify(c.expiresAt)} is not a date`, c.renew);
  const days = (at.getTime() - now.getTime()) / DAY;
  const when = `expires ${at.toISOString()}`;
  if (days <= 0) return fail(id, "expiry", subject, `${when}: EXPIRED ${Math.ceil(-days)} day(s) ago`, c.renew);
  if (days <= WARN_DAYS) return warn(id, "expiry", subject, `${when}: in ${Math.ceil(days)} day(s)`, c.renew);
  return pass(id, "expiry", subject, `${when} (in ${Math.floor(days)} days)`);
}

/** The SMTP ingress certificate, from its PEM (the stack renews it on `pulumi up` within 30 days of its end). */
export function certificateExpiry(pem: string, stack: string): CredentialExpiry {
  const cert = new X509Certificate(pem);
  return {
    credential: "smtpIngressCertificate",
    kind: "smtp-ingress-certificate",
    expiresAt: new Date(cert.validTo).toISOString(),
    renew: `\`pulumi up --stack ${stack}\` (the certificate is replaced within 30 days of its end)`,
  };
}

export function expiryChecks(rows: readonly CredentialExpiry[], now: Date): Check[] {
  if (rows.length === 0)
    return [pass("expiry", "expiry", "dated credentials", "the stack reports none (no credentialExpiry output)")];
  return rows.map((r) => checkExpiry(r, now));
}
