// systemd units for the relay and its Cloudflare tunnel. Both run unprivileged with a read-only view of the system.
import {
  OPENDKIM_ED25519_CONF,
  OPENDKIM_ED25519_PID_FILE,
  OPENDKIM_SOCKET_DIR,
  CLOUDFLARED_CONFIG_FILE,
  CLOUDFLARED_ENV_FILE,
  CLOUDFLARED_USER,
  QUEUE_ROOT,
  RELAY_BASE,
  RELAY_CURRENT,
  RELAY_ENTRY,
  RELAY_ENV_FILE,
  RELAY_USER,
  MTA_STS_LISTEN,
  MTA_STS_UNIT_NAME,
} from "./paths";
import { EXIT_CONFIG } from "../relay/host-contract";
import { TLS_POLICY_ENV, TLS_POLICY_LISTEN, TLS_POLICY_SUBCOMMAND } from "../relay/tls-policy/contract";
import { checkHostSettings } from "./postfix";
import type { HostSettings } from "./types";

type UnitSection = readonly (readonly [string, string] | string)[];

/**
 * The cgroup caps (MemoryMax, MiB) of the units that run the relay's bundle on node. The relay's 2 GiB puts V8's old
 * generation at 1 GiB: what V8's sizing code gives the default 4 GB host (a quarter of RAM; read from V8, not
 * measured on such a host), so the unit should change nothing there and keeps that behaviour on larger hosts.
 * Smaller caps cost the open loop's p99 in bench:relay (256-512 MiB: 7.6-9.9 ms against 5.8-7.9 uncapped and 6.1-9.0
 * at 1 GiB, same sitting; docs/benchmarks.md).
 */
export const NODE_UNIT_MEMORY_MAX_MB = { relay: 2048, webhooks: 256, tlsPolicy: 192 } as const;

/**
 * V8's background threads per node process (`--v8-pool-size`; node's default is 4). They run concurrent marking,
 * parallel scavenges, sweeping and background compilation. With 4 of them on a 2-vCPU host (the default cx22), a full
 * collection's concurrent marking took both cores for 20-40 ms, stalling the relay's own thread, Postfix, OpenDKIM and
 * every other process at once: bench:relay's open loop p99 met its target in 3 of 6 runs with node's default and in 6
 * of 6 with 1, interleaved in one sitting, at the same throughput (docs/benchmarks.md). One thread keeps a core for
 * the rest of the host.
 */
export const NODE_V8_POOL_SIZE = 1;

/**
 * The node flags a unit capped at `memoryMaxMb` runs with.
 * - V8's old generation limited to half the cap (the young generation, code, typed arrays, buffers and the binary
 *   take the rest). Left alone, V8 sizes its heap from the host's RAM and knows nothing of MemoryMax: on a large host
 *   it may let garbage grow past the cap, so the kernel kills the process instead of V8 collecting, and on a host of
 *   8 GB or more it lets the old generation grow to 4x the live heap between full collections (the relay peaked at
 *   163-197 MB in bench:chain on a 24 GB machine, against 127-129 MB with a cap: docs/benchmarks.md).
 * - V8's background threads: NODE_V8_POOL_SIZE.
 */
export function nodeFlags(memoryMaxMb: number): readonly string[] {
  return [`--max-old-space-size=${Math.floor(memoryMaxMb / 2)}`, `--v8-pool-size=${NODE_V8_POOL_SIZE}`];
}

/** The relay unit's node flags: the benchmarks and the crash test run the relay with them too. */
export const RELAY_NODE_FLAGS = nodeFlags(NODE_UNIT_MEMORY_MAX_MB.relay);

/** ExecStart= of a node unit: node, its flags (nodeFlags), the relay's bundle, then `args`. */
function nodeExecStart(memoryMaxMb: number, args = ""): string {
  return ["/usr/bin/node", ...nodeFlags(memoryMaxMb), `${RELAY_CURRENT}/${RELAY_ENTRY}`, args]
    .filter(Boolean)
    .join(" ");
}

/** Renders [Section] blocks; a bare string is a comment line. Keys may repeat (systemd allows it). */
export function renderUnit(sections: Record<string, UnitSection>): string {
  const out: string[] = [];
  for (const [name, rows] of Object.entries(sections)) {
    if (out.length > 0) out.push("");
    out.push(`[${name}]`);
    for (const row of rows) out.push(typeof row === "string" ? `# ${row}` : `${row[0]}=${row[1]}`);
  }
  return out.join("\n") + "\n";
}

