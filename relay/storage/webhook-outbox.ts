import { constants as fsc, promises as fs } from "node:fs";
import * as path from "node:path";

/** One webhook waiting to be delivered. The URL and secret are read from the config at send time, never stored. */
export interface OutboxItem {
  readonly id: string;
  readonly caller: string;
  readonly body: string;
  readonly createdAt: number;
  attempts: number;
  nextAttemptAt: number;
  lastError?: string;
  failedAt?: number;
}

/**
 * Webhooks to send, one file each (QUEUE_ROOT/webhooks/pending/<event id>.json, temp + fsync + rename): written
 * before the delivery event that caused it is committed, so a crash repeats the event and never loses it. The id is
 * the event's id: writing it twice is a no-op, and the receiver sees the same webhook-id on every retry.
 */
export class WebhookOutbox {
  readonly root: string;
  constructor(queueRoot: string) {
    this.root = path.join(queueRoot, "webhooks");
  }

  dir(state: "pending" | "failed" | "tmp"): string {
    return path.join(this.root, state);
  }

  async open(): Promise<void> {
    for (const d of ["pending", "failed", "tmp"] as const)
      await fs.mkdir(this.dir(d), { recursive: true, mode: 0o700 });
  }

  private async exists(p: string): Promise<boolean> {
    try {
      await fs.access(p);
      return true;
    } catch {
      return false;
    }
  }

  /** `payload` is the webhook body (relay/webhooks/payload.ts builds it; storage only serialises it). */
  async add(id: string, caller: string, payload: object, now = Date.now()): Promise<boolean> {
    const name = `${id}.json`;
    if (
      (await this.exists(path.join(this.dir("pending"), name))) ||
      (await this.exists(path.join(this.dir("failed"), name)))
    )
      return false;
    await this.write("pending", {
      id,
      caller,
      body: JSON.stringify({ ...payload }),
      createdAt: now,
      attempts: 0,
      nextAttemptAt: now,
    });
    return true;
  }

  async write(state: "pending" | "failed", item: OutboxItem): Promise<void> {
    const tmp = path.join(this.dir("tmp"), `${item.id}.${process.pid}.${Math.random().toString(36).slice(2)}`);
    const fh = await fs.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
    try {
      await fh.writeFile(JSON.stringify(item));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, path.join(this.dir(state), `${item.id}.json`));
    const d = await fs.open(this.dir(state), "r");
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }

  async list(state: "pending" | "failed"): Promise<OutboxItem[]> {
    const out: OutboxItem[] = [];
    for (const f of await fs.readdir(this.dir(state))) {
      if (!f.endsWith(".json")) continue;
      try {
        out.push(JSON.parse(await fs.readFile(path.join(this.dir(state), f), "utf8")) as OutboxItem);
      } catch {
        // removed by the sender meanwhile, or unreadable: skipped this round
      }
    }
    return out.sort((a, b) => a.nextAttemptAt - b.nextAttemptAt);
  }

  async remove(state: "pending" | "failed", id: string): Promise<void> {
    await fs.rm(path.join(this.dir(state), `${id}.json`), { force: true });
  }

  /** Gave up after 24 h: moved to failed/ (listed by `relay.js queue webhooks`). */
  async fail(item: OutboxItem, now: number): Promise<void> {
    await this.write("failed", Object.assign({}, item, { failedAt: now }));
    await this.remove("pending", item.id);
  }
}
