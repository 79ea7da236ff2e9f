// Remote deploy steps: each function returns a bash script that @pulumi/command's remote.Command runs as root
// over SSH. File contents and the relay bundle arrive on STDIN, never in argv (argv is visible in ps).
//
// Tests run these scripts for real against a temp dir: MAIL_RELAY_ROOT prefixes every host path (empty on the
// host), and systemctl/curl/journalctl/chown are looked up on PATH so tests can put stubs first.
import { postfixLogSetupLines } from "./postfix-log";
import {
  CLOUDFLARED_USER,
  CLOUDFLARED_UNIT_NAME,
  MTA_STS_UNIT_NAME,
  NFTABLES_CONF,
  OPENDKIM_ED25519_CONF,
  OPENDKIM_ED25519_SOCKET,
  OPENDKIM_ED25519_UNIT_NAME,
  WEBHOOK_UNIT_NAME,
  OPENDKIM_SOCKET,
  QUEUE_ROOT,
  RELAY_UPLOAD_DIR,
  SSH_HOST_KEY,
  SSH_HOST_KEY_DROPIN,
  RELAY_BASE,
  RELAY_ENTRY,
  RELAY_RELEASES,
  RELAY_RELEASES_KEPT,
  RELAY_UNIT_NAME,
  SASL_PASSWD_FILE,
  TLS_POLICY_UNIT_NAME,
} from "./paths";
import { checkHostSettings } from "./postfix";
import { releaseProfile } from "./release";
import type { HostFile, HostSettings } from "./types";
import { assertPort, assertSafePath, shellQuote } from "./validate";

const SHEBANG = "#!/usr/bin/env bash";
const STRICT = "set -euo pipefail";
/** Only in the scripts that touch host paths (the cloudflared steps don't: there it would be an unused variable). */
const ROOT = 'root="${MAIL_RELAY_ROOT:-}"';

/** Bash: `count DIR...` prints how many files are under the directories that exist (a missing one counts 0). */
const COUNT_FILES =
  'count() { local n=0 d; for d in "$@"; do if [ -d "$d" ]; then n=$((n + $(find "$d" -type f | wc -l))); fi; ' +
  'done; echo "$n"; }';

function script(purpose: string, body: readonly string[]): string {
  const usesRoot = body.some((line) => line.includes("$root"));
  const prelude = usesRoot ? [STRICT, ROOT] : [STRICT];
  return [SHEBANG, `# mail-relay deploy step: ${purpose}`, ...prelude, ...body].join("\n") + "\n";
}

/**
 * Clears `unit`'s failed state and start limit before a deploy step starts it. systemd refuses to start a unit over
 * its start limit (StartLimitBurst, 5 starts in 10 s by default) until `reset-failed` clears it, and a release or
 * config that crash-looped (Restart= every 2-5 s) gets there: a retried or rolled-back deploy must not fail on the
 * unit's history. On a unit that is not loaded it is a no-op.
 */
function resetFailed(unit: string): string {
  return `systemctl reset-failed ${unit} 2>/dev/null || true`;
}

/** A deploy step's restart of `unit`, after resetFailed(unit). */
function restartUnit(unit: string): string[] {
  return [resetFailed(unit), `systemctl restart ${unit}`];
}

/** Release names become directory names and shell words: a content hash or a semver, nothing else. */
export function assertReleaseVersion(version: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(version)) {
    throw new Error(
      `relay release version must match [A-Za-z0-9][A-Za-z0-9._-]* (max 128), got ${JSON.stringify(version)}`,
    );
  }
}

const WAIT_FOR_CLOUD_INIT = [
  "rc=0",
  "out=$(cloud-init status --wait --long 2>&1) || rc=$?",
  'echo "$out"',
  // 22.4 exits 1 on error; 23.4+ exits 2 for "done with recoverable errors" (deprecated keys): not fatal.
  'if [ "$rc" -eq 2 ]; then echo "cloud-init finished with recoverable warnings (see above)" >&2; rc=0; fi',
  'if [ "$rc" -ne 0 ]; then echo "cloud-init failed (exit $rc); see /var/log/cloud-init-output.log" >&2; ' +
    "tail -n 40 /var/log/cloud-init-output.log >&2 || true; exit 1; fi",
];

