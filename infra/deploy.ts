import { createHash } from "node:crypto";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import {
  CLOUDFLARED_CONFIG_FILE,
  NFTABLES_CONF,
  HostFile,
  HostSecrets,
  HostSettings,
  hostConfigFiles,
  hostSecretFiles,
  renderApplyHostFirewall,
  renderApplyMailConfig,
  renderInstallAndActivateRelay,
  renderInstallHostKey,
  relayUploadPath,
  renderInstallFile,
  renderStartCloudflared,
  renderStopCloudflared,
  renderStopRelay,
  type TeardownOptions,
  renderWaitForCloudInit,
  MTA_STS_CONF,
  MTA_STS_DROPIN,
  OPENDKIM_ED25519_UNIT_PATH,
  RELAY_CONFIG_DIR,
  RELAY_ENV_FILE,
  RELAY_UNIT_PATH,
  RESOLV_CONF,
  TLS_POLICY_UNIT_PATH,
  enforcesOutboundTls,
} from "../cloud-init";

/**
 * What `ssh-keygen -l` prints for a public key line ("ssh-ed25519 AAAA..."): SHA256:<unpadded base64 of the key blob>.
 */
export function sshFingerprint(publicKeyLine: string): string {
  const blob = publicKeyLine.trim().split(/\s+/)[1];
  if (!blob) throw new Error(`not an OpenSSH public key line: ${JSON.stringify(publicKeyLine.slice(0, 40))}`);
  return `SHA256:${createHash("sha256").update(Buffer.from(blob, "base64")).digest("base64").replace(/=+$/, "")}`;
}

export function sha256(text: string | Buffer): string {
  return createHash("sha256").update(text).digest("hex");
}

/** A stable resource-name slug for a host path: "/etc/postfix/main.cf" -> "etc-postfix-main-cf". */
export function pathSlug(path: string): string {
  return path
    .replace(/^\/+/, "")
    .replace(/[^A-Za-z0-9]+/g, "-")
    .replace(/-+$/, "")
    .toLowerCase();
}

/** Placeholder secrets: only used to learn which secret files exist (paths, modes), never their content. */
const SHAPE_ONLY: HostSecrets = {
  dkimPrivateKeyPem: "-----BEGIN PRIVATE KEY-----\nc2hhcGUtb25seQ==\n-----END PRIVATE KEY-----\n",
  dkimEd25519PrivateKeyPem: "-----BEGIN PRIVATE KEY-----\nc2hhcGUtb25seQ==\n-----END PRIVATE KEY-----\n",
  relayEnv: "SHAPE_ONLY=1\n",
  smarthostPassword: "shape-only",
  tunnelToken: "shape-only",
  smtpTlsKeyPem: "-----BEGIN PRIVATE KEY-----\nc2hhcGUtb25seQ==\n-----END PRIVATE KEY-----\n",
  smtpTlsCertPem: "-----BEGIN CERTIFICATE-----\nc2hhcGUtb25seQ==\n-----END CERTIFICATE-----\n",
};

/** A second set of placeholders, each different from SHAPE_ONLY's: what changes a file's content tells its inputs. */
const SHAPE_ALT: HostSecrets = {
  dkimPrivateKeyPem: "-----BEGIN PRIVATE KEY-----\nYWx0LXNoYXBl\n-----END PRIVATE KEY-----\n",
  dkimEd25519PrivateKeyPem: "-----BEGIN PRIVATE KEY-----\nYWx0LWVkMjU1MTk=\n-----END PRIVATE KEY-----\n",
  relayEnv: "SHAPE_ALT=1\n",
  smarthostPassword: "alt-shape",
  tunnelToken: "alt-shape",
  smtpTlsKeyPem: "-----BEGIN PRIVATE KEY-----\nYWx0LWtleQ==\n-----END PRIVATE KEY-----\n",
  smtpTlsCertPem: "-----BEGIN CERTIFICATE-----\nYWx0LWNlcnQ=\n-----END CERTIFICATE-----\n",
};

