import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";

export interface RelayNodeArgs {
  /**
   * The stem of this node's names in Hetzner (server, primary IPs), unique per project: it carries the stack. A name is
   * updated in place (hcloud's name attributes are not ForceNew), so changing it replaces nothing.
   */
  readonly cloudName: string;
  /** MTA hostname of this node: EHLO name, PTR target and A record name. */
  readonly mtaHostname: string;
  readonly serverType: string;
  readonly location: string;
  readonly image: string;
  readonly ipv6: boolean;
  /** Deletion protection on the primary IPs (their reputation outlives any server). */
  readonly protectIps: boolean;
  readonly sshKeyIds: pulumi.Input<string>[];
  readonly firewallId: pulumi.Input<number>;
  /** Bootstrap-only #cloud-config: a change replaces the server. */
  readonly userData: string;
  readonly labels: Record<string, string>;
}

/** The first host address of a Hetzner IPv6 /64 ("2001:db8:1::/64" -> "2001:db8:1::1"): the server's address. */
export function ipv6HostAddress(network: string): string {
  const base = network.split("/")[0];
  return base.endsWith("::") ? `${base}1` : base;
}

/**
 * One relay host: primary IPs created apart from the server (autoDelete false, so the IP and its sending
 * reputation survive a server replacement), the server with the firewall attached before first boot,
 * and reverse DNS for every IP set to the MTA hostname.
 */
export class RelayNode extends pulumi.ComponentResource {
  readonly server: hcloud.Server;
  readonly serverId: pulumi.Output<number>;
  readonly ipv4: pulumi.Output<string>;
  readonly ipv6?: pulumi.Output<string>;
  readonly mtaHostname: string;

  constructor(name: string, args: RelayNodeArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mail-relay:hetzner:RelayNode", name, {}, opts);
    this.mtaHostname = args.mtaHostname;
    const ipLabels = { ...args.labels, "mail-relay-protect-ip": String(args.protectIps) };

    const v4 = new hcloud.PrimaryIp(
      `${name}-ipv4`,
      {
        name: `${args.cloudName}-ipv4`,
        type: "ipv4",
        location: args.location,
        assigneeType: "server",
        autoDelete: false,
        deleteProtection: args.protectIps,
        labels: ipLabels,
      },
      { parent: this, protect: args.protectIps },
    );
    const v6 = args.ipv6
      ? new hcloud.PrimaryIp(
          `${name}-ipv6`,
          {
            name: `${args.cloudName}-ipv6`,
            type: "ipv6",
            location: args.location,
            assigneeType: "server",
            autoDelete: false,
            deleteProtection: args.protectIps,
            labels: ipLabels,
          },
          { parent: this, protect: args.protectIps },
        )
      : undefined;

    this.server = new hcloud.Server(
      `${name}-server`,
      {
        name: args.cloudName,
        serverType: args.serverType,
        location: args.location,
        image: args.image,
        sshKeys: args.sshKeyIds,
        firewallIds: [args.firewallId],
        userData: args.userData,
        labels: args.labels,
        publicNets: [
          {
            ipv4Enabled: true,
            ipv4: v4.id.apply(Number),
            ipv6Enabled: v6 !== undefined,
            ...(v6 ? { ipv6: v6.id.apply(Number) } : {}),
          },
        ],
        shutdownBeforeDeletion: true,
      },
      // The primary IP can be assigned to one server at a time: the old server must go first.
      { parent: this, deleteBeforeReplace: true },
    );
    this.serverId = this.server.id.apply(Number);
    this.ipv4 = v4.ipAddress;

    new hcloud.Rdns(
      `${name}-ptr-ipv4`,
      { primaryIpId: v4.id.apply(Number), ipAddress: v4.ipAddress, dnsPtr: args.mtaHostname },
      { parent: this },
    );
    if (v6) {
      this.ipv6 = v6.ipAddress.apply(ipv6HostAddress);
      new hcloud.Rdns(
        `${name}-ptr-ipv6`,
        { primaryIpId: v6.id.apply(Number), ipAddress: this.ipv6, dnsPtr: args.mtaHostname },
        { parent: this },
      );
    }
    this.registerOutputs({ serverId: this.serverId, ipv4: this.ipv4, ipv6: this.ipv6 });
  }
}
