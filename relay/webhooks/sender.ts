import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import * as http from "node:http";
import * as https from "node:https";
import { BlockList, isIP } from "node:net";
import type { Logger } from "pino";
import type { OutboxItem, WebhookOutbox } from "./outbox";
import { webhookHeaders } from "./signature";

export interface CallerWebhook {
  readonly url: string;
  /** Current secret first; during a rotation the previous one too (both signatures are sent). */
  readonly secrets: readonly string[];
}

export const WEBHOOK_TIMEOUT_MS = 5_000;
export const WEBHOOK_GIVE_UP_MS = 24 * 3_600_000;

/** Retry schedule after n failures (Svix-like): 5 s, 5 min, 30 min, 2 h, 5 h, then every 5 h until 24 h have passed. */
export function webhookBackoffMs(failures: number): number {
  const steps = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000];
  return steps[Math.min(failures - 1, steps.length - 1)] as number;
}

/**
 * Addresses a webhook may never reach: private, loopback, link-local (cloud metadata 169.254.169.254), CGNAT,
 * multicast.
 */
const FORBIDDEN = new BlockList();
for (const [net, bits] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const)
  FORBIDDEN.addSubnet(net, bits, "ipv4");
for (const [net, bits] of [
  ["::", 128],
  ["::1", 128],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
  ["64:ff9b::", 96],
] as const)
  FORBIDDEN.addSubnet(net, bits, "ipv6");

export function isForbiddenAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return FORBIDDEN.check(mapped[1] as string, "ipv4");
  const family = isIP(address);
  if (family === 0) return true;
  return FORBIDDEN.check(address, family === 4 ? "ipv4" : "ipv6");
}

export type Lookup = (host: string) => Promise<LookupAddress[]>;
const systemLookup: Lookup = (host) =>
  new Promise((resolve, reject) =>
    dnsLookup(host, { all: true }, (err, addrs) => (err ? reject(err) : resolve(addrs))),
  );

export interface SenderDeps {
  readonly outbox: WebhookOutbox;
  readonly webhooks: ReadonlyMap<string, CallerWebhook>;
  readonly log: Logger;
  readonly lookup?: Lookup;
  readonly now?: () => number;
  /** Tests only: lets http://127.0.0.1 receivers through. Never set by the relay's config. */
  readonly unsafeAllowLoopbackForTests?: boolean;
}

/**
 * Delivers the outbox: at-least-once, in no particular order, each POST signed and bounded by 5 s. Non-2xx,
 * timeouts and refused addresses are retried with backoff; after 24 h the webhook moves to failed/.
 */
export class WebhookSender {
  constructor(private readonly deps: SenderDeps) {}

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  /** Resolves the host and checks every address at send time (DNS may have changed since the config was read). */
  private async target(rawUrl: string): Promise<{ url: URL; address: string; family: number }> {
    const url = new URL(rawUrl);
    const loopbackOk = this.deps.unsafeAllowLoopbackForTests === true;
    if (url.protocol !== "https:" && !(loopbackOk && url.protocol === "http:"))
      throw new Error(`refused: ${url.protocol} URL (https only)`);
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    const addrs = isIP(host) ? [{ address: host, family: isIP(host) }] : await (this.deps.lookup ?? systemLookup)(host);
    if (addrs.length === 0) throw new Error(`no address for ${host}`);
    for (const a of addrs) {
      const loopback = /^127\./.test(a.address) || a.address === "::1";
      if (isForbiddenAddress(a.address) && !(loopbackOk && loopback))
        throw new Error(`refused: ${host} resolves to ${a.address} (private, loopback, link-local or metadata)`);
    }
    const first = addrs[0] as LookupAddress;
    return { url, address: first.address, family: first.family };
  }

  private post(
    t: { url: URL; address: string; family: number },
    headers: Record<string, string>,
    body: string,
  ): Promise<number> {
    const mod = t.url.protocol === "https:" ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(
        t.url,
        {
          method: "POST",
          headers: {
            ...headers,
            "content-length": String(Buffer.byteLength(body)),
            "user-agent": "mail-relay-webhooks",
          },
          // Connect to the address just checked, not to whatever a second lookup returns (DNS rebinding).
          lookup: (_h, _o, cb) => cb(null, t.address, t.family),
          timeout: WEBHOOK_TIMEOUT_MS,
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer within ${WEBHOOK_TIMEOUT_MS} ms`)));
      req.on("error", reject);
      req.end(body);
    });
  }

  /** Sends every due webhook once; returns how many were delivered. */
  async runOnce(): Promise<number> {
    const { outbox, log } = this.deps;
    let delivered = 0;
    for (const item of await outbox.list("pending")) {
      const now = this.now();
      if (item.nextAttemptAt > now) continue;
      const hook = this.deps.webhooks.get(item.caller);
      let error: string;
      if (!hook) {
        error = `caller ${item.caller} has no webhookUrl`;
      } else {
        try {
          const target = await this.target(hook.url);
          const status = await this.post(
            target,
            webhookHeaders(hook.secrets, item.id, Math.floor(now / 1000), item.body),
            item.body,
          );
          if (status >= 200 && status < 300) {
            await outbox.remove("pending", item.id);
            delivered++;
            log.info(
              { webhook: item.id, caller: item.caller, attempts: item.attempts + 1, status },
              "webhook delivered",
            );
            continue;
          }
          error = `HTTP ${status}`;
        } catch (err) {
          error = (err as Error).message;
        }
      }
      await this.reschedule(item, error, now);
    }
    return delivered;
  }

  private async reschedule(item: OutboxItem, error: string, now: number): Promise<void> {
    const next: OutboxItem = {
      ...item,
      attempts: item.attempts + 1,
      lastError: error,
      nextAttemptAt: now + webhookBackoffMs(item.attempts + 1),
    };
    if (next.nextAttemptAt - item.createdAt > WEBHOOK_GIVE_UP_MS) {
      await this.deps.outbox.fail(next, now);
      this.deps.log.error(
        { webhook: item.id, caller: item.caller, attempts: next.attempts, err: error },
        "webhook failed for good after 24 h",
      );
      return;
    }
    await this.deps.outbox.write("pending", next);
    this.deps.log.warn(
      { webhook: item.id, caller: item.caller, attempts: next.attempts, err: error, nextAttemptAt: next.nextAttemptAt },
      "webhook not delivered; will retry",
    );
  }
}
