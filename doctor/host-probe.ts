/**
 * What the doctor reads from each node over SSH, in one session: the script below prints sections; `parseProbe`
 * turns them into facts. It only reads (and opens one TCP connection out); it never changes anything.
 * The connection pins the node's host key from the stack's outputs, as every deploy step does (infra/deploy.ts).
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { dkimKeyPath } from "../cloud-init/paths";

export interface ProbeTarget {
  /** The DKIM key file for the active selector (cloud-init/paths.ts). */
  readonly selector: string;
  readonly domain: string;
  /** Where outbound port 25 is tried (a well-known MX; `--smtp-probe`). */
  readonly smtpHost: string;
  readonly smtpPort: number;
  /** Seconds to wait for the remote banner. */
  readonly smtpTimeout: number;
}

const SAFE = /^[A-Za-z0-9._:-]+$/;

/**
 * The script: sections start with `@@name`. The outbound probe runs as Postfix's user, the only one the host's
 * ruleset lets send to remote SMTP ports. With a smarthost (relayhost set) it logs in there instead: STARTTLS with
 * the system CAs, then AUTH PLAIN with the pushed sasl_passwd (read by root, piped, never in argv).
 */
export function probeScript(): string {
  /* eslint-disable max-len */
  return `set -u
sel="$1"; dom="$2"; host="$3"; port="$4"; wait="$5"
section() { printf '\\n@@%s\\n' "$1"; }
section os; . /etc/os-release; echo "$VERSION_ID"
section units
for u in postfix@-.service postfix.service opendkim.service mail-relay.service cloudflared-mail-relay.service; do
  printf '%s %s %s\\n' "$u" "$(systemctl is-active "$u" 2>/dev/null)" "$(systemctl is-enabled "$u" 2>/dev/null || echo -)"
done
section helo; postconf -h smtp_helo_name myhostname relayhost 2>&1
section dkim; key="${dkimKeyPath("$dom", "$sel")}"
if [ -r "$key" ]; then openssl pkey -in "$key" -pubout -outform DER 2>&1 | base64 -w0; echo; else echo "missing $key"; fi
section queue; postqueue -j 2>&1 | head -c 2000000
section disk; df -P -B1 /var/spool/postfix | tail -1
section clock; timeout 5 timedatectl show -p NTPSynchronized -p NTP -p TimeUSec 2>&1; echo "now=$(date +%s)"
relay=$(postconf -h relayhost 2>/dev/null)
section smtp
if [ -z "$relay" ]; then
  echo "mode=direct target=$host:$port"
  setpriv --reuid=postfix --regid=postfix --clear-groups timeout "$((wait + 1))" bash -c \\
    'exec 3<>"/dev/tcp/$0/$1" || exit 2; IFS= read -r -t "$2" line <&3 || exit 3; printf "%s\\n" "$line"; printf "QUIT\\r\\n" >&3' \\
    "$host" "$port" "$wait" 2>&1
  echo "rc=$?"
else
  echo "mode=smarthost target=$relay"
  creds=$(sed -n 's/^[^ \\t]*[ \\t]\\+//p' /etc/postfix/sasl_passwd 2>/dev/null | head -1)
  sh_host=$(printf '%s' "$relay" | sed 's/^\\[//; s/\\].*//'); sh_port=$(printf '%s' "$relay" | sed -n 's/.*\\]:\\([0-9]*\\)$/\\1/p')
  auth=$(printf '\\0%s\\0%s' "\${creds%%:*}" "\${creds#*:}" | base64 -w0)
  { sleep 1; printf 'EHLO doctor\\r\\n'; sleep 1; printf 'AUTH PLAIN %s\\r\\n' "$auth"; sleep 2; printf 'QUIT\\r\\n'; } | \\
    setpriv --reuid=postfix --regid=postfix --clear-groups timeout "$((wait + 6))" openssl s_client -quiet \\
    -starttls smtp -verify_return_error -CAfile /etc/ssl/certs/ca-certificates.crt \\
    -connect "$sh_host:\${sh_port:-587}" -servername "$sh_host" 2>&1 | grep -E '^(2|4|5)[0-9][0-9][ -]|verify|error' | tail -5
  echo "rc=$?"
fi
`;
  /* eslint-enable max-len */
}

export interface SshOptions {
  readonly identity?: string;
  readonly user: string;
  readonly timeoutSeconds: number;
}

/** Runs the probe on one node over SSH with its pinned host key; returns stdout or throws with ssh's reason. */
export async function runProbe(ip: string, hostKey: string, t: ProbeTarget, o: SshOptions): Promise<string> {
  for (const v of [t.selector, t.domain, t.smtpHost, String(t.smtpPort), String(t.smtpTimeout)])
    if (!SAFE.test(v)) throw new Error(`refusing to pass ${JSON.stringify(v)} to the host's shell`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mail-relay-doctor-"));
  try {
    const known = path.join(dir, "known_hosts");
    fs.writeFileSync(known, `${ip} ${hostKey.trim()}\n`);
    const args = [
      ...(o.identity ? ["-i", o.identity, "-o", "IdentitiesOnly=yes"] : []),
      "-o",
      "BatchMode=yes",
      "-o",
      `ConnectTimeout=${o.timeoutSeconds}`,
      "-o",
      `UserKnownHostsFile=${known}`,
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      "LogLevel=ERROR",
      `${o.user}@${ip}`,
      `bash -s -- ${t.selector} ${t.domain} ${t.smtpHost} ${t.smtpPort} ${t.smtpTimeout}`,
    ];
    const r = await new Promise<{ code: number; out: string; err: string }>((resolve) => {
      const child = spawn("ssh", args, { stdio: ["pipe", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stdout.on("data", (b: Buffer) => (out += b.toString()));
      child.stderr.on("data", (b: Buffer) => (err += b.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), (o.timeoutSeconds + t.smtpTimeout + 30) * 1000);
      child.on("error", (e) => resolve({ code: 127, out, err: String(e) }));
      child.on("close", (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? 1, out, err });
      });
      child.stdin.end(probeScript());
    });
    if (r.code === 255 || !r.out.includes("@@os"))
      throw new Error(`ssh ${o.user}@${ip} failed (exit ${r.code}): ${r.err.trim().slice(-400) || "no output"}`);
    return r.out;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The probe's output split by section. */
export function sections(out: string): Map<string, string> {
  const m = new Map<string, string>();
  let name = "";
  for (const line of out.split("\n")) {
    const s = /^@@(\w+)$/.exec(line);
    if (s) {
      name = s[1];
      m.set(name, "");
    } else if (name) m.set(name, `${m.get(name)}${line}\n`);
  }
  for (const [k, v] of m) m.set(k, v.trim());
  return m;
}
