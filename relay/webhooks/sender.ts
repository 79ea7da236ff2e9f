import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import * as http from "node:http";
import * as https from "node:https";
import { BlockList, isIP, type LookupFunction } from "node:net";
import type { Logger } from "pino";
import type { OutboxItem, WebhookOutbox } from "../storage";
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

/** Throws when any address of the answer is forbidden: one bad address refuses the whole name. */
function refuseForbidden(host: string, addrs: readonly LookupAddress[], loopbackOk: boolean): void {
  for (const a of addrs) {
    const loopback = /^127\./.test(a.address) || a.address === "::1";
    if (isForbiddenAddress(a.address) && !(loopbackOk && loopback))
      throw new Error(`refused: ${host} resolves to ${a.address} (private, loopback, link-local or metadata)`);
  }
}

/**
 * The `lookup` a webhook request connects through: resolves the name, refuses the whole answer when any address in it
 * is forbidden, and answers in the shape Node asked for. Node 20 (autoSelectFamily) asks with `all: true` and tries
 * each address of the list in turn; Node 18 asks for one. Either way a socket only ever opens to an address that
 * passed here, and the name is resolved once per connection, so a rebinding answer is checked too.
 */
export function checkedLookup(resolve: Lookup, loopbackOk: boolean): LookupFunction {
  return (host, options, callback) => {
    const wanted =
      options.family === 4 || options.family === "IPv4" ? 4 : options.family === 6 || options.family === "IPv6" ? 6 : 0;
    resolve(host).then(
      (addrs) => {
        try {
          refuseForbidden(host, addrs, loopbackOk);
        } catch (err) {
          callback(err as NodeJS.ErrnoException, "", 0);
          return;
        }
        const usable = addrs.filter((a) => wanted === 0 || a.family === wanted);
        const first = usable[0];
        if (!first) {
          const err: NodeJS.ErrnoException = new Error(`no ${wanted ? `IPv${wanted} ` : ""}address for ${host}`);
          err.code = "ENOTFOUND";
          callback(err, "", 0);
        } else if (options.all) callback(null, usable);
        else callback(null, first.address, first.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, "", 0),
    );
  };
}

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

  /**
   * Checks the URL; a host name is resolved and checked by the request's own `lookup` (checkedLookup), at connect
   * time, so DNS may change after the config was read and every address a socket is opened to has passed the check.
   */
  private target(rawUrl: string): URL {
    const url = new URL(rawUrl);
    const loopbackOk = this.deps.unsafeAllowLoopbackForTests === true;
    if (url.protocol !== "https:" && !(loopbackOk && url.protocol === "http:"))
      throw new Error(`refused: ${url.protocol} URL (https only)`);
    // Node connects to an IP literal without calling `lookup`: the literal is checked here.
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    if (isIP(host)) refuseForbidden(host, [{ address: host, family: isIP(host) }], loopbackOk);
    return url;
  }

  private post(url: URL, headers: Record<string, string>, body: string): Promise<number> {
    const mod = url.protocol === "https:" ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(
        url,
        {
          method: "POST",
          headers: Object.assign({}, headers, {
            "content-length": String(Buffer.byteLength(body)),
            "user-agent": "mail-relay-webhooks",
          }),
          // A fresh connection per send (Node 20's global agent keeps sockets alive): the name is resolved and
          // checked again each time, never carried over from an earlier answer.
          agent: false,
          lookup: checkedLookup(this.deps.lookup ?? systemLookup, this.deps.unsafeAllowLoopbackForTests === true),
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
          const status = await this.post(
            this.target(hook.url),
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
    const next: OutboxItem = Object.assign({}, item, {
      attempts: item.attempts + 1,
      lastError: error,
      nextAttemptAt: now + webhookBackoffMs(item.attempts + 1),
    });
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