/** Each secret value as its own Output, so a file is built from the values it holds and nothing else. */
export type HostSecretInputs = { readonly [K in keyof HostSecrets]?: pulumi.Output<string> };

/**
 * The secret values a secret file's content is made of: those whose change changes the file. A file built from a
 * combined Output of every secret would be unknown in a preview whenever any secret is new (a caller added, a token
 * rotated), and its push would show as replaced though `up` finds it unchanged.
 */
export function secretFileInputs(s: HostSettings, path: string): (keyof HostSecrets)[] {
  const contentOf = (sec: HostSecrets) => hostSecretFiles(s, sec).find((f) => f.path === path)?.content;
  const base = contentOf(SHAPE_ONLY);
  return (Object.keys(SHAPE_ONLY) as (keyof HostSecrets)[]).filter(
    (k) => contentOf({ ...SHAPE_ONLY, [k]: SHAPE_ALT[k] }) !== base,
  );
}

/** The secret files' metadata; content comes later from the real (Output) secrets. */
export function secretFileShapes(s: HostSettings): Omit<HostFile, "content">[] {
  return hostSecretFiles(s, SHAPE_ONLY).map(({ content: _content, ...meta }) => meta);
}

/** Where the relay bundle is uploaded before it is installed as a release: a root-only 0700 dir, never /var/tmp. */
export const uploadPath = relayUploadPath;

/**
 * Paths whose change needs the relay restarted: its env file, its unit, the SMTP ingress's TLS files, and the
 * DANE-first socketmap's unit (it runs the relay release, so the activate step restarts it).
 */
export function isRelayConfigPath(path: string): boolean {
  return (
    path === RELAY_ENV_FILE ||
    path === RELAY_UNIT_PATH ||
    path === TLS_POLICY_UNIT_PATH ||
    path.startsWith(`${RELAY_CONFIG_DIR}/`)
  );
}

/** Paths whose change needs Postfix/OpenDKIM (both instances), unbound or the MTA-STS resolver restarted. */
export function isMailConfigPath(path: string): boolean {
  return (
    path.startsWith("/etc/postfix/") ||
    path.startsWith("/etc/opendkim") ||
    path.startsWith("/etc/unbound/") ||
    [MTA_STS_CONF, MTA_STS_DROPIN, OPENDKIM_ED25519_UNIT_PATH, RESOLV_CONF].includes(path)
  );
}

export interface HostDeploymentArgs {
  /** SSH target: the node's IPv4 (a primary IP, so it survives server replacement). */
  readonly host: pulumi.Input<string>;
  /**
   * The server's id, in every step's triggers: a replaced server (a new image, a user-data change) gets every step
   * again. The connection alone would not do it: it goes to the primary IP and pins the host key, both of which
   * outlive the server, so without the id a new server would get only the steps whose content changed.
   */
  readonly serverId: pulumi.Input<number>;
  /** SSH private key for root (secret). */
  readonly privateKey: pulumi.Input<string>;
  readonly settings: HostSettings;
  /** Secret values for the secret files (DKIM keys, env file, sasl_passwd, tunnel token), each its own Output. */
  readonly secrets: HostSecretInputs;
  /** The esbuild bundle of the relay and its content hash (the release name). */
  readonly relayBundlePath: string;
  /** What the relay guard's delete (destroy, server replacement) does about mail still queued on the disk. */
  readonly teardown: TeardownOptions;
  readonly relayVersion: string;
  /** With the tunnel: /etc/cloudflared/mail-relay.yml (the locally managed ingress, with the Access JWT check). */
  readonly cloudflaredConfig?: pulumi.Output<string>;
}

/** The one step that connects without a pinned host key (trust on first use); it carries only the host key. */
export const BOOTSTRAP_STEP_SUFFIX = "host-key";

