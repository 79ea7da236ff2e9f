// `node relay.js tls-policy`: the DANE-first TLS policy socketmap (mail-relay-tls-policy.service). Postfix asks it
// first in smtp_tls_policy_maps; see decide.ts for the answers, and docs/security.md for why.
import { isIP, type Server, type Socket } from "node:net";
import { ConfigError } from "../config";
import {
  MTA_STS_ENFORCE_ZONE,
  MTA_STS_TESTING_ZONE,
  TLS_POLICY_ENV,
  TLS_POLICY_LISTEN,
  TLS_POLICY_MAP_NAME,
} from "./contract";
import { decide, isLookupDomain } from "./decide";
import { validatingResolver, type DnsLookup } from "./dns-client";
import { socketmapQuery, socketmapServer, type SocketmapHandler, type SocketmapReply } from "./socketmap";
import { TransientMap, TransientSet } from "../transient";

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface TlsPolicyConfig {
  /** Where Postfix asks (loopback). */
  readonly listen: Endpoint;
  /** The validating resolver (the host's unbound). */
  readonly resolver: Endpoint;
  /** postfix-mta-sts-resolver's socketmap, asked for testing policies only (to log them). */
  readonly mtaSts: Endpoint;
}

/** One JSON line per event on stdout (the journal); never a message body, only domains and policies. */
export type TlsPolicyLog = (level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) => void;

export const jsonLineLog: TlsPolicyLog = (level, msg, fields = {}) =>
  process.stdout.write(`${JSON.stringify({ level, time: new Date().toISOString(), msg, ...fields })}\n`);

class TlsPolicyConfigError extends ConfigError {
  constructor(problems: readonly { variable: string; message: string }[]) {
    super(problems);
    this.message =
      "mail-relay tls-policy refuses to start; fix these variables (Environment= in mail-relay-tls-policy.service):\n" +
      problems.map((p) => `  - ${p.variable}: ${p.message}`).join("\n");
  }
}

function endpoint(
  env: NodeJS.ProcessEnv,
  variable: string,
  def: Endpoint,
  problems: { variable: string; message: string }[],
  minPort = 1,
) {
  const raw = env[variable]?.trim();
  if (raw === undefined || raw === "") return def;
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(raw);
  const port = Number(m?.[2]);
  if (!m || isIP(m[1]!) === 0 || port < minPort || port > 65535) {
    problems.push({ variable, message: `must be IP:PORT such as ${def.host}:${def.port}, got "${raw}"` });
    return def;
  }
  return { host: m[1]!, port };
}

/** The environment, checked at once; every problem is named with its fix. */
export function tlsPolicyConfig(env: NodeJS.ProcessEnv): TlsPolicyConfig {
  const problems: { variable: string; message: string }[] = [];
  const c = {
    // Port 0 (any free port) for tests; the unit names the fixed one.
    listen: endpoint(env, TLS_POLICY_ENV.listen, TLS_POLICY_LISTEN, problems, 0),
    resolver: endpoint(env, TLS_POLICY_ENV.resolver, { host: "127.0.0.1", port: 53 }, problems),
    mtaSts: endpoint(env, TLS_POLICY_ENV.mtaSts, { host: "127.0.0.1", port: 8461 }, problems),
  };
  if (problems.length > 0) throw new TlsPolicyConfigError(problems);
  return c;
}

export interface TlsPolicyDeps {
  readonly lookup: DnsLookup;
  readonly mtaSts: Endpoint;
  readonly log: TlsPolicyLog;
  /** A testing policy is logged once per domain per this interval (each delivery attempt asks again). */
  readonly testingLogIntervalMs?: number;
  readonly now?: () => number;
}

