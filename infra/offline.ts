/**
 * Runs the real program (infra/index.ts) in-process under Pulumi's mocks, with a stack's own
 * Pulumi.<stack>.yaml. Used by `npm run plan` and by the tests: the same code path `pulumi up` runs,
 * with the cloud replaced by deterministic fake answers.
 */
import { execFileSync } from "node:child_process";
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parseDocument } from "yaml";
import { ConfigError, NS, SECRET_KEYS } from "./config";

export const PROJECT_ROOT = path.join(__dirname, "..");

/**
 * A resource's state as the engine hands it over: untyped JSON, typed exactly as Pulumi's mock API types it (each
 * reader checks the fields it uses).
 */
export type EngineState = pulumi.runtime.MockResourceResult["state"];

export interface RecordedResource {
  readonly type: string;
  readonly name: string;
  readonly urn: string;
  readonly id: string;
  /** Inputs merged with the mock's outputs; secrets appear as plain values (as policy packs see them). */
  readonly props: EngineState;
  /** The inputs alone (secrets as plain values): what `pulumi preview` diffs against the state. */
  readonly inputs: EngineState;
  /** Top-level props that arrived as secrets. */
  readonly secretProps: string[];
}

/** The engine's marker for a secret value on the wire. */
const SECRET_SIG = "4dabf18193072939515e22adb298388d";

function isWrappedSecret(v: unknown): v is { value: unknown } {
  return (
    typeof v === "object" &&
    v !== null &&
    (v as Record<string, unknown>)[SECRET_SIG] === "1b47061264138c4ac30d75fd1eb44270"
  );
}

/** Replace wrapped secrets by their values, deeply. */
export function unwrapSecrets(v: unknown): EngineState[string] {
  if (isWrappedSecret(v)) return unwrapSecrets(v.value);
  if (Array.isArray(v)) return v.map(unwrapSecrets);
  // Plain objects only: assets (FileAsset with a Promise path) stay as they are, so their path can still be read.
  if (v && typeof v === "object" && [Object.prototype, null].includes(Object.getPrototypeOf(v)))
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapSecrets(x)]));
  return v;
}

/** A config value as the engine hands it to the program: strings as-is, everything else as JSON. */
export interface StackConfig {
  readonly values: Record<string, string>;
  /** Keys the engine would hand over as secrets: `secure:` values in the file, and secret keys given as overrides. */
  readonly secretKeys: string[];
  /** Secret keys set encrypted in the stack file, which can't be decrypted offline: filled with placeholders. */
  readonly placeholders: string[];
}

export function placeholderSecret(key: string): string {
  return `OFFLINE-PLACEHOLDER-${key}-not-decryptable-offline`;
}

/** The stack file's text as YAML; a syntax error names the file, line and column (as an editor shows them). */
function parseStackFile(file: string): { config?: Record<string, unknown> } {
  const name = path.relative(process.cwd(), file) || file;
  const doc = parseDocument(fs.readFileSync(file, "utf8"));
  const err = doc.errors[0];
  if (err) {
    const at = err.linePos?.[0];
    const where = at ? `line ${at.line}, column ${at.col}` : "an unknown position";
    throw new ConfigError([
      `${name} is not valid YAML at ${where}: ${err.message.split(" at line ")[0]}; fix the file ` +
        `(or edit it with \`pulumi config set\`, which writes valid YAML)`,
    ]);
  }
  return (doc.toJS() ?? {}) as { config?: Record<string, unknown> };
}

/**
 * Read Pulumi.<stack>.yaml; `overrides` (keys without namespace) replace or, with undefined, remove values. A secret
 * key given as an override counts as set with --secret; one written in plaintext in the file stays plaintext (the
 * config check refuses it, as it would under `pulumi up`).
 */
