/**
 * The checks across keys, and the config the program builds from. `parseConfig` is a pure function over raw values so
 * that every rule can be tested without the Pulumi engine; every problem is reported at once, each naming the key and
 * the fix.
 */
import {
  DEBIAN_RELEASES,
  DEFAULT_RELEASE,
  RELEASES,
  releaseForImage,
  releaseName,
  type DebianRelease,
} from "../../cloud-init/release";
import { DEFAULT_OUTBOUND_TLS } from "../../cloud-init/outbound-tls";
import { RELAY_SMTP_PORT } from "../../relay/host-contract";
import { directLookups, parseSpf, SPF_LOOKUP_LIMIT } from "../spf";
import { spfRecord } from "../records";
import { issueProblems, keyPath, secretSetCommand } from "./messages";
import { isCidr, isWiderThanASite, NS, rawSchema, type ConfigKey, type RawConfig, type SecretKey } from "./schema";

const emailRe = /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-z0-9.-]+$/;

/** Webhook events a caller gets when its entry names none; `deferred` is opt-in. */
export const DEFAULT_WEBHOOK_EVENTS = ["delivered", "bounced", "expired", "suppressed"] as const;

export interface CallerWebhook {
  readonly caller: string;
  readonly url: string;
  readonly events: readonly string[];
}

export interface NodeSpec {
  /** 1-based index; part of every per-node resource name, so adding a node never renames another. */
  readonly index: number;
  /** Resource-name stem, e.g. "node1". */
  readonly key: string;
  /** MTA hostname (EHLO, PTR, A record). */
  readonly mtaHostname: string;
}

/**
 * Keys that only feed the derived fields below (a default that depends on another key, or a value checked against
 * others); every other key of the schema is a field of MailRelayConfig exactly as parsed.
 */
const CONSUMED_KEYS = [
  "zone",
  "mtaHostname",
  "mtaHostnames",
  "relayHostname",
  "nodeCount",
  "allowUntestedImage",
  "allowWideAdminCidrs",
  "defaultSender",
  "callers",
  "smtpIngress",
  "certificateCoversDeepHostnames",
] as const satisfies readonly ConfigKey[];
type ConsumedKey = (typeof CONSUMED_KEYS)[number];

/** What parseConfig computes from several keys (and the Pulumi project and stack). */
export interface DerivedConfig {
  readonly project: string;
  readonly stack: string;
  /** zone, or domain when unset. */
  readonly zone: string;
  /** relayHostname, or mail-relay.<domain> when unset. */
  readonly relayHostname: string;
  /** One per nodeCount; MTA hostnames from mtaHostname (default mail.<domain>). */
  readonly nodes: readonly NodeSpec[];
  /** The Debian release the host files are rendered for: the image's, or the default release for an untested image. */
  readonly release: DebianRelease;
  /** The image is none of the tested ones (allowUntestedImage). */
  readonly untestedImage: boolean;
  /** adminCidrs wider than /16 (IPv4) or /48 (IPv6) were accepted on purpose; preview/up print a warning. */
  readonly wideAdminCidrs: readonly string[];
  /** defaultSender, or the first of allowedSenders. */
  readonly defaultSender: string;
  /** The one dkimSelectors entry marked active. */
  readonly activeSelector: string;
  /** The callers' names (callers may be names or {name, allowedSenders?, webhookUrl?, events?}). */
  readonly callers: readonly string[];
  /** Callers with their own sender list (a subset of allowedSenders); the others may use every allowed sender. */
  readonly callerSenders: Readonly<Record<string, readonly string[]>>;
  /**
   * The relay's SMTP listener (127.0.0.1:port) and its tunnel hostname; undefined when smtpIngress.enabled is false.
   */
  readonly smtpIngress?: { readonly hostname: string; readonly port: number };
  /** Callers with a webhookUrl. */
  readonly webhooks: readonly CallerWebhook[];
}

/** The whole, checked configuration the program builds from: the schema's output, plus the derived fields. */
export type MailRelayConfig = Readonly<Omit<RawConfig, ConsumedKey>> & DerivedConfig;

