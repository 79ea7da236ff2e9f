/**
 * Rules 4-7, Postfix itself: loopback-only listeners, loopback-only trust, closed relay restrictions, and a
 * send-only mydestination.
 */
import { ofType, StackRule, TYPES, violation, Violation } from "../model";
import {
  dnsRecords,
  filePushes,
  isDmarc,
  mainCfFor,
  mainCfs,
  masterCfs,
  mtaHostnames,
  sendingDomains,
  somePushUnknown,
} from "../facts";
import { cidrWithinAny, isLoopbackHost, LOOPBACK, parseCidr } from "../parse/net";
import { commandName, expandPostfix, masterServiceEndpoint, MasterCfService, postfixList } from "../parse/postfix";
import { normName } from "../parse/dns";

/** The only files the deploy step may write under /etc/postfix/: anything else could be a map or a second config. */
export const POSTFIX_FILES = new Set([
  "/etc/postfix/main.cf",
  "/etc/postfix/master.cf",
  "/etc/postfix/sasl_passwd",
  "/etc/postfix/sender_access",
]);

/** Service names of the submission and smtps ports: no such listener may exist. */
const SUBMISSION_NAMES = new Set(["submission", "submissions", "smtps", "587", "465", "ssmtp", "urd"]);
/** Postfix daemons that take mail in from whoever connects (SMTP, postscreen's SMTP front, QMQP). */
export const MAIL_RECEIVING_DAEMONS = new Set(["smtpd", "postscreen", "qmqpd"]);

/**
 * What a master.cf service does, judged by its daemon and its endpoint, not by its name: the one allowed network
 * listener is `smtp inet ... smtpd` on inet_interfaces (loopback, checked above); any other inet service (any daemon,
 * spawn/pipe running a program included) is a listener the host firewall's loopback rules were not written for, a
 * public host address exposes it beyond the host, and a mail-receiving daemon on a unix/fifo/pass socket is a second
 * way in that skips both. Undefined when the service is fine.
 */
export function masterServiceProblem(s: MasterCfService, all: readonly MasterCfService[]): string | undefined {
  const daemon = commandName(s.command);
  const line = `"${s.service} ${s.type} ... ${s.command}"`;
  if (s.type !== "inet") {
    return MAIL_RECEIVING_DAEMONS.has(daemon)
      ? `master.cf runs ${daemon} on a ${s.type} service "${s.service}"; the only SMTP server is smtp inet on loopback`
      : undefined;
  }
  const { host, port } = masterServiceEndpoint(s.service);
  if (host !== undefined && !isLoopbackHost(host))
    return `master.cf defines a public listener ${line} on ${host}; Postfix listens on loopback only`;
  if (SUBMISSION_NAMES.has(port.toLowerCase()))
    return (
      `master.cf defines a submission/smtps listener ${line}; ` +
      `no submission, smtps or other smtpd listener may exist`
    );
  const theSmtpListener = daemon === "smtpd" && (port === "smtp" || port === "25");
  const first = all.find((o) => o.type === "inet" && commandName(o.command) === "smtpd");
  if (theSmtpListener && first === s) return undefined;
  return (
    `master.cf defines a second network listener ${line} (${daemon}); the only inet service is ` +
    `"smtp inet ... smtpd" on loopback, which the host firewall limits to root and the relay`
  );
}

/** Are all `inet_interfaces` entries loopback? */
export function inetInterfacesLoopbackOnly(value: string): boolean {
  const items = postfixList(value.toLowerCase());
  if (items.length === 0) return false;
  if (items.length === 1 && items[0] === "loopback-only") return true;
  return items.every((i) => isLoopbackHost(i));
}

/** smtpd(8) services of a master.cf (the ones whose -o overrides can change relay policy). */
const smtpdServices = (services: readonly MasterCfService[]) =>
  services.filter((s) => commandName(s.command) === "smtpd");

