import { constants as fsc, promises as fs, statSync } from "node:fs";
import * as path from "node:path";
import { lookupKey } from "../admission/canonical-address";
import { RelayError } from "../errors";

export type SuppressionReason = "hard_bounce" | "manual";
export type SuppressionOrigin = "automatic" | "caller" | "operator";

/** One suppressed address (Postmark's model: why, and who put it there). Entries never expire by themselves. */
export interface SuppressionEntry {
  readonly email: string;
  readonly reason: SuppressionReason;
  readonly origin: SuppressionOrigin;
  /** The caller whose message bounced (automatic) or who added it (caller); scopes the caller API. */
  readonly caller?: string;
  readonly createdAt: number;
  readonly messageId?: string;
  readonly dsn?: string;
  readonly reply?: string;
}

type Line = ({ op: "add" } & SuppressionEntry) | { op: "remove"; email: string; by: string; at: number };

/** The list's key for an address: its canonical form lower-cased, so every spelling of one mailbox is one entry. */
export function normalizeEmail(email: string): string {
  return lookupKey(email);
}

/**
 * The stack's suppression list: an append-only file (QUEUE_ROOT/suppressions.jsonl, one fsynced line per change)
 * replayed into a Map, so a lookup is O(1) at 100,000 entries. The relay and the operator CLI both append; the relay
 * reads what others appended (a stat per check, a read only when the file grew) before it decides.
 */
export class SuppressionList {
  readonly file: string;
  private readonly entries = new Map<string, SuppressionEntry>();
  private offset = 0;
  private inode = 0;
  private partial = "";

  constructor(
    root: string,
    private readonly now: () => number = Date.now,
  ) {
    this.file = path.join(root, "suppressions.jsonl");
  }

  async open(): Promise<number> {
    await fs.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    this.entries.clear();
    this.offset = 0;
    this.partial = "";
    await this.refresh();
    return this.entries.size;
  }

  /** Applies lines appended since the last read (by this process or the CLI). */
  async refresh(): Promise<void> {
    // Synchronous: a stat of a local file is a few microseconds; the promise API's thread-pool round trip cost
    // ~0.1 ms of CPU per admission (bench:chain profile, issue 23), on every /send and SMTP message. No file yet (no
    // suppression ever added) is the common case: throwIfNoEntry spares an exception and its stack trace per message.
    const st = statSync(this.file, { throwIfNoEntry: false });
    if (!st) return;
    if (st.ino !== this.inode) {
      this.entries.clear();
      this.offset = 0;
      this.partial = "";
      this.inode = st.ino;
    }
    if (st.size <= this.offset) return;
    const fh = await fs.open(this.file, "r");
    let text: string;
    try {
      const buf = Buffer.alloc(st.size - this.offset);
      const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
      this.offset += bytesRead;
      text = this.partial + buf.subarray(0, bytesRead).toString("utf8");
    } finally {
      await fh.close();
    }
    const lines = text.split("\n");
    this.partial = lines.pop() ?? "";
    for (const l of lines) {
      if (l === "") continue;
      let rec: Line;
      try {
        rec = JSON.parse(l) as Line;
      } catch {
        continue; // a line torn by a crash: the change it held was never acknowledged
      }
      if (rec.op === "add") {
        const { op: _op, ...entry } = rec;
        const key = normalizeEmail(entry.email);
        if (!this.entries.has(key)) this.entries.set(key, entry);
      } else this.entries.delete(normalizeEmail(rec.email));
    }
  }

  private async append(line: Line): Promise<void> {
    const fh = await fs.open(this.file, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o600);
    try {
      await fh.write(`${JSON.stringify(line)}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await this.refresh();
  }

  get size(): number {
    return this.entries.size;
  }

  find(email: string): SuppressionEntry | undefined {
    return this.entries.get(normalizeEmail(email));
  }

  /** Adds an address (durable before it returns). Already there: the first entry stays, and false is returned. */
  async add(
    e: Omit<SuppressionEntry, "createdAt" | "email"> & { email: string; createdAt?: number },
  ): Promise<boolean> {
    await this.refresh();
    const email = normalizeEmail(e.email);
    if (this.entries.has(email)) return false;
    await this.append({ op: "add", ...e, email, createdAt: e.createdAt ?? this.now() });
    return true;
  }

  async remove(email: string, by: string): Promise<boolean> {
    await this.refresh();
    const key = normalizeEmail(email);
    if (!this.entries.has(key)) return false;
    await this.append({ op: "remove", email: key, by, at: this.now() });
    return true;
  }

  list(filter: { caller?: string } = {}): SuppressionEntry[] {
    const out: SuppressionEntry[] = [];
    for (const e of this.entries.values()) if (filter.caller === undefined || e.caller === filter.caller) out.push(e);
    return out.sort((a, b) => a.createdAt - b.createdAt || (a.email < b.email ? -1 : 1));
  }

  /**
   * The suppression rule (applied by relay/admission only): 422 naming every suppressed recipient, and who can lift
   * the first one (`caller`, the asking caller, sees whether the entry is its own).
   */
  async assertDeliverable(recipients: readonly string[], caller?: string): Promise<void> {
    await this.refresh();
    const hits = recipients.map((r) => this.find(r)).filter((e): e is SuppressionEntry => e !== undefined);
    if (hits.length === 0) return;
    const first = hits[0] as SuppressionEntry;
    const lift =
      caller !== undefined && first.caller === caller
        ? "DELETE /suppressions/<address> lifts it"
        : "it is not this caller's entry: the operator lifts it (relay.js suppress remove)";
    throw new RelayError(
      "recipient_suppressed",
      `${hits.map((h) => h.email).join(", ")} ${hits.length === 1 ? "is" : "are"} on the suppression list ` +
        `(${first.reason} since ${new Date(first.createdAt).toISOString()}; ${lift}); nothing was queued`,
      "to",
    );
  }
}
