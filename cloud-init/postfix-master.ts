// Postfix master.cf: Debian's service table without a single public listener (main.cf: postfix.ts).
import { checkHostSettings } from "./postfix";
import type { HostSettings } from "./types";

/** One master.cf service line: service type private unpriv chroot wakeup maxproc command [args]. */
export interface MasterService {
  readonly service: string;
  readonly type: "inet" | "unix" | "unix-dgram" | "fifo" | "pass";
  readonly private: string;
  readonly unpriv: string;
  readonly chroot: string;
  readonly wakeup: string;
  readonly maxproc: string;
  readonly command: string;
  readonly args?: readonly string[];
}

/**
 * Debian's default services (12 and 13 ship the same set) minus every public listener and every pipe(8) transport we
 * never use. No submission, no smtps, no second smtpd: the only listener is `smtp inet`, kept on loopback by
 * inet_interfaces. chroot is n for all: one view of the filesystem (milter socket, CA file, resolv.conf) and no chroot
 * copy to keep in sync; the only network-facing daemon talks to loopback clients.
 */
export const MASTER_SERVICES: readonly MasterService[] = [
  {
    service: "smtp",
    type: "inet",
    private: "n",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "-",
    command: "smtpd",
  },
  {
    service: "pickup",
    type: "unix",
    private: "n",
    unpriv: "-",
    chroot: "n",
    wakeup: "60",
    maxproc: "1",
    command: "pickup",
  },
  {
    service: "cleanup",
    type: "unix",
    private: "n",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "0",
    command: "cleanup",
  },
  {
    service: "qmgr",
    type: "unix",
    private: "n",
    unpriv: "-",
    chroot: "n",
    wakeup: "300",
    maxproc: "1",
    command: "qmgr",
  },
  {
    service: "tlsmgr",
    type: "unix",
    private: "-",
    unpriv: "-",
    chroot: "n",
    wakeup: "1000?",
    maxproc: "1",
    command: "tlsmgr",
  },
  {
    service: "rewrite",
    type: "unix",
    private: "-",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "-",
    command: "trivial-rewrite",
  },
  {
    service: "bounce",
    type: "unix",
    private: "-",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "0",
    command: "bounce",
  },
  {
    service: "defer",
    type: "unix",
    private: "-",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "0",
    command: "bounce",
  },
  {
    service: "trace",
    type: "unix",
    private: "-",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "0",
    command: "bounce",
  },
  {
    service: "verify",
    type: "unix",
    private: "-",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "1",
    command: "verify",
  },
  {
    service: "flush",
    type: "unix",
    private: "n",
    unpriv: "-",
    chroot: "n",
    wakeup: "1000?",
    maxproc: "0",
    command: "flush",
  },
  {
    service: "proxymap",
    type: "unix",
    private: "-",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "-",
    command: "proxymap",
  },
  {
    service: "proxywrite",
    type: "unix",
    private: "-",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "1",
    command: "proxymap",
  },
  { service: "smtp", type: "unix", private: "-", unpriv: "-", chroot: "n", wakeup: "-", maxproc: "-", command: "smtp" },
  {
    service: "relay",
    type: "unix",
    private: "-",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "-",
    command: "smtp",
    args: ["-o syslog_name=postfix/$service_name"],
  },
  {
    service: "showq",
    type: "unix",
    private: "n",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "-",
    command: "showq",
  },
  {
    service: "error",
    type: "unix",
    private: "-",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "-",
    command: "error",
  },
  {
    service: "retry",
    type: "unix",
    private: "-",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "-",
    command: "error",
  },
  {
    service: "discard",
    type: "unix",
    private: "-",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "-",
    command: "discard",
  },
  {
    service: "local",
    type: "unix",
    private: "-",
    unpriv: "n",
    chroot: "n",
    wakeup: "-",
    maxproc: "-",
    command: "local",
  },
  {
    service: "virtual",
    type: "unix",
    private: "-",
    unpriv: "n",
    chroot: "n",
    wakeup: "-",
    maxproc: "-",
    command: "virtual",
  },
  { service: "lmtp", type: "unix", private: "-", unpriv: "-", chroot: "n", wakeup: "-", maxproc: "-", command: "lmtp" },
  {
    service: "anvil",
    type: "unix",
    private: "-",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "1",
    command: "anvil",
  },
  {
    service: "scache",
    type: "unix",
    private: "-",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "1",
    command: "scache",
  },
  {
    service: "postlog",
    type: "unix-dgram",
    private: "n",
    unpriv: "-",
    chroot: "n",
    wakeup: "-",
    maxproc: "1",
    command: "postlogd",
  },
];

/**
 * /etc/postfix/master.cf. Takes the settings for symmetry with main.cf; the service table is the same for every host.
 */
export function renderPostfixMasterCf(s: HostSettings): string {
  checkHostSettings(s);
  const pad = (v: string, n: number) => v.padEnd(n);
  const lines = [
    "# /etc/postfix/master.cf for mail-relay: rendered by cloud-init/postfix-master.ts.",
    "# The only listener is `smtp inet`, on loopback (inet_interfaces = loopback-only). Never add submission (587),",
    "# smtps (465) or any other smtpd listener: the HTTP relay with its tokens is the only way in.",
    "#",
    "# service    type  private unpriv  chroot  wakeup  maxproc command + args",
  ];
  for (const m of MASTER_SERVICES) {
    lines.push(
      [
        pad(m.service, 10),
        pad(m.type, 5),
        pad(m.private, 7),
        pad(m.unpriv, 7),
        pad(m.chroot, 7),
        pad(m.wakeup, 7),
        pad(m.maxproc, 7),
        m.command,
      ]
        .join(" ")
        .trimEnd(),
    );
    for (const a of m.args ?? []) lines.push(`  ${a}`);
  }
  return lines.join("\n") + "\n";
}