/** The socketmap handler, and idle() to wait for the testing-policy checks it started in the background. */
export function tlsPolicyHandler(deps: TlsPolicyDeps): { handle: SocketmapHandler; idle: () => Promise<void> } {
  const interval = deps.testingLogIntervalMs ?? 3_600_000;
  const now = deps.now ?? Date.now;
  const lastLogged = new TransientMap<string, number>();
  const pending = new TransientSet<Promise<void>>();

  /** Logs a testing policy: the testing zone has one and the enforcing zone does not (RFC 8461 section 5). */
  async function logTestingPolicy(domain: string): Promise<void> {
    const ask = (zone: string) => socketmapQuery(deps.mtaSts, zone, domain, 15_000);
    const testing = await ask(MTA_STS_TESTING_ZONE);
    if (testing.status !== "OK") return;
    const enforced = await ask(MTA_STS_ENFORCE_ZONE);
    if (enforced.status !== "NOTFOUND") return;
    const last = lastLogged.get(domain);
    if (last !== undefined && now() - last < interval) return;
    lastLogged.set(domain, now());
    if (lastLogged.size > 10_000) lastLogged.delete(lastLogged.keys().next().value!);
    deps.log("info", `MTA-STS testing policy for ${domain}: not enforced (would be: ${testing.data})`, {
      domain,
      policy: "mta-sts-testing",
      wouldBe: testing.data,
    });
  }

  const handle: SocketmapHandler = async (name, key): Promise<SocketmapReply> => {
    if (name !== TLS_POLICY_MAP_NAME) return { status: "PERM", reason: `unknown map name "${name}"` };
    // [nexthop], .parent-domain and IP-literal lookups are not recipient domains: no DANE-first answer for them.
    if (!isLookupDomain(key)) return { status: "NOTFOUND" };
    const domain = key.replace(/\.$/, "").toLowerCase();
    const d = await decide(domain, deps.lookup);
    switch (d.kind) {
      case "dane-only":
        deps.log("info", `DANE for ${domain}: dane-only (MX ${d.mxs.join(", ")})`, { domain, policy: "dane-only" });
        return { status: "OK", data: "dane-only" };
      case "temp":
        deps.log("warn", `DANE lookup for ${domain} failed: ${d.why}; Postfix defers`, { domain, policy: "temp" });
        return { status: "TEMP", reason: d.why };
      case "notfound": {
        const p = logTestingPolicy(domain).catch((e: unknown) =>
          deps.log("warn", `MTA-STS testing check for ${domain} failed: ${e instanceof Error ? e.message : e}`, {
            domain,
          }),
        );
        pending.add(p);
        void p.finally(() => pending.delete(p));
        return { status: "NOTFOUND" };
      }
      default: {
        const never: never = d;
        throw new Error(`unhandled decision ${JSON.stringify(never)}`);
      }
    }
  };
  return {
    handle,
    idle: async () => {
      while (pending.size > 0) await Promise.all([...pending]);
    },
  };
}

/** Listens on c.listen; resolves with the server once it is listening. */
export async function startTlsPolicyServer(
  c: TlsPolicyConfig,
  log: TlsPolicyLog = jsonLineLog,
  lookup: DnsLookup = validatingResolver(c.resolver),
): Promise<{ server: Server; idle: () => Promise<void> }> {
  const { handle, idle } = tlsPolicyHandler({ lookup, mtaSts: c.mtaSts, log });
  const server = socketmapServer(handle, (m) => log("warn", m));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(c.listen.port, c.listen.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return { server, idle };
}

/** `node relay.js tls-policy`: serves until SIGTERM. */
export async function runTlsPolicyService(env: NodeJS.ProcessEnv): Promise<void> {
  const c = tlsPolicyConfig(env);
  const { server } = await startTlsPolicyServer(c);
  jsonLineLog("info", `tls-policy socketmap listening on ${c.listen.host}:${c.listen.port}`, {
    resolver: `${c.resolver.host}:${c.resolver.port}`,
    mtaSts: `${c.mtaSts.host}:${c.mtaSts.port}`,
  });
  // Postfix keeps its socketmap connections open between lookups: close() alone would wait for them (and systemd's
  // stop would wait for its timeout, then SIGKILL). They are closed on a signal; Postfix reconnects on its next lookup.
  const open = new TransientSet<Socket>();
  server.on("connection", (sock: Socket) => {
    open.add(sock);
    sock.once("close", () => open.delete(sock));
  });
  await new Promise<void>((resolve) => {
    for (const sig of ["SIGTERM", "SIGINT"] as const)
      process.once(sig, () => {
        server.close(() => resolve());
        for (const sock of open) sock.destroy();
      });
  });
  jsonLineLog("info", "tls-policy socketmap stopped");
}