/** Waits for cloud-init to finish (fails with its status when it reported an error), then makes the upload dir. */
export function renderWaitForCloudInit(): string {
  return script("wait for cloud-init", [
    ...WAIT_FOR_CLOUD_INIT,
    "# The relay bundle is staged here, root-only, until it is installed as a release.",
    `install -d -o root -g root -m 0700 "$root${RELAY_UPLOAD_DIR}"`,
  ]);
}

/**
 * The bootstrap step, the only one that connects without a pinned host key (trust on first use): stdin = the
 * program-generated ed25519 host key (OpenSSH format). It waits for cloud-init (whose ssh module made the image's
 * keys), installs the key as the only one sshd offers, removes the others, checks the config and restarts sshd.
 * Every later step pins the key's public half. No other secret ever travels in this step.
 */
export function renderInstallHostKey(): string {
  return script("install the program's SSH host key (trust on first use)", [
    ...WAIT_FOR_CLOUD_INIT,
    `key="$root${SSH_HOST_KEY}"`,
    'dir=$(dirname -- "$key")',
    "umask 077",
    'mkdir -p -- "$dir"',
    'tmp=$(mktemp -- "$dir/.host-key.XXXXXX")',
    'trap \'rm -f -- "$tmp" "$tmp.pub"\' EXIT',
    'cat > "$tmp"',
    'if ! ssh-keygen -y -f "$tmp" > "$tmp.pub" 2>/dev/null; then echo "refusing: ' +
      'stdin is not an unencrypted OpenSSH private key" >&2; exit 1; fi',
    'case "$(cut -d" " -f1 < "$tmp.pub")" in ssh-ed25519) ;; *) echo "refusing: ' +
      'the host key must be ssh-ed25519" >&2; exit 1 ;; esac',
    'chmod 0600 "$tmp"; chmod 0644 "$tmp.pub"',
    "# The image's other host keys go: sshd offers only this one, whatever algorithm a client prefers.",
    'for k in "$dir"/ssh_host_*_key "$dir"/ssh_host_*_key.pub; do',
    '  if [ -e "$k" ] && [ "$k" != "$key" ] && [ "$k" != "$key.pub" ]; then rm -f -- "$k"; fi',
    "done",
    'mv -f -- "$tmp.pub" "$key.pub"',
    'mv -f -- "$tmp" "$key"',
    "trap - EXIT",
    "umask 022",
    `mkdir -p -- "$root$(dirname -- ${SSH_HOST_KEY_DROPIN})"`,
    `printf '%s\\n' '# Rendered by cloud-init/deploy-scripts.ts (mail-relay): the program-generated host key, ` +
      `the only one offered.' 'HostKey ${SSH_HOST_KEY}' > "$root${SSH_HOST_KEY_DROPIN}"`,
    'if [ -z "$root" ]; then sshd -t; fi',
    "# restart: existing sessions (this one) survive, new ones get the new key.",
    "systemctl restart ssh.service",
    'echo "SSH host key installed: $(ssh-keygen -l -f "$key.pub")"',
  ]);
}

/**
 * stdin -> the file, atomically: temp file in the same directory, chown/chmod, fsync, rename. Empty stdin is refused.
 */
export function renderInstallFile(f: Omit<HostFile, "content">): string {
  assertSafePath("path", f.path);
  if (!/^0[0-7]{3}$/.test(f.mode))
    throw new Error(`mode must be an octal string like 0640, got ${JSON.stringify(f.mode)}`);
  for (const [field, v] of [
    ["owner", f.owner],
    ["group", f.group],
  ] as const) {
    if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(v))
      throw new Error(`${field} must be a user/group name, got ${JSON.stringify(v)}`);
  }
  return script(`install ${f.path} (${f.mode} ${f.owner}:${f.group})`, [
    `dest="$root"${shellQuote(f.path)}`,
    'dir=$(dirname -- "$dest")',
    "umask 022",
    'mkdir -p -- "$dir"',
    // mktemp creates the file 0600: a secret is never readable by others, even half-written.
    'tmp=$(mktemp -- "$dir/.$(basename -- "$dest").XXXXXX")',
    "trap 'rm -f -- \"$tmp\"' EXIT",
    'cat > "$tmp"',
    'if [ ! -s "$tmp" ]; then echo "refusing to install an empty $dest (nothing arrived on stdin)" >&2; exit 1; fi',
    `chown -- ${shellQuote(`${f.owner}:${f.group}`)} "$tmp"`,
    `chmod -- ${shellQuote(f.mode)} "$tmp"`,
    'sync -- "$tmp"',
    'mv -f -- "$tmp" "$dest"',
    "trap - EXIT",
    'sync -- "$dir"',
    `echo "installed $dest (${f.mode} ${f.owner}:${f.group})"`,
  ]);
}

