import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";

export interface FirewallRule {
  readonly direction: "in";
  readonly protocol: "tcp" | "icmp";
  readonly port?: string;
  readonly sourceIps: string[];
  readonly description: string;
}

/**
 * The only inbound traffic the host accepts: SSH from the admin ranges, and ICMP (path MTU discovery and
 * ping). Never 25/465/587: this relay sends only, and callers arrive through the outbound-only tunnel.
 */
export function firewallRules(adminCidrs: readonly string[]): FirewallRule[] {
  return [
    {
      direction: "in",
      protocol: "tcp",
      port: "22",
      sourceIps: [...adminCidrs],
      description: "SSH from admin ranges (deploy step)",
    },
    { direction: "in", protocol: "icmp", sourceIps: ["0.0.0.0/0", "::/0"], description: "ICMP (PMTU discovery, ping)" },
  ];
}

export interface RelayFirewallArgs {
  /** The firewall's name in Hetzner (unique per project: it carries the stack). */
  readonly cloudName: string;
  /** CIDRs allowed to reach SSH; checked by config to never be the whole Internet. */
  readonly adminCidrs: readonly string[];
  readonly labels: Record<string, string>;
}

/** The Hetzner cloud firewall; servers attach it through `firewallIds` so it is active before first boot. */
export class RelayFirewall extends pulumi.ComponentResource {
  readonly firewall: hcloud.Firewall;
  /** hcloud IDs are numbers. */
  readonly firewallId: pulumi.Output<number>;

  constructor(name: string, args: RelayFirewallArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mail-relay:hetzner:RelayFirewall", name, {}, opts);
    this.firewall = new hcloud.Firewall(
      `${name}-fw`,
      { name: args.cloudName, labels: args.labels, rules: firewallRules(args.adminCidrs) },
      { parent: this },
    );
    this.firewallId = this.firewall.id.apply(Number);
    this.registerOutputs({ firewallId: this.firewallId });
  }
}
