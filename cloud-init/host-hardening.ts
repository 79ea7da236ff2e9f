// Host firewall (nftables) and sshd hardening. Both are bootstrap files: they ship in user-data and depend on nothing.

/**
 * /etc/nftables.conf: the host's own firewall, a second layer under the Hetzner cloud firewall. Inbound is dropped
 * except loopback, replies to our own traffic, the ICMP that keeps the network working, and SSH. No mail port is
 * ever opened: Postfix and the relay listen on loopback, the tunnel is an outbound connection.
 */
export function renderNftablesConf(): string {
  return `#!/usr/sbin/nft -f
# Rendered by cloud-init/host-hardening.ts (mail-relay). Inbound: SSH only. Never open 25, 465, 587 or 2525.
flush ruleset

table inet filter {
	chain input {
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
