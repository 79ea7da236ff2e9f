/**
 * The stack's configuration, read once and checked at the edge.
 *
 * This is the only file that calls `new pulumi.Config()`. Each key is declared once, as a zod schema in
 * ./config/schema.ts (the key list, decoding and types derive from it); ./config/checks.ts checks the keys against
 * each other and builds the config. `loadConfig` feeds them the stack's values.
 */
import * as pulumi from "@pulumi/pulumi";
import { ConfigError, configWarnings, parseConfig, type MailRelayConfig } from "./config/checks";
import { namespaceProblems } from "./config/messages";
import { CONFIG_KEYS, NS, type ConfigKey, type Decoding } from "./config/schema";

export {
  ConfigError,
  configWarnings,
  DEFAULT_WEBHOOK_EVENTS,
  isConfigError,
  neededSecrets,
  nodeHostnames,
  parseConfig,
  spfIncludes,
  type CallerWebhook,
  type DerivedConfig,
  type MailRelayConfig,
  type NodeSpec,
} from "./config/checks";
export { closest, namespaceProblems, setCommands } from "./config/messages";
export {
  ADMIN_PREFIX_MIN,
  CONFIG_KEYS,
  decodingOf,
  isCidr,
  isWiderThanASite,
  NS,
  SECRET_KEYS,
  type ConfigKey,
  type Decoding,
  type DkimSelector,
  type RawConfig,
  type SecretKey,
} from "./config/schema";

export interface ConfigSecrets<S> {
  readonly sshPrivateKey: S;
  readonly smarthostPassword?: S;
}

/**
 * Decode the raw config strings: a string key as written, every other key as JSON. A value that is not JSON stays the
 * string it is, so the schema check reports it once, as a wrong type with the command that sets it right.
 */
export function decodeRaw(get: (key: string) => string | undefined): {
  raw: Partial<Record<ConfigKey, unknown>>;
  problems: string[];
} {
  const raw: Partial<Record<ConfigKey, unknown>> = {};
  for (const [key, kind] of Object.entries(CONFIG_KEYS) as [ConfigKey, Decoding][]) {
    const value = get(key);
    if (value === undefined) continue;
    if (kind === "string") {
      raw[key] = value;
      continue;
    }
    try {
      raw[key] = JSON.parse(value);
    } catch {
      raw[key] = value;
    }
  }
  return { raw, problems: [] };
}

/**
 * Whether the engine handed a key over as a secret (set with --secret): Pulumi's own test, which its typings leave out
 * (marked internal); test/infra/config.test.ts fails if an SDK update drops it.
 */
export function isConfigSecret(key: string): boolean {
  return (pulumi.runtime as unknown as { isConfigSecret(k: string): boolean }).isConfigSecret(key);
}

/** Read and check the stack's config. Secrets stay Outputs. */
export function loadConfig(): { config: MailRelayConfig; secrets: ConfigSecrets<pulumi.Output<string>> } {
  const cfg = new pulumi.Config(NS);
  const namespace = namespaceProblems(pulumi.runtime.allConfig(), isConfigSecret);
  const decoded = decodeRaw((k) => cfg.get(k));
  const raw = decoded.raw;
  const problems = [...namespace, ...decoded.problems];
  const sshPrivateKey = cfg.getSecret("sshPrivateKey");
  const smarthostPassword = cfg.getSecret("smarthostPassword");
  let config: MailRelayConfig;
  try {
    config = parseConfig(
      raw,
      { sshPrivateKey: sshPrivateKey !== undefined, smarthostPassword: smarthostPassword !== undefined },
      {
        project: pulumi.getProject(),
        stack: pulumi.getStack(),
      },
    );
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError([...problems, ...e.problems]);
    throw e;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  for (const w of configWarnings(config)) void pulumi.log.warn(w);
  return { config, secrets: { sshPrivateKey: sshPrivateKey!, smarthostPassword } };
}
