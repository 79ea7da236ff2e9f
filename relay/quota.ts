// Per-caller recipient and byte quotas, in fixed windows: the current minute and the current UTC day. Kept in memory:
// a restart starts the windows afresh (the per-minute request rate limit and the Access service token still apply).
import type { Quotas } from "./config";
import { RelayError } from "./errors";

interface Window {
  start: number;
  recipients: number;
  bytes: number;
}

const MINUTE = 60_000;
const DAY = 86_400_000;

export class CallerQuotas {
  private readonly minute = new Map<string, Window>();
  private readonly day = new Map<string, Window>();

  constructor(private readonly quotas: Quotas) {}

  private window(map: Map<string, Window>, caller: string, length: number, now: number): Window {
    const start = now - (now % length);
    let w = map.get(caller);
    if (!w || w.start !== start) {
      w = { start, recipients: 0, bytes: 0 };
      map.set(caller, w);
    }
    return w;
  }

  /**
   * Counts one message against the caller's quotas, or throws 429 quota_exceeded naming the quota (nothing counted).
   */
  charge(caller: string, recipients: number, bytes: number, now: number): void {
    const m = this.window(this.minute, caller, MINUTE, now);
    const d = this.window(this.day, caller, DAY, now);
    const q = this.quotas;
    const over: [boolean, string, number][] = [
      [m.recipients + recipients > q.recipientsPerMin, "recipients per minute", q.recipientsPerMin],
      [d.recipients + recipients > q.recipientsPerDay, "recipients per day", q.recipientsPerDay],
      [m.bytes + bytes > q.bytesPerMin, "bytes per minute", q.bytesPerMin],
      [d.bytes + bytes > q.bytesPerDay, "bytes per day", q.bytesPerDay],
    ];
    const hit = over.find(([o]) => o);
    if (hit) {
      const retryMs = hit[1].endsWith("minute") ? m.start + MINUTE - now : d.start + DAY - now;
      throw new RelayError(
        "quota_exceeded",
        `this caller's quota of ${hit[2]} ${hit[1]} is used up; retry in ${Math.ceil(retryMs / 1000)} s`,
      );
    }
    m.recipients += recipients;
    d.recipients += recipients;
    m.bytes += bytes;
    d.bytes += bytes;
  }

  /**
   * Gives back what charge() counted at `chargedAt`, when the message it was for was not queued after all (a refused
   * or failed request counts nothing). A window that has moved on since is left alone.
   */
  refund(caller: string, recipients: number, bytes: number, chargedAt: number): void {
    for (const [map, length] of [
      [this.minute, MINUTE],
      [this.day, DAY],
    ] as const) {
      const w = map.get(caller);
      if (!w || w.start !== chargedAt - (chargedAt % length)) continue;
      w.recipients = Math.max(0, w.recipients - recipients);
      w.bytes = Math.max(0, w.bytes - bytes);
    }
  }
}
