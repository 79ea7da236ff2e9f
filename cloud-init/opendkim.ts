// OpenDKIM: sign-only, on a unix socket inside Postfix's queue directory, one active key for the sending domain.
import {
  OPENDKIM_ED25519_KEY_TABLE,
  OPENDKIM_ED25519_PID_FILE,
  OPENDKIM_ED25519_SIGNING_TABLE,
  OPENDKIM_ED25519_SOCKET,
  OPENDKIM_KEY_TABLE,
  OPENDKIM_PID_FILE,
  OPENDKIM_SIGNING_TABLE,
  OPENDKIM_SOCKET,
  OPENDKIM_TRUSTED_HOSTS,
  dkimKeyPath,
} from "./paths";
import { checkHostSettings } from "./postfix";
import type { HostSettings } from "./types";
import { assertLabel } from "./validate";

/** Headers OpenDKIM signs when present (h=). */
export const SIGN_HEADERS = [
  "From",
  "Sender",
  "Reply-To",
  "Subject",
  "Date",
  "Message-ID",
  "To",
  "Cc",
  "MIME-Version",
  "Content-Type",
  "Content-Transfer-Encoding",
  "Content-ID",
  "Content-Description",
  "In-Reply-To",
  "References",
  "List-Id",
  "List-Help",
  "List-Unsubscribe",
  "List-Unsubscribe-Post",
  "List-Subscribe",
  "List-Post",
  "List-Owner",
  "List-Archive",
  "Resent-Date",
  "Resent-From",
  "Resent-Sender",
  "Resent-To",
  "Resent-Cc",
  "Resent-Message-ID",
] as const;

/** Headers that must never be added after signing: each is listed in h= one more time than it occurs. */
export const OVERSIGN_HEADERS = [
  "From",
  "Sender",
  "Reply-To",
  "Subject",
  "Date",
  "Message-ID",
  "To",
  "Cc",
  "MIME-Version",
  "Content-Type",
  "Content-Transfer-Encoding",
  "List-Unsubscribe",
  "List-Unsubscribe-Post",
] as const;

/**
 * The two signatures every message carries (RFC 8463): RSA, which every verifier knows and DMARC relies on, and
 * Ed25519, which verifiers that do not know it ignore. Debian's OpenDKIM 2.11 signs with one algorithm per instance
 * (SignatureAlgorithm is global; a second key of the other type in the same SigningTable makes it sign nothing), so
 * each algorithm has an instance of its own: its conf, tables, socket and unit.
 */
export const DKIM_ALGORITHMS = ["rsa", "ed25519"] as const;
export type DkimAlgorithm = (typeof DKIM_ALGORITHMS)[number];

/** Where each instance's files live; the RSA instance keeps Debian's own paths and unit. */
export const OPENDKIM_INSTANCE: {
  readonly [A in DkimAlgorithm]: {
    readonly signatureAlgorithm: string;
    readonly socket: string;
    readonly pidFile: string;
    readonly keyTable: string;
    readonly signingTable: string;
  };
} = {
  rsa: {
    signatureAlgorithm: "rsa-sha256",
    socket: OPENDKIM_SOCKET,
    pidFile: OPENDKIM_PID_FILE,
    keyTable: OPENDKIM_KEY_TABLE,
    signingTable: OPENDKIM_SIGNING_TABLE,
  },
  ed25519: {
    signatureAlgorithm: "ed25519-sha256",
    socket: OPENDKIM_ED25519_SOCKET,
    pidFile: OPENDKIM_ED25519_PID_FILE,
    keyTable: OPENDKIM_ED25519_KEY_TABLE,
    signingTable: OPENDKIM_ED25519_SIGNING_TABLE,
  },
};

/** The Ed25519 key's selector: the RSA selector's own, so one selector entry in config rotates both keys. */
export function ed25519Selector(rsaSelector: string): string {
  const sel = `${rsaSelector}-ed25519`;
  assertLabel(`dkimSelector ${JSON.stringify(rsaSelector)} (its Ed25519 selector, at most 55 characters)`, sel);
  return sel;
}

