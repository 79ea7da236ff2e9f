/**
 * Upgrading a deployment from debian-12 to debian-13 (docs/upgrade.md), as far as it can run here: the program under
 * mocks for both images, and what `pulumi up` does between the two, derived from the program's own dependency graph
 * (offline.ts records each resource's input dependencies and its deleteBeforeReplace option) with the engine's rules:
 *  1. a resource is replaced when an input that forces replacement changes (test/helpers/replacement.ts): the server's
 *     `image` (ForceNew in the hcloud provider); a remote Command's or CopyToRemote's `triggers` (@pulumi/command);
 *  2. while a replaced resource's new id is not known, every input that comes from it is unknown, so a dependent whose
 *     replacement-forcing input comes from it is replaced too;
 *  3. a replaced resource with deleteBeforeReplace is deleted before its replacement is created, and its replaced
 *     dependents are deleted before it, dependants first; creates then follow the dependencies.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { renderStopCloudflared, renderStopRelay } from "../../cloud-init";
import type { GraphNode, OfflineRun, RecordedResource } from "../../infra/offline";
import { replacementInputs } from "../helpers/replacement";
import { ofType, runStack, T } from "../helpers/stack";

/** Inputs whose change replaces a resource: the one table (test/helpers/replacement.ts), for custom resources. */
const forcesReplacement = (type: string): readonly string[] =>
  type.startsWith("mail-relay:") || type === "" ? [] : replacementInputs(type);

interface Plan {
  /** Resources replaced, by name. */
  readonly replaced: Set<string>;
  /** Delete steps before the server's replacement is created, in order. */
  readonly deletes: string[];
  /** Create steps of the replacements, in order. */
  readonly creates: string[];
}

/** Dependencies first (a stable topological order of `names` under the graph's dependsOn). */
function topological(names: Set<string>, graph: Map<string, GraphNode>): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const visit = (n: string) => {
    if (seen.has(n)) return;
    seen.add(n);
    for (const d of graph.get(n)?.dependsOn ?? []) if (names.has(d)) visit(d);
    out.push(n);
  };
  for (const n of graph.keys()) if (names.has(n)) visit(n);
  return out;
}

/** What the engine does when `changed` (a resource name) changes an input that forces its replacement. */
function replacementPlan(run: OfflineRun, changed: string): Plan {
  const graph = new Map(run.graph.map((g) => [g.name, g]));
  const types = new Map(run.resources.map((r) => [r.name, r.type]));
  const replaced = new Set([changed]);
  for (let grew = true; grew;) {
    grew = false;
    for (const g of run.graph) {
      if (replaced.has(g.name)) continue;
      const forcing = forcesReplacement(types.get(g.name) ?? "");
      if (forcing.some((p) => (g.propertyDependencies[p] ?? []).some((d) => replaced.has(d)))) {
        replaced.add(g.name);
        grew = true;
      }
    }
  }
  const order = topological(replaced, graph);
  const dbr = graph.get(changed)!.deleteBeforeReplace;
  const dependents = order.filter((n) => n !== changed);
  return {
    replaced,
    deletes: dbr ? [...[...dependents].reverse(), changed] : [],
    creates: order,
  };
}

const server = "mail-relay-node1-server";
let before: OfflineRun;
let after: OfflineRun;
let plan: Plan;
const byName = (r: OfflineRun, name: string): RecordedResource => r.resources.find((x) => x.name === name)!;
const without = (props: Record<string, unknown>, ...keys: string[]) =>
  Object.fromEntries(Object.entries(props).filter(([k]) => !keys.includes(k)));

beforeAll(async () => {
  before = await runStack("prod", { image: "debian-12" });
  after = await runStack("prod", { image: "debian-13" });
  plan = replacementPlan(after, server);
}, 120_000);