function withoutKeys<T extends object, K extends keyof T>(o: T, keys: readonly K[]): Omit<T, K> {
  const drop: readonly PropertyKey[] = keys;
  return Object.fromEntries(Object.entries(o).filter(([k]) => !drop.includes(k))) as Omit<T, K>;
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`mail-relay configuration has ${problems.length} problem(s):\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/** A ConfigError, also one thrown by another load of this module (tests re-import the program for each run). */
export function isConfigError(e: unknown): e is ConfigError {
  return e instanceof Error && e.name === "ConfigError" && Array.isArray((e as ConfigError).problems);
}

/**
 * MTA hostnames: node1 is `mail.<domain>` however many nodes there are (adding a node never renames it: its PTR, A
 * record and user-data stay, so its server is not replaced), then `mail2.`, `mail3.` ... `pinned` (mtaHostnames)
 * overrides the names of the first nodes.
 */
export function nodeHostnames(base: string, count: number, pinned: readonly string[] = []): string[] {
  const [first, ...rest] = base.split(".");
  return Array.from(
    { length: count },
    (_, i) => pinned[i] ?? (i === 0 ? base : [`${first}${i + 1}`, ...rest].join(".")),
  );
}

function isWithin(name: string, domain: string): boolean {
  return name === domain || name.endsWith(`.${domain}`);
}

/**
 * Check raw config values (already decoded from the stack file) and the presence of secrets.
 * Throws one ConfigError listing every problem.
 */
export function parseConfig(
  raw: Partial<Record<ConfigKey, unknown>>,
  secretsPresent: Record<SecretKey, boolean>,
  ctx: { project: string; stack: string },
): MailRelayConfig {
  const problems: string[] = [];
  const parsed = rawSchema.safeParse(raw);
  if (!parsed.success) for (const issue of parsed.error.issues) problems.push(...issueProblems(issue, raw));
  for (const key of neededSecrets(raw)) if (!secretsPresent[key]) problems.push(missingSecret(key));
  if (!parsed.success) throw new ConfigError(problems);

  const c = parsed.data;
  const zone = c.zone ?? c.domain;
  const mtaBase = c.mtaHostname ?? `mail.${c.domain}`;
  const mtaHosts = nodeHostnames(mtaBase, c.nodeCount, c.mtaHostnames);
  const relayHostname = c.relayHostname ?? `mail-relay.${c.domain}`;

  if (c.smarthost && c.outboundTls !== DEFAULT_OUTBOUND_TLS)
    problems.push(
      `${NS}:outboundTls = ${c.outboundTls} applies to direct delivery only; with ${NS}:smarthost set, mail always ` +
        `goes to the smarthost over verified TLS. Remove it: \`pulumi config rm ${NS}:outboundTls\``,
    );
  if (!isWithin(c.domain, zone))
    problems.push(`${NS}:zone "${zone}" must be the Cloudflare zone that contains ${NS}:domain "${c.domain}"`);
  if (!isWithin(mtaBase, zone))
    problems.push(`${NS}:mtaHostname "${mtaBase}" must be inside the zone "${zone}" so its A record can be managed`);
  (c.mtaHostnames ?? []).forEach((h, i) => {
    if (!isWithin(h, zone))
      problems.push(
        `${keyPath(["mtaHostnames", i])} "${h}" must be inside the zone "${zone}" so its A record can be managed`,
      );
  });
  const mtaDup = mtaHosts.find((h, i) => mtaHosts.indexOf(h) !== i);
  if (mtaDup)
    problems.push(
      `${NS}:mtaHostnames gives two nodes the name ${mtaDup}; each node needs its own (its PTR and A record), ` +
        `e.g. ${JSON.stringify(nodeHostnames(mtaBase, c.nodeCount))}`,
    );
  if (c.tunnel && !isWithin(relayHostname, zone))
    problems.push(`${NS}:relayHostname "${relayHostname}" must be inside the zone "${zone}"`);
  if (mtaHosts.includes(relayHostname))
    problems.push(
      `${NS}:relayHostname must differ from the MTA hostname: one is the proxied HTTP entry, ` +
        `the other the unproxied SMTP identity`,
    );

  c.allowedSenders.forEach((s, i) => {
    if (!emailRe.test(s)) problems.push(`${keyPath(["allowedSenders", i])} "${s}" is not an email address`);
    else if (s.split("@")[1] !== c.domain) {
      problems.push(
        `${keyPath(["allowedSenders", i])} "${s}" must be at ${c.domain}: ` +
          `strict DMARC alignment needs the From domain to be the sending domain`,
      );
    }
  });
  const defaultSender = c.defaultSender ?? c.allowedSenders[0];
  if (!c.allowedSenders.includes(defaultSender))
    problems.push(`${NS}:defaultSender "${defaultSender}" must be one of ${NS}:allowedSenders`);

  const active = c.dkimSelectors.filter((s) => s.active);
  if (active.length !== 1)
    problems.push(`${NS}:dkimSelectors must mark exactly one selector "active": true (found ${active.length})`);
  const names = c.dkimSelectors.map((s) => s.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) problems.push(`${NS}:dkimSelectors lists "${dup}" twice; selector names must be unique`);
  for (const n of names) {
    // Each selector also names its Ed25519 key: <name>-ed25519 must still be one DNS label (63 characters).
    if (n.length > 55 || n.endsWith("-ed25519"))
      problems.push(
        `${NS}:dkimSelectors: "${n}" must be at most 55 characters and not end in -ed25519 ` +
          `(the Ed25519 key's selector is "<name>-ed25519"); pick a shorter name such as mail202611`,
      );
  }

  if (c.bimi && !(c.dmarc.policy !== "none" && c.dmarc.pct === 100)) {
    problems.push(
      `${NS}:bimi needs ${NS}:dmarc.policy "quarantine" or "reject" at pct 100 (receivers ignore BIMI ` +
        `otherwise); tighten dmarc or remove bimi`,
    );
  }
  const smtpHostname = c.smtpIngress.hostname ?? `smtp-relay.${c.domain}`;
  if (c.smtpIngress.hostname !== undefined && !c.smtpIngress.enabled) {
    problems.push(
      `${NS}:smtpIngress.hostname is set but ${NS}:smtpIngress.enabled is not true; set enabled: ` +
        `true or remove the hostname`,
    );
  }
  if (c.smtpIngress.enabled && c.tunnel) {
    if (!isWithin(smtpHostname, zone))
      problems.push(
        `${NS}:smtpIngress.hostname "${smtpHostname}" must be inside the zone "${zone}" (its CNAME and Access ` +
          `application live there)`,
      );
    if ([relayHostname, ...mtaHosts].includes(smtpHostname)) {
      problems.push(
        `${NS}:smtpIngress.hostname must differ from relayHostname and the MTA hostnames: ` +
          `it is its own tunnel route and Access application`,
      );
    }
  }
  if (c.smtpIngress.enabled && !c.tunnel && c.smtpIngress.hostname !== undefined) {
    problems.push(
      `${NS}:smtpIngress.hostname is only routed through the tunnel, and ${NS}:tunnel is false; ` +
        `remove the hostname (the listener stays on the host's 127.0.0.1:${RELAY_SMTP_PORT}) or set tunnel true`,
    );
  }
  const mxHosts = new Set(c.mx.map((m) => m.host));
  for (const h of [...mtaHosts, relayHostname, ...(c.smtpIngress.enabled ? [smtpHostname] : [])]) {
    if (mxHosts.has(h))
      problems.push(
        `${NS}:mx must not point at ${h}: this relay never receives mail; keep your mailbox provider's MX hosts`,
      );
  }
  problems.push(...spfLookupProblems(c));
  problems.push(...deepHostnameProblems(c, zone, relayHostname, smtpHostname));
  if (c.tunnel && !c.cloudflareAccountId) {
    problems.push(
      `${NS}:cloudflareAccountId is required when ${NS}:tunnel is true (the tunnel and Access live in the ` +
        `account); or set ${NS}:tunnel false`,
    );
  }
  const imageRelease = releaseForImage(c.image);
  if (imageRelease === undefined && !c.allowUntestedImage) {
    problems.push(
      `${NS}:image "${c.image}" is not a tested image: use ${testedImages()}, ` +
        `or set ${NS}:allowUntestedImage true to deploy it anyway (the host files are then rendered ` +
        `for ${releaseName(DEFAULT_RELEASE)})`,
    );
  }
  if (c.tunnel && !c.accessTeamName) {
    problems.push(
      `${NS}:accessTeamName is required when ${NS}:tunnel is true: cloudflared checks the Access JWT against ` +
        `<team>.cloudflareaccess.com (Zero Trust dashboard, Settings > Custom pages); or set ${NS}:tunnel false`,
    );
  }
  const wide = c.adminCidrs.filter((x) => isCidr(x) && isWiderThanASite(x));
  if (wide.length > 0 && !c.allowWideAdminCidrs) {
    problems.push(
      `${NS}:adminCidrs ${wide.map((x) => `"${x}"`).join(", ")} ${wide.length === 1 ? "is" : "are"} wider than ` +
        `an IPv4 /16 or an IPv6 /48: SSH would be open to far more than your office or VPN; list narrower ranges, ` +
        `or set ${NS}:allowWideAdminCidrs true to accept it (preview and up then warn)`,
    );
  }
  const callerNames = c.callers.map((x) => (typeof x === "string" ? x : x.name));
  const webhooks: CallerWebhook[] = c.callers.flatMap((x) =>
    typeof x !== "string" && x.webhookUrl !== undefined
      ? [{ caller: x.name, url: x.webhookUrl, events: x.events ?? [...DEFAULT_WEBHOOK_EVENTS] }]
      : [],
  );
  const callerDup = callerNames.find((n, i) => callerNames.indexOf(n) !== i);
  if (callerDup) problems.push(`${NS}:callers lists "${callerDup}" twice`);
  if (c.callers.length === 0) problems.push(`${NS}:callers must name at least one calling service, e.g. ["app"]`);
  const callerSenders: Record<string, readonly string[]> = {};
  c.callers.forEach((x, i) => {
    if (typeof x === "string" || x.allowedSenders === undefined) return;
    for (const a of x.allowedSenders) {
      if (!c.allowedSenders.includes(a))
        problems.push(
          `${keyPath(["callers", i, "allowedSenders"])} lists ${a}, which is not in ${NS}:allowedSenders; ` +
            `a caller's senders are a subset of the stack's`,
        );
    }
    callerSenders[x.name] = [...new Set(x.allowedSenders)];
  });

  const webhookCallers = new Set(webhooks.map((w) => w.caller));
  for (const [kind, known, what] of [
    ["relayTokens", new Set(callerNames), "callers"],
    ["webhookSecrets", webhookCallers, "callers with a webhookUrl"],
  ] as const) {
    for (const caller of Object.keys(c.rotations[kind]))
      if (!known.has(caller))
        problems.push(
          `${NS}:rotations.${kind}.${caller} names no caller of ${NS}:callers ` +
            `(${what}: ${[...known].join(", ") || "none"}); ` +
            `remove it with \`pulumi config rm --path '${NS}:rotations.${kind}.${caller}'\``,
        );
  }

  if (problems.length > 0) throw new ConfigError(problems);

  return {
    ...withoutKeys(c, CONSUMED_KEYS),
    project: ctx.project,
    stack: ctx.stack,
    zone,
    relayHostname,
    nodes: mtaHosts.map((h, i) => ({ index: i + 1, key: `node${i + 1}`, mtaHostname: h })),
    release: imageRelease ?? DEFAULT_RELEASE,
    untestedImage: imageRelease === undefined,
    wideAdminCidrs: c.adminCidrs.filter(isWiderThanASite),
    defaultSender,
    activeSelector: active[0].name,
    callers: callerNames,
    callerSenders,
    ...(c.smtpIngress.enabled ? { smtpIngress: { hostname: smtpHostname, port: RELAY_SMTP_PORT } } : {}),
    webhooks,
  };
}