/** The selector the instance signs with. */
export function dkimSelectorFor(s: HostSettings, alg: DkimAlgorithm): string {
  switch (alg) {
    case "rsa":
      return s.dkimSelector;
    case "ed25519":
      return ed25519Selector(s.dkimSelector);
    default: {
      const never: never = alg;
      throw new Error(`unknown DKIM algorithm ${String(never)}`);
    }
  }
}

/** The KeyTable/SigningTable key naming the active key, e.g. mail202611._domainkey.example.com. */
export function dkimKeyName(s: HostSettings, alg: DkimAlgorithm = "rsa"): string {
  return `${dkimSelectorFor(s, alg)}._domainkey.${s.domain}`;
}

/** /etc/opendkim.conf (RSA, Debian's own unit) or /etc/opendkim-ed25519.conf (Ed25519, the second instance). */
export function renderOpendkimConf(s: HostSettings, alg: DkimAlgorithm = "rsa"): string {
  checkHostSettings(s);
  const inst = OPENDKIM_INSTANCE[alg];
  const rows: [string, string, string?][] = [
    ["Syslog", "yes"],
    ["SyslogSuccess", "yes"],
    ["UserID", "opendkim", "Drops root right after opening the socket."],
    ["UMask", "007", "Socket is rw for owner and group only; the setgid socket directory gives it group postfix."],
    ["Mode", "s", "Sign only: this host never receives mail, so there is nothing to verify."],
    [
      "Socket",
      `local:${inst.socket}`,
      "Unix socket inside Postfix's queue directory (measured ~215 msg/s vs ~11 msg/s on inet:8891).",
    ],
    ["PidFile", inst.pidFile, "Must match the unit's PIDFile=."],
    ["Canonicalization", "relaxed/simple"],
    ["SignatureAlgorithm", inst.signatureAlgorithm, "One algorithm per instance: it must match the key's type."],
    [
      "SignHeaders",
      SIGN_HEADERS.join(","),
      "Everything a reader or a filter acts on, so none of it can be changed after signing.",
    ],
    [
      "OversignHeaders",
      OVERSIGN_HEADERS.join(","),
      "Signed once more than present: a second copy (or a first Reply-To/Cc/List-Unsubscribe) " +
        "added in transit breaks the signature.",
    ],
    [
      "KeyTable",
      `file:${inst.keyTable}`,
      "Looked up by exact key name, so a plain file (refile: is only needed for the *@domain patterns).",
    ],
    ["SigningTable", `refile:${inst.signingTable}`],
    [
      "InternalHosts",
      `refile:${OPENDKIM_TRUSTED_HOSTS}`,
      "Only loopback clients (the relay, local submissions) get signed.",
    ],
    ["ExternalIgnoreList", `refile:${OPENDKIM_TRUSTED_HOSTS}`],
    ["RequireSafeKeys", "yes", "Refuse a key file others can read."],
  ];
  const lines = [`# OpenDKIM (${alg}) for mail-relay: rendered by cloud-init/opendkim.ts.`];
  for (const [k, v, why] of rows) {
    if (why) lines.push(`# ${why}`);
    lines.push(`${k.padEnd(20)}${v}`);
  }
  return lines.join("\n") + "\n";
}

/** /etc/opendkim/KeyTable(.ed25519): key name -> domain:selector:private key path. */
export function renderOpendkimKeyTable(s: HostSettings, alg: DkimAlgorithm = "rsa"): string {
  checkHostSettings(s);
  const sel = dkimSelectorFor(s, alg);
  return `${dkimKeyName(s, alg)} ${s.domain}:${sel}:${dkimKeyPath(s.domain, sel)}\n`;
}

/** /etc/opendkim/SigningTable(.ed25519): every sender of the domain signs with the active key. */
export function renderOpendkimSigningTable(s: HostSettings, alg: DkimAlgorithm = "rsa"): string {
  checkHostSettings(s);
  return `*@${s.domain} ${dkimKeyName(s, alg)}\n`;
}

/** /etc/opendkim/TrustedHosts: loopback only (the same rule as Postfix's mynetworks). */
export function renderOpendkimTrustedHosts(): string {
  return ["127.0.0.1", "::1", "localhost"].join("\n") + "\n";
}
