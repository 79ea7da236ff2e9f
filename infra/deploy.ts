import { createHash } from "node:crypto";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import {
  HostFile,
  HostSecrets,
  HostSettings,
  hostConfigFiles,
  hostSecretFiles,
  renderActivateRelayRelease,
  renderApplyMailConfig,
  renderInstallFile,
  renderInstallRelayRelease,
  renderStartCloudflared,
  renderStopCloudflared,
  renderStopRelay,
  type TeardownOptions,
  renderWaitForCloudInit,
  RELAY_CONFIG_DIR,
  RELAY_ENV_FILE,
  RELAY_UNIT_PATH,
} from "../cloud-init";

export function sha256(text: string | Buffer): string {
  return createHash("sha256").update(text).digest("hex");
}

/** Single-quote a string for bash. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A stable resource-name slug for a host path: "/etc/postfix/main.cf" -> "etc-postfix-main-cf". */
export function pathSlug(path: string): string {
  return path.replace(/^\/+/, "").replace(/[^A-Za-z0-9]+/g, "-").replace(/-+$/, "").toLowerCase();
}

/** Placeholder secrets: only used to learn which secret files exist (paths, modes), never their content. */
const SHAPE_ONLY: HostSecrets = {
  dkimPrivateKeyPem: "-----BEGIN PRIVATE KEY-----\nc2hhcGUtb25seQ==\n-----END PRIVATE KEY-----\n",
  relayEnv: "SHAPE_ONLY=1\n",
  smarthostPassword: "shape-only",
  tunnelToken: "shape-only",
  smtpTlsKeyPem: "-----BEGIN PRIVATE KEY-----\nc2hhcGUtb25seQ==\n-----END PRIVATE KEY-----\n",
  smtpTlsCertPem: "-----BEGIN CERTIFICATE-----\nc2hhcGUtb25seQ==\n-----END CERTIFICATE-----\n",
};

/** The secret files' metadata; content comes later from the real (Output) secrets. */
export function secretFileShapes(s: HostSettings): Omit<HostFile, "content">[] {
  return hostSecretFiles(s, SHAPE_ONLY).map(({ content: _content, ...meta }) => meta);
}

/** Where the relay bundle is uploaded before it is installed as a release. */
export function uploadPath(version: string): string {
  return `/var/tmp/mail-relay-${version}.js`;
}

/** Paths whose change needs the relay restarted: its env file, its unit, the SMTP ingress's TLS files. */
export function isRelayConfigPath(path: string): boolean {
  return path === RELAY_ENV_FILE || path === RELAY_UNIT_PATH || path.startsWith(`${RELAY_CONFIG_DIR}/`);
}

/** Paths whose change needs Postfix/OpenDKIM reloaded. */
export function isMailConfigPath(path: string): boolean {
  return path.startsWith("/etc/postfix/") || path.startsWith("/etc/opendkim");
}

export interface HostDeploymentArgs {
  /** SSH target: the node's IPv4 (a primary IP, so it survives server replacement). */
  readonly host: pulumi.Input<string>;
  /** Steps re-run when the server is replaced. */
  readonly serverId: pulumi.Input<number>;
  /** SSH private key for root (secret). */
  readonly privateKey: pulumi.Input<string>;
  readonly settings: HostSettings;
  /** Secret values for the secret files (DKIM key, env file, sasl_passwd, tunnel token). */
  readonly secrets: pulumi.Output<HostSecrets>;
  /** The esbuild bundle of the relay and its content hash (the release name). */
  readonly relayBundlePath: string;
  /** What the relay guard's delete (destroy, server replacement) does about mail still queued on the disk. */
  readonly teardown: TeardownOptions;
  readonly relayVersion: string;
}

/**
 * Configures one host over SSH after cloud-init: pushes the rendered configs and the secrets as files
 * (content on stdin, never in argv or user-data), checks and reloads Postfix/OpenDKIM, installs the relay
 * bundle as a versioned release and activates it behind a health check with automatic rollback, then
 * starts cloudflared. Every step's triggers are content hashes: an unchanged input runs nothing.
 * On teardown, cloudflared is stopped first, then the relay; the queue stays on disk.
 */
export class HostDeployment extends pulumi.ComponentResource {
  /** The relay is live on this node (the tunnel route waits for it). */
  readonly relayActive: command.remote.Command;
  /** The last step of this node's deployment (cloudflared when the tunnel is on). */
  readonly ready: command.remote.Command;

