// Where things live on the host. One place, so renderers, deploy scripts and tests agree.

export const RELAY_USER = "mailrelay";
/**
 * Postfix's own unprivileged user (created by the Debian package): the only one that may send on outbound SMTP ports.
 */
export const POSTFIX_USER = "postfix";
/** cloudflared's system user: created by the deploy step before the host ruleset (which names it) is loaded. */
export const CLOUDFLARED_USER = "cloudflared";
/** The cloud metadata service: it serves user-data, so only root may reach it. */
export const METADATA_ADDRESS = "169.254.169.254";
/** Hetzner Cloud's gateway, which is also the DHCP server of every server's public interface. */
export const HETZNER_DHCP_SERVER = "172.31.1.1";
export const QUEUE_ROOT = "/var/spool/mail-relay";
/** The relay creates what else it needs; these exist from first boot so ownership is right from the start. */
export const QUEUE_SUBDIRS = ["pending", "processing", "failed", "sent"] as const;
export const RELAY_BASE = "/opt/mail-relay";
export const RELAY_RELEASES = `${RELAY_BASE}/releases`;
export const RELAY_CURRENT = `${RELAY_BASE}/current`;
export const RELAY_ENTRY = "relay.js";
export const RELAY_ENV_FILE = "/etc/mail-relay.env";
/** The SMTP ingress's STARTTLS key (root:mailrelay 0640) and certificate. */
export const RELAY_CONFIG_DIR = "/etc/mail-relay";
export const SMTP_TLS_KEY_FILE = `${RELAY_CONFIG_DIR}/smtp-ingress.key`;
export const SMTP_TLS_CERT_FILE = `${RELAY_CONFIG_DIR}/smtp-ingress.crt`;
export const RELAY_UNIT_NAME = "mail-relay.service";
export const RELAY_UNIT_PATH = `/etc/systemd/system/${RELAY_UNIT_NAME}`;
/** How many releases activation keeps on disk (the current one and its predecessor are never pruned). */
export const RELAY_RELEASES_KEPT = 5;

/** The outbound webhook sender: its own unit, so the relay keeps IPAddressAllow=localhost. */
export const WEBHOOK_UNIT_NAME = "mail-relay-webhooks.service";
export const WEBHOOK_UNIT_PATH = `/etc/systemd/system/${WEBHOOK_UNIT_NAME}`;

export const CLOUDFLARED_UNIT_NAME = "cloudflared-mail-relay.service";
export const CLOUDFLARED_UNIT_PATH = `/etc/systemd/system/${CLOUDFLARED_UNIT_NAME}`;
export const CLOUDFLARED_ENV_FILE = "/etc/cloudflared/mail-relay.env";
/** Locally managed ingress: the only place the tunnel's routes are defined (the tunnel is config_src local). */
export const CLOUDFLARED_CONFIG_FILE = "/etc/cloudflared/mail-relay.yml";

export const POSTFIX_DIR = "/etc/postfix";
export const POSTFIX_QUEUE_DIR = "/var/spool/postfix";
/** Postfix's own log (maillog_file, written by postlogd): the relay's delivery tracker reads it as group mailrelay. */
export const POSTFIX_LOG_DIR = "/var/log/mail-relay";
export const POSTFIX_LOG = `${POSTFIX_LOG_DIR}/postfix.log`;
export const POSTFIX_LOGROTATE = "/etc/logrotate.d/mail-relay-postfix";
export const SASL_PASSWD_FILE = `${POSTFIX_DIR}/sasl_passwd`;
/** Envelope senders Postfix accepts (texthash: read when smtpd starts, no postmap step). */
export const SENDER_ACCESS_FILE = `${POSTFIX_DIR}/sender_access`;
export const SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt";

