/**
 * One check's verdict and how the doctor prints it: a line per check (status, what it saw, the fix for warn and
 * fail), or the same as JSON for machines. The exit code is non-zero when any check failed.
 */

export type Status = "pass" | "warn" | "fail";

/** What a check area is about; the report groups by it. */
export type Area = "dns" | "host" | "reputation" | "expiry" | "doctor";

export interface Check {
  /** Stable id, e.g. `dns.record`, `spf`, `host.service`, `reputation.dnsbl`: what the rehearsal matches on. */
  readonly id: string;
  readonly area: Area;
  /** What was checked, e.g. `TXT example.com (SPF)` or `opendkim.service on node1`. */
  readonly subject: string;
  readonly status: Status;
  /** What the doctor saw. */
  readonly saw: string;
  /** For warn and fail: the fix, as a command or an exact change. */
  readonly fix?: string;
}

export function pass(id: string, area: Area, subject: string, saw: string): Check {
  return { id, area, subject, status: "pass", saw };
}

export function warn(id: string, area: Area, subject: string, saw: string, fix: string): Check {
  return { id, area, subject, status: "warn", saw, fix };
}

export function fail(id: string, area: Area, subject: string, saw: string, fix: string): Check {
  return { id, area, subject, status: "fail", saw, fix };
}

/** One line per check: `fail  host.service  opendkim.service on node1: inactive  -> fix: systemctl start …`. */
export function formatLine(c: Check): string {
  const fix = c.status !== "pass" && c.fix ? `  -> fix: ${c.fix}` : "";
  return `${c.status.padEnd(4)}  ${c.id.padEnd(18)}  ${c.subject}: ${c.saw}${fix}`.replace(/[\r\n]+/g, " ");
}

export function summary(checks: readonly Check[]): string {
  const n = (s: Status) => checks.filter((c) => c.status === s).length;
  return `${checks.length} checks: ${n("pass")} pass, ${n("warn")} warn, ${n("fail")} fail`;
}

export function exitCode(checks: readonly Check[]): number {
  return checks.some((c) => c.status === "fail") ? 1 : 0;
}
