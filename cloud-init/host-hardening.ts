// Host firewall (nftables) and sshd hardening. The bootstrap ruleset and the sshd drop-in ship in user-data and depend
// on nothing; the full host ruleset (SSH from adminCidrs, who may talk SMTP) is pushed over SSH by the deploy step.
import { isIP } from "node:net";
import { CLOUDFLARED_USER, HETZNER_DHCP_SERVER, METADATA_ADDRESS, POSTFIX_USER, RELAY_USER } from "./paths";
import { assertPort } from "./validate";

/**
 * /etc/nftables.conf: the host's own firewall, a second layer under the Hetzner cloud firewall. Inbound is dropped
 * except loopback, replies to our own traffic, the ICMP that keeps the network working, and SSH. No mail port is
 * ever opened: Postfix and the relay listen on loopback, the tunnel is an outbound connection.
 */
/** The input chain's opening, the same in the bootstrap and the deployed ruleset: loopback, state, ICMP. */
// Rendered ruleset text: the ICMPv6 type set stays on one line, as nft lists it.
/* eslint-disable max-len */
const INPUT_CHAIN_BASE = `	chain input {
		type filter hook input priority filter; policy drop;

		iif "lo" accept
		# Loopback addresses arriving on a real interface are spoofed.
		iif != "lo" ip daddr 127.0.0.0/8 drop
		iif != "lo" ip6 daddr ::1 drop

		ct state established,related accept
		ct state invalid drop

		# Path MTU discovery, errors and ping; neighbour discovery keeps IPv6 reachable at all.
		ip protocol icmp icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
		ip6 nexthdr ipv6-icmp icmpv6 type { echo-request, destination-unreachable, packet-too-big, time-exceeded, parameter-problem, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept
`;
/* eslint-enable max-len */

export function renderNftablesConf(): string {
  // Bootstrap only: it protects the first boot until the deploy step pushes renderHostNftablesConf's ruleset. Kept
  // byte-identical, so user-data (whose change replaces the server) does not change with adminCidrs or the users.
  return `#!/usr/sbin/nft -f
# Rendered by cloud-init/host-hardening.ts (mail-relay). Inbound: SSH only. Never open 25, 465, 587 or 2525.
flush ruleset

table inet filter {
${INPUT_CHAIN_BASE}
		# DHCPv4 lease renewals (the server's IPv4 comes from DHCP).
		udp sport 67 udp dport 68 accept

		# SSH: the cloud firewall already limits it to adminCidrs.
		tcp dport 22 ct state new accept
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
	}

	chain output {
		type filter hook output priority filter; policy accept;
	}
}
`;
}

/** The users the host ruleset names (resolved by nft when it loads the file, so they must exist by then). */
export interface FirewallUsers {
  /** The relay: with root, the only one that may connect to loopback SMTP. */
  readonly relay: string;
  /** Postfix's smtp(8) client: the only one that may open outbound SMTP. */
  readonly postfix: string;
  /** cloudflared: may reach loopback only on the relay's port. */
  readonly cloudflared: string;
}

export const FIREWALL_USERS: FirewallUsers = {
  relay: RELAY_USER,
  postfix: POSTFIX_USER,
  cloudflared: CLOUDFLARED_USER,
};

export interface HostFirewallSettings {
  /** SSH sources (IPv4 and IPv6 CIDRs); the same list as the cloud firewall's. */
  readonly adminCidrs: readonly string[];
  readonly relayPort: number;
  /** The relay's SMTP ingress port, when it is on: the tunnel's tcp:// route, so cloudflared may reach it too. */
  readonly smtpIngressPort?: number;
  /** The smarthost's port, when one is configured: outbound on it is Postfix's alone too. */
  readonly smarthostPort?: number;
  /** Tests load the ruleset with users that exist on the test machine. */
  readonly users?: FirewallUsers;
}

/** Ports only Postfix may open outbound, and only root and the relay may reach on loopback. */
export const SMTP_PORTS = [25, 465, 587] as const;

function cidrsOf(family: 4 | 6, cidrs: readonly string[]): string[] {
  return cidrs.filter((c) => isIP(c.split("/")[0]) === family);
}

const nftUser = (name: string): string => {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(name))
    throw new Error(`firewall user must be a user name, got ${JSON.stringify(name)}`);
  return `"${name}"`;
};

/**
 * /etc/nftables.conf as the deploy step pushes it: the bootstrap ruleset's input chain, narrowed (SSH from adminCidrs
 * only, DHCP from Hetzner's DHCP server only), plus an output chain that decides which local users may talk to what.
 * Postfix trusts every loopback client, so the output chain is what keeps "any process on the host" from being a
 * trusted client: only root and the relay reach loopback SMTP, only Postfix reaches remote SMTP ports, only root the
 * metadata service (it serves user-data), and cloudflared reaches loopback only on the relay's ports (HTTP, SMTP
 * ingress). User names are resolved by nft when the file is loaded; the deploy step creates the cloudflared user
 * before loading it.
 */
