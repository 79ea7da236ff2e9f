/**
 * Rules 9 and 17, the Cloudflare tunnel: it reaches only the relay's two loopback listeners, its routes live in a
 * file on each node, and cloudflared checks the Access JWT itself.
 */
import { asArray, asObj, has, isStr, ofType, ResourceRule, StackRule, TYPES, violation, Violation } from "../model";
import { filePushes, somePushUnknown } from "../facts";

/** Ports no tunnel route may name: SMTP, SMTPS, submission and OpenDKIM's usual milter port. */
export const TUNNEL_FORBIDDEN_PORTS = [25, 465, 587, 8891] as const;
/**
 * The only services the tunnel may reach: the relay's two loopback listeners, its HTTP API (http://) and its SMTP
 * ingress (tcp://). Written here, not imported from relay/host-contract.ts, like every fact this pack checks; a test
 * ties the two.
 */
export const RELAY_TUNNEL_SERVICES = { http: 2525, tcp: 2587 } as const;

/**
 * Why a tunnel ingress list lets the tunnel reach something other than the relay's two listeners, or [] when it
 * doesn't.
 */
export function tunnelIngressProblems(ingresses: readonly unknown[]): string[] {
  const problems: string[] = [];
  const mailPort = new RegExp(`:(${TUNNEL_FORBIDDEN_PORTS.join("|")})(?![0-9])`);
  ingresses.forEach((raw, i) => {
    const ing = asObj(raw);
    if (!ing) return;
    const last = i === ingresses.length - 1;
    const text = JSON.stringify(ing);
    if (/smtps?:\/\//i.test(text)) problems.push(`ingress #${i} uses smtp:// (${String(ing.service)})`);
    else if (mailPort.test(text)) problems.push(`ingress #${i} names a mail port (${String(ing.service)})`);
    const service = ing.service;
    // Where the tunnel sends traffic decides safety and never comes from the cloud: unknown fails closed.
    if (service === undefined) {
      problems.push(
        `ingress #${i} has an unknown service; a route that might reach an SMTP port is refused until it is known`,
      );
      return;
    }
    if (last) {
      if (
        service !== "http_status:404" ||
        (isStr(ing.hostname) && ing.hostname !== "") ||
        (isStr(ing.path) && ing.path !== "")
      ) {
        problems.push(
          `the last ingress must be a catch-all http_status:404, ` +
            `not ${JSON.stringify({ hostname: ing.hostname, path: ing.path, service })}`,
        );
      }
      return;
    }
    const m = isStr(service) ? /^(http|tcp):\/\/(127\.0\.0\.1|localhost|\[::1\]):(\d{1,5})\/?$/.exec(service) : null;
    if (!m || Number(m[3]) !== RELAY_TUNNEL_SERVICES[m[1] as "http" | "tcp"]) {
      const { http, tcp } = RELAY_TUNNEL_SERVICES;
      problems.push(
        `ingress #${i} service ${JSON.stringify(service)} is neither http://127.0.0.1:${http} (the relay's ` +
          `HTTP API) nor tcp://127.0.0.1:${tcp} (its SMTP ingress)`,
      );
    } else if (m[1] === "tcp" && !(isStr(ing.hostname) && ing.hostname !== "")) {
      problems.push(`ingress #${i} sends every hostname to ${service}; a tcp:// route must name its hostname`);
    }
  });
  if (ingresses.length === 0) problems.push("has no ingress rules (needs a catch-all http_status:404)");
  return problems;
}

/** 9. The tunnel reaches only the relay's two loopback listeners: its HTTP API and its SMTP ingress. */
export const tunnelCannotReachMailPorts: ResourceRule = {
  name: "tunnel-cannot-reach-mail-ports",
  scope: "resource",
  reason:
    "Through a tunnel every caller arrives from localhost, which Postfix trusts: " +
    "a tunnel to an SMTP port is exactly incident 000 (FRP to :25).",
  check(r) {
    if (r.type !== TYPES.tunnelConfig) return [];
    const cfg = asObj(r.props.config);
    if (cfg === undefined)
      return [
        violation(this.name, r, "tunnel config is unknown or not set; its routes can't be proven, so it is refused"),
      ];
    const ing = asArray(cfg.ingresses);
    if (ing === undefined)
      return [
        violation(
          this.name,
          r,
          has(cfg, "ingresses")
            ? "tunnel config ingresses are unknown; refused until known"
            : "config has no ingresses (needs the relay route and a catch-all http_status:404)",
        ),
      ];
    const problems = tunnelIngressProblems(ing);
    const rest = JSON.stringify({ ...cfg, ingresses: undefined });
    if (/smtps?:\/\/|tcp:\/\//i.test(rest)) problems.push("config names smtp:// or tcp:// outside the ingress list");
    return problems.map((p) => violation(this.name, r, `tunnel config ${p}`));
  },
};

/** cloudflared's locally managed ingress file (the tunnel is config_src "local"). */
export const CLOUDFLARED_CONFIG_PATH = "/etc/cloudflared/mail-relay.yml";

/**
 * Why a pushed cloudflared config file is unsafe: ingress problems, and any route without cloudflared's own Access
 * check.
 */
export function cloudflaredConfigProblems(text: string, auds: readonly string[]): string[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return ["is not the JSON the renderer writes, so its routes can't be checked"];
  }
  const ingress = asArray(asObj(doc)?.ingress);
  if (ingress === undefined) return ["has no ingress list"];
  const problems = tunnelIngressProblems(ingress);
  ingress.slice(0, -1).forEach((raw, i) => {
    const access = asObj(asObj(asObj(raw)?.originRequest)?.access);
    if (!access || access.required !== true) {
      problems.push(
        `ingress #${i} does not set originRequest.access.required: true (cloudflared must check the Access JWT itself)`,
      );
      return;
    }
    if (!isStr(access.teamName) || access.teamName === "")
      problems.push(`ingress #${i} originRequest.access has no teamName`);
    const tags = asArray(access.audTag);
    if (!tags || tags.length === 0 || !tags.every(isStr))
      problems.push(`ingress #${i} originRequest.access has no audTag`);
    else if (auds.length > 0 && !tags.every((t) => auds.includes(t as string)))
      problems.push(`ingress #${i} audTag ${JSON.stringify(tags)} is not this stack's Access application`);
  });
  return problems;
}

/** 17. The tunnel's ingress is locally managed, pushed to every node, and cloudflared checks the Access JWT. */
export const tunnelIngressLocal: StackRule = {
  name: "tunnel-ingress-local",
  scope: "stack",
  reason:
    "A remotely managed tunnel takes its routes from the Cloudflare dashboard, " +
    "where one edit can send the hostname to an SMTP port; the routes must live in a file on the host, " +
    "and cloudflared must refuse a request Access did not sign.",
  check(rs) {
    const tunnels = ofType(rs, TYPES.tunnel);
    if (tunnels.length === 0) return [];
    const out: Violation[] = [];
    for (const t of tunnels) {
      // configSrc is plain configuration, never cloud-assigned: unknown counts as wrong (fail closed).
      if (t.props.configSrc !== "local")
        out.push(
          violation(
            this.name,
            t,
            `configSrc ` +
              `is ${t.props.configSrc === undefined ? "unknown or not set" : JSON.stringify(t.props.configSrc)}; ` +
              `must be "local" so the dashboard can't change the routes`,
          ),
        );
    }
    const auds = ofType(rs, TYPES.accessApp)
      .map((a) => a.props.aud)
      .filter(isStr);
    const pushes = filePushes(rs).filter((p) => p.path === CLOUDFLARED_CONFIG_PATH);
    for (const p of pushes) {
      // Unknown only while the Access application's AUD tag is (first preview); checked again after the update.
      if (p.content === undefined) continue;
      for (const problem of cloudflaredConfigProblems(p.content, auds))
        out.push(violation(this.name, p.resource, `${CLOUDFLARED_CONFIG_PATH} ${problem}`));
    }
    const servers = ofType(rs, TYPES.server);
    const hosts = new Set(pushes.map((p) => p.host));
    const nodeHosts = new Set(
      filePushes(rs)
        .filter((p) => p.path === "/etc/postfix/main.cf")
        .map((p) => p.host),
    );
    if (servers.length > 0 && !somePushUnknown(rs)) {
      if (pushes.length === 0)
        out.push(
          violation(
            this.name,
            tunnels[0],
            `no ${CLOUDFLARED_CONFIG_PATH} is pushed: cloudflared would have no local ingress`,
          ),
        );
      else
        for (const h of nodeHosts)
          if (h !== undefined && !hosts.has(h))
            out.push(violation(this.name, tunnels[0], `node ${h} gets no ${CLOUDFLARED_CONFIG_PATH}`));
    }
    return out;
  },
};