/** Sandboxing shared by both units. */
const COMMON_HARDENING: UnitSection = [
  ["NoNewPrivileges", "yes"],
  ["ProtectSystem", "strict"],
  ["ProtectHome", "yes"],
  ["PrivateTmp", "yes"],
  ["PrivateDevices", "yes"],
  ["ProtectKernelTunables", "yes"],
  ["ProtectKernelModules", "yes"],
  ["ProtectKernelLogs", "yes"],
  ["ProtectControlGroups", "yes"],
  ["ProtectClock", "yes"],
  ["ProtectHostname", "yes"],
  ["ProtectProc", "invisible"],
  ["RestrictNamespaces", "yes"],
  ["RestrictRealtime", "yes"],
  ["RestrictSUIDSGID", "yes"],
  ["LockPersonality", "yes"],
  ["RemoveIPC", "yes"],
  ["CapabilityBoundingSet", ""],
  ["AmbientCapabilities", ""],
  ["SystemCallArchitectures", "native"],
  ["SystemCallFilter", "@system-service"],
  ["SystemCallErrorNumber", "EPERM"],
];

/** The relay's sandbox; the sendmail hand-off must be allowed to run setgid postdrop. */
export function relayHardening(s: HostSettings): UnitSection {
  if (s.relayHandoff !== "sendmail") return COMMON_HARDENING;
  return COMMON_HARDENING.map((row) =>
    typeof row !== "string" && (row[0] === "NoNewPrivileges" || row[0] === "RestrictSUIDSGID")
      ? ([row[0], "no"] as const)
      : row,
  );
}

/** /etc/systemd/system/mail-relay.service */
export function renderRelayUnit(s: HostSettings): string {
  checkHostSettings(s);
  return renderUnit({
    Unit: [
      "Rendered by cloud-init/systemd.ts. The relay: POST /send -> on-disk queue -> Postfix on 127.0.0.1:25.",
      [
        "Description",
        `mail-relay HTTP relay on ` +
          `127.0.0.1:${s.relayPort}${s.smtpIngress ? ` and SMTP ingress on 127.0.0.1:${s.smtpIngress.port}` : ""}`,
      ],
      ["Documentation", "file:///opt/mail-relay/current/relay.js"],
      ["After", "network-online.target postfix.service opendkim.service"],
      ["Wants", "network-online.target"],
    ],
    Service: [
      ["Type", "simple"],
      ["User", RELAY_USER],
      ["Group", RELAY_USER],
      ["WorkingDirectory", RELAY_BASE],
      "Tokens and settings: root:mailrelay 0640, read by systemd, never on the command line.",
      ["EnvironmentFile", RELAY_ENV_FILE],
      ["Environment", "NODE_ENV=production"],
      ["ExecStart", nodeExecStart(NODE_UNIT_MEMORY_MAX_MB.relay)],
      ["Restart", "always"],
      ["RestartSec", "2s"],
      "A bad /etc/mail-relay.env exits EX_CONFIG: no restart loop; `systemctl status` shows the message naming " +
        "every variable.",
      ["RestartPreventExitStatus", String(EXIT_CONFIG)],
      "SIGTERM lets the relay finish the job in hand (hand-off timeout 30 s) and stop taking new ones.",
      ["KillSignal", "SIGTERM"],
      ["TimeoutStopSec", "45s"],
      ["UMask", "0027"],
      ...relayHardening(s),
      ...(s.relayHandoff === "sendmail"
        ? [
            "Sendmail hand-off: postdrop is setgid postdrop and writes the maildrop, so NoNewPrivileges and",
            "RestrictSUIDSGID are off and the maildrop is writable. The default SMTP hand-off keeps them on.",
            ["ReadWritePaths", `${QUEUE_ROOT} /var/spool/postfix/maildrop`] as const,
          ]
        : [
            "The queue is the only writable path. No Postfix paths: the hand-off is SMTP to 127.0.0.1:25.",
            ["ReadWritePaths", QUEUE_ROOT] as const,
          ]),
      "Listens on loopback, talks to Postfix on loopback: no other address family and no other peer.",
      ["RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"],
      ["IPAddressAllow", "localhost"],
      ["IPAddressDeny", "any"],
      "No MemoryDenyWriteExecute: V8's JIT needs writable+executable pages.",
      "V8's old generation is half of this (ExecStart's --max-old-space-size): it collects before the cap.",
      ["MemoryMax", `${NODE_UNIT_MEMORY_MAX_MB.relay}M`],
      ["TasksMax", "64"],
      ["LimitNOFILE", "4096"],
    ],
    Install: [["WantedBy", "multi-user.target"]],
  });
}

/**
 * /etc/systemd/system/mail-relay-webhooks.service: `relay.js webhooks` sends the outbox the relay writes. The only
 * unit of the relay's code that may leave the host (HTTPS to callers' webhook URLs); it writes only the outbox.
 */