export function renderHostNftablesConf(f: HostFirewallSettings): string {
  assertPort("relayPort", f.relayPort);
  if (f.smarthostPort !== undefined) assertPort("smarthostPort", f.smarthostPort);
  if (f.smtpIngressPort !== undefined) assertPort("smtpIngressPort", f.smtpIngressPort);
  const cloudflaredPorts = [f.relayPort, ...(f.smtpIngressPort !== undefined ? [f.smtpIngressPort] : [])];
  for (const c of f.adminCidrs) {
    const [addr, len] = c.split("/");
    const fam = isIP(addr);
    if (fam === 0 || len === undefined || !/^\d{1,3}$/.test(len) || Number(len) > (fam === 4 ? 32 : 128))
      throw new Error(`adminCidrs: ${JSON.stringify(c)} is not a CIDR`);
  }
  if (f.adminCidrs.length === 0)
    throw new Error("adminCidrs: list at least one CIDR (SSH would be closed to everyone, the deploy step included)");
  const u = f.users ?? FIREWALL_USERS;
  const v4 = cidrsOf(4, f.adminCidrs);
  const v6 = cidrsOf(6, f.adminCidrs);
  const remoteSmtp = [
    ...new Set<number>([...SMTP_PORTS, ...(f.smarthostPort !== undefined ? [f.smarthostPort] : [])]),
  ].sort((a, b) => a - b);
  const ssh = [
    ...(v4.length > 0 ? [`\t\tip saddr { ${v4.join(", ")} } tcp dport 22 ct state new accept`] : []),
    ...(v6.length > 0 ? [`\t\tip6 saddr { ${v6.join(", ")} } tcp dport 22 ct state new accept`] : []),
  ];
  // The header line is rendered text: one comment line in the ruleset.
  /* eslint-disable max-len */
  return `#!/usr/sbin/nft -f
# Rendered by cloud-init/host-hardening.ts (mail-relay), pushed by the deploy step. Never open 25, 465, 587 or ${f.relayPort}.
flush ruleset

table inet filter {
${INPUT_CHAIN_BASE}
		# DHCPv4 lease renewals, from Hetzner's DHCP server only.
		ip saddr ${HETZNER_DHCP_SERVER} udp sport 67 udp dport 68 accept

		# SSH from the admin ranges only (the cloud firewall has the same list).
${ssh.join("\n")}
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
	}

	chain output {
		type filter hook output priority filter; policy accept;

		ct state established,related accept

		# Postfix trusts every loopback client (mynetworks): only root and the relay may be one.
		oif "lo" tcp dport { ${SMTP_PORTS.join(", ")} } jump loopback_smtp
		# Only Postfix's smtp client sends mail off this host.
		oif != "lo" tcp dport { ${remoteSmtp.join(", ")} } jump remote_smtp
		# The metadata service serves user-data: root only.
		ip daddr ${METADATA_ADDRESS} jump metadata
		# cloudflared reaches loopback only on the relay's port.
		meta skuid ${nftUser(u.cloudflared)} oif "lo" jump cloudflared_loopback
	}

	chain loopback_smtp {
		meta skuid 0 accept
		meta skuid ${nftUser(u.relay)} accept
		counter reject with tcp reset
	}

	chain remote_smtp {
		meta skuid ${nftUser(u.postfix)} accept
		counter reject with tcp reset
	}

	chain metadata {
		meta skuid 0 accept
		meta l4proto tcp counter reject with tcp reset
		counter reject
	}

	chain cloudflared_loopback {
		tcp dport { ${cloudflaredPorts.join(", ")} } accept
		meta l4proto tcp counter reject with tcp reset
		counter reject
	}
}
`;
  /* eslint-enable max-len */
}

/** sshd settings of the hardening drop-in, in file order. Root keeps key login: the deploy step SSHes as root. */
export const SSHD_HARDENING: readonly (readonly [string, string])[] = [
  ["PasswordAuthentication", "no"],
  ["KbdInteractiveAuthentication", "no"],
  ["PermitEmptyPasswords", "no"],
  ["PubkeyAuthentication", "yes"],
  ["PermitRootLogin", "prohibit-password"],
  ["X11Forwarding", "no"],
  ["AllowTcpForwarding", "no"],
  ["AllowAgentForwarding", "no"],
  ["AllowStreamLocalForwarding", "no"],
  ["PermitTunnel", "no"],
  ["GatewayPorts", "no"],
  ["PermitUserEnvironment", "no"],
  ["MaxAuthTries", "3"],
  ["LoginGraceTime", "30"],
];

/** /etc/ssh/sshd_config.d/10-mail-relay-hardening.conf */
export function renderSshdHardening(): string {
  return (
    [
      "# Rendered by cloud-init/host-hardening.ts (mail-relay).",
      "# 10- sorts before cloud-init's 50-cloud-init.conf; sshd keeps the first value it reads for each keyword.",
      "# No forwarding of any kind: a tunnel into this host could make a client look like localhost to Postfix.",
      ...SSHD_HARDENING.map(([k, v]) => `${k} ${v}`),
    ].join("\n") + "\n"
  );
}

/** /etc/apt/apt.conf.d/20auto-upgrades: daily package lists and unattended security upgrades. */
export function renderAutoUpgrades(): string {
  return 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n';
}
