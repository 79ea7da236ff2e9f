/**
 * Drives the real `policies` array the way the CrossGuard analyzer does (validateResource per resource,
 * validateStack once), with hand-built args objects, and collects what each policy reports.
 */
import type {
  PolicyResource,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationArgs,
  StackValidationPolicy,
} from "@pulumi/policy";
import { policies } from "../../infra/policy/policies";

export interface AnyResource {
  readonly type: string;
  readonly name: string;
  readonly urn?: string;
  readonly id?: string;
  readonly props: Record<string, unknown>;
  /** Property name -> URNs it depends on. */
  readonly propertyDependencies?: Readonly<Record<string, readonly string[]>>;
}

export interface StackArgsOptions {
  /** Put each resource's ID into its props as `id`, the way bridged providers' state carries it (default true). */
  readonly idsInProps?: boolean;
}

const opts = {
  protect: false,
  ignoreChanges: [],
  aliases: [],
  customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
  additionalSecretOutputs: [],
};
const urnOf = (r: AnyResource) => r.urn ?? `urn:pulumi:test::mail-relay::${r.type}::${r.name}`;
const notApplicable = (reason?: string): never => {
  throw new Error(`notApplicable: ${reason ?? ""}`);
};
/** The resource classes' type tokens, as isType compares them (`__pulumiType`). */
const pulumiType = (cls: unknown) => (cls as { __pulumiType?: string }).__pulumiType;

export function resourceArgs(r: AnyResource): ResourceValidationArgs {
  return {
    type: r.type,
    name: r.name,
    urn: urnOf(r),
    props: r.props,
    opts,
    stackTags: new Map(),
    isType: (cls) => pulumiType(cls) === r.type,
    asType: ((cls: unknown) => (pulumiType(cls) === r.type ? r.props : undefined)) as ResourceValidationArgs["asType"],
    getConfig: <T extends object>() => ({}) as T,
    notApplicable,
  };
}

export function stackArgs(rs: readonly AnyResource[], o: StackArgsOptions = {}): StackValidationArgs {
  const resources: PolicyResource[] = rs.map((r) => ({
    type: r.type,
    name: r.name,
    urn: urnOf(r),
    props: (o.idsInProps ?? true) && r.id !== undefined ? { ...r.props, id: r.id } : r.props,
    opts,
    dependencies: [],
    propertyDependencies: {},
    isType: (cls) => pulumiType(cls) === r.type,
    asType: ((cls: unknown) => (pulumiType(cls) === r.type ? r.props : undefined)) as PolicyResource["asType"],
  }));
  // Link propertyDependencies to the resource objects, as the analyzer does.
  resources.forEach((pr, i) => {
    for (const [k, urns] of Object.entries(rs[i].propertyDependencies ?? {}))
      pr.propertyDependencies[k] = resources.filter((x) => urns.includes(x.urn));
  });
  return { resources, stackTags: new Map(), getConfig: <T extends object>() => ({}) as T, notApplicable };
}

export interface Reported {
  readonly policy: string;
  readonly message: string;
  readonly urn?: string;
}

/** Run every policy over a stack, as `pulumi preview --policy-pack` would; returns every reported violation. */
export async function runPolicies(rs: readonly AnyResource[], o: StackArgsOptions = {}): Promise<Reported[]> {
  const out: Reported[] = [];
  for (const p of policies) {
    const report = (message: string, urn?: string) => out.push({ policy: p.name, message, ...(urn ? { urn } : {}) });
    const rp = p as ResourceValidationPolicy;
    const sp = p as StackValidationPolicy;
    if (typeof sp.validateStack === "function") await sp.validateStack(stackArgs(rs, o), report);
    if (rp.validateResource !== undefined) {
      const validations = Array.isArray(rp.validateResource) ? rp.validateResource : [rp.validateResource];
      for (const r of rs) for (const validate of validations) await validate(resourceArgs(r), report);
    }
  }
  return out;
}

/** The set of policy names that reported anything. */
export async function firedPolicies(rs: readonly AnyResource[], o: StackArgsOptions = {}): Promise<string[]> {
  return [...new Set((await runPolicies(rs, o)).map((r) => r.policy))].sort();
}