/**
 * Loads the pushed host ruleset. Its output rules name users, which nft resolves while loading, so the cloudflared
 * system user is created first (Postfix's comes with its package, the relay's with user-data). `nft -c` first: a
 * ruleset that does not parse never replaces the running one.
 */
export function renderApplyHostFirewall(): string {
  return script("load the host firewall", [
    `if ! id -u ${CLOUDFLARED_USER} >/dev/null 2>&1; then useradd --system --no-create-home --home-dir ` +
      `/nonexistent --shell /usr/sbin/nologin ${CLOUDFLARED_USER}; fi`,
    `if ! out=$(nft -c -f "$root${NFTABLES_CONF}" 2>&1); then echo "nft -c refused ${NFTABLES_CONF}:" >&2; ` +
      `echo "$out" >&2; exit 1; fi`,
    "# At boot nftables.service loads the same file.",
    "systemctl enable --quiet nftables.service",
    "# nft -f replaces the ruleset in one transaction (the file starts with flush ruleset): " +
      "never a moment without one,",
    "# unlike a service restart (stop = flush). This step's own SSH session survives: established is accepted first.",
    `nft -f "$root${NFTABLES_CONF}"`,
    'echo "host firewall loaded"',
  ]);
}

/** Fails the step with the unit's journal when it is not running. */
function mustBeActive(unit: string): string[] {
  return [
    `if ! systemctl is-active --quiet ${unit}; then echo "${unit} is not running" >&2; ` +
      `journalctl -u ${unit} -n 30 --no-pager >&2 || true; exit 1; fi`,
  ];
}

/**
 * postmap sasl_passwd (smarthost) or remove it (direct), check every config, restart the validating resolver, the
 * MTA-STS policy server, both OpenDKIM instances (RSA, Ed25519), then Postfix.
 */
export function renderApplyMailConfig(s: HostSettings): string {
  checkHostSettings(s);
  const sasl = s.smarthost
    ? [
        "# smarthost: compile the password table; the .db is as secret as its source.",
        "umask 077",
        `postmap "hash:$root${SASL_PASSWD_FILE}"`,
        `chown root:root "$root${SASL_PASSWD_FILE}.db"`,
        `chmod 0600 "$root${SASL_PASSWD_FILE}.db"`,
        "umask 022",
      ]
    : [
        "# direct delivery: no smarthost password may linger on disk.",
        `rm -f -- "$root${SASL_PASSWD_FILE}" "$root${SASL_PASSWD_FILE}.db"`,
      ];
  return script("apply Postfix and OpenDKIM configuration", [
    ...sasl,
    'if ! out=$(postfix check 2>&1); then echo "postfix check failed:" >&2; echo "$out" >&2; exit 1; fi',
    'if [ -n "$out" ]; then echo "postfix check warnings:"; echo "$out"; fi',
    'if ! out=$(opendkim -n 2>&1); then echo "opendkim configuration check failed:" >&2; echo "$out" >&2; exit 1; fi',
    `if ! out=$(opendkim -n -x ${OPENDKIM_ED25519_CONF} 2>&1); then echo "opendkim (Ed25519) configuration ` +
      `check failed:" >&2; echo "$out" >&2; exit 1; fi`,
    'if ! out=$(unbound-checkconf 2>&1); then echo "unbound-checkconf failed:" >&2; echo "$out" >&2; exit 1; fi',
    "systemctl daemon-reload",
    "# The validating resolver first: resolv.conf points at it, and Postfix's DANE lookups need it.",
    "systemctl enable --quiet unbound.service",
    ...restartUnit("unbound.service"),
    ...mustBeActive("unbound.service"),
    "# The MTA-STS policy server before Postfix: without it every direct delivery waits (policy lookup error).",
    `systemctl enable --quiet ${MTA_STS_UNIT_NAME}`,
    ...restartUnit(MTA_STS_UNIT_NAME),
    ...mustBeActive(MTA_STS_UNIT_NAME),
    `systemctl enable --quiet opendkim.service ${OPENDKIM_ED25519_UNIT_NAME} postfix.service`,
    "# OpenDKIM first: with milter_default_action = tempfail Postfix defers (never sends unsigned) while it is down.",
    ...[
      ["opendkim.service", OPENDKIM_SOCKET],
      [OPENDKIM_ED25519_UNIT_NAME, OPENDKIM_ED25519_SOCKET],
    ].flatMap(([unit, sock]) => [
      ...restartUnit(unit),
      `for _ in $(seq 1 20); do [ -S "$root${sock}" ] && break; sleep 0.5; done`,
      `if [ ! -S "$root${sock}" ]; then echo "OpenDKIM (${unit}) did not create ${sock}" >&2; ` +
        `journalctl -u ${unit} -n 30 --no-pager >&2 || true; exit 1; fi`,
    ]),
    ...postfixLogSetupLines(),
    "# restart, not reload: inet_protocols/inet_interfaces and new group memberships only apply to a fresh master.",
    ...restartUnit("postfix.service"),
    `if ! systemctl is-active --quiet postfix.service; then echo "postfix is not running" >&2; ` +
      `journalctl -u ${releaseProfile(s.release).postfix.masterUnit} -n 30 --no-pager >&2 || true; exit 1; fi`,
    'echo "mail configuration applied"',
  ]);
}

