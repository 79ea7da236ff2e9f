/**
 * `npm run plan -- <stack>`: what `pulumi up` would create for a stack, without an account.
 *
 * Runs infra/index.ts in-process under Pulumi's mocks (infra/offline.ts) with Pulumi.<stack>.yaml,
 * prints every resource with its key properties (secrets masked) and the stack outputs, and writes the
 * rendered user-data and host files to plan-out/<stack>/. Secrets the stack file can't give offline get
 * labelled placeholder values; secret files are listed but never written.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { isConfigError, neededSecrets, NS } from "./config";
import { EngineState, listStacks, OfflineRun, PROJECT_ROOT, RecordedResource, runOffline } from "./offline";

const MASK = "[secret]";

function short(type: string): string {
  const [pkg, , cls] = type.split(":");
  return `${pkg}:${cls ?? type}`;
}

/** Secret files are pushed by commands named <node>-secret-<path>. */
export function isSecretPush(r: RecordedResource): boolean {
  return r.type === "command:remote:Command" && /-secret-/.test(r.name);
}

/** The few properties that say what a resource is. */
export function keyProps(r: RecordedResource): string {
  const p = r.props;
  switch (r.type) {
    case "hcloud:index/server:Server":
      return (
        `${p.serverType} ${p.image} @${p.location}, firewallIds=${JSON.stringify(p.firewallIds)}, ` +
        `user-data ${String(p.userData ?? "").length} bytes`
      );
    case "hcloud:index/primaryIp:PrimaryIp":
      return `${p.type} ${p.ipAddress}, autoDelete=${p.autoDelete}, deleteProtection=${p.deleteProtection}`;
    case "hcloud:index/rdns:Rdns":
      return `${p.ipAddress} -> ${p.dnsPtr}`;
    case "hcloud:index/firewall:Firewall":
      return ((p.rules ?? []) as { direction: string; protocol: string; port?: string; sourceIps?: string[] }[])
        .map((x) => `${x.direction} ${x.protocol}${x.port ? `/${x.port}` : ""} from ${(x.sourceIps ?? []).join(",")}`)
        .join("; ");
    case "cloudflare:index/dnsRecord:DnsRecord": {
      const content = String(p.content ?? "");
      const shown = content.length > 90 ? `${content.slice(0, 87)}...` : content;
      const priority = p.priority !== undefined ? `${p.priority} ` : "";
      return `${p.name} ${p.type} ${priority}${shown}${p.proxied ? " (proxied)" : ""}`;
    }
    case "cloudflare:index/zeroTrustTunnelCloudflaredConfig:ZeroTrustTunnelCloudflaredConfig":
      return ((p.config?.ingresses ?? []) as { hostname?: string; path?: string; service: string }[])
        .map((x) => `${x.hostname ?? "*"}${x.path ? ` ${x.path}` : ""} -> ${x.service}`)
        .join("; ");
    case "cloudflare:index/zeroTrustAccessApplication:ZeroTrustAccessApplication":
      return `${p.type} ${p.domain}`;
    case "cloudflare:index/zeroTrustAccessPolicy:ZeroTrustAccessPolicy":
      return `${p.decision}, ${(p.includes ?? []).length} service token(s)`;
    case "tls:index/privateKey:PrivateKey":
      if (p.algorithm === "ED25519")
        return `ED25519 SSH host key ${String(p.publicKeyOpenssh ?? "")
          .trim()
          .slice(0, 40)}..., private key ${MASK}`;
      return `${p.algorithm} ${p.algorithm === "ECDSA" ? p.ecdsaCurve : `${p.rsaBits} bits`}, private key ${MASK}`;
    case "tls:index/selfSignedCert:SelfSignedCert":
      return (
        `self-signed ${p.subject?.commonName}, ` +
        `names ${[...(p.dnsNames ?? []), ...(p.ipAddresses ?? [])].join(",")}, ${p.validityPeriodHours} h`
      );
    case "random:index/randomPassword:RandomPassword":
      return `length ${p.length}, value ${MASK}`;
    case "command:remote:Command": {
      const t = p.triggers?.[0];
      if (typeof t === "string" && t.startsWith("/"))
        return `push ${t} (${String(p.stdin ?? "").length} bytes${isSecretPush(r) ? `, ${MASK}` : ""})${pinned(p)}`;
      return `run on ${p.connection?.host}${p.delete ? " (has teardown step)" : ""}${pinned(p)}`;
    }
    case "command:remote:CopyToRemote":
      return `upload -> ${p.remotePath}${pinned(p)}`;
    default:
      return "";
  }
}

/** Whether an SSH step pins the host key (and which), or is the trust-on-first-use bootstrap. */
function pinned(p: EngineState): string {
  const k = p.connection?.hostKey;
  return typeof k === "string" && k !== ""
    ? `, host key pinned ${k.split(" ")[0]} ...${k.split(" ")[1]?.slice(-8)}`
    : ", host key NOT pinned (trust on first use)";
}