/** 4. Postfix listens on loopback only and master.cf has no public smtpd listener. */
export const postfixLoopbackOnly: StackRule = {
  name: "postfix-loopback-only",
  scope: "stack",
  reason:
    "Postfix must not accept connections from anywhere but this host: " +
    "a public or forwarded listener turned both incident hosts into open relays (000 FRP, 001 Docker NAT).",
  check(rs) {
    const out: Violation[] = [];
    const mains = mainCfs(rs);
    for (const m of mains) {
      const ii = m.get("inet_interfaces");
      if (ii === undefined)
        out.push(
          violation(
            this.name,
            m.push.resource,
            "main.cf does not set inet_interfaces (Postfix's default is all); set inet_interfaces = loopback-only",
          ),
        );
      else if (!inetInterfacesLoopbackOnly(ii))
        out.push(
          violation(
            this.name,
            m.push.resource,
            `main.cf inet_interfaces = ${ii}; must be loopback-only (or only 127.0.0.1/::1)`,
          ),
        );
    }
    for (const p of filePushes(rs)) {
      // main.cf and master.cf are rendered from config alone, so they are always known at preview: unknown fails
      // closed.
      if ((p.path === "/etc/postfix/main.cf" || p.path === "/etc/postfix/master.cf") && p.content === undefined) {
        out.push(
          violation(
            this.name,
            p.resource,
            `the content of ${p.path} is unknown; inet_interfaces, mynetworks and the listeners can't be ` +
              `proven, so it is refused`,
          ),
        );
      }
      if (p.path.startsWith("/etc/postfix/") && !POSTFIX_FILES.has(p.path)) {
        out.push(
          violation(
            this.name,
            p.resource,
            `pushes ${p.path}; only ${[...POSTFIX_FILES].join(", ")} may be written under /etc/postfix/`,
          ),
        );
      }
    }
    for (const { push, services } of masterCfs(rs)) {
      for (const s of services) {
        const p = masterServiceProblem(s, services);
        if (p) out.push(violation(this.name, push.resource, p));
      }
    }
    const servers = ofType(rs, TYPES.server);
    if (servers.length > 0 && !filePushes(rs).some((p) => p.path === "/etc/postfix/main.cf") && !somePushUnknown(rs)) {
      out.push(
        violation(
          this.name,
          servers[0],
          "no /etc/postfix/main.cf is pushed to the relay nodes, so loopback-only listening can't be proven",
        ),
      );
    }
    return out;
  },
};

/** Are all mynetworks entries inside 127.0.0.0/8 or ::1/128? Returns the offending entries. */
export function mynetworksOutsideLoopback(value: string): string[] {
  return postfixList(value).filter((item) => {
    if (item.startsWith("!")) return false; // an exclusion only narrows the list
    const c = parseCidr(item);
    return c === undefined || !cidrWithinAny(c, LOOPBACK);
  });
}

/** 5. mynetworks is loopback only. */
export const trustedNetworksLoopbackOnly: StackRule = {
  name: "trusted-networks-loopback-only",
  scope: "stack",
  reason:
    "Postfix relays anything from mynetworks: a Docker NAT gateway (incident 001) " +
    "or a private range in it made an open relay; only 127.0.0.0/8 and ::1 are trusted.",
  check(rs) {
    const out: Violation[] = [];
    const mains = mainCfs(rs);
    for (const m of mains) {
      const mn = m.get("mynetworks");
      if (mn === undefined) {
        out.push(
          violation(
            this.name,
            m.push.resource,
            "main.cf does not set mynetworks (Postfix then derives it from mynetworks_style); " +
              "set mynetworks = 127.0.0.0/8 [::1]/128",
          ),
        );
        continue;
      }
      const bad = mynetworksOutsideLoopback(mn);
      if (bad.length > 0)
        out.push(
          violation(
            this.name,
            m.push.resource,
            `main.cf mynetworks = ${mn}; ${bad.join(", ")} is not inside 127.0.0.0/8 or ::1/128`,
          ),
        );
    }
    for (const { push, services } of masterCfs(rs)) {
      const main = mainCfFor(push, mains);
      for (const s of smtpdServices(services)) {
        const o = s.overrides.get("mynetworks");
        if (o === undefined) continue;
        const val = main ? expandPostfix(o, main.params) : o;
        const bad = mynetworksOutsideLoopback(val);
        if (bad.length > 0)
          out.push(
            violation(
              this.name,
              push.resource,
              `master.cf service "${s.service}" overrides mynetworks=${val}; ${bad.join(", ")} is not loopback`,
            ),
          );
      }
    }
    return out;
  },
};

/**
 * The only tokens a relay, recipient or client restriction list may hold. Everything else is refused, because a
 * lookup (`check_client_access static:OK`), a restriction class defined as `permit`, or any other permit_* can say OK
 * to a stranger before reject_unauth_destination is reached.
 */
export const RESTRICTION_TOKENS: ReadonlySet<string> = new Set([
  "permit_mynetworks",
  "reject_unauth_destination",
  "defer_unauth_destination",
  "reject",
  "defer",
]);
/** Restriction lists whose tokens are allow-listed. */
export const RESTRICTION_LISTS = [
  "smtpd_client_restrictions",
  "smtpd_relay_restrictions",
  "smtpd_recipient_restrictions",
] as const;

