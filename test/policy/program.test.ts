/**
 * Every rule over the real program under Pulumi's mocks: both stack files and every variant the other
 * tests use must pass with zero violations.
 */
import { describe, expect, it } from "vitest";
import { checkAll, rules } from "../../infra/policy/rules";
import { runStack, stackVariants, StackName } from "../helpers/stack";

const runs: { name: string; stack: StackName; overrides: Record<string, unknown> }[] = [
  { name: "prod", stack: "prod", overrides: {} },
  { name: "staging", stack: "staging", overrides: {} },
  ...stackVariants,
];

describe("the real program passes every policy rule", () => {
  it.each(runs)("$name: zero violations", async ({ stack, overrides }) => {
    const { resources } = await runStack(stack, overrides);
    // The run must actually contain what the rules inspect, or "zero violations" would prove nothing.
    const types = new Set(resources.map((r) => r.type));
    for (const t of ["hcloud:index/server:Server", "hcloud:index/firewall:Firewall", "hcloud:index/rdns:Rdns", "cloudflare:index/dnsRecord:DnsRecord", "command:remote:Command"]) {
      expect(types, `run has a ${t}`).toContain(t);
    }
    const pushed = resources.filter((r) => r.type === "command:remote:Command" && r.props.triggers?.[0] === "/etc/postfix/main.cf");
    expect(pushed.length, "a main.cf push per node").toBeGreaterThan(0);
    const violations = checkAll(resources);
    expect(violations.map((v) => `${v.rule}: ${v.message}`)).toEqual([]);
    expect(rules.length).toBe(16);
  });
});