/** stdin = the relay bundle -> /opt/mail-relay/releases/<version>/relay.js, atomically; syntax-checked with node. */
export function renderInstallRelayRelease(version: string): string {
  assertReleaseVersion(version);
  return script(`install relay release ${version}`, [
    `release="$root${RELAY_RELEASES}/"${shellQuote(version)}`,
    "umask 022",
    'mkdir -p -- "$release"',
    // .js suffix: node --check decides the module type by extension.
    `tmp=$(mktemp --suffix=.js -- "$release/.relay.XXXXXX")`,
    "trap 'rm -f -- \"$tmp\"' EXIT",
    'cat > "$tmp"',
    'if [ ! -s "$tmp" ]; then echo "refusing to install an empty relay bundle (nothing arrived on stdin)" >&2; ' +
      "exit 1; fi",
    'if ! out=$(node --check "$tmp" 2>&1); then echo "relay bundle does not parse:" >&2; echo "$out" >&2; exit 1; fi',
    'chmod 0644 "$tmp"',
    'sync -- "$tmp"',
    `mv -f -- "$tmp" "$release/${RELAY_ENTRY}"`,
    "trap - EXIT",
    'sync -- "$release"',
    `echo "installed relay release ${version} ($(wc -c < "$release/${RELAY_ENTRY}") bytes)"`,
  ]);
}

/** Where the relay bundle is staged before it is installed as a release: a root-only 0700 dir, never /var/tmp. */
export function relayUploadPath(version: string): string {
  assertReleaseVersion(version);
  return `${RELAY_UPLOAD_DIR}/mail-relay-${version}.js`;
}

/**
 * The relay-activate step: installs the staged upload as a release if the release does not exist yet, deletes the
 * upload once the release exists (kept until then: CopyToRemote does not upload an unchanged bundle again), then
 * activates the release behind its health check.
 */
export function renderInstallAndActivateRelay(
  version: string,
  relayPort: number,
  opts: ActivateOptions = { tlsPolicy: false },
): string {
  return script(`install (if needed) and activate relay release ${version}`, [
    `upload="$root"${shellQuote(relayUploadPath(version))}`,
    `release="$root${RELAY_RELEASES}/"${shellQuote(version)}/${RELAY_ENTRY}`,
    'if [ ! -f "$release" ]; then',
    '  if [ ! -f "$upload" ]; then echo "neither the release nor its upload $upload exists: ' +
      'run pulumi up with --replace on the relay-upload resource of this node" >&2; exit 1; fi',
    `  bash -c ${shellQuote(renderInstallRelayRelease(version))} < "$upload"`,
    "fi",
    "# The release exists: the staged copy has done its job.",
    'rm -f -- "$upload"',
    `bash -c ${shellQuote(renderActivateRelayRelease(version, relayPort, opts))}`,
  ]);
}

