import { X509Certificate } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { smtpCertificateRenewal, type CredentialExpiry } from "./credentials";

/** A `pulumi up` this many days before the certificate's end replaces it (the provider's earlyRenewalHours). */
export const SMTP_CERT_EARLY_RENEWAL_DAYS = 30;

export interface SmtpIngressTlsArgs {
  /** The public name callers use (cloudflared access tcp --hostname), e.g. smtp-relay.example.com. */
  readonly hostname: string;
  /** How long the certificate is valid; a `pulumi up` in the last 30 days replaces it (and its fingerprint). */
  readonly validityHours?: number;
}

/**
 * Names in the certificate: the public hostname, and the loopback names apps connect to through `cloudflared access
 * tcp`.
 */
export function smtpCertificateNames(hostname: string): { dnsNames: string[]; ipAddresses: string[] } {
  return { dnsNames: [hostname, "localhost"], ipAddresses: ["127.0.0.1", "::1"] };
}

/** "AB:CD:..." SHA-256 fingerprint of a PEM certificate, as openssl x509 -fingerprint -sha256 prints it. */
export function certificateFingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

/**
 * The SMTP ingress's STARTTLS key and self-signed certificate, generated in the program like the DKIM keys. Callers
 * trust or pin the certificate (stack outputs smtpIngressCertificate / smtpIngressFingerprint); no public CA is
 * involved, because the name is only reached through Access and `cloudflared access tcp`.
 */
export class SmtpIngressTls extends pulumi.ComponentResource {
  /** PKCS#8 PEM, secret. */
  readonly privateKeyPem: pulumi.Output<string>;
  readonly certPem: pulumi.Output<string>;
  readonly fingerprint: pulumi.Output<string>;
  /** The certificate's end (the provider's validityEndTime), with how it renews. */
  readonly expiry: pulumi.Output<CredentialExpiry>;

  constructor(name: string, args: SmtpIngressTlsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mail-relay:relay:SmtpIngressTls", name, {}, opts);
    const key = new tls.PrivateKey(
      `${name}-key`,
      { algorithm: "ECDSA", ecdsaCurve: "P256" },
      { parent: this, additionalSecretOutputs: ["privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"] },
    );
    const cert = new tls.SelfSignedCert(
      `${name}-cert`,
      {
        privateKeyPem: key.privateKeyPem,
        subject: { commonName: args.hostname, organization: "mail-relay SMTP ingress" },
        ...smtpCertificateNames(args.hostname),
        validityPeriodHours: args.validityHours ?? 5 * 365 * 24,
        earlyRenewalHours: SMTP_CERT_EARLY_RENEWAL_DAYS * 24,
        allowedUses: ["digital_signature", "key_encipherment", "server_auth"],
      },
      { parent: this },
    );
    this.privateKeyPem = pulumi.secret(key.privateKeyPemPkcs8);
    this.certPem = cert.certPem;
    this.fingerprint = cert.certPem.apply(certificateFingerprint);
    this.expiry = cert.validityEndTime.apply((expiresAt) => ({
      credential: `SMTP ingress certificate ${args.hostname}`,
      kind: "smtp-ingress-certificate" as const,
      expiresAt,
      renew: smtpCertificateRenewal(SMTP_CERT_EARLY_RENEWAL_DAYS),
    }));
    this.registerOutputs({ certPem: this.certPem, fingerprint: this.fingerprint });
  }
}