export function readStackConfig(
  stack: string,
  overrides: Record<string, unknown> = {},
  root = PROJECT_ROOT,
): StackConfig {
  const file = path.join(root, `Pulumi.${stack}.yaml`);
  if (!fs.existsSync(file))
    throw new Error(
      `no stack file ${path.relative(process.cwd(), file)}: stacks here are ${listStacks(root).join(", ")}`,
    );
  const doc = parseStackFile(file);
  const values: Record<string, string> = {};
  const secretKeys = new Set<string>();
  const placeholders = new Set<string>();
  const put = (key: string, v: unknown, secret: boolean) => {
    secretKeys.delete(key);
    placeholders.delete(key);
    if (v && typeof v === "object" && "secure" in (v as object)) {
      values[key] = placeholderSecret(key);
      secretKeys.add(key);
      placeholders.add(key);
      return;
    }
    values[key] = typeof v === "string" ? v : JSON.stringify(v);
    if (secret) secretKeys.add(key);
  };
  for (const [k, v] of Object.entries(doc.config ?? {})) put(k, v, false);
  for (const [k, v] of Object.entries(overrides)) {
    const key = k.includes(":") ? k : `${NS}:${k}`;
    if (v === undefined) {
      delete values[key];
      secretKeys.delete(key);
      placeholders.delete(key);
    } else
      put(
        key,
        v,
        (SECRET_KEYS as readonly string[]).some((s) => key === `${NS}:${s}`),
      );
  }
  return { values, secretKeys: [...secretKeys], placeholders: [...placeholders] };
}

export function listStacks(root = PROJECT_ROOT): string[] {
  return fs
    .readdirSync(root)
    .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
    .filter((s): s is string => s !== undefined);
}

function digest(...parts: string[]): string {
  return createHash("sha256").update(parts.join("\0")).digest("hex");
}

/** SSH wire encoding: a uint32 length, then the bytes. */
function sshString(b: Buffer | string): Buffer {
  const buf = typeof b === "string" ? Buffer.from(b) : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(buf.length);
  return Buffer.concat([len, buf]);
}

/**
 * A real ed25519 key in the formats @pulumi/tls gives: publicKeyOpenssh ("ssh-ed25519 AAAA...\n") and
 * privateKeyOpenssh (openssh-key-v1, unencrypted), so tests can hand both to the real ssh and sshd.
 */