/** When each secret key is needed: always, or only with another key set. */
const SECRET_NEEDED_WHEN: Record<SecretKey, { readonly key: ConfigKey } | "always"> = {
  sshPrivateKey: "always",
  smarthostPassword: { key: "smarthost" },
};

/** The secret keys a config needs: the SSH key always, the smarthost's password with a smarthost. */
export function neededSecrets(c: Partial<Record<ConfigKey, unknown>>): SecretKey[] {
  return (Object.keys(SECRET_NEEDED_WHEN) as SecretKey[]).filter((k) => {
    const when = SECRET_NEEDED_WHEN[k];
    return when === "always" || c[when.key] !== undefined;
  });
}

function missingSecret(key: SecretKey): string {
  const when = SECRET_NEEDED_WHEN[key];
  const why = when === "always" ? "required" : `required when ${NS}:${when.key} is set`;
  return `${NS}:${key} is missing (${why}); set it with \`${secretSetCommand(key)}\``;
}

/** The includes the SPF record carries: spf.includes, then the smarthost's. */
export function spfIncludes(c: Pick<RawConfig, "spf" | "smarthost">): string[] {
  return [...c.spf.includes, ...(c.smarthost?.spfInclude ? [c.smarthost.spfInclude] : [])];
}

/**
 * The SPF record's DNS lookups, counted on the record the stack will publish (its IPs cost none), before any server
 * exists. Each include's own lookups count too; only live DNS knows them (infra/spf.ts countSpfLookups).
 */