export const OPENDKIM_CONF = "/etc/opendkim.conf";
export const OPENDKIM_DIR = "/etc/opendkim";
export const OPENDKIM_KEY_TABLE = `${OPENDKIM_DIR}/KeyTable`;
export const OPENDKIM_SIGNING_TABLE = `${OPENDKIM_DIR}/SigningTable`;
export const OPENDKIM_TRUSTED_HOSTS = `${OPENDKIM_DIR}/TrustedHosts`;
/** Inside Postfix's queue directory, so the milter address works the same for chrooted and plain daemons. */
export const OPENDKIM_SOCKET_DIR = `${POSTFIX_QUEUE_DIR}/opendkim`;
export const OPENDKIM_SOCKET = `${OPENDKIM_SOCKET_DIR}/opendkim.sock`;
/** The same socket as Postfix names it: relative to queue_directory, where every Postfix daemon runs. */
export const OPENDKIM_MILTER = "unix:opendkim/opendkim.sock";
/** Debian's opendkim.service has PIDFile=/run/opendkim/opendkim.pid; the conf must agree. */
export const OPENDKIM_PID_FILE = "/run/opendkim/opendkim.pid";

export function dkimKeyPath(domain: string, selector: string): string {
  return `${OPENDKIM_DIR}/keys/${domain}/${selector}.private`;
}

export const NFTABLES_CONF = "/etc/nftables.conf";
/** 10- sorts before cloud-init's 50-cloud-init.conf: sshd keeps the FIRST value it reads. */
export const SSHD_HARDENING_DROPIN = "/etc/ssh/sshd_config.d/10-mail-relay-hardening.conf";
/** The host key the program generates: the only one sshd offers, so a pinned client can't be offered another type. */
export const SSH_HOST_KEY = "/etc/ssh/ssh_host_ed25519_key";
/** 05- sorts first; HostKey accumulates, and Debian's sshd_config lists none, so this is the only one loaded. */
export const SSH_HOST_KEY_DROPIN = "/etc/ssh/sshd_config.d/05-mail-relay-host-key.conf";
/** Where the relay bundle is uploaded before it is installed: root-only, unlike /var/tmp. */
export const RELAY_UPLOAD_DIR = "/var/lib/mail-relay-upload";
export const AUTO_UPGRADES_CONF = "/etc/apt/apt.conf.d/20auto-upgrades";

/** The local DNSSEC-validating resolver (unbound): its drop-in, and the resolv.conf that points everything at it. */
export const UNBOUND_DROPIN = "/etc/unbound/unbound.conf.d/mail-relay.conf";
export const RESOLV_CONF = "/etc/resolv.conf";
/** postfix-mta-sts-resolver (Debian's package and unit): its config, and the loopback socketmap it serves. */
export const MTA_STS_CONF = "/etc/mta-sts-daemon.yml";
export const MTA_STS_UNIT_NAME = "postfix-mta-sts-resolver.service";
export const MTA_STS_DROPIN = `/etc/systemd/system/${MTA_STS_UNIT_NAME}.d/mail-relay.conf`;
export const MTA_STS_LISTEN = { host: "127.0.0.1", port: 8461 } as const;
/** The second OpenDKIM instance: it signs with the Ed25519 key (one OpenDKIM signs with one algorithm only). */
export const OPENDKIM_ED25519_CONF = "/etc/opendkim-ed25519.conf";
export const OPENDKIM_ED25519_KEY_TABLE = `${OPENDKIM_DIR}/KeyTable.ed25519`;
export const OPENDKIM_ED25519_SIGNING_TABLE = `${OPENDKIM_DIR}/SigningTable.ed25519`;
export const OPENDKIM_ED25519_SOCKET = `${OPENDKIM_SOCKET_DIR}/opendkim-ed25519.sock`;
export const OPENDKIM_ED25519_MILTER = "unix:opendkim/opendkim-ed25519.sock";
export const OPENDKIM_ED25519_PID_FILE = "/run/opendkim-ed25519/opendkim.pid";
export const OPENDKIM_ED25519_UNIT_NAME = "opendkim-ed25519.service";
export const OPENDKIM_ED25519_UNIT_PATH = `/etc/systemd/system/${OPENDKIM_ED25519_UNIT_NAME}`;
/** The DANE-first TLS policy socketmap (relay.js tls-policy): its own unprivileged unit. */
export const TLS_POLICY_UNIT_NAME = "mail-relay-tls-policy.service";
export const TLS_POLICY_UNIT_PATH = `/etc/systemd/system/${TLS_POLICY_UNIT_NAME}`;
