/**
 * Credentials with a date: what expires, when, and the change that renews it (stack output `credentialExpiry`,
 * shown by `npm run plan`; docs/day-two.md walks each renewal).
 */
import * as pulumi from "@pulumi/pulumi";

export interface CredentialExpiry {
  /** What the credential is, as the cloud names it (the service token's name, the certificate's hostname). */
  readonly credential: string;
  readonly kind: "cloudflare-access-service-token" | "smtp-ingress-certificate";
  /** ISO 8601, as the provider reports it. */
  readonly expiresAt: string;
  /** The config change or command that renews it before that date. */
  readonly renew: string;
}

/** An Access service token's renewal: a new generation beside the old one, then a second change retires the old. */
export function accessTokenRenewal(nextGeneration: number): string {
  return (
    `pulumi config set --path 'mail-relay:rotations.accessTokens[1]' ${nextGeneration} && pulumi up ` +
    `(creates the new tokens beside the old ones; hand the callers the new accessClientIds/accessClientSecrets, ` +
    `then drop the old generation from mail-relay:rotations.accessTokens and pulumi up again; docs/day-two.md)`
  );
}

/** The SMTP ingress certificate renews itself: any `pulumi up` in its early-renewal window replaces it. */
export function smtpCertificateRenewal(earlyRenewalDays: number): string {
  return (
    `pulumi up in the ${earlyRenewalDays} days before expiresAt replaces it (earlyRenewalHours); callers that pin ` +
    `smtpIngressFingerprint take the new one from the output (docs/day-two.md)`
  );
}

/** One list from the entries, ordered by date (soonest first), so the first line is the next thing to renew. */
export function credentialExpiryList(
  entries: readonly pulumi.Input<CredentialExpiry>[],
): pulumi.Output<CredentialExpiry[]> {
  return pulumi
    .all(entries.map((e) => pulumi.output(e)))
    .apply((list) =>
      [...list].sort(
        (a, b) => Date.parse(a.expiresAt) - Date.parse(b.expiresAt) || a.credential.localeCompare(b.credential),
      ),
    ) as pulumi.Output<CredentialExpiry[]>;
}
