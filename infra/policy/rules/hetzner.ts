/** Rule 16, Hetzner primary IPs: the sending IPs outlive their servers. */
import { asObj, has, ResourceRule, TYPES, violation, Violation } from "../model";

/** 16. Primary IPs survive their server; protected ones can't be deleted. */
export const primaryIpsKept: ResourceRule = {
  name: "primary-ips-kept",
  scope: "resource",
  reason:
    "A sending IP's reputation takes weeks to build: autoDelete would drop it with its server, " +
    "and deletion protection keeps a protected IP from going by mistake.",
  check(r) {
    if (r.type !== TYPES.primaryIp) return [];
    const out: Violation[] = [];
    if (!has(r.props, "autoDelete"))
      out.push(violation(this.name, r, "autoDelete is not set; set autoDelete: false so the IP outlives its server"));
    else if (r.props.autoDelete !== undefined && r.props.autoDelete !== false)
      out.push(violation(this.name, r, `autoDelete is ${String(r.props.autoDelete)}; must be false`));
    const labels = asObj(r.props.labels);
    if (labels?.["mail-relay-protect-ip"] === "true") {
      const dp = r.props.deleteProtection;
      if (!has(r.props, "deleteProtection") || (dp !== undefined && dp !== true)) {
        out.push(
          violation(
            this.name,
            r,
            `labels say mail-relay-protect-ip=true but deleteProtection ` +
              `is ${has(r.props, "deleteProtection") ? String(dp) : "not set"}`,
          ),
        );
      }
    }
    return out;
  },
};
