// Postfix main.cf and master.cf for a send-only MTA: it listens on loopback only, relays only for loopback,
// signs through OpenDKIM, and either delivers straight to recipient MX (DANE, MTA-STS, else opportunistic TLS) or
// hands everything to a smarthost (verified TLS + SASL) for providers that block outbound port 25.
import { MESSAGE_SIZE_FACTOR } from "../relay/host-contract";
import {
  OPENDKIM_ED25519_MILTER,
  OPENDKIM_MILTER,
  POSTFIX_DIR,
  POSTFIX_LOG,
  SASL_PASSWD_FILE,
  SENDER_ACCESS_FILE,
  SYSTEM_CA_FILE,
} from "./paths";
import { enforcesOutboundTls, TLS_POLICY_MAPS } from "./outbound-tls";
import { releaseProfile } from "./release";
import type { HostSettings, SmarthostSettings } from "./types";
import { assertDomainName, assertIntInRange, assertLabel, assertPort, assertSingleLine } from "./validate";

const MIB = 1024 * 1024;

/** The composed-message size factor and why it is 8: relay/host-contract.ts. */
export { MESSAGE_SIZE_FACTOR };
/** Headers, MIME boundaries, Received:, the DKIM-Signature and Postfix's queue-file records. */
export const MESSAGE_SIZE_OVERHEAD_BYTES = MIB;
/** Postfix's own default for mailbox_size_limit/virtual_mailbox_limit; they must never be below message_size_limit. */
const POSTFIX_DEFAULT_MAILBOX_LIMIT = 51_200_000;

/**
 * message_size_limit = 8 * bodyLimit + 1 MiB, rounded up to whole MiB. Only local users can submit, so generous is
 * safe.
 */
export function messageSizeLimitFor(relayBodyLimitBytes: number): number {
  assertIntInRange("relayBodyLimitBytes", relayBodyLimitBytes, 1024, 64 * MIB);
  const raw = MESSAGE_SIZE_FACTOR * relayBodyLimitBytes + MESSAGE_SIZE_OVERHEAD_BYTES;
  return Math.ceil(raw / MIB) * MIB;
}

/** The exact key Postfix looks up in sasl_passwd for this relayhost: it must match relayhost byte for byte. */
export function smarthostNexthop(h: SmarthostSettings): string {
  return `[${h.host}]:${h.port}`;
}

export function checkHostSettings(s: HostSettings): void {
  assertDomainName("domain", s.domain);
  assertDomainName("mtaHostname", s.mtaHostname);
  assertPort("relayPort", s.relayPort);
  assertIntInRange("relayBodyLimitBytes", s.relayBodyLimitBytes, 1024, 64 * MIB);
  assertLabel("dkimSelector", s.dkimSelector);
  releaseProfile(s.release); // a release without a row in release.ts is refused here, before anything renders
  if (s.allowedSenders.length === 0)
    throw new Error("allowedSenders: list at least one sender address (Postfix refuses every other envelope sender)");
  for (const a of s.allowedSenders) {
    if (!/^[^\s@,]+@[a-z0-9.-]+$/.test(a))
      throw new Error(`allowedSenders: ${JSON.stringify(a)} must be one address without spaces or commas`);
  }
  if (s.smarthost) {
    assertDomainName("smarthost.host", s.smarthost.host);
    assertPort("smarthost.port", s.smarthost.port);
    assertSingleLine("smarthost.username", s.smarthost.username);
    if (s.smarthost.username === "" || /[\s:]/.test(s.smarthost.username)) {
      throw new Error("smarthost.username must be non-empty without spaces or ':' (sasl_passwd is user:password)");
    }
  }
  if (s.smtpIngress) {
    assertPort("smtpIngress.port", s.smtpIngress.port);
    assertDomainName("smtpIngress.hostname", s.smtpIngress.hostname);
    // The relay's own listener: never Postfix's ports, never the HTTP port.
    if ([25, 465, 587, s.relayPort].includes(s.smtpIngress.port))
      throw new Error(`smtpIngress.port must not be 25, 465, 587 or the relay's HTTP port; got ${s.smtpIngress.port}`);
  }
}

