/**
 * The one place tests set Pulumi's mocks: runs the real program (infra/index.ts) under the offline
 * mocks with a stack file from the repo plus overrides. setMocks is process-global, so every run resets
 * vitest's module registry and imports the program afresh.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, vi } from "vitest";
import { OfflineRun, RecordedResource, runOffline } from "../../infra/offline";
import { zoneFileLine } from "../../infra/records";

export type { RecordedResource };

export type StackName = "prod" | "staging";

/** The variants other tests (and the policy tests) run the program under, beside the two stack files. */
export const stackVariants: { name: string; stack: StackName; overrides: Record<string, unknown> }[] = [
  { name: "prod: two nodes", stack: "prod", overrides: { nodeCount: 2 } },
  { name: "prod: IPv4 only", stack: "prod", overrides: { ipv6: false } },
  {
    name: "prod: smarthost",
    stack: "prod",
    overrides: {
      smarthost: {
        host: "smtp.eu.mailgun.org",
        port: 587,
        username: "postmaster@example.com",
        spfInclude: "mailgun.org",
      },
      smarthostPassword: "offline-smarthost-password-1234",
    },
  },
  { name: "prod: no tunnel", stack: "prod", overrides: { tunnel: false } },
  { name: "prod: sendmail hand-off", stack: "prod", overrides: { relay: { handoff: "sendmail" } } },
  { name: "prod: no BIMI", stack: "prod", overrides: { bimi: undefined } },
  {
    name: "prod: two DKIM selectors",
    stack: "prod",
    overrides: { dkimSelectors: [{ name: "mail202611", active: true }, { name: "mail202606" }] },
  },
  { name: "staging: two nodes, IPv6", stack: "staging", overrides: { nodeCount: 2, ipv6: true } },
];

let chain: Promise<unknown> = Promise.resolve();

/** Run the program for a stack; runs are serialised because the mocks are global. */
export function runStack(
  stack: StackName,
  overrides: Record<string, unknown> = {},
  opts: { stateFile?: string; keepAll?: boolean } = {},
): Promise<OfflineRun> {
  const run = chain.then(() =>
    runOffline(
      stack,
      overrides,
      async () => {
        vi.resetModules();
        return (await import("../../infra/index")) as Record<string, unknown>;
      },
      opts,
    ),
  );
  chain = run.catch(() => undefined);
  return run;
}

export function ofType(resources: readonly RecordedResource[], type: string): RecordedResource[] {
  return resources.filter((r) => r.type === type);
}

export const T = {
  server: "hcloud:index/server:Server",
  firewall: "hcloud:index/firewall:Firewall",
  primaryIp: "hcloud:index/primaryIp:PrimaryIp",
  rdns: "hcloud:index/rdns:Rdns",
  sshKey: "hcloud:index/sshKey:SshKey",
  dnsRecord: "cloudflare:index/dnsRecord:DnsRecord",
  tunnel: "cloudflare:index/zeroTrustTunnelCloudflared:ZeroTrustTunnelCloudflared",
  tunnelConfig: "cloudflare:index/zeroTrustTunnelCloudflaredConfig:ZeroTrustTunnelCloudflaredConfig",
  accessApp: "cloudflare:index/zeroTrustAccessApplication:ZeroTrustAccessApplication",
  accessPolicy: "cloudflare:index/zeroTrustAccessPolicy:ZeroTrustAccessPolicy",
  serviceToken: "cloudflare:index/zeroTrustAccessServiceToken:ZeroTrustAccessServiceToken",
  command: "command:remote:Command",
  copy: "command:remote:CopyToRemote",
  privateKey: "tls:index/privateKey:PrivateKey",
  password: "random:index/randomPassword:RandomPassword",
} as const;

/** The file pushes of a run: path -> contents, per node (a Command whose triggers[0] is the host path). */
export function pushedFiles(
  resources: readonly RecordedResource[],
): { node: string; path: string; content: string; name: string }[] {
  return ofType(resources, T.command)
    .filter((r) => typeof r.props.triggers?.[0] === "string" && r.props.triggers[0].startsWith("/"))
    .map((r) => ({
      node: /mail-relay-(node\d+)-/.exec(r.name)?.[1] ?? "?",
      path: r.props.triggers[0] as string,
      content: r.props.stdin as string,
      name: r.name,
    }));
}

/**
 * The program refuses to run without the relay bundle, as `pulumi up` would. Without a build (npm test builds
 * first), a test file calling this gets a stand-in in a temporary directory through MAIL_RELAY_BUNDLE
 * (infra/mailRelay.ts); relay/dist, which `pulumi up` would ship, is never written.
 */
export function useStandInBundleIfUnbuilt(): void {
  if (process.env.MAIL_RELAY_BUNDLE !== undefined || fs.existsSync(path.join(__dirname, "../../relay/dist/relay.js")))
    return;
  const standInDir = fs.mkdtempSync(path.join(os.tmpdir(), "stand-in-bundle-"));
  process.env.MAIL_RELAY_BUNDLE = path.join(standInDir, "relay.js");
  fs.writeFileSync(process.env.MAIL_RELAY_BUNDLE, "// stand-in bundle for infra tests\n");
  console.warn(
    `relay/dist/relay.js missing: run \`npm run build\` (npm test does); the infra tests use a stand-in, ${process.env.MAIL_RELAY_BUNDLE}`,
  );
  afterAll(() => {
    delete process.env.MAIL_RELAY_BUNDLE;
    fs.rmSync(standInDir, { recursive: true, force: true });
  });
}

/** The zone-file line of every DNS record resource a run created, sorted: what dnsZoneFile must hold. */
export function zoneLinesOfRecords(resources: readonly RecordedResource[]): string[] {
  return ofType(resources, T.dnsRecord)
    .map((r) =>
      zoneFileLine({
        name: r.props.name,
        type: r.props.type,
        ttl: r.props.ttl,
        content: r.props.content,
        priority: r.props.priority,
        proxied: r.props.proxied,
      }),
    )
    .sort();
}