function spfLookupProblems(c: RawConfig): string[] {
  const record = spfRecord({ ipv4: [], ipv6: [], includes: spfIncludes(c), all: c.spf.all });
  const { lookups, terms } = directLookups(parseSpf(record));
  if (lookups <= SPF_LOOKUP_LIMIT) return [];
  const fromSmarthost = c.smarthost?.spfInclude
    ? ` (include:${c.smarthost.spfInclude} is ${NS}:smarthost.spfInclude)`
    : "";
  return [
    `${NS}:spf.includes: the SPF record would need ${lookups} DNS lookups (${terms.join(", ")})${fromSmarthost}; ` +
      `receivers stop at ${SPF_LOOKUP_LIMIT} and answer permerror, so SPF fails for every message (RFC 7208 4.6.4). ` +
      `Each include also costs the lookups inside it. Remove the includes you no longer send through, e.g. ` +
      `\`pulumi config rm --path '${keyPath(["spf", "includes", c.spf.includes.length - 1])}'\``,
  ];
}

/** Labels between a name and its zone: 1 for mail-relay.example.com in example.com. */
function levelsBelow(name: string, zone: string): number {
  return name === zone ? 0 : name.slice(0, -(zone.length + 1)).split(".").length;
}

/**
 * Proxied hostnames (the relay's and the SMTP ingress's) more than one label below the zone: Cloudflare's free
 * Universal SSL certificate covers the zone and *.zone only, so HTTPS to a deeper name fails at the edge.
 */