/**
 * Points /opt/mail-relay/current at the release, restarts the relay and polls /health. On failure: prints the
 * journal tail, switches current back to the previous release, restarts it and exits non-zero. On success it keeps
 * the newest releases and prunes the rest (never the current or previous one).
 */
export interface ActivateOptions {
  /**
   * The release also runs the DANE-first TLS policy socketmap (mail-relay-tls-policy.service: direct delivery with
   * DANE and MTA-STS enforced). It must be up for the release to count as healthy: Postfix asks it first, and defers
   * every direct delivery while it is down. false: the unit is stopped and disabled if a former deploy left it.
   */
  readonly tlsPolicy: boolean;
}

export function renderActivateRelayRelease(
  version: string,
  relayPort: number,
  opts: ActivateOptions = { tlsPolicy: false },
): string {
  assertReleaseVersion(version);
  assertPort("relayPort", relayPort);
  return script(`activate relay release ${version}`, [
    `base="$root${RELAY_BASE}"`,
    `releases="$root${RELAY_RELEASES}"`,
    `version=${shellQuote(version)}`,
    'target="releases/$version"',
    `health_url="http://127.0.0.1:${relayPort}/health"`,
    // No allowance for a big queue: the relay answers /health before it has read its queue
    // (relay/storage/queue.ts loadIndex).
    'health_timeout="${MAIL_RELAY_HEALTH_TIMEOUT:-30}"',
    `keep=${RELAY_RELEASES_KEPT}`,
    `if [ ! -s "$releases/$version/${RELAY_ENTRY}" ]; then echo "release $version is not installed" >&2; exit 1; fi`,
    'previous=""',
    'if [ -L "$base/current" ]; then previous=$(readlink -- "$base/current"); fi',
    "",
    "# rename(2) over the old symlink: current always points at a complete release.",
    "switch_to() {",
    '  ln -sfn -- "$1" "$base/.current.tmp"',
    '  mv -Tf -- "$base/.current.tmp" "$base/current"',
    "}",
    "healthy() {",
    "  local deadline=$((SECONDS + health_timeout))",
    '  while [ "$SECONDS" -lt "$deadline" ]; do',
    '    if curl -fsS --max-time 2 -o /dev/null "$health_url" 2>/dev/null; then return 0; fi',
    "    sleep 1",
    "  done",
    "  return 1",
    "}",
    opts.tlsPolicy
      ? [
          "# Postfix asks the DANE-first socketmap first: the release is healthy only if it runs too.",
          "tls_policy_up() {",
          `  ${resetFailed(TLS_POLICY_UNIT_NAME)}`,
          `  systemctl enable --quiet ${TLS_POLICY_UNIT_NAME} && systemctl restart ${TLS_POLICY_UNIT_NAME} || return 1`,
          '  sleep "${MAIL_RELAY_TLS_POLICY_SETTLE:-2}"',
          `  if systemctl is-active --quiet ${TLS_POLICY_UNIT_NAME}; then return 0; fi`,
          `  echo "${TLS_POLICY_UNIT_NAME} is not running" >&2`,
          `  journalctl -u ${TLS_POLICY_UNIT_NAME} -n 30 --no-pager >&2 || true`,
          "  return 1",
          "}",
        ].join("\n")
      : [
          "# Smarthost or opted-out direct delivery: no DANE-first socketmap (a former deploy's unit is stopped).",
          "tls_policy_up() {",
          `  if systemctl cat ${TLS_POLICY_UNIT_NAME} >/dev/null 2>&1; then systemctl disable --now --quiet ` +
            `${TLS_POLICY_UNIT_NAME} || true; fi`,
          "  return 0",
          "}",
        ].join("\n"),
    "prune() {",
    "  local n=0 name keep_current keep_previous",
    '  keep_current=$(basename -- "$(readlink -- "$base/current")")',
    '  keep_previous=$(basename -- "${previous:-none}")',
    // One name a line, newest first: a name is never split on spaces or expanded as a glob (release names can't hold
    // either, but a directory an operator left there can).
    "  while IFS= read -r name; do",
    "    n=$((n + 1))",
    '    if [ "$n" -gt "$keep" ] && [ "$name" != "$keep_current" ] && [ "$name" != "$keep_previous" ]; then',
    '      rm -rf -- "${releases:?}/$name"',
    '      echo "pruned old release $name"',
    "    fi",
    '  done < <(ls -1t -- "$releases")',
    "}",
    "",
    'switch_to "$target"',
    "# Most recently activated first, for pruning.",
    'touch -- "$releases/$version"',
    "systemctl daemon-reload",
    `systemctl enable --quiet ${RELAY_UNIT_NAME}`,
    ...restartUnit(RELAY_UNIT_NAME),
    "if healthy && tls_policy_up; then",
    "  prune",
    "  # The webhook sender runs the same release; a failure here leaves webhooks in the outbox, not mail unsent.",
    `  ${resetFailed(WEBHOOK_UNIT_NAME)}`,
    `  systemctl enable --quiet ${WEBHOOK_UNIT_NAME} && systemctl restart ${WEBHOOK_UNIT_NAME} || ` +
      `echo "warning: ${WEBHOOK_UNIT_NAME} did not start; webhooks wait in the outbox" >&2`,
    '  echo "relay release $version is active and healthy ($health_url)"',
    "  exit 0",
    "fi",
    "",
    'echo "relay release $version failed its health check ($health_url, ${health_timeout}s)" >&2',
    `echo "--- journalctl -u ${RELAY_UNIT_NAME} -n 50 ---" >&2`,
    `journalctl -u ${RELAY_UNIT_NAME} -n 50 --no-pager >&2 || true`,
    'case "$previous" in /*) previous_dir="$root$previous" ;; *) previous_dir="$base/$previous" ;; esac',
    'if [ -n "$previous" ] && [ "$previous" != "$target" ] && [ -s "$previous_dir/' + RELAY_ENTRY + '" ]; then',
    "  # The failing release is stopped before current moves: a restart issued into its restart loop can merge with",
    "  # its own failing start (the job then fails with that release's exit code) or meet the start limit, and leave",
    "  # the previous release stopped (the rehearsal's broken-release fault saw both).",
    `  systemctl stop ${RELAY_UNIT_NAME} || true`,
    '  switch_to "$previous"',
    `  ${resetFailed(RELAY_UNIT_NAME)}`,
    `  systemctl start ${RELAY_UNIT_NAME} || true`,
    "  tls_policy_up || true",
    "  if healthy; then",
    '    echo "rolled back: current -> $previous (healthy)" >&2',
    "  else",
    '    echo "rolled back: current -> $previous, but it is not healthy either" >&2',
    "  fi",
    "else",
    '  echo "no previous release to roll back to" >&2',
    "fi",
    "exit 1",
  ]);
}

