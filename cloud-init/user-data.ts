// cloud-init user-data. Changing it replaces the Hetzner server, so it is bootstrap only: packages, users,
// directories, firewall, sshd. It takes BootstrapSettings and nothing else, so no secret, relay setting,
// Postfix/OpenDKIM setting or relay code can ever reach it (the deploy step pushes those over SSH).
import { stringify } from "yaml";
import { renderAutoUpgrades, renderNftablesConf, renderSshdHardening } from "./host-hardening";
import {
  AUTO_UPGRADES_CONF,
  NFTABLES_CONF,
  OPENDKIM_SOCKET_DIR,
  QUEUE_ROOT,
  QUEUE_SUBDIRS,
  RELAY_RELEASES,
  RELAY_USER,
  SSHD_HARDENING_DROPIN,
} from "./paths";
import type { BootstrapSettings } from "./types";
import { assertDomainName, assertLabel } from "./validate";

/**
 * Debian packages the host needs; the set is the same for every stack (smarthost mode needs libsasl2-modules; unbound
 * and postfix-mta-sts-resolver give direct delivery DANE and MTA-STS).
 */
export const HOST_PACKAGES = [
  "postfix",
  "libsasl2-modules",
  "opendkim",
  "opendkim-tools",
  "unbound",
  "postfix-mta-sts-resolver",
  "nodejs",
  "nftables",
  "unattended-upgrades",
  "ca-certificates",
  "curl",
  "gnupg",
] as const;

export function renderUserData(b: BootstrapSettings): string {
  // Read exactly these two fields: extra properties on the argument are ignored by construction.
  const hostname = b.hostname;
  const fqdn = b.fqdn;
  assertLabel("hostname", hostname);
  assertDomainName("fqdn", fqdn);
  if (!fqdn.startsWith(`${hostname}.`)) throw new Error(`fqdn (${fqdn}) must start with hostname (${hostname}.)`);

  const config = {
    hostname,
    fqdn,
    prefer_fqdn_over_hostname: false,
    manage_etc_hosts: true,
    timezone: "Etc/UTC",
    // C.UTF-8 ships with libc on every Debian and needs no locale-gen. Without an explicit value cloud-init applies
    // its default (en_US.UTF-8), and on an image that lacks it update-locale fails and stops the deploy.
    locale: "C.UTF-8",
    // The deploy step logs in as root with the key Hetzner injects; passwords never work.
    disable_root: false,
    ssh_pwauth: false,
    users: [
      {
        name: RELAY_USER,
        system: true,
        no_create_home: true,
        shell: "/usr/sbin/nologin",
        lock_passwd: true,
      },
    ],
    apt: {
      // Keep the image's (Hetzner mirror) sources; we only need the debconf answers.
      preserve_sources_list: true,
      debconf_selections: {
        // "Local only" = loopback-only Postfix from the moment the package is installed, before our main.cf arrives.
        postfix:
          ["postfix postfix/main_mailer_type select Local only", `postfix postfix/mailname string ${fqdn}`].join("\n") +
          "\n",
        unattended: "unattended-upgrades unattended-upgrades/enable_auto_updates boolean true\n",
      },
    },
    package_update: true,
    package_upgrade: true,
    // A reboot would race the deploy step that waits for cloud-init.
    package_reboot_if_required: false,
    packages: [...HOST_PACKAGES],
    write_files: [
      { path: SSHD_HARDENING_DROPIN, owner: "root:root", permissions: "0644", content: renderSshdHardening() },
      // defer: written after the packages, so the package's own conffile never competes with ours.
      { path: NFTABLES_CONF, owner: "root:root", permissions: "0755", content: renderNftablesConf(), defer: true },
      { path: AUTO_UPGRADES_CONF, owner: "root:root", permissions: "0644", content: renderAutoUpgrades(), defer: true },
    ],
    runcmd: [
      // Stop at the first failure: cloud-init then reports an error and the deploy step's wait fails loudly.
      "set -eu",
      ["nft", "-c", "-f", NFTABLES_CONF],
      ["systemctl", "enable", "--now", "nftables.service"],
      ["systemctl", "restart", "nftables.service"],
      ["sshd", "-t"],
      ["systemctl", "reload", "ssh.service"],
      ["install", "-d", "-o", RELAY_USER, "-g", RELAY_USER, "-m", "0750", QUEUE_ROOT],
      ...QUEUE_SUBDIRS.map((d) => [
        "install",
        "-d",
        "-o",
        RELAY_USER,
        "-g",
        RELAY_USER,
        "-m",
        "0750",
        `${QUEUE_ROOT}/${d}`,
      ]),
      ["install", "-d", "-o", "root", "-g", "root", "-m", "0755", RELAY_RELEASES],
      ["install", "-d", "-o", "root", "-g", "root", "-m", "0755", "/etc/opendkim/keys"],
      // setgid: the socket OpenDKIM creates here gets group postfix, which every Postfix daemon runs as.
      ["install", "-d", "-o", "opendkim", "-g", "postfix", "-m", "2750", OPENDKIM_SOCKET_DIR],
      ["usermod", "-a", "-G", "opendkim", "postfix"],
      ["systemctl", "enable", "unattended-upgrades.service"],
    ],
  };
  return "#cloud-config\n" + stringify(config, { lineWidth: 0 });
}
