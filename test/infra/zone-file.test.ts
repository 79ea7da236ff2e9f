// dnsZoneFile is "every DNS record this stack manages": checked against the DNS record resources the program
// creates, for the stacks and for the variants that add records (the SMTP ingress's CNAME) or drop some (no tunnel).
import { beforeAll, describe, expect, it } from "vitest";
import type { OfflineRun } from "../../infra/offline";
import { runStack, useStandInBundleIfUnbuilt, zoneLinesOfRecords, type StackName } from "../helpers/stack";

useStandInBundleIfUnbuilt();

const variants: [string, StackName, Record<string, unknown>][] = [
  ["prod", "prod", { smtpIngress: { enabled: false } }],
  ["staging", "staging", {}],
  ["prod with the SMTP ingress", "prod", { smtpIngress: { enabled: true } }],
  ["prod without the tunnel", "prod", { tunnel: false }],
];
const runs = new Map<string, OfflineRun>();
beforeAll(async () => {
  for (const [name, stack, overrides] of variants) runs.set(name, await runStack(stack, overrides));
}, 180_000);

describe("the dnsZoneFile output holds every record the stack manages", () => {
  it.each(variants.map(([name]) => name))("%s", (name) => {
    const run = runs.get(name)!;
    expect(String(run.outputs.dnsZoneFile).split("\n").sort()).toEqual(zoneLinesOfRecords(run.resources));
  });

  it("the tunnel's CNAMEs are in it (the relay's, and the SMTP ingress's when it is on)", () => {
    const cnames = (name: string) =>
      String(runs.get(name)!.outputs.dnsZoneFile)
        .split("\n")
        .filter((l) => l.includes("\tCNAME\t"))
        .map((l) => l.split("\t")[0]);
    expect(cnames("prod")).toEqual(["mail-relay.example.com."]);
    expect(cnames("prod with the SMTP ingress")).toEqual(["mail-relay.example.com.", "smtp-relay.example.com."]);
    expect(cnames("prod without the tunnel")).toEqual([]);
  });
});
