/**
 * The DANE-first TLS policy socketmap on the host: its unit runs the relay release's `tls-policy` subcommand as a
 * throwaway unprivileged user on loopback only; it is a host file exactly when direct delivery enforces DANE and
 * MTA-STS; main.cf then asks it before the MTA-STS resolver, and the opt-out key renders opportunistic TLS, no maps.
 */
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import {
  DANE_POLICY_MAP,
  hostConfigFiles,
  MTA_STS_POLICY_MAP,
  renderMtaStsConf,
  renderPostfixMainCf,
  renderTlsPolicyUnit,
  TLS_POLICY_UNIT_PATH,
  type HostSettings,
} from "../../cloud-init";
import { hostSettings, serverPolicyLabels } from "../../infra/mailRelay";
import { parseConfig } from "../../infra/config";
import { MTA_STS_TESTING_ZONE, TLS_POLICY_SUBCOMMAND } from "../../relay/tls-policy/contract";
import { buildConfig } from "../../testkit/node-config";
import { CONFIG_CTX, configProblems, minimalConfig } from "../helpers/config";
import { parseMainCf } from "./parsers";

/** [Service] key -> every value (keys may repeat). */
function serviceSection(unit: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let inService = false;
  for (const line of unit.split("\n")) {
    if (/^\[.*\]$/.test(line)) inService = line === "[Service]";
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (inService && m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}

const direct = buildConfig().host;
const optedOut: HostSettings = { ...direct, outboundTls: "opportunistic-accepting-downgrade" };
const smarthost = buildConfig({ smarthost: true }).host;

describe("mail-relay-tls-policy.service", () => {
  const svc = serviceSection(renderTlsPolicyUnit());
  it("runs the current release's tls-policy subcommand, restarted whenever it exits", () => {
    expect(svc.get("ExecStart")).toEqual([
      `/usr/bin/node --max-old-space-size=96 --v8-pool-size=1 /opt/mail-relay/current/relay.js ${TLS_POLICY_SUBCOMMAND}`,
    ]);
    expect(svc.get("Restart")).toEqual(["always"]);
  });
  it("as a user of its own that holds nothing, with no capability and no writable path", () => {
    expect(svc.get("DynamicUser")).toEqual(["yes"]);
    expect(svc.has("User")).toBe(false);
    expect(svc.has("EnvironmentFile")).toBe(false);
    expect(svc.get("CapabilityBoundingSet")).toEqual([""]);
    expect(svc.get("NoNewPrivileges")).toEqual(["yes"]);
    expect(svc.get("ProtectSystem")).toEqual(["strict"]);
    expect(svc.has("ReadWritePaths")).toBe(false);
    expect(svc.get("InaccessiblePaths")?.[0]).toContain("/var/spool/mail-relay");
  });
  it("reaches nothing but loopback (unbound, the MTA-STS resolver, Postfix)", () => {
    expect(svc.get("IPAddressAllow")).toEqual(["localhost"]);
    expect(svc.get("IPAddressDeny")).toEqual(["any"]);
    const env = Object.fromEntries((svc.get("Environment") ?? []).map((e) => e.split("=") as [string, string]));
    expect(env.TLS_POLICY_LISTEN).toBe("127.0.0.1:8462");
    expect(env.TLS_POLICY_RESOLVER).toBe("127.0.0.1:53");
    expect(env.TLS_POLICY_MTA_STS).toBe("127.0.0.1:8461");
    // The map main.cf names is the address the unit listens on.
    expect(DANE_POLICY_MAP).toBe(`socketmap:inet:${env.TLS_POLICY_LISTEN}:dane`);
  });
});

describe("which stacks get the socketmap, and what main.cf asks", () => {
  const has = (s: HostSettings) => hostConfigFiles(s).some((f) => f.path === TLS_POLICY_UNIT_PATH);
  it("direct delivery with DANE and MTA-STS enforced: the unit is pushed; main.cf asks DANE first, then MTA-STS", () => {
    expect(has(direct)).toBe(true);
    const m = parseMainCf(renderPostfixMainCf(direct));
    expect(m.get("smtp_tls_policy_maps")).toBe(`${DANE_POLICY_MAP}, ${MTA_STS_POLICY_MAP}`);
    expect(m.get("smtp_tls_security_level")).toBe("dane");
  });
  it("the opt-out: no unit, smtp_tls_security_level = may, no policy maps", () => {
    expect(has(optedOut)).toBe(false);
    const m = parseMainCf(renderPostfixMainCf(optedOut));
    expect(m.get("relayhost")).toBe("");
    expect(m.get("smtp_tls_security_level")).toBe("may");
    expect(m.has("smtp_tls_policy_maps")).toBe(false);
  });
  it("a smarthost: no unit (everything goes to the smarthost over verified TLS)", () => {
    expect(has(smarthost)).toBe(false);
    expect(parseMainCf(renderPostfixMainCf(smarthost)).get("smtp_tls_security_level")).toBe("secure");
  });
  it("the MTA-STS resolver has a testing zone that returns testing policies; the default zone still does not", () => {
    const conf = parseYaml(renderMtaStsConf()) as {
      default_zone: { strict_testing: boolean };
      zones: Record<string, { strict_testing: boolean }>;
    };
    expect(conf.default_zone.strict_testing).toBe(false);
    expect(conf.zones[MTA_STS_TESTING_ZONE]?.strict_testing).toBe(true);
    expect(renderPostfixMainCf(direct)).not.toContain(`:${MTA_STS_TESTING_ZONE}`);
  });
});

describe("mail-relay:outboundTls, checked at the edge", () => {
  it("defaults to dane-and-mta-sts: no label, the unit is pushed", () => {
    const c = parseConfig(minimalConfig(), { sshPrivateKey: true, smarthostPassword: false }, CONFIG_CTX);
    expect(c.outboundTls).toBe("dane-and-mta-sts");
    expect(serverPolicyLabels(c)).toEqual({});
    expect(hostConfigFiles(hostSettings(c, "mail.example.com")).map((f) => f.path)).toContain(TLS_POLICY_UNIT_PATH);
  });
  it("the opt-out reaches main.cf and the server label rule 18 reads", () => {
    const c = parseConfig(
      minimalConfig({ outboundTls: "opportunistic-accepting-downgrade" }),
      { sshPrivateKey: true, smarthostPassword: false },
      CONFIG_CTX,
    );
    expect(serverPolicyLabels(c)).toEqual({ "mail-relay-outbound-tls": "opportunistic-accepting-downgrade" });
    expect(parseMainCf(renderPostfixMainCf(hostSettings(c, "mail.example.com"))).get("smtp_tls_security_level")).toBe(
      "may",
    );
  });
  it("an unknown value is refused, naming the values", () => {
    expect(configProblems(minimalConfig({ outboundTls: "may" })).join("\n")).toMatch(
      /^mail-relay:outboundTls is "may", which is not allowed; use one of "dane-and-mta-sts", "opportunistic-accepting-downgrade"$/,
    );
  });
  it("the opt-out with a smarthost is refused with the fix", () => {
    const ps = configProblems(
      minimalConfig({
        outboundTls: "opportunistic-accepting-downgrade",
        smarthost: { host: "smtp.eu.mailgun.org", username: "u" },
      }),
      { sshPrivateKey: true, smarthostPassword: true },
    );
    expect(ps).toEqual([
      "mail-relay:outboundTls = opportunistic-accepting-downgrade applies to direct delivery only; with " +
        "mail-relay:smarthost set, mail always goes to the smarthost over verified TLS. Remove it: " +
        "`pulumi config rm mail-relay:outboundTls`",
    ]);
  });
});
