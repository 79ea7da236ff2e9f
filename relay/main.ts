import { runQueueCli } from "./cli";
import { ConfigError } from "./config";
import { EXIT_CONFIG } from "./host-contract";
import { startServer } from "./server";
import { runSuppressCli } from "./suppression-cli";
import { TLS_POLICY_SUBCOMMAND } from "./tls-policy/contract";
import { runTlsPolicyService } from "./tls-policy/service";
import { runWebhookService } from "./webhooks/service";

/** `node relay.js` serves; `node relay.js queue ...` runs the queue CLI. */
async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === "queue") {
    process.exitCode = await runQueueCli(args.slice(1), process.env, {
      out: (l) => process.stdout.write(`${l}\n`),
      err: (l) => process.stderr.write(`${l}\n`),
    });
    return;
  }
  if (args[0] === "webhooks" && args.length === 1) {
    await runWebhookService(process.env);
    return;
  }
  if (args[0] === TLS_POLICY_SUBCOMMAND && args.length === 1) {
    await runTlsPolicyService(process.env);
    return;
  }
  if (args[0] === "suppress") {
    process.exitCode = await runSuppressCli(args.slice(1), process.env, {
      out: (l) => process.stdout.write(`${l}\n`),
      err: (l) => process.stderr.write(`${l}\n`),
    });
    return;
  }
  if (args.length > 0) {
    process.stderr.write(
      "usage: relay.js               serve (configured by the environment)\n" +
        "       relay.js queue ...     operate on the queue\n" +
        "       relay.js suppress ...  the suppression list\n" +
        "       relay.js webhooks      send the webhook outbox (mail-relay-webhooks.service)\n" +
        "       relay.js tls-policy    the DANE-first TLS policy socketmap (mail-relay-tls-policy.service)\n",
    );
    process.exitCode = 2;
    return;
  }
  await startServer(process.env);
}

main().catch((err: unknown) => {
  // EX_CONFIG: the unit's RestartPreventExitStatus stops a restart loop on a bad environment.
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(EXIT_CONFIG);
  }
  process.stderr.write(`mail-relay: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
