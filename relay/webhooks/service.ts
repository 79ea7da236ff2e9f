import { loadConfig } from "../config";
import { createLogger } from "../server";
import { WebhookOutbox } from "../storage";
import { WebhookSender } from "./sender";

/**
 * `node relay.js webhooks`: the outbound webhook sender, a separate process (mail-relay-webhooks.service) so the
 * relay itself keeps IPAddressAllow=localhost. It reads the outbox the relay writes and needs nothing else.
 */
export async function runWebhookService(env: NodeJS.ProcessEnv): Promise<void> {
  const config = loadConfig(env);
  const log = createLogger(config.logLevel).child({ component: "webhooks" });
  const outbox = new WebhookOutbox(config.queueRoot);
  await outbox.open();
  const webhooks = new Map(
    [...(config.webhooks ?? new Map()).entries()].map(([name, h]) => [name, { url: h.url, secrets: h.secrets }]),
  );
  const sender = new WebhookSender({ outbox, webhooks, log });
  log.info({ callers: [...webhooks.keys()] }, "webhook sender started");
  let running = true;
  let wake: (() => void) | undefined;
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    process.once(sig, () => {
      running = false;
      wake?.();
    });
  }
  while (running) {
    try {
      await sender.runOnce();
    } catch (err) {
      log.error({ err: (err as Error).message }, "webhook round failed");
    }
    await new Promise<void>((r) => {
      wake = r;
      setTimeout(r, 1000).unref();
    });
  }
  log.info("webhook sender stopped");
}
