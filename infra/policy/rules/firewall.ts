/** Rules 1-3, the Hetzner firewall: no public mail port, a firewall from the first boot, SSH only from admin ranges. */
import { asArray, asObj, has, isStr, ResourceRule, ResourceView, TYPES, violation, Violation } from "../model";
import { ALL_PORTS, isNearlyWholeInternet, parseCidr, parsePortRange, PortRange, portInRange } from "../parse/net";

/** Ports a mail submission/relay listener uses (SMTP, SMTPS, submission). */
export const SMTP_PORTS = [25, 465, 587] as const;

/**
 * Protocols that cannot carry a TCP connection to a port of this host. Anything else might (tcp, gre, esp, unknown
 * names).
 */
const NON_TCP_PROTOCOLS = new Set(["udp", "icmp", "icmpv6", "ipv6-icmp"]);
/** Protocols with ports: the rule's port field applies. Tunnelling protocols (gre, esp) carry any port. */
const PORTED_PROTOCOLS = new Set(["tcp", "udp"]);

interface FirewallRuleView {
  readonly index: number;
  readonly direction: unknown;
  readonly protocol: unknown;
  readonly ports: PortRange | undefined;
  readonly portText: string;
  readonly sources: unknown;
}

function firewallRules(r: ResourceView): FirewallRuleView[] | undefined {
  const rules = asArray(r.props.rules);
  if (!rules) return undefined;
  return rules.flatMap((raw, index) => {
    const o = asObj(raw);
    if (!o) return [];
    const proto = isStr(o.protocol) ? o.protocol.toLowerCase() : o.protocol;
    const ported = isStr(proto) && PORTED_PROTOCOLS.has(proto);
    const ports = ported ? parsePortRange(o.port, has(o, "port")) : isStr(proto) ? ALL_PORTS : undefined;
    const portText = has(o, "port") ? String(o.port) : "(not set: all ports)";
    return [{ index, direction: o.direction, protocol: proto, ports, portText, sources: o.sourceIps }];
  });
}

/** 1. No firewall inbound rule that can carry TCP opens 25/465/587, to any source. */
export const noPublicSmtpPorts: ResourceRule = {
  name: "no-public-smtp-ports",
  scope: "resource",
  reason:
    "An SMTP port reachable from outside is how a trusted-source mistake becomes an open relay (incident 000: " +
    "FRP reverse tunnel to :25; incident 001: Docker NAT to :25); this relay only sends.",
  check(r) {
    if (r.type !== TYPES.firewall) return [];
    const out: Violation[] = [];
    for (const fr of firewallRules(r) ?? []) {
      if (fr.direction !== "in") continue;
      // Ports and protocol decide safety and come from config, never from the cloud: unknown fails closed.
      if (
        fr.protocol === undefined ||
        (isStr(fr.protocol) && !NON_TCP_PROTOCOLS.has(fr.protocol) && fr.ports === undefined)
      ) {
        out.push(
          violation(
            this.name,
            r,
            `rule #${fr.index} has an unknown ${fr.protocol === undefined ? "protocol" : "port"}; ` +
              `a rule that might open 25/465/587 is refused until it is known`,
          ),
        );
        continue;
      }
      if (!isStr(fr.protocol) || NON_TCP_PROTOCOLS.has(fr.protocol) || fr.ports === undefined) continue;
      const sources = asArray(fr.sources);
      if (sources !== undefined && sources.length === 0) continue; // opens to nobody
      const hit = SMTP_PORTS.filter((p) => portInRange(p, fr.ports!));
      if (hit.length === 0) continue;
      const src = sources ? sources.map((s) => (s === undefined ? "(unknown)" : String(s))).join(", ") : "(any)";
      out.push(
        violation(
          this.name,
          r,
          `rule #${fr.index} (in, ${fr.protocol}, port ${fr.portText}) opens ${hit.join("/")} to ${src}; ` +
            `a mail port must never be reachable from outside`,
        ),
      );
    }
    return out;
  },
};

/** 2. Every server has a firewall attached through firewallIds. */
export const firewallBeforeFirstBoot: ResourceRule = {
  name: "firewall-before-first-boot",
  scope: "resource",
  reason:
    "A firewall attached after creation leaves the first boot unprotected; " +
    "firewallIds applies it before the server ever starts.",
  check(r) {
    if (r.type !== TYPES.server) return [];
    if (!has(r.props, "firewallIds"))
      return [violation(this.name, r, "has no firewallIds; attach the relay firewall at creation")];
    const ids = r.props.firewallIds;
    if (ids === undefined) return [];
    const list = asArray(ids);
    if (list === undefined || list.length === 0 || list.every((x) => x === null || x === "" || x === 0)) {
      return [violation(this.name, r, `firewallIds is ${JSON.stringify(ids)}; attach the relay firewall at creation`)];
    }
    return [];
  },
};

/** 3. Port 22 is never open to the whole Internet. */
export const sshRestricted: ResourceRule = {
  name: "ssh-restricted",
  scope: "resource",
  reason:
    "SSH is the deploy path and holds the keys to every secret on the host; " +
    "it is open only to the admin ranges, never 0.0.0.0/0 or ::/0.",
  check(r) {
    if (r.type !== TYPES.firewall) return [];
    const out: Violation[] = [];
    for (const fr of firewallRules(r) ?? []) {
      if (
        fr.direction !== "in" ||
        !isStr(fr.protocol) ||
        NON_TCP_PROTOCOLS.has(fr.protocol) ||
        fr.ports === undefined ||
        !portInRange(22, fr.ports)
      )
        continue;
      const sources = asArray(fr.sources);
      const rawRule = asObj(asArray(r.props.rules)?.[fr.index]) ?? {};
      // Not set at all: Hetzner would treat it as no restriction. Unknown (key present, value undefined): fails closed.
      const wide =
        sources === undefined
          ? has(rawRule, "sourceIps")
            ? ["(unknown: fails closed)"]
            : ["(not set: any)"]
          : sources.filter((s) => !isStr(s)).length > 0
            ? ["(an unknown source: fails closed)"]
            : sources.filter(isStr).filter((s) => {
                const c = parseCidr(s);
                return c === undefined || isNearlyWholeInternet(c);
              });
      if (wide.length > 0)
        out.push(
          violation(
            this.name,
            r,
            `rule #${fr.index} (in, ${fr.protocol}, port ${fr.portText}) opens SSH to ${wide.join(", ")}; ` +
              `list the admin CIDRs instead`,
          ),
        );
    }
    return out;
  },
};