/**
 * Configures one host over SSH after cloud-init: pushes the rendered configs and the secrets as files
 * (content on stdin, never in argv or user-data), checks and reloads Postfix/OpenDKIM, installs the relay
 * bundle as a versioned release and activates it behind a health check with automatic rollback, then
 * starts cloudflared. Every step's triggers are content hashes plus the server's id: an unchanged input runs
 * nothing, and a replaced server (same primary IP, new disk) gets every step again.
 * On teardown, cloudflared is stopped first, then the relay; the queue stays on disk.
 */
export class HostDeployment extends pulumi.ComponentResource {
  /** The relay is live on this node (the tunnel route waits for it). */
  readonly relayActive: command.remote.Command;
  /** The last step of this node's deployment (cloudflared when the tunnel is on). */
  readonly ready: command.remote.Command;
  /** The SSH host key every step after the bootstrap pins ("ssh-ed25519 AAAA...", authorized_keys style). */
  readonly hostPublicKey: pulumi.Output<string>;

  constructor(name: string, args: HostDeploymentArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mail-relay:host:HostDeployment", name, {}, opts);
    const s = args.settings;
    const child = { parent: this };

    // The host key is generated here, one per node, and outlives server replacements. Its private half reaches the
    // host only on the stdin of the bootstrap step, never in user-data (policy rule no-secrets-in-user-data).
    const hostKey = new tls.PrivateKey(
      `${name}-ssh-host-key`,
      { algorithm: "ED25519" },
      { ...child, additionalSecretOutputs: ["privateKeyOpenssh", "privateKeyPem", "privateKeyPemPkcs8"] },
    );
    this.hostPublicKey = hostKey.publicKeyOpenssh.apply((k) => k.trim());
    const firstContact: command.types.input.remote.ConnectionArgs = {
      host: args.host,
      user: "root",
      privateKey: args.privateKey,
      dialErrorLimit: 60,
      perDialTimeout: 10,
    };
    // Trust on first use: this step sends the host key and nothing else (see docs/security.md).
    const installHostKey = new command.remote.Command(
      `${name}-${BOOTSTRAP_STEP_SUFFIX}`,
      {
        connection: firstContact,
        create: renderInstallHostKey(),
        stdin: pulumi.secret(hostKey.privateKeyOpenssh),
        triggers: [args.serverId, this.hostPublicKey],
        logging: "stderr",
      },
      child,
    );
    // Every other step pins the key: a machine in the path without it gets no secret.
    const connection: command.types.input.remote.ConnectionArgs = { ...firstContact, hostKey: this.hostPublicKey };

    const waitBoot = new command.remote.Command(
      `${name}-wait-cloud-init`,
      { connection, create: renderWaitForCloudInit(), triggers: [args.serverId] },
      { ...child, dependsOn: [installHostKey] },
    );

    const pushed = new Map<string, { cmd: command.remote.Command; hash: pulumi.Output<string> }>();
    const push = (meta: Omit<HostFile, "content">, content: pulumi.Output<string>, secret: boolean) => {
      const hash = secret ? pulumi.secret(content.apply(sha256)) : content.apply(sha256);
      const cmd = new command.remote.Command(
        `${name}-${secret ? "secret" : "file"}-${pathSlug(meta.path)}`,
        {
          connection,
          create: renderInstallFile(meta),
          stdin: secret ? pulumi.secret(content) : content,
          triggers: [meta.path, hash, args.serverId],
          logging: "stderr",
        },
        { ...child, dependsOn: [waitBoot], ...(secret ? { additionalSecretOutputs: ["stdin"] } : {}) },
      );
      pushed.set(meta.path, { cmd, hash });
    };
    for (const f of hostConfigFiles(s)) {
      const { content, ...meta } = f;
      push(meta, pulumi.output(content), false);
    }
    for (const meta of secretFileShapes(s)) {
      const keys = secretFileInputs(s, meta.path);
      const values = keys.map((k) => {
        const v = args.secrets[k];
        if (!v) throw new Error(`secret file ${meta.path} needs the secret ${k}, which the program did not pass`);
        return v;
      });
      const content = pulumi.all(values).apply((vals) => {
        const sec: HostSecrets = { ...SHAPE_ONLY, ...Object.fromEntries(keys.map((k, i) => [k, vals[i]])) };
        const f = hostSecretFiles(s, sec).find((x) => x.path === meta.path);
        if (!f) throw new Error(`secret file ${meta.path} disappeared between renders`);
        return f.content;
      });
      push(meta, content, true);
    }

    if (args.cloudflaredConfig)
      push(
        { path: CLOUDFLARED_CONFIG_FILE, mode: "0644", owner: "root", group: "root", secret: false },
        args.cloudflaredConfig,
        false,
      );

    // The host ruleset names users (nft resolves them on load), and decides who may talk SMTP: loaded before the
    // mail configuration and the relay start.
    const firewall = new command.remote.Command(
      `${name}-apply-host-firewall`,
      { connection, create: renderApplyHostFirewall(), triggers: [pushed.get(NFTABLES_CONF)!.hash, args.serverId] },
      { ...child, dependsOn: [pushed.get(NFTABLES_CONF)!.cmd] },
    );

    const hashesOf = (paths: string[]) =>
      pulumi
        .all(paths.map((p) => pushed.get(p)!.hash))
        .apply((hs) => sha256(paths.map((p, i) => `${p}:${hs[i]}`).join("\n")));
    const mailPaths = [...pushed.keys()].filter(isMailConfigPath).sort();
    const applyMail = new command.remote.Command(
      `${name}-apply-mail-config`,
      { connection, create: renderApplyMailConfig(s), triggers: [pulumi.secret(hashesOf(mailPaths)), args.serverId] },
      { ...child, dependsOn: [firewall, ...mailPaths.map((p) => pushed.get(p)!.cmd)] },
    );

    // Teardown guards: their create does nothing; their delete stops a service. They never change, so
    // an update never stops anything; replacing the server runs them before the old server goes.
    const relayGuard = new command.remote.Command(
      `${name}-relay-guard`,
      { connection, create: "true", delete: renderStopRelay(args.teardown), triggers: [args.serverId] },
      { ...child, dependsOn: [waitBoot], deleteBeforeReplace: true },
    );

    const upload = new command.remote.CopyToRemote(
      `${name}-relay-upload`,
      {
        connection,
        source: new pulumi.asset.FileAsset(args.relayBundlePath),
        remotePath: uploadPath(args.relayVersion),
        triggers: [args.relayVersion, args.serverId],
      },
      { ...child, dependsOn: [waitBoot] },
    );
    const relayPaths = [...pushed.keys()].filter(isRelayConfigPath).sort();
    this.relayActive = new command.remote.Command(
      `${name}-relay-activate`,
      {
        connection,
        create: renderInstallAndActivateRelay(args.relayVersion, s.relayPort, { tlsPolicy: enforcesOutboundTls(s) }),
        triggers: [args.relayVersion, pulumi.secret(hashesOf(relayPaths)), args.serverId],
      },
      { ...child, dependsOn: [applyMail, upload, relayGuard, ...relayPaths.map((p) => pushed.get(p)!.cmd)] },
    );

    this.ready = this.relayActive;
    if (s.tunnel) {
      const tunnelPaths = [...pushed.keys()]
        .filter((p) => p.startsWith("/etc/cloudflared/") || p.includes("cloudflared"))
        .sort();
      const tunnelGuard = new command.remote.Command(
        `${name}-cloudflared-guard`,
        { connection, create: "true", delete: renderStopCloudflared(), triggers: [args.serverId] },
        { ...child, dependsOn: [relayGuard], deleteBeforeReplace: true },
      );
      this.ready = new command.remote.Command(
        `${name}-cloudflared-start`,
        {
          connection,
          create: renderStartCloudflared(),
          triggers: [pulumi.secret(hashesOf(tunnelPaths)), args.serverId],
        },
        { ...child, dependsOn: [this.relayActive, tunnelGuard, ...tunnelPaths.map((p) => pushed.get(p)!.cmd)] },
      );
    }
    this.registerOutputs({});
  }
}
