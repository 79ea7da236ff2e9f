/**
 * Phase 1 of the rehearsal: run the real program under Pulumi's mocks, exactly as `npm run plan` does
 * (infra/offline.ts), and keep what a deploy needs: user-data, every remote step with its scripts, stdin and
 * dependencies, the uploads, the DNS records, the PTRs, the tunnel's ingress and the stack outputs.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { NS } from "../infra/config";
import { EngineState, GraphNode, OfflineRun, PROJECT_ROOT, RecordedResource, runOffline } from "../infra/offline";

export interface Connection {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly privateKey: string;
  /** Pinned host public key ("ssh-ed25519 AAAA..."), when the program sets one. */
  readonly hostKey?: string;
  readonly dialErrorLimit: number;
  readonly perDialTimeout: number;
}

export interface RemoteStep {
  readonly name: string;
  readonly kind: "command" | "copy";
  readonly connection: Connection;
  readonly create?: string;
  readonly delete?: string;
  readonly stdin?: string;
  /** CopyToRemote: the local file and where it goes. */
  readonly source?: string;
  readonly remotePath?: string;
  /** Other remote steps that must succeed first (the engine's dependencies, restricted to steps). */
  readonly after: string[];
}

export interface DnsRecord {
  readonly name: string;
  readonly type: string;
  readonly content: string;
  readonly priority?: number;
  readonly proxied: boolean;
}

export interface CapturedNode {
  readonly name: string;
  readonly hostname: string;
  readonly fqdn: string;
  readonly ipv4: string;
  readonly ipv6?: string;
  readonly userData: string;
  readonly image: string;
}

export interface IngressRule {
  readonly hostname?: string;
  readonly path?: string;
  readonly service: string;
  readonly originRequest?: { access?: { required?: boolean; teamName?: string; audTag?: string[] } };
}

export interface Capture {
  readonly stack: string;
  readonly domain: string;
  readonly nodes: CapturedNode[];
  readonly steps: RemoteStep[];
  readonly records: DnsRecord[];
  readonly ptrs: { ip: string; name: string }[];
  readonly tunnel?: {
    token: string;
    ingress: IngressRule[];
    configSource: "local file" | "remote";
    accessTokens: { clientId: string; clientSecret: string }[];
  };
  /** Smarthost stacks: where Postfix sends everything, and the credentials it sends (from the pushed sasl_passwd). */
  readonly smarthost?: { host: string; port: number; username: string; password: string };
  readonly outputs: EngineState;
  readonly graph: GraphNode[];
}

export interface CaptureOptions {
  /** The private key the rehearsal generated; stands in for the stack's sshPrivateKey. */
  readonly sshPrivateKey: string;
  readonly sshPublicKey: string;
  /** Relay settings merged over the stack's (e.g. a short teardown drain). */
  readonly relay?: Record<string, unknown>;
  /** Other config overrides (keys without namespace). */
  readonly overrides?: Record<string, unknown>;
  /** Keeps the random outputs (keys, tokens) between captures, as the stack's state keeps them between updates. */
  readonly stateFile?: string;
}

function stackRelay(stack: string): Record<string, unknown> {
  const doc = parseYaml(fs.readFileSync(path.join(PROJECT_ROOT, `Pulumi.${stack}.yaml`), "utf8")) as {
    config?: Record<string, unknown>;
  };
  return (doc.config?.[`${NS}:relay`] as Record<string, unknown>) ?? {};
}

function byType(run: OfflineRun, type: string): RecordedResource[] {
  return run.resources.filter((r) => r.type === type);
}

/** Runs the program for `stack` and returns what the rehearsal replays. */
export async function capture(stack: string, o: CaptureOptions): Promise<Capture> {
  const overrides: Record<string, unknown> = {
    ...o.overrides,
    sshPrivateKey: o.sshPrivateKey,
    sshPublicKey: o.sshPublicKey,
    ...(o.relay ? { relay: { ...stackRelay(stack), ...o.relay } } : {}),
  };
  const run = await runOffline(
    stack,
    overrides,
    async () => (await import("../infra/index")) as Record<string, unknown>,
    { stateFile: o.stateFile },
  );
  return fromRun(stack, run);
}

