/**
 * The CrossGuard policies: one per rule of rules/index.ts, all mandatory. Exported on their own so tests can
 * drive them without constructing the PolicyPack (which starts the analyzer's gRPC server).
 */
import type {
  PolicyResource,
  ReportViolation,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationPolicy,
} from "@pulumi/policy";
import { UnknownValueError } from "@pulumi/policy";
import type { ResourceView, Rule } from "./model";
import { rules } from "./rules";

/**
 * A plain copy of the engine's props with every unknown value as `undefined` (the key kept, so rules can
 * tell "unknown" from "not set"). The engine hands props through a proxy that throws UnknownValueError
 * on an unknown; caught per field here, one unknown field no longer hides every other known one.
 */
export function knownProps(value: unknown): unknown {
  if (value === null || typeof value !== "object") return value;
  const read = (key: string | number): unknown => {
    try {
      return knownProps((value as Record<string | number, unknown>)[key]);
    } catch (e) {
      if (e instanceof UnknownValueError) return undefined;
      throw e;
    }
  };
  if (Array.isArray(value)) return Array.from({ length: value.length }, (_x, i) => read(i));
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value)) out[k] = read(k);
  return out;
}

interface EngineResource {
  type: string;
  name: string;
  urn: string;
  props: Record<string, unknown>;
  propertyDependencies?: Record<string, { urn: string }[]>;
}

function view(r: EngineResource): ResourceView {
  const props = (knownProps(r.props) ?? {}) as Record<string, unknown>;
  // Bridged providers carry the ID in their state as `id`.
  const id = typeof props.id === "string" ? props.id : undefined;
  const deps = r.propertyDependencies
    ? Object.fromEntries(Object.entries(r.propertyDependencies).map(([k, rs]) => [k, rs.map((d) => d.urn)]))
    : undefined;
  return {
    type: r.type,
    name: r.name,
    urn: r.urn,
    props,
    ...(id !== undefined ? { id } : {}),
    ...(deps ? { propertyDependencies: deps } : {}),
  };
}

function report(violations: ReturnType<Rule["check"]>, reportViolation: ReportViolation): void {
  for (const x of violations) reportViolation(x.message, x.urn);
}

function toPolicy(rule: Rule): ResourceValidationPolicy | StackValidationPolicy {
  const description = rule.reason;
  if (rule.scope === "resource") {
    return {
      name: rule.name,
      description,
      enforcementLevel: "mandatory",
      validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) =>
        report(rule.check(view(args)), reportViolation),
    };
  }
  return {
    name: rule.name,
    description,
    enforcementLevel: "mandatory",
    validateStack: (args: { resources: PolicyResource[] }, reportViolation: ReportViolation) =>
      report(rule.check(args.resources.map(view)), reportViolation),
  };
}

/** Every rule as a mandatory CrossGuard policy, in the order. */
export const policies: (ResourceValidationPolicy | StackValidationPolicy)[] = rules.map(toPolicy);
