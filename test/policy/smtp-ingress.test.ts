/**
 * The tunnel may reach exactly the relay's two loopback listeners: http://127.0.0.1:2525 (the HTTP API) and
 * tcp://127.0.0.1:2587 (the SMTP ingress). Each other service, and every mail port, is a fixture that fires. The SMTP
 * hostname needs its own Access application, and the real program with the ingress on passes every rule.
 */
import { describe, expect, it } from "vitest";
import { TYPES } from "../../infra/policy/model";
import { checkAll } from "../../infra/policy/rules";
import { RELAY_TUNNEL_SERVICES } from "../../infra/policy/rules/tunnel";
import { RELAY_HTTP_PORT, RELAY_SMTP_PORT } from "../../relay/host-contract";
import { parseConfig } from "../../infra/config";
import { CONFIG_CTX, CONFIG_SECRETS, minimalConfig } from "../helpers/config";
import { runStack, T, useStandInBundleIfUnbuilt } from "../helpers/stack";
import { firedPolicies, runPolicies } from "./crossguard";
import { add, baseline, byName, FixtureResource, mutate, tunnelIngresses } from "./fixtures";

useStandInBundleIfUnbuilt();

const SMTP_HOST = "smtp-relay.example.com";

/**
 * The baseline with the SMTP ingress on, shaped like the program's output: the tcp:// rule, its CNAME and Access app.
 */
function withSmtpIngress(): FixtureResource[] {
  return mutate(baseline(), (s) => {
    const ing = tunnelIngresses(s);
    ing.splice(1, 0, { hostname: SMTP_HOST, service: "tcp://127.0.0.1:2587" });
    add(s, TYPES.dnsRecord, "smtp-cname", {
      name: SMTP_HOST,
      type: "CNAME",
      content: `${byName(s, "tunnel").id}.cfargotunnel.com`,
      proxied: true,
      ttl: 1,
    });
    add(s, TYPES.accessApp, "smtp-access-app", {
      type: "self_hosted",
      domain: SMTP_HOST,
      destinations: [{ type: "public", uri: SMTP_HOST }],
      policies: [{ id: "pol1", precedence: 1 }],
    });
  });
}

const fired = (rs: FixtureResource[]) => [...new Set(checkAll(rs).map((v) => v.rule))].sort();
/** The SMTP route's service replaced; hostname null = a rule without a hostname (it matches every name). */
const withService = (service: string, hostname: string | null) =>
  mutate(withSmtpIngress(), (s) => {
    const ing = tunnelIngresses(s);
    ing[1] = { ...(hostname !== null ? { hostname } : {}), service };
  });

describe("policy: the tunnel reaches only the relay's two listeners", () => {
  it("the relay's ports in the pack are the relay's own (relay/host-contract.ts) and the program's", () => {
    expect(RELAY_TUNNEL_SERVICES).toEqual({ http: RELAY_HTTP_PORT, tcp: RELAY_SMTP_PORT });
    const c = parseConfig(minimalConfig({ smtpIngress: { enabled: true } }), CONFIG_SECRETS, CONFIG_CTX);
    expect({ http: c.relay.port, tcp: c.smtpIngress?.port }).toEqual(RELAY_TUNNEL_SERVICES);
  });

  it("a stack with the SMTP ingress (tcp://127.0.0.1:2587, its CNAME and Access app) passes every rule", async () => {
    expect(fired(withSmtpIngress())).toEqual([]);
    expect(await firedPolicies(withSmtpIngress())).toEqual([]);
  });

  const refused: [string, string, string | null][] = [
    ["tcp:// to Postfix's 25", "tcp://127.0.0.1:25", SMTP_HOST],
    ["tcp:// to 465", "tcp://127.0.0.1:465", SMTP_HOST],
    ["tcp:// to 587", "tcp://127.0.0.1:587", SMTP_HOST],
    ["tcp:// to OpenDKIM's 8891", "tcp://127.0.0.1:8891", SMTP_HOST],
    ["smtp:// to the ingress port", "smtp://127.0.0.1:2587", SMTP_HOST],
    ["http:// to 25", "http://127.0.0.1:25", SMTP_HOST],
    ["tcp:// to the HTTP port", "tcp://127.0.0.1:2525", SMTP_HOST],
    ["http:// to the SMTP ingress port", "http://127.0.0.1:2587", SMTP_HOST],
    ["tcp:// to another port", "tcp://127.0.0.1:2588", SMTP_HOST],
    ["tcp:// to another host", "tcp://10.0.0.5:2587", SMTP_HOST],
    ["http:// to another port", "http://127.0.0.1:8080", SMTP_HOST],
    ["ssh://", "ssh://127.0.0.1:22", SMTP_HOST],
    ["tcp:// to the ingress for every hostname", "tcp://127.0.0.1:2587", null],
  ];
  for (const [what, service, hostname] of refused) {
    it(`fires on ${what} (${service})`, async () => {
      const broken = withService(service, hostname);
      expect(fired(broken)).toEqual(["tunnel-cannot-reach-mail-ports"]);
      expect(await firedPolicies(broken)).toEqual(["tunnel-cannot-reach-mail-ports"]);
    });
  }

  it("the SMTP hostname without its own Access application fires access-in-front-of-tunnel", async () => {
    const broken = mutate(withSmtpIngress(), (s) => s.splice(s.indexOf(byName(s, "smtp-access-app")), 1));
    expect(fired(broken)).toEqual(["access-in-front-of-tunnel"]);
    expect((await runPolicies(broken)).map((v) => v.message)).toEqual([
      expect.stringMatching(/relay hostname smtp-relay\.example\.com has no Access application/),
    ]);
  });
});

describe("policy: the real program with the SMTP ingress on", () => {
  it("passes every rule, and the run contains what the rules inspect (the tcp:// route, two Access apps)", async () => {
    const { resources } = await runStack("prod", { smtpIngress: { enabled: true } });
    // The ingress is locally managed: the cloudflared config file the deploy pushes.
    const file = resources.find(
      (r) => r.type === T.command && r.props.triggers?.[0] === "/etc/cloudflared/mail-relay.yml",
    )!;
    const ingresses = JSON.parse(String(file.props.stdin)).ingress as { service: string }[];
    expect(ingresses.map((i) => i.service)).toContain("tcp://127.0.0.1:2587");
    expect(resources.filter((r) => r.type === T.accessApp)).toHaveLength(2);
    expect(checkAll(resources).map((v) => `${v.rule}: ${v.message}`)).toEqual([]);
    expect((await runPolicies(resources)).map((v) => `${v.policy}: ${v.message}`)).toEqual([]);
  });
});