/**
 * Installs cloudflared from Cloudflare's apt repository if it is missing, then (re)starts the tunnel unit.
 * Written for a real Debian 12 or 13 host; not run by the tests (pkg.cloudflare.com is unreachable from CI).
 */
export function renderStartCloudflared(): string {
  return script("start the Cloudflare tunnel", [
    "if ! command -v cloudflared >/dev/null 2>&1; then",
    "  install -d -m 0755 /usr/share/keyrings",
    "  tmp=$(mktemp)",
    '  curl -fsSL --retry 5 --retry-delay 2 https://pkg.cloudflare.com/cloudflare-main.gpg -o "$tmp"',
    '  install -m 0644 "$tmp" /usr/share/keyrings/cloudflare-main.gpg',
    '  rm -f -- "$tmp"',
    "  echo 'deb [signed-by=/usr/share/keyrings/cloudflare-main.gpg] https://pkg.cloudflare.com/cloudflared " +
      "any main' > /etc/apt/sources.list.d/cloudflared.list",
    "  apt-get update -q",
    "  DEBIAN_FRONTEND=noninteractive apt-get install -y -q cloudflared",
    "fi",
    "cloudflared --version",
    "systemctl daemon-reload",
    `systemctl enable --quiet ${CLOUDFLARED_UNIT_NAME}`,
    ...restartUnit(CLOUDFLARED_UNIT_NAME),
    // Type=notify: restart returns once cloudflared has registered a connection, or fails.
    `if ! systemctl is-active --quiet ${CLOUDFLARED_UNIT_NAME}; then journalctl -u ${CLOUDFLARED_UNIT_NAME} -n ` +
      `50 --no-pager >&2 || true; exit 1; fi`,
    'echo "cloudflared tunnel is running"',
  ]);
}