describe("debian-12 -> debian-13: what changes", () => {
  it("the server's image is the only server input that changes: user-data is the same for both releases", () => {
    expect(byName(before, server).props.image).toBe("debian-12");
    expect(byName(after, server).props.image).toBe("debian-13");
    expect(without(byName(after, server).props, "image")).toEqual(without(byName(before, server).props, "image"));
  });
  it("the primary IPs, their PTRs and the A/AAAA records have the same inputs, and none takes an input from the server", () => {
    for (const type of [T.primaryIp, T.rdns]) {
      const names = ofType(after.resources, type).map((r) => r.name);
      expect(names.length).toBeGreaterThan(0);
      for (const n of names) expect(byName(after, n).props, n).toEqual(byName(before, n).props);
      for (const n of names) expect(plan.replaced.has(n), n).toBe(false);
    }
    const hostRecords = (r: OfflineRun) =>
      ofType(r.resources, T.dnsRecord)
        .filter((x) => ["A", "AAAA"].includes(x.props.type))
        .map((x) => [x.name, x.props.name, x.props.type, x.props.content]);
    expect(hostRecords(after)).toEqual(hostRecords(before));
    expect(hostRecords(after).length).toBe(2);
    // Nothing but the node's remote steps reads the server's outputs (rule 2 reaches nothing else).
    const readers = after.graph
      .filter((g) => Object.values(g.propertyDependencies).some((ds) => ds.includes(server)))
      .map((g) => g.name);
    for (const n of readers) expect([T.command, T.copy], n).toContain(after.resources.find((r) => r.name === n)!.type);
  });
  it("the new server is attached to the same primary IPs (publicNets come from the primary IPs, which are not replaced)", () => {
    expect(after.graph.find((g) => g.name === server)!.propertyDependencies.publicNets.sort()).toEqual([
      "mail-relay-node1-ipv4",
      "mail-relay-node1-ipv6",
    ]);
    expect(byName(after, server).props.publicNets).toEqual(byName(before, server).props.publicNets);
    expect(ofType(after.resources, T.primaryIp).every((ip) => ip.props.autoDelete === false)).toBe(true);
  });
  it("the host files that differ between the releases are main.cf (compatibility_level) and the mail step's script (the Postfix unit)", () => {
    const steps = (r: OfflineRun) =>
      new Map(
        ofType(r.resources, T.command)
          .filter((c) => !/-secret-/.test(c.name))
          .map((c) => [c.name, `${c.props.create}\n${typeof c.props.stdin === "string" ? c.props.stdin : ""}`]),
      );
    const a = steps(before);
    const b = steps(after);
    // Steps with random inputs under mocks (keys, tokens) are compared through their scripts only.
    const differing = [...b.keys()]
      .filter((k) => a.get(k) !== b.get(k) && !/host-key|cloudflared-mail-relay-yml/.test(k))
      .sort();
    expect(differing).toEqual(["mail-relay-node1-apply-mail-config", "mail-relay-node1-file-etc-postfix-main-cf"]);
  });
});

describe("debian-12 -> debian-13: what `pulumi up` does", () => {
  it("replaces the server (deleteBeforeReplace: the primary IP can be attached to one server at a time)", () => {
    expect(after.graph.find((g) => g.name === server)!.deleteBeforeReplace).toBe(true);
    expect(plan.replaced.has(server)).toBe(true);
  });
  it("every remote step of the node runs again on the new server (each takes the server's id in its triggers)", () => {
    const steps = [...ofType(after.resources, T.command), ...ofType(after.resources, T.copy)]
      .filter((s) => s.name.startsWith("mail-relay-node1-"))
      .map((s) => s.name);
    expect(steps.length).toBeGreaterThan(15);
    expect(steps.filter((s) => !plan.replaced.has(s))).toEqual([]);
    // And nothing else is replaced: not the SSH host key (the new server gets the same one), not the tunnel, not DNS.
    expect([...plan.replaced].filter((n) => !steps.includes(n)).sort()).toEqual([server]);
  });
  it("before the old server is deleted: the tunnel is stopped on it, then the relay guard drains the queues (and refuses while mail is queued)", () => {
    const withDelete = plan.deletes.filter((n) => byName(after, n).props.delete);
    expect(withDelete).toEqual(["mail-relay-node1-cloudflared-guard", "mail-relay-node1-relay-guard"]);
    expect(byName(after, "mail-relay-node1-cloudflared-guard").props.delete).toBe(renderStopCloudflared());
    expect(byName(after, "mail-relay-node1-relay-guard").props.delete).toBe(
      renderStopRelay({ drainSeconds: 300, allowQueueLoss: false }),
    );
    expect(plan.deletes.at(-1)).toBe(server);
    // Both guards connect to the primary IPv4 with the pinned host key: they reach the old server, still attached.
    for (const g of withDelete)
      expect(byName(after, g).props.connection.host).toBe(byName(after, "mail-relay-node1-ipv4").props.ipAddress);
  });
  it("then the new server is created first, and the steps follow in the engine's order: host key, cloud-init, files, firewall, mail, relay, tunnel", () => {
    const at = (suffix: string) => plan.creates.findIndex((n) => n.endsWith(suffix));
    expect(plan.creates[0]).toBe(server);
    expect(at("-host-key")).toBe(1);
    expect(at("-wait-cloud-init")).toBe(2);
    expect(at("-apply-host-firewall")).toBeGreaterThan(at("-file-etc-nftables-conf"));
    expect(at("-apply-mail-config")).toBeGreaterThan(at("-file-etc-postfix-main-cf"));
    expect(at("-relay-activate")).toBeGreaterThan(
      Math.max(at("-apply-mail-config"), at("-relay-upload"), at("-relay-guard")),
    );
    expect(plan.creates.at(-1)).toBe("mail-relay-node1-cloudflared-start");
  });
  it("the model can tell: without the server id in a step's triggers, that step would not run on the new server", () => {
    const broken: OfflineRun = {
      ...after,
      graph: after.graph.map((g) =>
        g.name.endsWith("-relay-activate")
          ? {
              ...g,
              propertyDependencies: {
                ...g.propertyDependencies,
                triggers: g.propertyDependencies.triggers.filter((d) => d !== server),
              },
            }
          : g,
      ),
    };
    expect(replacementPlan(broken, server).replaced.has("mail-relay-node1-relay-activate")).toBe(false);
  });
});