  constructor(name: string, args: HostDeploymentArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mail-relay:host:HostDeployment", name, {}, opts);
    const s = args.settings;
    const connection: command.types.input.remote.ConnectionArgs = { host: args.host, user: "root", privateKey: args.privateKey, dialErrorLimit: 60, perDialTimeout: 10 };
    const child = { parent: this };

    const waitBoot = new command.remote.Command(`${name}-wait-cloud-init`, { connection, create: renderWaitForCloudInit(), triggers: [args.serverId] }, child);

    const pushed = new Map<string, { cmd: command.remote.Command; hash: pulumi.Output<string> }>();
    const push = (meta: Omit<HostFile, "content">, content: pulumi.Output<string>, secret: boolean) => {
      const hash = secret ? pulumi.secret(content.apply(sha256)) : content.apply(sha256);
      const cmd = new command.remote.Command(
        `${name}-${secret ? "secret" : "file"}-${pathSlug(meta.path)}`,
        { connection, create: renderInstallFile(meta), stdin: secret ? pulumi.secret(content) : content, triggers: [meta.path, hash], logging: "stderr" },
        { ...child, dependsOn: [waitBoot], ...(secret ? { additionalSecretOutputs: ["stdin"] } : {}) },
      );
      pushed.set(meta.path, { cmd, hash });
    };
    for (const f of hostConfigFiles(s)) {
      const { content, ...meta } = f;
      push(meta, pulumi.output(content), false);
    }
    for (const meta of secretFileShapes(s)) {
      const content = args.secrets.apply((sec) => {
        const f = hostSecretFiles(s, sec).find((x) => x.path === meta.path);
        if (!f) throw new Error(`secret file ${meta.path} disappeared between renders`);
        return f.content;
      });
      push(meta, content, true);
    }

    const hashesOf = (paths: string[]) => pulumi.all(paths.map((p) => pushed.get(p)!.hash)).apply((hs) => sha256(paths.map((p, i) => `${p}:${hs[i]}`).join("\n")));
    const mailPaths = [...pushed.keys()].filter(isMailConfigPath).sort();
    const applyMail = new command.remote.Command(
      `${name}-apply-mail-config`,
      { connection, create: renderApplyMailConfig(s), triggers: [pulumi.secret(hashesOf(mailPaths))] },
      { ...child, dependsOn: mailPaths.map((p) => pushed.get(p)!.cmd) },
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
      { connection, source: new pulumi.asset.FileAsset(args.relayBundlePath), remotePath: uploadPath(args.relayVersion), triggers: [args.relayVersion, args.serverId] },
      { ...child, dependsOn: [waitBoot] },
    );
    const relayPaths = [...pushed.keys()].filter(isRelayConfigPath).sort();
    const release = `/opt/mail-relay/releases/${args.relayVersion}/relay.js`;
    this.relayActive = new command.remote.Command(
      `${name}-relay-activate`,
      {
        connection,
        create: [
          "set -euo pipefail",
          `if [ ! -f ${release} ]; then bash -c ${shellQuote(renderInstallRelayRelease(args.relayVersion))} < ${uploadPath(args.relayVersion)}; fi`,
          `bash -c ${shellQuote(renderActivateRelayRelease(args.relayVersion, s.relayPort))}`,
        ].join("\n"),
        triggers: [args.relayVersion, pulumi.secret(hashesOf(relayPaths))],
      },
      { ...child, dependsOn: [applyMail, upload, relayGuard, ...relayPaths.map((p) => pushed.get(p)!.cmd)] },
    );

    this.ready = this.relayActive;
    if (s.tunnel) {
      const tunnelPaths = [...pushed.keys()].filter((p) => p.startsWith("/etc/cloudflared/") || p.includes("cloudflared")).sort();
      const tunnelGuard = new command.remote.Command(
        `${name}-cloudflared-guard`,
        { connection, create: "true", delete: renderStopCloudflared(), triggers: [args.serverId] },
        { ...child, dependsOn: [relayGuard], deleteBeforeReplace: true },
      );
      this.ready = new command.remote.Command(
        `${name}-cloudflared-start`,
        { connection, create: renderStartCloudflared(), triggers: [pulumi.secret(hashesOf(tunnelPaths))] },
        { ...child, dependsOn: [this.relayActive, tunnelGuard, ...tunnelPaths.map((p) => pushed.get(p)!.cmd)] },
      );
    }
    this.registerOutputs({});
  }
}
