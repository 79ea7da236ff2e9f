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

/**
 * A credential generation's name: generation 1 keeps the name it had before rotations existed (so no stack replaces a
 * credential by upgrading), generation g > 1 is `<base>-g<g>`, beside the old one.
 */
export function generationName(base: string, generation: number): string {
  return generation === 1 ? base : `${base}-g${generation}`;
}

/** The current (newest) and the previous generations of a credential, from its generations list (oldest first). */
export function splitGenerations(generations: readonly number[] = [1]): { current: number; previous: number[] } {
  return { current: generations[generations.length - 1] ?? 1, previous: generations.slice(0, -1) };
}

/**
 * An Access service token's renewal. With one generation: add the next one (created beside it). With two, for the old
 * generation's token: retire it once the callers use the new one.
 */
export function accessTokenRenewal(generations: readonly number[], generation: number): string {
  const { current } = splitGenerations(generations);
  if (generation !== current)
    return (
      `retire it once every caller uses generation ${current} (accessClientIds/accessClientSecrets): ` +
      `pulumi config set --path 'mail-relay:rotations.accessTokens[0]' ${current} && ` +
      `pulumi config rm --path 'mail-relay:rotations.accessTokens[1]' && pulumi up (docs/day-two.md)`
    );
  if (generations.length > 1)
    return `renewed: generation ${current} is in place; retire generation ${generations[0]} first (docs/day-two.md)`;
  return (
    `pulumi config set --path 'mail-relay:rotations.accessTokens[1]' ${current + 1} && pulumi up ` +
    `(creates the new tokens beside the old ones; hand the callers the new accessClientIds/accessClientSecrets, ` +
    `then retire generation ${current}; docs/day-two.md)`
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