export function ed25519Key(name: string): Record<string, string> {
  // Deterministic per resource name, like the mocks' IDs: two runs of a plan pin the same host key.
  const privateKey = createPrivateKey({
    key: Buffer.concat([
      Buffer.from("302e020100300506032b657004220420", "hex"),
      createHash("sha256").update(`ssh-host-key\0${name}`).digest(),
    ]),
    format: "der",
    type: "pkcs8",
  });
  const publicKey = createPublicKey(privateKey);
  const pub = Buffer.from(publicKey.export({ format: "jwk" }).x as string, "base64url");
  const seed = Buffer.from(privateKey.export({ format: "jwk" }).d as string, "base64url");
  const pubBlob = Buffer.concat([sshString("ssh-ed25519"), sshString(pub)]);
  const check = Buffer.from(seed.subarray(0, 4));
  let priv = Buffer.concat([
    check,
    check,
    sshString("ssh-ed25519"),
    sshString(pub),
    sshString(Buffer.concat([seed, pub])),
    sshString(""),
  ]);
  for (let pad = 1; priv.length % 8 !== 0; pad++) priv = Buffer.concat([priv, Buffer.from([pad])]);
  const nkeys = Buffer.alloc(4);
  nkeys.writeUInt32BE(1);
  const body = Buffer.concat([
    Buffer.from("openssh-key-v1\0"),
    sshString("none"),
    sshString("none"),
    sshString(""),
    nkeys,
    sshString(pubBlob),
    sshString(priv),
  ]);
  const b64 = body
    .toString("base64")
    .replace(/(.{70})/g, "$1\n")
    .replace(/\n$/, "");
  return {
    privateKeyOpenssh: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}\n-----END OPENSSH PRIVATE KEY-----\n`,
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    privateKeyPemPkcs8: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    publicKeyOpenssh: `ssh-ed25519 ${pubBlob.toString("base64")}\n`,
  };
}

/**
 * Fake cloud answers. Deterministic where a plan should read the same twice (IDs, IPs), real where a
 * test needs a real value (RSA keys, so DKIM records carry an actual 2048-bit key).
 */
/** Resources whose outputs are random: like Pulumi's state, a `kept` map hands a later run the same values. */
const RANDOM_OUTPUTS = new Set([
  "tls:index/privateKey:PrivateKey",
  "random:index/randomPassword:RandomPassword",
  "random:index/randomBytes:RandomBytes",
  "cloudflare:index/zeroTrustAccessServiceToken:ZeroTrustAccessServiceToken",
]);

/** Component resources (this program's own types) have no cloud state. */
function isCustomType(type: string): boolean {
  return !type.startsWith("mail-relay:");
}

export class OfflineMocks implements pulumi.runtime.Mocks {
  readonly resources: RecordedResource[] = [];
  private ipv4Count = 0;
  private ipv6Count = 0;
  private numericId = 1000;

  /**
   * `kept`: outputs by `type::name`, from an earlier run; filled with this run's new ones. Random outputs only, or,
   * with `keepAll`, every custom resource's id and outputs, as a stack's state keeps them for a resource that exists
   * (what a preview of a config change compares against).
   */
  constructor(
    readonly kept: Record<string, EngineState> = {},
    readonly keepAll = false,
  ) {
    // New resources get ids and addresses no kept resource has, as the cloud would hand out.
    for (const k of Object.values(kept)) {
      if (/^\d+$/.test(String(k.__id ?? ""))) this.numericId = Math.max(this.numericId, Number(k.__id));
      const v4 = /^203\.0\.113\.(\d+)$/.exec(String(k.ipAddress ?? ""));
      if (v4) this.ipv4Count = Math.max(this.ipv4Count, Number(v4[1]) - 10);
      const v6 = /^2001:db8:([0-9a-f]+)::\/64$/.exec(String(k.ipAddress ?? ""));
      if (v6) this.ipv6Count = Math.max(this.ipv6Count, parseInt(v6[1], 16));
    }
  }

  newResource(args: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult {
    const plainInputs = unwrapSecrets(args.inputs);
    const keep = RANDOM_OUTPUTS.has(args.type) || (this.keepAll && isCustomType(args.type));
    // By type and name: two types may share a logical name (the caller "app"'s token and the Access app).
    const key = `${args.type}::${args.name}`;
    const outputs = (keep && this.kept[key]) || this.outputsFor({ ...args, inputs: plainInputs });
    const state = { ...args.inputs, ...outputs };
    const id = state.__id ?? (args.type.startsWith("hcloud:") ? String(++this.numericId) : `${args.name}-id`);
    if (keep) this.kept[key] = this.keepAll ? { ...outputs, __id: id } : outputs;
    delete state.__id;
    const secretProps = Object.keys(args.inputs).filter(
      (k) => isWrappedSecret(args.inputs[k]) || JSON.stringify(args.inputs[k] ?? null).includes(SECRET_SIG),
    );
    this.resources.push({
      type: args.type,
      name: args.name,
      urn: `urn:pulumi:offline::mail-relay::${args.type}::${args.name}`,
      id,
      props: unwrapSecrets(state),
      inputs: plainInputs,
      secretProps,
    });
    return { id, state };
  }

  call(args: pulumi.runtime.MockCallArgs): pulumi.runtime.MockCallResult {
    switch (args.token) {
      case "cloudflare:index/getZone:getZone": {
        const name = args.inputs.filter?.name ?? "example.com";
        const zoneId = digest("zone", name).slice(0, 32);
        return { id: zoneId, zoneId, name };
      }
      case "cloudflare:index/getZeroTrustTunnelCloudflaredToken:getZeroTrustTunnelCloudflaredToken":
        return {
          accountId: args.inputs.accountId,
          tunnelId: args.inputs.tunnelId,
          token: `offline-tunnel-token-${digest("tunnel", String(args.inputs.tunnelId)).slice(0, 40)}`,
        };
      default:
        return args.inputs;
    }
  }

  private outputsFor(args: pulumi.runtime.MockResourceArgs): EngineState {
    const i = args.inputs;
    switch (args.type) {
      case "hcloud:index/primaryIp:PrimaryIp":
        return i.type === "ipv6"
          ? { ipAddress: `2001:db8:${(++this.ipv6Count).toString(16)}::/64` }
          : { ipAddress: `203.0.113.${10 + ++this.ipv4Count}` };
      case "hcloud:index/server:Server":
        return { status: "running" };
      case "tls:index/privateKey:PrivateKey": {
        if (i.algorithm === "ED25519") return ed25519Key(args.name);
        const ec = i.algorithm === "ECDSA";
        const { privateKey, publicKey } = ec
          ? generateKeyPairSync("ec", { namedCurve: "P-256" })
          : generateKeyPairSync("rsa", { modulusLength: i.rsaBits ?? 2048 });
        return {
          privateKeyPem: privateKey.export({ type: ec ? "sec1" : "pkcs1", format: "pem" }).toString(),
          privateKeyPemPkcs8: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
          publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
        };
      }
      case "tls:index/selfSignedCert:SelfSignedCert": {
        // The tls provider: validity starts now and ends validityPeriodHours later (RFC 3339).
        const start = Date.now();
        const rfc3339 = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");
        return {
          certPem: selfSignedCertPem(i),
          validityStartTime: rfc3339(start),
          validityEndTime: rfc3339(start + (i.validityPeriodHours ?? 0) * 3_600_000),
        };
      }
      case "random:index/randomPassword:RandomPassword":
        return {
          result: randomBytes(64)
            .toString("base64")
            .replace(/[^A-Za-z0-9]/g, "")
            .slice(0, i.length ?? 32),
        };
      case "random:index/randomBytes:RandomBytes": {
        const b = randomBytes(i.length ?? 32);
        return { base64: b.toString("base64"), hex: b.toString("hex") };
      }
      case "cloudflare:index/zeroTrustTunnelCloudflared:ZeroTrustTunnelCloudflared":
        return {
          __id: digest("tunnel", args.name)
            .slice(0, 32)
            .replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, "$1-$2-$3-$4-$5"),
        };
      case "cloudflare:index/zeroTrustAccessServiceToken:ZeroTrustAccessServiceToken": {
        // Cloudflare sets expires_at to the creation time plus duration (the provider's default is 8760h).
        const duration = i.duration ?? "8760h";
        return {
          clientId: `${digest("client", args.name).slice(0, 32)}.access`,
          clientSecret: randomBytes(32).toString("hex"),
          duration,
          expiresAt: new Date(Date.now() + goDurationMs(duration)).toISOString().replace(/\.\d+Z$/, "Z"),
        };
      }
      case "cloudflare:index/zeroTrustAccessApplication:ZeroTrustAccessApplication":
        // aud: the application's audience tag (64 hex digits), which cloudflared checks in the Access JWT.
        return { __id: digest(args.type, args.name).slice(0, 32), aud: digest("aud", args.name) };
      case "cloudflare:index/zeroTrustAccessPolicy:ZeroTrustAccessPolicy":
      case "cloudflare:index/dnsRecord:DnsRecord":
        return { __id: digest(args.type, args.name).slice(0, 32) };
      default:
        return {};
    }
  }
}

const GO_DURATION_UNITS_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** A Go duration ("8760h", "2h45m", "300ms"), as the Access service token's `duration` takes it, in milliseconds. */
export function goDurationMs(d: string): number {
  const parts = [...d.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== d)
    throw new Error(`"${d}" is not a Go duration such as 8760h or 2h45m`);
  return parts.reduce((ms, p) => ms + Number(p[1]) * GO_DURATION_UNITS_MS[p[2]], 0);
}

/** A real self-signed certificate for the mock's key (openssl), so fingerprints and TLS tests use an actual one. */
function selfSignedCertPem(i: EngineState): string {
  const san = [
    ...(i.dnsNames ?? []).map((d: string) => `DNS:${d}`),
    ...(i.ipAddresses ?? []).map((a: string) => `IP:${a}`),
  ].join(",");
  const days = String(Math.max(1, Math.round((i.validityPeriodHours ?? 24) / 24)));
  // Through a file: node's stdio pipes are socket pairs, which openssl cannot open as /dev/stdin.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "offline-cert-"));
  try {
    const key = path.join(dir, "key.pem");
    fs.writeFileSync(key, String(i.privateKeyPem), { mode: 0o600 });
    const args = [
      "req",
      "-new",
      "-x509",
      "-key",
      key,
      "-days",
      days,
      "-subj",
      `/CN=${i.subject?.commonName ?? "offline"}`,
      ...(san ? ["-addext", `subjectAltName=${san}`] : []),
    ];
    return execFileSync("openssl", args, { stdio: ["ignore", "pipe", "pipe"] }).toString();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** One edge set of the deployment graph, as the engine receives it: who the parent is, what must finish first. */
export interface GraphNode {
  readonly name: string;
  readonly type: string;
  /** The parent resource's name (components), if any. */
  readonly parent?: string;
  /** Names of the resources this one waits for: `dependsOn` plus the resources its inputs came from. */
  readonly dependsOn: string[];
  /** Per input property, the resources its value came from (what the engine makes unknown when one is replaced). */
  readonly propertyDependencies: Record<string, string[]>;
  /** The deleteBeforeReplace resource option. */
  readonly deleteBeforeReplace: boolean;
}

export interface OfflineRun {
  readonly resources: RecordedResource[];
  /** Parents and dependencies of every registered resource, in registration order. */
  readonly graph: GraphNode[];
  /** Stack outputs, resolved (secrets as plain values). */
  readonly outputs: EngineState;
  /** Which stack outputs are secret. */
  readonly secretOutputs: string[];
  readonly config: StackConfig;
}

/** The one helper that reads an Output's value (tests use it too). */
export function promiseOf<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply((v) => resolve(v)));
}

/**
 * Assets (FileAsset etc.) as plain data: `{ path }` with the path resolved, so recorded props can be cloned and
 * compared.
 */
async function plainAssets(v: unknown): Promise<unknown> {
  if (Array.isArray(v)) return Promise.all(v.map(plainAssets));
  if (!v || typeof v !== "object") return v;
  if ([Object.prototype, null].includes(Object.getPrototypeOf(v))) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = await plainAssets(x);
    return out;
  }
  const a = v as { path?: unknown; text?: unknown; uri?: unknown };
  return {
    ...(a.path !== undefined ? { path: await a.path } : {}),
    ...(a.text !== undefined ? { text: await a.text } : {}),
    ...(a.uri !== undefined ? { uri: await a.uri } : {}),
  };
}

/** The slice of a RegisterResourceRequest the graph needs (the engine's own protobuf getters). */
interface RegisterRequest {
  getType(): string;
  getName(): string;
  getParent(): string;
  getDependenciesList(): string[];
  getPropertydependenciesMap(): { forEach(cb: (deps: { getUrnsList(): string[] }, key: string) => void): void };
  getDeletebeforereplace(): boolean;
}

/**
 * Wrap the mock monitor's registerResource to learn what the mocks API does not pass on: each resource's
 * parent and dependencies (URNs, turned into names once every resource has registered).
 */
function recordGraph(): () => GraphNode[] {
  const monitor = pulumi.runtime.getMonitor() as unknown as {
    registerResource(req: RegisterRequest, cb: (err: unknown, res?: { getUrn(): string }) => void): unknown;
  };
  const seen: {
    urn?: string;
    type: string;
    name: string;
    parentUrn: string;
    depUrns: string[];
    propUrns: Record<string, string[]>;
    dbr: boolean;
  }[] = [];
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, cb) => {
    const propUrns: Record<string, string[]> = {};
    req.getPropertydependenciesMap().forEach((deps, key) => (propUrns[key] = deps.getUrnsList()));
    const entry = {
      type: req.getType(),
      name: req.getName(),
      parentUrn: req.getParent(),
      depUrns: req.getDependenciesList(),
      propUrns,
      dbr: req.getDeletebeforereplace(),
    };
    seen.push(entry);
    return register(req, (err, res) => {
      if (res) (entry as { urn?: string }).urn = res.getUrn();
      cb(err, res);
    });
  };
  return () => {
    const nameOf = new Map(seen.filter((e) => e.urn).map((e) => [e.urn!, e.name]));
    return seen.map((e) => ({
      name: e.name,
      type: e.type,
      ...(e.parentUrn && nameOf.has(e.parentUrn) ? { parent: nameOf.get(e.parentUrn)! } : {}),
      dependsOn: [...new Set(e.depUrns.map((u) => nameOf.get(u)).filter((n): n is string => n !== undefined))],
      propertyDependencies: Object.fromEntries(
        Object.entries(e.propUrns).map(([k, us]) => [
          k,
          [...new Set(us.map((u) => nameOf.get(u)).filter((n): n is string => n !== undefined))],
        ]),
      ),
      deleteBeforeReplace: e.dbr,
    }));
  };
}

/**
 * Set mocks and config, then load the program module through `load` (a fresh import each run).
 * `load` exists so vitest can reset its module registry between runs.
 */
export async function runOffline(
  stack: string,
  overrides: Record<string, unknown>,
  load: () => Promise<Record<string, unknown>>,
  opts: {
    /** A JSON file keeping random outputs between runs, as a stack's state does between updates. */ stateFile?: string;
    /** Where Pulumi.<stack>.yaml is (default: the project). */ root?: string;
    /** Keep every custom resource's id and outputs in the state file, not only the random ones (lifecycle tests). */
    keepAll?: boolean;
  } = {},
): Promise<OfflineRun> {
  const config = readStackConfig(stack, overrides, opts.root);
  const kept =
    opts.stateFile && fs.existsSync(opts.stateFile)
      ? (JSON.parse(fs.readFileSync(opts.stateFile, "utf8")) as Record<string, EngineState>)
      : {};
  const mocks = new OfflineMocks(kept, opts.keepAll ?? false);
  await pulumi.runtime.setMocks(mocks, "mail-relay", stack, false);
  const graph = recordGraph();
  pulumi.runtime.setAllConfig(config.values, config.secretKeys);
  const mod = await load();
  const outputs: EngineState = {};
  const secretOutputs: string[] = [];
  for (const [k, v] of Object.entries(mod)) {
    if (k === "default" || k === "__esModule") continue;
    const o = pulumi.output(v as pulumi.Input<unknown>);
    outputs[k] = await promiseOf(o);
    if (await pulumi.isSecret(o)) secretOutputs.push(k);
  }
  await (pulumi.runtime as unknown as { waitForRPCs?: () => Promise<void> }).waitForRPCs?.();
  for (const r of mocks.resources) {
    for (const [k, v] of Object.entries(r.props)) r.props[k] = await plainAssets(v);
    for (const [k, v] of Object.entries(r.inputs)) r.inputs[k] = await plainAssets(v);
  }
  if (opts.stateFile) fs.writeFileSync(opts.stateFile, JSON.stringify(mocks.kept), { mode: 0o600 });
  return { resources: mocks.resources, graph: graph(), outputs, secretOutputs, config };
}
