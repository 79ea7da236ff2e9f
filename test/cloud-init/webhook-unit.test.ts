import { describe, expect, it } from "vitest";
import { renderRelayUnit, renderWebhookUnit } from "../../cloud-init/systemd";
import { buildConfig } from "../../testkit/node-config";
import { parseUnit, unitValue } from "./parsers";

describe("only the webhook sender leaves the host; the relay stays on loopback", () => {
  const hook = parseUnit(renderWebhookUnit());
  const relay = parseUnit(renderRelayUnit(buildConfig().host));

  it("the relay unit still allows localhost only", () => {
    expect(unitValue(relay, "Service", "IPAddressAllow")).toBe("localhost");
    expect(unitValue(relay, "Service", "IPAddressDeny")).toBe("any");
  });

  it("the sender runs `relay.js webhooks` as the relay's user, writes only the outbox, and cannot read Postfix's log or the DKIM keys", () => {
    expect(unitValue(hook, "Service", "ExecStart")).toBe(
      "/usr/bin/node --max-old-space-size=128 --v8-pool-size=1 /opt/mail-relay/current/relay.js webhooks",
    );
    expect(unitValue(hook, "Service", "User")).toBe("mailrelay");
    expect(unitValue(hook, "Service", "ReadWritePaths")).toBe("/var/spool/mail-relay/webhooks");
    expect(unitValue(hook, "Service", "InaccessiblePaths")).toMatch(/\/var\/log\/mail-relay.*\/etc\/opendkim\/keys/);
    expect(unitValue(hook, "Service", "CapabilityBoundingSet")).toBe("");
    expect(unitValue(hook, "Service", "NoNewPrivileges")).toBe("yes");
  });

  it("the kernel refuses private and link-local (metadata) targets for it, whatever the sender's own check says", () => {
    const deny = unitValue(hook, "Service", "IPAddressDeny").split(" ");
    for (const net of ["link-local", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"])
      expect(deny).toContain(net);
  });
});
