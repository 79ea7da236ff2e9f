import { describe, expect, it } from "vitest";
import {
  renderCloudflaredUnit,
  renderOpendkimConf,
  renderOpendkimKeyTable,
  renderOpendkimSigningTable,
  renderOpendkimTrustedHosts,
  renderRelayUnit,
} from "../../cloud-init";
import { EXIT_CONFIG } from "../../relay/host-contract";
import { buildConfig } from "../../testkit/node-config";
import { parseOpendkimConf, parseUnit, unitValue } from "./parsers";

const staging = buildConfig({ domain: "staging.example.com", selector: "stg202611" });

describe("OpenDKIM", () => {
  const conf = parseOpendkimConf(renderOpendkimConf(staging.host));
  it("signs only, on the unix socket inside Postfix's queue directory, group-accessible only", () => {
    expect(conf.get("Mode")).toBe("s");
    expect(conf.get("Socket")).toBe("local:/var/spool/postfix/opendkim/opendkim.sock");
    expect(conf.get("UMask")).toBe("007");
    expect(conf.get("UserID")).toBe("opendkim");
    expect(conf.get("PidFile")).toBe("/run/opendkim/opendkim.pid");
  });
  it("uses relaxed/simple, signs and oversigns what readers act on, and trusts loopback only", () => {
    expect(conf.get("Canonicalization")).toBe("relaxed/simple");
    const oversigned = (conf.get("OversignHeaders") ?? "").split(",");
    for (const h of [
      "From",
      "Reply-To",
      "Subject",
      "Date",
      "Message-ID",
      "To",
      "Cc",
      "MIME-Version",
      "Content-Type",
      "List-Unsubscribe",
    ])
      expect(oversigned, h).toContain(h);
    const signed = (conf.get("SignHeaders") ?? "").split(",");
    for (const h of oversigned) expect(signed, `${h} is oversigned, so it must be signed`).toContain(h);
    expect(conf.get("InternalHosts")).toBe("refile:/etc/opendkim/TrustedHosts");
    expect(conf.get("ExternalIgnoreList")).toBe("refile:/etc/opendkim/TrustedHosts");
    expect(renderOpendkimTrustedHosts().trim().split("\n")).toEqual(["127.0.0.1", "::1", "localhost"]);
  });
  it("maps every sender of the domain to the active selector's key file", () => {
    expect(renderOpendkimSigningTable(staging.host)).toBe(
      "*@staging.example.com stg202611._domainkey.staging.example.com\n",
    );
    const [name, spec] = renderOpendkimKeyTable(staging.host).trim().split(" ");
    expect(name).toBe("stg202611._domainkey.staging.example.com");
    expect(spec?.split(":")).toEqual([
      "staging.example.com",
      "stg202611",
      "/etc/opendkim/keys/staging.example.com/stg202611.private",
    ]);
    expect(conf.get("KeyTable")).toBe("file:/etc/opendkim/KeyTable");
    expect(conf.get("SigningTable")).toBe("refile:/etc/opendkim/SigningTable");
  });
  it("refuses a selector that is not one DNS label", () => {
    expect(() => renderOpendkimKeyTable({ ...staging.host, dkimSelector: "a b" })).toThrow(/dkimSelector/);
  });
});

describe("mail-relay.service", () => {
  const unit = parseUnit(renderRelayUnit(buildConfig().host));
  const v = (k: string) => unitValue(unit, "Service", k);
  it("runs the current release as mailrelay with its env file, restarting always", () => {
    expect(v("User")).toBe("mailrelay");
    expect(v("Group")).toBe("mailrelay");
    expect(v("EnvironmentFile")).toBe("/etc/mail-relay.env");
    expect(v("ExecStart")).toBe(
      "/usr/bin/node --max-old-space-size=1024 --v8-pool-size=1 /opt/mail-relay/current/relay.js",
    );
    expect(v("Restart")).toBe("always");
    expect(unitValue(unit, "Install", "WantedBy")).toBe("multi-user.target");
  });
  it("does not restart in a loop on a bad environment: RestartPreventExitStatus is the relay's config exit status", () => {
    expect(v("RestartPreventExitStatus")).toBe(String(EXIT_CONFIG));
  });
  it("stops with SIGTERM and leaves time to finish the job in hand (> 30 s hand-off timeout)", () => {
    expect(v("KillSignal")).toBe("SIGTERM");
    expect(parseInt(v("TimeoutStopSec"), 10)).toBeGreaterThan(30);
  });
  it("is sandboxed: read-only system, no privileges, only the queue writable", () => {
    expect(v("ProtectSystem")).toBe("strict");
    expect(v("ProtectHome")).toBe("yes");
    expect(v("PrivateTmp")).toBe("yes");
    expect(v("PrivateDevices")).toBe("yes");
    expect(v("NoNewPrivileges")).toBe("yes");
    expect(v("CapabilityBoundingSet")).toBe("");
    expect(v("ReadWritePaths").split(/\s+/)).toEqual(["/var/spool/mail-relay"]);
    expect(v("RestrictAddressFamilies").split(/\s+/).sort()).toEqual(["AF_INET", "AF_INET6", "AF_UNIX"]);
    expect(v("SystemCallFilter")).toBe("@system-service");
    expect(v("IPAddressDeny")).toBe("any");
    expect(v("IPAddressAllow")).toBe("localhost");
    expect(v("MemoryMax")).toMatch(/^\d+[KMG]$/);
  });
});

describe("cloudflared-mail-relay.service", () => {
  const text = renderCloudflaredUnit();
  const unit = parseUnit(text);
  const v = (k: string) => unitValue(unit, "Service", k);
  it("takes the tunnel token from a root-only EnvironmentFile, never from the command line", () => {
    expect(v("EnvironmentFile")).toBe("/etc/cloudflared/mail-relay.env");
    expect(v("ExecStart")).toBe(
      "/usr/bin/cloudflared --no-autoupdate --config /etc/cloudflared/mail-relay.yml tunnel run",
    );
    expect(v("ExecStart")).not.toMatch(/--token|TUNNEL_TOKEN/);
  });
  it("is sandboxed like the relay", () => {
    expect(v("NoNewPrivileges")).toBe("yes");
    expect(v("ProtectSystem")).toBe("strict");
    // Its own user, which the host firewall lets reach loopback only on the relay's port.
    expect(v("User")).toBe("cloudflared");
    expect(unit.get("Service")?.has("DynamicUser")).toBe(false);
    expect(v("CapabilityBoundingSet")).toBe("");
  });
});