type Entry = { readonly comment?: string; readonly key: string; readonly value: string };
type Section = { readonly title: string; readonly entries: readonly Entry[] };

function renderSections(header: string, sections: readonly Section[]): string {
  const out: string[] = [header];
  for (const section of sections) {
    out.push("", `# --- ${section.title} ---`);
    for (const e of section.entries) {
      if (e.comment) out.push(`# ${e.comment}`);
      out.push(e.value === "" ? `${e.key} =` : `${e.key} = ${e.value}`);
    }
  }
  return out.join("\n") + "\n";
}

function outboundSection(s: HostSettings): Section {
  if (!s.smarthost && !enforcesOutboundTls(s)) {
    return {
      title:
        "outbound: direct to recipient MX, opportunistic TLS (mail-relay:outboundTls opts out of DANE and MTA-STS)",
      entries: [
        {
          comment: "Empty: deliver straight to each recipient's MX over outbound port 25.",
          key: "relayhost",
          value: "",
        },
        {
          comment:
            "may: encrypt when the MX offers STARTTLS, verify nothing. Accepted risk (outboundTls = " +
            "opportunistic-accepting-downgrade): a man in the middle can strip STARTTLS or present any certificate.",
          key: "smtp_tls_security_level",
          value: "may",
        },
        { key: "smtp_tls_CAfile", value: SYSTEM_CA_FILE },
        { key: "smtp_tls_loglevel", value: "1" },
        { key: "smtp_tls_session_cache_database", value: "btree:${data_directory}/smtp_scache" },
      ],
    };
  }
  if (!s.smarthost) {
    return {
      title: "outbound: direct to recipient MX",
      entries: [
        {
          comment: "Empty: deliver straight to each recipient's MX over outbound port 25.",
          key: "relayhost",
          value: "",
        },
        {
          comment:
            "Trust DNSSEC: TLSA records (and MX answers) count only when the local unbound validated them " +
            "(resolv.conf: 127.0.0.1, trust-ad).",
          key: "smtp_dns_support_level",
          value: "dnssec",
        },
        {
          comment:
            "dane: an MX with DNSSEC-validated TLSA records gets authenticated TLS or nothing; " +
            "every other MX gets opportunistic TLS (encrypt when offered).",
          key: "smtp_tls_security_level",
          value: "dane",
        },
        {
          comment:
            "First answer wins. 1: DANE first (mail-relay-tls-policy: dane-only where every MX has validated TLSA " +
            "records, TEMP when DNSSEC fails), so DANE beats MTA-STS (RFC 8461 section 2). 2: MTA-STS " +
            "(postfix-mta-sts-resolver): an enforce policy gets verified TLS to an MX it lists, or the mail waits.",
          key: "smtp_tls_policy_maps",
          value: TLS_POLICY_MAPS.join(", "),
        },
        { key: "smtp_tls_CAfile", value: SYSTEM_CA_FILE },
        { key: "smtp_tls_loglevel", value: "1" },
        { key: "smtp_tls_session_cache_database", value: "btree:${data_directory}/smtp_scache" },
      ],
    };
  }
  const h = s.smarthost;
  const entries: Entry[] = [
    {
      comment: "Every message goes to the smarthost (the provider blocks outbound port 25).",
      key: "relayhost",
      value: smarthostNexthop(h),
    },
    {
      comment:
        "secure = TLS mandatory AND the certificate must name the smarthost: " +
        "encrypt alone would hand the SASL password to a man in the middle.",
      key: "smtp_tls_security_level",
      value: "secure",
    },
    { key: "smtp_tls_secure_cert_match", value: "nexthop" },
    { key: "smtp_tls_mandatory_protocols", value: ">=TLSv1.2" },
    { key: "smtp_tls_CAfile", value: SYSTEM_CA_FILE },
    { key: "smtp_tls_loglevel", value: "1" },
    { key: "smtp_tls_session_cache_database", value: "btree:${data_directory}/smtp_scache" },
    {
      comment: "SASL towards the smarthost; the password file is root-only and pushed over SSH, never in user-data.",
      key: "smtp_sasl_auth_enable",
      value: "yes",
    },
    { key: "smtp_sasl_password_maps", value: `hash:${SASL_PASSWD_FILE}` },
    { key: "smtp_sasl_security_options", value: "noanonymous" },
    { key: "smtp_sasl_tls_security_options", value: "noanonymous" },
  ];
  if (h.port === 465) {
    entries.push({
      comment: "Port 465 speaks TLS from the first byte (no STARTTLS).",
      key: "smtp_tls_wrappermode",
      value: "yes",
    });
  }
  return { title: `outbound: smarthost ${smarthostNexthop(h)}`, entries };
}