export function renderWebhookUnit(): string {
  return renderUnit({
    Unit: [
      "Rendered by cloud-init/systemd.ts. Signed delivery webhooks from QUEUE_ROOT/webhooks/pending to " +
        "callers' https URLs.",
      ["Description", "mail-relay webhook sender"],
      ["After", "network-online.target mail-relay.service"],
      ["Wants", "network-online.target"],
    ],
    Service: [
      ["Type", "simple"],
      ["User", RELAY_USER],
      ["Group", RELAY_USER],
      ["WorkingDirectory", RELAY_BASE],
      ["EnvironmentFile", RELAY_ENV_FILE],
      ["Environment", "NODE_ENV=production"],
      ["ExecStart", nodeExecStart(NODE_UNIT_MEMORY_MAX_MB.webhooks, "webhooks")],
      ["Restart", "always"],
      ["RestartSec", "5s"],
      ["RestartPreventExitStatus", String(EXIT_CONFIG)],
      ["UMask", "0077"],
      ...COMMON_HARDENING,
      "Writes the outbox only: not the relay's queue, not Postfix's log, not the suppression list.",
      ["ReadWritePaths", `${QUEUE_ROOT}/webhooks`],
      ["InaccessiblePaths", "-/var/log/mail-relay -/etc/opendkim/keys -/var/spool/postfix"],
      ["RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"],
      "The sender refuses private, loopback and link-local targets itself; " +
        "the kernel refuses them too (localhost stays for a local DNS stub).",
      ["IPAddressDeny", "link-local multicast 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 100.64.0.0/10 fc00::/7"],
      ["MemoryMax", `${NODE_UNIT_MEMORY_MAX_MB.webhooks}M`],
      ["TasksMax", "32"],
    ],
    Install: [["WantedBy", "multi-user.target"]],
  });
}

/** /etc/systemd/system/cloudflared-mail-relay.service: the tunnel token comes from an EnvironmentFile, never argv. */
export function renderCloudflaredUnit(): string {
  return renderUnit({
    Unit: [
      "Rendered by cloud-init/systemd.ts. Cloudflare Tunnel -> http://127.0.0.1:<relayPort> (locally managed " +
        "ingress); the relay still checks every token.",
      ["Description", "Cloudflare Tunnel for mail-relay"],
      ["After", "network-online.target mail-relay.service"],
      ["Wants", "network-online.target"],
    ],
    Service: [
      ["Type", "notify"],
      ["TimeoutStartSec", "60s"],
      "Its own system user: the host firewall lets exactly this uid reach loopback, and only on the relay's port.",
      ["User", CLOUDFLARED_USER],
      ["Group", CLOUDFLARED_USER],
      "TUNNEL_TOKEN=... (root:root 0600). cloudflared reads TUNNEL_TOKEN itself, so the token never appears in ps.",
      ["EnvironmentFile", CLOUDFLARED_ENV_FILE],
      "The ingress is locally managed: routes (and the Access JWT check) come from this file, " +
        "never from the dashboard.",
      ["ExecStart", `/usr/bin/cloudflared --no-autoupdate --config ${CLOUDFLARED_CONFIG_FILE} tunnel run`],
      ["Restart", "always"],
      ["RestartSec", "5s"],
      ...COMMON_HARDENING,
      "Netlink: cloudflared enumerates interfaces for its edge connections.",
      ["RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX AF_NETLINK"],
      "Go has no JIT, so unlike node it can run without writable+executable memory.",
      ["MemoryDenyWriteExecute", "yes"],
      ["MemoryMax", "256M"],
      ["TasksMax", "128"],
    ],
    Install: [["WantedBy", "multi-user.target"]],
  });
}

/**
 * /etc/systemd/system/mail-relay-tls-policy.service: `relay.js tls-policy`, the DANE-first TLS policy socketmap that
 * Postfix asks first (smtp_tls_policy_maps). It runs the current relay release, so it is installed and rolled back
 * with it; a user of its own that exists only while it runs (DynamicUser), no writable path, loopback only.
 */