/** Disables and stops a unit if it is installed (SIGTERM from the unit); a missing unit is not an error. */
function disableNow(unit: string, what: string): string[] {
  return [
    `if systemctl cat ${unit} >/dev/null 2>&1; then`,
    `  systemctl disable --now ${unit}`,
    `  echo "${what} stopped"`,
    "else",
    `  echo "${what} unit not present; nothing to stop"`,
    "fi",
  ];
}

/** Teardown step 1: take the public entry away first. */
export function renderStopCloudflared(): string {
  return script("stop the Cloudflare tunnel (teardown)", disableNow(CLOUDFLARED_UNIT_NAME, "cloudflared tunnel"));
}

/** What the relay guard does, at teardown, about mail still queued on the server's disk. */
export interface TeardownOptions {
  /** How long to wait for the relay's pending/processing jobs and Postfix's queue to drain (0..3600 s). */
  readonly drainSeconds: number;
  /** true: go ahead and lose what is still queued (the disk goes with the server). */
  readonly allowQueueLoss: boolean;
}

/** Postfix queue directories whose files are mail not yet delivered (hold: put aside by an operator). */
const POSTFIX_QUEUES = ["maildrop", "incoming", "active", "deferred", "hold"] as const;

/**
 * Teardown step 2 (the tunnel is already stopped, so nothing new arrives): let the relay and Postfix drain their
 * queues for up to drainSeconds, then stop the relay with SIGTERM. Deleting the server deletes its disk, so while
 * mail is still queued (pending/processing/failed jobs, or anything in Postfix's queue) the step refuses, leaves the
 * relay running, and fails the destroy or replacement, unless allowQueueLoss is set.
 */
export function renderStopRelay(t: TeardownOptions = { drainSeconds: 300, allowQueueLoss: false }): string {
  if (!Number.isInteger(t.drainSeconds) || t.drainSeconds < 0 || t.drainSeconds > 3600) {
    throw new Error(`teardown drainSeconds must be a whole number 0..3600, got ${t.drainSeconds}`);
  }
  const postfixDirs = POSTFIX_QUEUES.map((q) => `"$root/var/spool/postfix/${q}"`).join(" ");
  return script("drain the queues, then stop the relay (teardown)", [
    `queue="$root${QUEUE_ROOT}"`,
    `drain_seconds=${t.drainSeconds}`,
    `allow_loss=${t.allowQueueLoss ? 1 : 0}`,
    'poll="${MAIL_RELAY_DRAIN_POLL:-5}"',
    COUNT_FILES,
    `snapshot() { relay_n=$(count "$queue/pending" "$queue/processing"); failed_n=$(count "$queue/failed"); ` +
      `postfix_n=$(count ${postfixDirs}); }`,
    "deadline=$((SECONDS + drain_seconds))",
    "snapshot",
    'while [ $((relay_n + postfix_n)) -gt 0 ] && [ "$SECONDS" -lt "$deadline" ]; do',
    '  echo "draining before teardown: relay queue $relay_n, postfix queue $postfix_n; ' +
      'waiting up to $((deadline - SECONDS)) s more"',
    '  sleep "$poll"',
    "  snapshot",
    "done",
    'echo "queues at teardown: relay pending+processing $relay_n, relay failed $failed_n, postfix $postfix_n"',
    "if [ $((relay_n + failed_n + postfix_n)) -gt 0 ]; then",
    '  if [ "$allow_loss" = 1 ]; then',
    '    echo "WARNING: relay.allowQueueLoss is true: $((relay_n + failed_n + postfix_n)) queued message(s) ' +
      'are lost with the disk of this server" >&2',
    "  else",
    '    echo "refusing to tear down: $((relay_n + failed_n + postfix_n)) message(s) ' +
      'are still queued on this server and would be lost with its disk." >&2',
    `    echo "The relay keeps running. Inspect: node ${RELAY_BASE}/current/${RELAY_ENTRY} queue list (relay), ` +
      `postqueue -p (Postfix)." >&2`,
    '    echo "Then wait and retry, retry or drop the jobs, or accept the loss: ' +
      'pulumi config set --path mail-relay:relay.allowQueueLoss true && pulumi up." >&2',
    "    exit 1",
    "  fi",
    "fi",
    ...disableNow(RELAY_UNIT_NAME, "mail-relay"),
  ]);
}