/** /etc/postfix/main.cf (the whole file: nothing of Debian's default is kept). */
export function renderPostfixMainCf(s: HostSettings): string {
  checkHostSettings(s);
  const sizeLimit = messageSizeLimitFor(s.relayBodyLimitBytes);
  const mailboxLimit = Math.max(POSTFIX_DEFAULT_MAILBOX_LIMIT, sizeLimit);
  return renderSections(
    [
      "# /etc/postfix/main.cf for mail-relay: rendered by cloud-init/postfix.ts, pushed by the deploy step.",
      "# Send-only MTA. Do not edit on the host: the next deploy overwrites this file.",
    ].join("\n"),
    [
      {
        title: "identity",
        entries: [
          {
            comment: "The level Debian's own main.cf sets on this release (cloud-init/release.ts).",
            key: "compatibility_level",
            value: releaseProfile(s.release).postfix.compatibilityLevel,
          },
          {
            comment: "The name in EHLO; its A record and the IP's PTR must both match it.",
            key: "myhostname",
            value: s.mtaHostname,
          },
          { key: "smtp_helo_name", value: s.mtaHostname },
          { key: "mydomain", value: s.domain },
          {
            comment:
              "localhost, not the domain: mail to root or postmaster (cron, Postfix's own notices) is delivered to " +
              "/var/mail/root on this host instead of leaving for the domain's MX; " +
              "the relay always gives full addresses.",
            key: "myorigin",
            value: "localhost",
          },
          { comment: "No version in the banner.", key: "smtpd_banner", value: "$myhostname ESMTP" },
          { key: "biff", value: "no" },
          { key: "append_dot_mydomain", value: "no" },
          { key: "readme_directory", value: "no" },
        ],
      },
      {
        title: "listeners: loopback only, nobody else may relay",
        entries: [
          {
            comment: "Never a public listener: the only clients are the relay and local cron/root.",
            key: "inet_interfaces",
            value: "loopback-only",
          },
          { key: "inet_protocols", value: s.ipv6 ? "all" : "ipv4" },
          {
            comment:
              "Loopback only, never a private range: a Docker NAT gateway address in mynetworks and an FRP " +
              "tunnel arriving from localhost both made open relays (incidents 001/000). " +
              "Nothing may ever forward connections to Postfix.",
            key: "mynetworks",
            value: "127.0.0.0/8 [::1]/128",
          },
          { key: "mynetworks_style", value: "host" },
          {
            comment:
              "mydestination must not list the domain: a send-only host would swallow mail for it instead of " +
              "sending it to the domain's MX.",
            key: "mydestination",
            value: "localhost",
          },
          {
            comment: "Relay for no domain; only mynetworks clients may send anywhere.",
            key: "relay_domains",
            value: "",
          },
          {
            comment: "Defense in depth: a non-loopback client is refused at connect time.",
            key: "smtpd_client_restrictions",
            value: "permit_mynetworks, reject",
          },
          {
            comment:
              "The relay's sender allowlist, enforced a second time: a loopback client that is not the relay " +
              "gets nothing signed for an address outside it.",
            key: "smtpd_sender_restrictions",
            value:
              "check_sender_access texthash:$config_directory/" +
              `${SENDER_ACCESS_FILE.slice(POSTFIX_DIR.length + 1)}, reject`,
          },
          { key: "smtpd_relay_restrictions", value: "permit_mynetworks, reject_unauth_destination" },
          { key: "smtpd_recipient_restrictions", value: "permit_mynetworks, reject_unauth_destination" },
          { key: "smtpd_helo_required", value: "yes" },
          { key: "disable_vrfy_command", value: "yes" },
          {
            comment:
              "No smtpd TLS and no smtpd SASL: the listener is loopback-only, " +
              "TLS there protects nothing and a certificate would only be something to renew.",
            key: "smtpd_tls_security_level",
            value: "none",
          },
          { key: "smtpd_sasl_auth_enable", value: "no" },
          {
            comment: "Only root and the relay's user may submit with sendmail/postdrop or read the queue.",
            key: "authorized_submit_users",
            value: "root, mailrelay",
          },
          { key: "authorized_mailq_users", value: "root, mailrelay" },
          { key: "authorized_flush_users", value: "root, mailrelay" },
        ],
      },
      {
        title: "limits and bounces",
        entries: [
          {
            comment:
              `= ${MESSAGE_SIZE_FACTOR} x relay body limit (${s.relayBodyLimitBytes}) + 1 MiB, rounded up to MiB: ` +
              "covers quoted-printable, a generated text part and base64.",
            key: "message_size_limit",
            value: String(sizeLimit),
          },
          {
            comment: "Must never be below message_size_limit (local(8)/virtual(8) refuse to run otherwise).",
            key: "mailbox_size_limit",
            value: String(mailboxLimit),
          },
          { key: "virtual_mailbox_limit", value: String(mailboxLimit) },
          {
            comment:
              "Transactional mail is stale after two days; the relay's own queue already retried before hand-off.",
            key: "maximal_queue_lifetime",
            value: "2d",
          },
          {
            comment: "Bounces to an unreachable sender are dropped after a day instead of five.",
            key: "bounce_queue_lifetime",
            value: "1d",
          },
          { key: "delay_warning_time", value: "0h" },
          { key: "notify_classes", value: "resource, software" },
          { key: "alias_maps", value: "hash:/etc/aliases" },
          { key: "alias_database", value: "hash:/etc/aliases" },
          { key: "recipient_delimiter", value: "+" },
        ],
      },
      outboundSection(s),
      {
        title: "logging: the relay's delivery tracker follows this file",
        entries: [
          {
            comment:
              "postlogd writes it (root:mailrelay 0640, created by the deploy step; " +
              "logrotate keeps the mode). Postfix no longer logs to the journal.",
            key: "maillog_file",
            value: POSTFIX_LOG,
          },
        ],
      },
      {
        title: "DKIM signing: two OpenDKIM milters on unix sockets (RSA, then Ed25519)",
        entries: [
          {
            comment:
              "Two instances: Debian's OpenDKIM 2.11 signs with one algorithm per instance (SignatureAlgorithm). " +
              "unix sockets inside queue_directory, relative paths: valid for chrooted and plain daemons alike. " +
              "Measured: ~215 msg/s vs ~11 msg/s on inet:8891 (~45 ms stall per message).",
            key: "smtpd_milters",
            value: `${OPENDKIM_MILTER}, ${OPENDKIM_ED25519_MILTER}`,
          },
          { key: "non_smtpd_milters", value: `${OPENDKIM_MILTER}, ${OPENDKIM_ED25519_MILTER}` },
          { key: "milter_protocol", value: "6" },
          {
            comment: "tempfail, never accept: if OpenDKIM is down, mail waits instead of leaving unsigned.",
            key: "milter_default_action",
            value: "tempfail",
          },
        ],
      },
    ],
  );
}

/**
 * /etc/postfix/sender_access: `address OK` for each allowed envelope sender; everything else meets the final reject.
 */
export function renderPostfixSenderAccess(s: HostSettings): string {
  checkHostSettings(s);
  return (
    [
      "# Rendered by cloud-init/postfix.ts from mail-relay:allowedSenders (texthash: read when smtpd starts).",
      ...[...new Set(s.allowedSenders)].sort().map((a) => `${a} OK`),
    ].join("\n") + "\n"
  );
}
