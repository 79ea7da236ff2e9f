/** Rule 10, Cloudflare Access: every hostname that leads into the tunnel needs this stack's own service token. */
import { asArray, asObj, has, isStr, ofType, ResourceView, StackRule, TYPES, violation, Violation } from "../model";
import { tunnelHostnames } from "../facts";
import { normName } from "../parse/dns";

/** Does an Access application's domain/destinations cover a hostname (exactly or by a *. wildcard)? */
function appCovers(app: ResourceView, host: string): boolean | undefined {
  const names: unknown[] = [
    app.props.domain,
    ...(asArray(app.props.selfHostedDomains) ?? []),
    ...(asArray(app.props.destinations) ?? []).map((d) => asObj(d)?.uri),
  ];
  let unknown = false;
  for (const n of names) {
    if (n === undefined) {
      unknown = true;
      continue;
    }
    if (!isStr(n)) continue;
    const d = normName(n.replace(/^https?:\/\//, ""));
    if (d.includes("/")) continue; // a path-scoped app leaves the rest of the hostname open
    if (d === host || (d.startsWith("*.") && host.endsWith(d.slice(1)))) return true;
  }
  return unknown ? undefined : false;
}

const SERVICE_TOKEN_INCLUDES = ["serviceToken", "anyValidServiceToken"];

/** 10. When a tunnel exists, a service-token Access application covers each relay hostname. */
export const accessInFrontOfTunnel: StackRule = {
  name: "access-in-front-of-tunnel",
  scope: "stack",
  reason:
    "The tunnel makes the relay's HTTP API public; Cloudflare Access with a service-token (non_identity) " +
    "policy keeps every caller without a token at the edge.",
  check(rs) {
    if (ofType(rs, TYPES.tunnel).length === 0) return [];
    const out: Violation[] = [];
    const apps = ofType(rs, TYPES.accessApp);
    const policies = ofType(rs, TYPES.accessPolicy);
    const idOf = (p: ResourceView) => p.id ?? (isStr(p.props.id) ? p.props.id : undefined);
    const idsUnknown = policies.some((p) => idOf(p) === undefined);
    const ownTokens = new Set(
      ofType(rs, TYPES.serviceToken)
        .map((t) => idOf(t))
        .filter(isStr),
    );
    // A token whose ID the cloud has not assigned yet can't be matched: then a serviceToken include is not judged.
    const tokenIdsUnknown = ofType(rs, TYPES.serviceToken).some((t) => idOf(t) === undefined);
    for (const host of tunnelHostnames(rs)) {
      const covering = apps.filter((a) => appCovers(a, host) !== false);
      if (covering.length === 0) {
        const anchor = ofType(rs, TYPES.tunnel)[0];
        out.push(violation(this.name, anchor, `relay hostname ${host} has no Access application in front of it`));
        continue;
      }
      for (const app of covering.filter((a) => appCovers(a, host) === true)) {
        const refs = asArray(app.props.policies);
        if (refs === undefined) {
          if (!has(app.props, "policies"))
            out.push(
              violation(this.name, app, `covers ${host} but has no policies; add a non_identity service-token policy`),
            );
          continue;
        }
        let tokenPolicy = false;
        let unknown = false;
        // The app's policies: inline ones, ones found by ID, else the AccessPolicies its `policies` property depends
        // on.
        const resolved: Record<string, unknown>[] = [];
        const deps = (app.propertyDependencies?.policies ?? []).flatMap((u) => policies.filter((p) => p.urn === u));
        for (const ref of refs.map(asObj)) {
          if (!ref) {
            unknown = true;
            continue;
          }
          if (ref.decision !== undefined || ref.includes !== undefined) resolved.push(ref);
          else if (isStr(ref.id) && policies.some((p) => idOf(p) === ref.id))
            resolved.push(policies.find((p) => idOf(p) === ref.id)!.props);
          else if (deps.length > 0) resolved.push(...deps.map((d) => d.props));
          else if (ref.id === undefined || idsUnknown) unknown = true;
          else
            out.push(
              violation(
                this.name,
                app,
                `covers ${host} with policy ${String(ref.id)}, which this stack does not manage, ` +
                  `so its decision can't be checked`,
              ),
            );
        }
        for (const pol of resolved) {
          const includes = (asArray(pol.includes) ?? []).map(asObj);
          if (pol.decision === "bypass")
            out.push(
              violation(
                this.name,
                app,
                `covers ${host} with a bypass policy; nobody may reach the relay without a service token`,
              ),
            );
          if (includes.some((inc) => inc && has(inc, "everyone")) && pol.decision !== "deny")
            out.push(violation(this.name, app, `covers ${host} with a policy that includes everyone`));
          if (
            pol.decision === "non_identity" &&
            includes.some((inc) => inc && SERVICE_TOKEN_INCLUDES.some((k) => has(inc, k)))
          )
            tokenPolicy = true;
          if (pol.decision === undefined) unknown = true;
          if (pol.decision === "deny") continue;
          // Includes are OR-ed: one {ip: 0.0.0.0/0} or anyValidServiceToken beside the tokens lets anyone (or any
          // token of the account) in. Every include must be one of this stack's own service tokens.
          includes.forEach((inc, i) => {
            const tokenId = asObj(inc?.serviceToken)?.tokenId;
            const keys = inc ? Object.keys(inc) : [];
            if (inc && keys.length === 1 && keys[0] === "serviceToken" && (tokenId === undefined || tokenIdsUnknown))
              return; // ids not assigned yet
            if (!inc || keys.length !== 1 || keys[0] !== "serviceToken" || !isStr(tokenId) || !ownTokens.has(tokenId)) {
              out.push(
                violation(
                  this.name,
                  app,
                  `covers ${host} with a policy whose include #${i} ${JSON.stringify(inc ?? null)} is not one ` +
                    `of this stack's service tokens`,
                ),
              );
            }
          });
        }
        if (!tokenPolicy && !unknown)
          out.push(violation(this.name, app, `covers ${host} but no policy is non_identity with a service token`));
      }
    }
    return out;
  },
};