function deepHostnameProblems(c: RawConfig, zone: string, relayHostname: string, smtpHostname: string): string[] {
  if (!c.tunnel || c.certificateCoversDeepHostnames) return [];
  const names: [string, string][] = [
    ["relayHostname", relayHostname],
    ...(c.smtpIngress.enabled ? ([["smtpIngress.hostname", smtpHostname]] as [string, string][]) : []),
  ];
  return names
    .filter(([, h]) => h.endsWith(`.${zone}`) && levelsBelow(h, zone) > 1)
    .map(([key, h]) => {
      const suggestion = `${h.split(".")[0]}-${h.slice(h.indexOf(".") + 1, -(zone.length + 1)).replace(/\./g, "-")}.${zone}`;
      const set =
        key === "relayHostname"
          ? `pulumi config set ${NS}:relayHostname ${suggestion}`
          : `pulumi config set --path '${NS}:smtpIngress.hostname' ${suggestion}`;
      return (
        `${NS}:${key} "${h}" is ${levelsBelow(h, zone)} levels below the zone ${zone}: Cloudflare's free Universal ` +
        `SSL certificate covers ${zone} and *.${zone} (one level), so HTTPS to it fails. Use a name one level ` +
        `below the zone (\`${set}\`), or, if you have a certificate that covers it (Advanced Certificate ` +
        `Manager or an uploaded one), confirm with \`pulumi config set ${NS}:certificateCoversDeepHostnames true\``
      );
    });
}

/** "debian-13 (the default) or debian-12": the images the program is tested on, newest first. */
function testedImages(): string {
  const images = [...DEBIAN_RELEASES]
    .reverse()
    .map((r) => `${RELEASES[r].hetznerImage}${r === DEFAULT_RELEASE ? " (the default)" : ""}`);
  return `${images.slice(0, -1).join(", ")} or ${images[images.length - 1]}`;
}

/**
 * Settings that are valid but easy to misread, each as one warning line (loadConfig prints them with pulumi.log.warn,
 * so `pulumi preview` and `npm run plan` show them). Pure, so tests can call it.
 */
export function configWarnings(c: MailRelayConfig): string[] {
  const warnings: string[] = [];
  if (c.untestedImage) {
    warnings.push(
      `${NS}:image "${c.image}" is not tested (${NS}:allowUntestedImage is true): ` +
        `the host files are rendered for ${releaseName(c.release)}; ` +
        `the deploy step's checks (cloud-init, postfix check, opendkim -n, the relay's health check) ` +
        `are all that stands between a mismatch and a broken host. Tested: ${testedImages()}`,
    );
  }
  const n = c.nodes.length;
  if (n > 1 && c.tunnel) {
    warnings.push(
      `${NS}:nodeCount is ${n}: all nodes serve the same tunnel and Cloudflare sends each request to any ` +
        `node's connector, so GET /messages/:id can reach a node that does not hold the message and answer 404, ` +
        `an Idempotency-Key retry can reach another node and send the message twice, and rate limits are per ` +
        `node (up to ${n} x ${c.relay.rateLimitPerMin}/min per caller). The nodes share no queue: more nodes ` +
        `give more sending IPs and keep /send answering while a node is down, nothing more; ` +
        `see docs/configuration.md`,
    );
  } else if (n > 1) {
    warnings.push(
      `${NS}:nodeCount is ${n} with ${NS}:tunnel false: ${n} independent relays, ` +
        `each reachable only from its own host; they share no queue, no message status and no rate limit`,
    );
  }
  if (c.wideAdminCidrs.length > 0) {
    warnings.push(
      `${NS}:allowWideAdminCidrs is true: SSH is open to ${c.wideAdminCidrs.join(", ")} (wider than an IPv4 ` +
        `/16 or an IPv6 /48)`,
    );
  }
  return warnings;
}