/** The credentialExpiry output as lines: date, kind, name, then how to renew. */
export function credentialExpiryLines(entries: unknown): string[] {
  const list = (entries ?? []) as { credential: string; kind: string; expiresAt: string; renew: string }[];
  if (list.length === 0) return ["(none)"];
  return list.flatMap((e) => [`${e.expiresAt}  ${e.kind}  ${e.credential}`, `    renew: ${e.renew}`]);
}

function maskOutputs(run: OfflineRun): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(run.outputs)) {
    if (k === "dnsZoneFile" || k === "credentialExpiry") continue; // printed as blocks of their own
    out[k] = run.secretOutputs.includes(k) ? MASK : v;
  }
  return out;
}

/** Write user-data and the non-secret host files, per node. Returns the files written. */
export function writeRendered(run: OfflineRun, dir: string): { written: string[]; secretSkipped: string[] } {
  fs.rmSync(dir, { recursive: true, force: true });
  const written: string[] = [];
  const secretSkipped: string[] = [];
  const nodeOf = (name: string) => /mail-relay-(node\d+)-/.exec(name)?.[1] ?? "shared";
  const write = (rel: string, content: string) => {
    const file = path.join(dir, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content);
    written.push(path.relative(PROJECT_ROOT, file));
  };
  for (const r of run.resources) {
    if (r.type === "hcloud:index/server:Server")
      write(path.join(nodeOf(r.name), "user-data.yaml"), String(r.props.userData));
    if (r.type === "command:remote:Command") {
      const target = r.props.triggers?.[0];
      if (typeof target !== "string" || !target.startsWith("/")) continue;
      if (isSecretPush(r)) {
        secretSkipped.push(`${nodeOf(r.name)}${target}`);
        continue;
      }
      write(path.join(nodeOf(r.name), target), String(r.props.stdin));
    }
  }
  return { written, secretSkipped };
}

/**
 * The plan, as `npm run plan -- <stack>` runs it; returns the exit code. `root` (where the stack files are) and `load`
 * (a fresh import of the program) let tests run it in-process on a stack file of their own.
 */
export async function planMain(
  argv: string[],
  root = PROJECT_ROOT,
  load = async () => (await import("./index")) as Record<string, unknown>,
): Promise<number> {
  const stacks = listStacks(root);
  const stack = argv[0];
  if (!stack || argv.length > 1) {
    console.error(`usage: npm run plan -- <stack>   (stacks here: ${stacks.join(", ")})`);
    return 2;
  }
  if (!stacks.includes(stack)) {
    console.error(`no stack "${stack}": there is no Pulumi.${stack}.yaml (stacks here: ${stacks.join(", ")})`);
    return 2;
  }
  console.error(
    `==> running the program for stack "${stack}" under Pulumi's mocks (no cloud calls; RSA keys take a moment)...`,
  );
  let run: OfflineRun;
  try {
    run = await runOffline(stack, {}, load, { root });
  } catch (e) {
    if (isConfigError(e)) {
      console.error(`Pulumi.${stack}.yaml: ${e.message}`);
      return 1;
    }
    throw e;
  }
  const needed = neededSecrets({ smarthost: run.config.values[`${NS}:smarthost`] }).map((k) => `${NS}:${k}`);
  const encrypted = run.config.placeholders.filter((k) => needed.includes(k));
  if (encrypted.length > 0)
    console.log(`Secrets set encrypted, not decryptable offline (placeholders used): ${encrypted.join(", ")}`);
  console.log(`\nResources \`pulumi up\` would create for stack "${stack}" (${run.resources.length}):`);
  const rows = run.resources.map((r) => [short(r.type), r.name, keyProps(r)]);
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  for (const [t, n, k] of rows) console.log(`  + ${t.padEnd(w0)}  ${n.padEnd(w1)}  ${k}`);

  console.log(`\nStack outputs (secret ones masked):`);
  console.log(JSON.stringify(maskOutputs(run), null, 2).replace(/^/gm, "  "));

  console.log(`\nCredentials that expire (output credentialExpiry; dates as if created now):`);
  for (const line of credentialExpiryLines(run.outputs.credentialExpiry)) console.log(`  ${line}`);

  console.log(`\nDNS records (output dnsZoneFile):`);
  console.log(String(run.outputs.dnsZoneFile).replace(/^/gm, "  "));

  const dir = path.join(root, "plan-out", stack);
  const { written, secretSkipped } = writeRendered(run, dir);
  console.log(`\nRendered files written to ${path.relative(process.cwd(), dir) || "."}/ (${written.length}):`);
  for (const f of written) console.log(`  ${f}`);
  if (secretSkipped.length > 0)
    console.log(`Secret files pushed over SSH, not written here: ${secretSkipped.join(", ")}`);
  return 0;
}

if (require.main === module) {
  planMain(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(e instanceof Error ? (e.stack ?? e.message) : e);
      process.exit(1);
    },
  );
}