export function fromRun(stack: string, run: OfflineRun): Capture {
  const stepTypes = new Set(["command:remote:Command", "command:remote:CopyToRemote"]);
  const stepNames = new Set(run.resources.filter((r) => stepTypes.has(r.type)).map((r) => r.name));
  const deps = new Map(run.graph.map((g) => [g.name, g.dependsOn]));
  const steps: RemoteStep[] = [];
  for (const r of run.resources.filter((x) => stepTypes.has(x.type))) {
    const c = r.props.connection;
    const connection: Connection = {
      host: c.host,
      port: c.port ?? 22,
      user: c.user ?? "root",
      privateKey: c.privateKey,
      ...(c.hostKey ? { hostKey: c.hostKey } : {}),
      dialErrorLimit: c.dialErrorLimit ?? 10,
      perDialTimeout: c.perDialTimeout ?? 15,
    };
    const after = (deps.get(r.name) ?? []).filter((n) => stepNames.has(n));
    if (r.type === "command:remote:Command") {
      steps.push({
        name: r.name,
        kind: "command",
        connection,
        create: r.props.create,
        delete: r.props.delete,
        stdin: r.props.stdin,
        after,
      });
    } else {
      steps.push({
        name: r.name,
        kind: "copy",
        connection,
        source: String(r.props.source.path),
        remotePath: r.props.remotePath,
        after,
      });
    }
  }
  const nodes: CapturedNode[] = [];
  for (const n of run.outputs.nodes as { name: string; mtaHostname: string; ipv4: string; ipv6?: string }[]) {
    const server = byType(run, "hcloud:index/server:Server").find((s) => s.name.includes(`-${n.name}-`));
    if (!server) throw new Error(`no server resource for ${n.name}`);
    nodes.push({
      name: n.name,
      hostname: n.mtaHostname.split(".")[0],
      fqdn: n.mtaHostname,
      ipv4: n.ipv4,
      ipv6: n.ipv6,
      userData: String(server.props.userData),
      image: String(server.props.image),
    });
  }
  const records = byType(run, "cloudflare:index/dnsRecord:DnsRecord").map((r) => ({
    name: String(r.props.name),
    type: String(r.props.type),
    content: String(r.props.content),
    ...(r.props.priority !== undefined ? { priority: Number(r.props.priority) } : {}),
    proxied: Boolean(r.props.proxied),
  }));
  const ptrs = byType(run, "hcloud:index/rdns:Rdns").map((r) => ({
    ip: String(r.props.ipAddress),
    name: String(r.props.dnsPtr),
  }));
  // The ingress as cloudflared gets it: the locally managed config file the deploy pushes, or (remotely managed
  // tunnels) the tunnel configuration resource.
  const localConfig = steps.find((s) => /-file-etc-cloudflared-[a-z0-9-]+-yml$/.test(s.name))?.stdin;
  const remoteConfig = byType(
    run,
    "cloudflare:index/zeroTrustTunnelCloudflaredConfig:ZeroTrustTunnelCloudflaredConfig",
  )[0];
  const ingress = localConfig
    ? ((parseYaml(localConfig) as { ingress?: IngressRule[] }).ingress ?? [])
    : ((remoteConfig?.props.config?.ingresses ?? []) as IngressRule[]);
  const tokens = byType(run, "cloudflare:index/zeroTrustAccessServiceToken:ZeroTrustAccessServiceToken");
  const tunnelEnv = steps.find((s) => s.name.endsWith("-secret-etc-cloudflared-mail-relay-env"))?.stdin;
  const tunnel =
    ingress.length > 0 && tunnelEnv
      ? {
          token: /^TUNNEL_TOKEN=(.*)$/m.exec(tunnelEnv)?.[1] ?? "",
          ingress,
          configSource: localConfig ? ("local file" as const) : ("remote" as const),
          accessTokens: tokens.map((t) => ({
            clientId: String(t.props.clientId),
            clientSecret: String(t.props.clientSecret),
          })),
        }
      : undefined;
  const sasl = steps.find((s) => s.name.endsWith("-secret-etc-postfix-sasl-passwd"))?.stdin;
  const m = sasl ? /^\[([^\]]+)\]:(\d+)\s+([^:\s]+):(\S+)\s*$/m.exec(sasl) : null;
  if (sasl && !m) throw new Error("the pushed sasl_passwd does not read as [host]:port user:password");
  const smarthost = m ? { host: m[1], port: Number(m[2]), username: m[3], password: m[4] } : undefined;
  return {
    stack,
    domain: String(run.config.values[`${NS}:domain`]),
    nodes,
    steps,
    records,
    ptrs,
    tunnel,
    smarthost,
    outputs: run.outputs,
    graph: run.graph,
  };
}

/**
 * `tsx rehearsal/capture.ts <out.json>` with CaptureOptions + {stack} as JSON on stdin (secrets never in argv).
 * The rehearsal captures in a child process: the program module is loaded once per process, and a second
 * capture (a broken relay release, MAIL_RELAY_BUNDLE) needs a fresh one.
 */
if (require.main === module) {
  const out = process.argv[2];
  let input = "";
  process.stdin.on("data", (b) => (input += b));
  process.stdin.on("end", () => {
    const { stack, ...o } = JSON.parse(input) as CaptureOptions & { stack: string };
    capture(stack, o).then(
      (c) => {
        fs.writeFileSync(out, JSON.stringify(c), { mode: 0o600 });
        process.exit(0);
      },
      (e) => {
        console.error(e instanceof Error ? e.message : e);
        process.exit(1);
      },
    );
  });
}
