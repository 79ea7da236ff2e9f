/**
 * What every rule works on: the resource as the rules see it, a violation, the rule shapes, the resource types read,
 * and the typed accessors over untyped props. No @pulumi import anywhere under infra/policy/ but policies.ts and
 * index.ts, so every rule runs the same under CrossGuard, under the program's mocks and over hand-made fixtures.
 *
 * Unknown values: during `pulumi preview` a value that depends on an unknown output reaches the rules as
 * `undefined` (policies.ts turns the engine's unknown sentinels into `undefined` but keeps the key). A
 * rule never reports on an `undefined` value; it checks only what is known. A key that is missing from
 * the props altogether is a known absence (the value was never set) and is judged like any other value.
 */
/** One resource as the rules see it: its inputs (or state), unknowns as `undefined`, secrets in plain. */
export interface ResourceView {
  readonly type: string;
  readonly name: string;
  readonly urn?: string;
  /** The provider ID when known (mocks record it; bridged providers also carry `id` in props). */
  readonly id?: string;
  readonly props: Record<string, unknown>;
  /** URNs each property depends on (CrossGuard's propertyDependencies), when the engine supplies them. */
  readonly propertyDependencies?: Readonly<Record<string, readonly string[]>>;
}

export interface Violation {
  readonly rule: string;
  /** Names the offending resource (type + name) and value. Never contains a secret value. */
  readonly message: string;
  readonly urn?: string;
}

interface RuleBase {
  /** Policy name: kebab-case, unique. */
  readonly name: string;
  /** One line: the failure, incident or RFC the rule prevents. */
  readonly reason: string;
}

export interface ResourceRule extends RuleBase {
  readonly scope: "resource";
  check(resource: ResourceView): Violation[];
}

export interface StackRule extends RuleBase {
  readonly scope: "stack";
  check(resources: readonly ResourceView[]): Violation[];
}

export type Rule = ResourceRule | StackRule;

/** The resource types the rules read. */
export const TYPES = {
  sshKey: "hcloud:index/sshKey:SshKey",
  firewall: "hcloud:index/firewall:Firewall",
  server: "hcloud:index/server:Server",
  primaryIp: "hcloud:index/primaryIp:PrimaryIp",
  rdns: "hcloud:index/rdns:Rdns",
  dnsRecord: "cloudflare:index/dnsRecord:DnsRecord",
  tunnel: "cloudflare:index/zeroTrustTunnelCloudflared:ZeroTrustTunnelCloudflared",
  tunnelConfig: "cloudflare:index/zeroTrustTunnelCloudflaredConfig:ZeroTrustTunnelCloudflaredConfig",
  serviceToken: "cloudflare:index/zeroTrustAccessServiceToken:ZeroTrustAccessServiceToken",
  accessPolicy: "cloudflare:index/zeroTrustAccessPolicy:ZeroTrustAccessPolicy",
  accessApp: "cloudflare:index/zeroTrustAccessApplication:ZeroTrustAccessApplication",
  randomPassword: "random:index/randomPassword:RandomPassword",
  randomBytes: "random:index/randomBytes:RandomBytes",
  privateKey: "tls:index/privateKey:PrivateKey",
  command: "command:remote:Command",
} as const;

// Typed reads of untyped props: the wrong shape reads as undefined (or false), never as a throw.
export const isStr = (v: unknown): v is string => typeof v === "string";
export const asArray = (v: unknown): unknown[] | undefined => (Array.isArray(v) ? v : undefined);
export const asObj = (v: unknown): Record<string, unknown> | undefined =>
  v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
/** The key was set (possibly to an unknown value). */
export const has = (o: Record<string, unknown>, key: string): boolean => Object.prototype.hasOwnProperty.call(o, key);

/** How a message names a resource: its type and logical name. */
export function resourceLabel(r: Pick<ResourceView, "type" | "name">): string {
  return `${r.type} "${r.name}"`;
}

/** The resources of one type. */
export const ofType = (rs: readonly ResourceView[], type: string) => rs.filter((r) => r.type === type);

/** A violation of `rule` by `r`, its message prefixed with the resource's label. */
export const violation = (rule: string, r: ResourceView, message: string): Violation => ({
  rule,
  message: `${resourceLabel(r)}: ${message}`,
  ...(r.urn ? { urn: r.urn } : {}),
});