export function renderTlsPolicyUnit(): string {
  return renderUnit({
    Unit: [
      "Rendered by cloud-init/systemd.ts. Postfix's first TLS policy map: dane-only for domains whose every MX has " +
        "DNSSEC-validated TLSA records.",
      [
        "Description",
        `mail-relay DANE-first TLS policy socketmap on ${TLS_POLICY_LISTEN.host}:${TLS_POLICY_LISTEN.port}`,
      ],
      ["After", `unbound.service ${MTA_STS_UNIT_NAME}`],
      ["Wants", `unbound.service ${MTA_STS_UNIT_NAME}`],
      ["Before", "postfix.service"],
    ],
    Service: [
      ["Type", "simple"],
      "No secret and no state: a throwaway user of its own, never the relay's (which may read tokens and the queue).",
      ["DynamicUser", "yes"],
      ["Environment", `${TLS_POLICY_ENV.listen}=${TLS_POLICY_LISTEN.host}:${TLS_POLICY_LISTEN.port}`],
      ["Environment", `${TLS_POLICY_ENV.resolver}=127.0.0.1:53`],
      ["Environment", `${TLS_POLICY_ENV.mtaSts}=${MTA_STS_LISTEN.host}:${MTA_STS_LISTEN.port}`],
      ["Environment", "NODE_ENV=production"],
      ["ExecStart", nodeExecStart(NODE_UNIT_MEMORY_MAX_MB.tlsPolicy, TLS_POLICY_SUBCOMMAND)],
      "Down, it makes Postfix defer every direct delivery (a policy lookup error): come back at once.",
      ["Restart", "always"],
      ["RestartSec", "2s"],
      ["RestartPreventExitStatus", String(EXIT_CONFIG)],
      ["UMask", "0077"],
      ...COMMON_HARDENING,
      "Nothing to write, and no view of the queue, the keys or the logs.",
      ["InaccessiblePaths", `-${QUEUE_ROOT} -/var/log/mail-relay -/etc/opendkim -/var/spool/postfix -/etc/mail-relay`],
      "It talks to unbound and the MTA-STS resolver on loopback, and answers Postfix there: nothing else.",
      ["RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"],
      ["IPAddressAllow", "localhost"],
      ["IPAddressDeny", "any"],
      ["MemoryMax", `${NODE_UNIT_MEMORY_MAX_MB.tlsPolicy}M`],
      ["TasksMax", "32"],
    ],
    Install: [["WantedBy", "multi-user.target"]],
  });
}

/**
 * A drop-in for Debian's postfix-mta-sts-resolver.service (already its own user, _mta-sts, and sandboxed): restart on
 * any exit, and start before Postfix so the first delivery finds its policy server.
 */
export function renderMtaStsDropin(): string {
  return renderUnit({
    Unit: [
      "Rendered by cloud-init/systemd.ts (mail-relay). Debian's unit runs as _mta-sts with a read-only system.",
      ["After", "unbound.service"],
      ["Wants", "unbound.service"],
      ["Before", "postfix.service"],
    ],
    Service: [
      "A policy server that is down makes Postfix defer every delivery (no policy = temporary failure): come back.",
      ["Restart", "always"],
      ["RestartSec", "2s"],
      ["ProtectProc", "invisible"],
      ["ProtectKernelLogs", "yes"],
      ["ProtectClock", "yes"],
      ["ProtectHostname", "yes"],
    ],
  });
}

/**
 * /etc/systemd/system/opendkim-ed25519.service: the second OpenDKIM, which signs with the Ed25519 key (Debian's
 * opendkim.service keeps signing with RSA). Debian's OpenDKIM signs with one algorithm per instance.
 */
export function renderOpendkimEd25519Unit(): string {
  const runDir = OPENDKIM_ED25519_PID_FILE.split("/")[2];
  return renderUnit({
    Unit: [
      "Rendered by cloud-init/systemd.ts. The Ed25519 DKIM signature (RFC 8463), beside opendkim.service's RSA one.",
      ["Description", "OpenDKIM Milter (Ed25519 signatures for mail-relay)"],
      ["After", "network-online.target nss-lookup.target"],
      ["Wants", "network-online.target"],
      ["Before", "postfix.service"],
    ],
    Service: [
      ["Type", "forking"],
      "Started as opendkim (its key is opendkim 0600); the socket directory is opendkim:postfix 2750.",
      ["User", "opendkim"],
      ["Group", "opendkim"],
      ["RuntimeDirectory", runDir],
      ["PIDFile", OPENDKIM_ED25519_PID_FILE],
      ["ExecStart", `/usr/sbin/opendkim -x ${OPENDKIM_ED25519_CONF}`],
      ["ExecReload", "/bin/kill -USR1 $MAINPID"],
      ["Restart", "on-failure"],
      ["NoNewPrivileges", "yes"],
      ["ProtectSystem", "strict"],
      ["ProtectHome", "yes"],
      ["PrivateTmp", "yes"],
      ["ReadWritePaths", OPENDKIM_SOCKET_DIR],
    ],
    Install: [["WantedBy", "multi-user.target"]],
  });
}
