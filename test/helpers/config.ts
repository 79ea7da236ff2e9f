/**
 * The stack config tests start from: the smallest one parseConfig accepts (every required key, and the account and
 * team the default tunnel needs), so a test adds or overrides only the keys it is about.
 */
import { ConfigError, parseConfig } from "../../infra/config";

export const CONFIG_CTX = { project: "mail-relay", stack: "test" };
/** The SSH key is set; the smarthost password is not (no smarthost in the minimal config). */
export const CONFIG_SECRETS = { sshPrivateKey: true, smarthostPassword: false };

export function minimalConfig(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    domain: "example.com",
    adminCidrs: ["203.0.113.0/24"],
    sshPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBZr0Wv5nB1m3N0cP8xg0s5q9h9Jq8n3V7Xc2Qb1f2aA me@host",
    allowedSenders: ["noreply@example.com"],
    cloudflareAccountId: "0123456789abcdef0123456789abcdef",
    accessTeamName: "example",
    dkimSelectors: [{ name: "mail202611", active: true }],
    mx: [{ host: "route1.mx.cloudflare.net", priority: 10 }],
    ...over,
  };
}

/** Every problem parseConfig reports for `raw`, or [] when it accepts it. */
export function configProblems(raw: Record<string, unknown>, secrets = CONFIG_SECRETS): string[] {
  try {
    parseConfig(raw, secrets, CONFIG_CTX);
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
  return [];
}
