/**
 * Every rule over the real program under Pulumi's mocks: both stack files and every variant the other
 * tests use pass with zero violations, through the library and through the pack's policies.
 */
import { describe, expect, it } from "vitest";
import { checkAll } from "../../infra/policy/rules";
import { runStack, stackVariants, StackName, T, useStandInBundleIfUnbuilt } from "../helpers/stack";
import { firedPolicies, runPolicies } from "./crossguard";

useStandInBundleIfUnbuilt();

const runs: { name: string; stack: StackName; overrides: Record<string, unknown> }[] = [
  { name: "prod", stack: "prod", overrides: {} },
  { name: "staging", stack: "staging", overrides: {} },
  ...stackVariants,
];

describe("the real program passes every policy rule", () => {
  it.each(runs)("$name: zero violations", async ({ stack, overrides }) => {
    const { resources } = await runStack(stack, overrides);
    // The run must contain what the rules inspect, or "zero violations" would prove nothing.
    const types = new Set(resources.map((r) => r.type));
    for (const t of [T.server, T.firewall, T.primaryIp, T.rdns, T.dnsRecord, T.command, T.privateKey])
      expect(types, `run has a ${t}`).toContain(t);
    const paths = resources.filter((r) => r.type === T.command).map((r) => r.props.triggers?.[0]);
    for (const p of [
      "/etc/postfix/main.cf",
      "/etc/postfix/master.cf",
      "/etc/opendkim.conf",
      "/etc/opendkim/SigningTable",
    ])
      expect(paths, `run pushes ${p}`).toContain(p);
    if (overrides.tunnel !== false) {
      for (const t of [T.tunnel, T.accessApp, T.accessPolicy]) expect(types, `run has a ${t}`).toContain(t);
      expect(paths, "run pushes the local ingress file").toContain("/etc/cloudflared/mail-relay.yml");
    }

    expect(checkAll(resources).map((v) => `${v.rule}: ${v.message}`)).toEqual([]);
    expect((await runPolicies(resources)).map((v) => `${v.policy}: ${v.message}`)).toEqual([]);
  });
});

describe("the rules see the real program's resources (a broken real run is caught)", () => {
  it("prod with inet_interfaces = all, mynetworks + Docker gateway, an SMTP port and the PTR's A record proxied trips exactly those rules", async () => {
    const { resources } = await runStack("prod");
    const broken = structuredClone(resources);
    const main = broken.find((r) => r.type === T.command && r.props.triggers?.[0] === "/etc/postfix/main.cf")!;
    main.props.stdin = (main.props.stdin as string)
      .replace(/^inet_interfaces = .*$/m, "inet_interfaces = all")
      .replace(/^mynetworks = .*$/m, "mynetworks = 127.0.0.0/8 172.22.1.1/32");
    broken
      .find((r) => r.type === T.firewall)!
      .props.rules.push({ direction: "in", protocol: "tcp", port: "20-30", sourceIps: ["198.51.100.0/24"] });
    broken.find((r) => r.type === T.dnsRecord && r.props.type === "A")!.props.proxied = true;
    expect(await firedPolicies(broken)).toEqual([
      "forward-confirmed-rdns",
      "no-public-smtp-ports",
      "postfix-loopback-only",
      "trusted-networks-loopback-only",
    ]);
  });

  it("prod's user-data carrying the relay token trips no-secrets-in-user-data", async () => {
    const { resources } = await runStack("prod");
    const broken = structuredClone(resources);
    const token = broken.find((r) => r.type === T.password)!.props.result as string;
    broken.find((r) => r.type === T.server)!.props.userData += `\n# ${token}\n`;
    expect(await firedPolicies(broken)).toEqual(["no-secrets-in-user-data"]);
  });
});
