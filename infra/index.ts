/**
 * mail-relay's Pulumi program: read and check the stack's config once, then build everything.
 * `npm run plan` runs this same module under Pulumi's mocks.
 */
import { loadConfig } from "./config";
import { createMailRelay } from "./mailRelay";

const { config, secrets } = loadConfig();
const out = createMailRelay(config, secrets);

/**
 * Per node: name, MTA hostname, IPv4, IPv6 (when enabled), Hetzner server id, the SSH host key every deploy step pins
 * and its SHA256 fingerprint.
 */
export const nodes = out.nodes;
/** hostname -> IP pairs the A/AAAA records (and PTRs) are built from. */
export const hostRecords = out.hostRecords;
/** Where the relay listens on each host (loopback only). */
export const relayInternalUrl = out.relayInternalUrl;
/** The public HTTPS entry (through Cloudflare Access and the tunnel); undefined when the tunnel is off. */
export const relayUrl = out.relayUrl;
/** caller -> relay bearer token (secret). */
export const relayTokens = out.relayTokens;
/** caller -> webhook signing secret, whsec_… (secret); only callers with a webhookUrl. */
export const webhookSecrets = out.webhookSecrets;
/** caller -> Cloudflare Access service-token client id (secret). */
export const accessClientIds = out.accessClientIds;
/** caller -> Cloudflare Access service-token client secret (secret). */
export const accessClientSecrets = out.accessClientSecrets;
/** The DKIM selector that signs. */
export const dkimSelector = out.dkimSelector;
/** Every DNS record this stack manages, as zone-file lines. */
export const dnsZoneFile = out.dnsZoneFile;
/** The sender address callers should use by default. */
export const defaultSender = out.defaultSender;
/** The relay release (bundle content hash) deployed to the hosts. */
export const relayVersion = out.relayVersion;
/** The SMTP ingress's public name (cloudflared access tcp --hostname); undefined when it or the tunnel is off. */
export const smtpIngressHostname = out.smtpIngressHostname;
/** Where the SMTP ingress listens on each host (loopback only); undefined when it is off. */
export const smtpIngressInternal = out.smtpIngressInternal;
/** The SMTP ingress's self-signed STARTTLS certificate (PEM): what callers trust or pin. */
export const smtpIngressCertificate = out.smtpIngressCertificate;
/** Its SHA-256 fingerprint, as `openssl x509 -fingerprint -sha256` prints it. */
export const smtpIngressFingerprint = out.smtpIngressFingerprint;
/**
 * Every credential with a date, soonest first: [{credential, kind, expiresAt (ISO 8601), renew}], renew being the
 * config change or command that renews it (docs/day-two.md). The Access service tokens expire a year after creation.
 */
export const credentialExpiry = out.credentialExpiry;