/** Tokens of a restriction list that are not allow-listed (maps and their arguments included). */
export function restrictionTokensNotAllowed(value: string): string[] {
  return postfixList(value).filter((i) => !RESTRICTION_TOKENS.has(i.toLowerCase()));
}

/** Why a relay restriction list is not closed, or undefined when it is. */
export function relayRestrictionsProblem(value: string): string | undefined {
  const items = postfixList(value).map((i) => i.toLowerCase());
  const idx = items.findIndex((i) => i === "reject_unauth_destination" || i === "defer_unauth_destination");
  if (idx < 0) return "has no reject_unauth_destination (or defer_unauth_destination)";
  const bad = restrictionTokensNotAllowed(value);
  if (bad.length > 0) return `holds ${bad.join(", ")}; only ${[...RESTRICTION_TOKENS].join(", ")} may appear`;
  return undefined;
}

/** 6. Relay restrictions end in reject_unauth_destination with no permit after it. */
export const relayRestrictionsClosed: StackRule = {
  name: "relay-restrictions-closed",
  scope: "stack",
  reason:
    "smtpd_relay_restrictions is what stops an open relay when a client is not trusted; " +
    "it must end in reject_unauth_destination with no permit after it.",
  check(rs) {
    const out: Violation[] = [];
    const mains = mainCfs(rs);
    for (const m of mains) {
      const rr = m.get("smtpd_relay_restrictions");
      if (rr === undefined) {
        out.push(
          violation(
            this.name,
            m.push.resource,
            "main.cf does not set smtpd_relay_restrictions; set it to permit_mynetworks, reject_unauth_destination",
          ),
        );
        continue;
      }
      const p = relayRestrictionsProblem(rr);
      if (p) out.push(violation(this.name, m.push.resource, `main.cf smtpd_relay_restrictions = ${rr} ${p}`));
      for (const key of RESTRICTION_LISTS.filter((k) => k !== "smtpd_relay_restrictions")) {
        const val = m.get(key);
        const bad = val === undefined ? [] : restrictionTokensNotAllowed(val);
        if (bad.length > 0)
          out.push(
            violation(
              this.name,
              m.push.resource,
              `main.cf ${key} = ${val} holds ${bad.join(", ")}; only ${[...RESTRICTION_TOKENS].join(", ")} may appear`,
            ),
          );
      }
    }
    for (const { push, services } of masterCfs(rs)) {
      const main = mainCfFor(push, mains);
      for (const s of smtpdServices(services)) {
        for (const key of RESTRICTION_LISTS) {
          const o = s.overrides.get(key);
          if (o === undefined) continue;
          const val = main ? expandPostfix(o, main.params) : o;
          const p =
            key === "smtpd_relay_restrictions"
              ? relayRestrictionsProblem(val)
              : restrictionTokensNotAllowed(val).length > 0
                ? `holds ${restrictionTokensNotAllowed(val).join(", ")}`
                : undefined;
          if (p)
            out.push(
              violation(
                this.name,
                push.resource,
                `master.cf service "${s.service}" overrides ${key}=${val}, which ${p}`,
              ),
            );
        }
      }
    }
    return out;
  },
};

/** 7. mydestination lists neither the sending domain nor an MTA hostname. */
export const sendOnlyMydestination: StackRule = {
  name: "send-only-mydestination",
  scope: "stack",
  reason:
    "A send-only host that lists its domain or hostname in mydestination delivers that mail locally instead of " +
    "to the domain's MX (swallowed replies, bounces, DMARC reports).",
  check(rs) {
    const out: Violation[] = [];
    const forbidden = new Set([...sendingDomains(rs), ...mtaHostnames(rs)]);
    for (const d of dnsRecords(rs)) if (isDmarc(d) && d.name) forbidden.add(d.name.replace(/^_dmarc\./, ""));
    for (const m of mainCfs(rs)) {
      const md = m.get("mydestination");
      if (md === undefined) {
        out.push(
          violation(
            this.name,
            m.push.resource,
            "main.cf does not set mydestination (Postfix's default includes $myhostname); " +
              "set mydestination = localhost",
          ),
        );
        continue;
      }
      const hits = postfixList(md)
        .map(normName)
        .filter((x) => forbidden.has(x));
      if (hits.length > 0)
        out.push(
          violation(
            this.name,
            m.push.resource,
            `main.cf mydestination = ${md} lists ${hits.join(", ")}; a send-only host must not receive for its ` +
              `domain or hostname`,
          ),
        );
    }
    return out;
  },
};
