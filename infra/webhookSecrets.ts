import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { generationName, splitGenerations } from "./credentials";

export interface WebhookSecretsArgs {
  /** Callers with a webhookUrl; each gets its own signing secret. */
  readonly callers: readonly string[];
  /** Per caller, its secret's generations (oldest first; default [1]): two while the secret is rotated. */
  readonly generations?: Readonly<Record<string, readonly number[]>>;
}

/**
 * `whsec_` + 44 alphanumeric characters: valid base64 (33 bytes of HMAC key, ~262 bits), as Standard Webhooks expects.
 */
export function webhookSecretFrom(random44: string): string {
  return `whsec_${random44}`;
}

/** One Standard Webhooks signing secret per caller with a webhook, pushed in the relay's env file. */
export class WebhookSecrets extends pulumi.ComponentResource {
  /** caller name -> its current whsec_ secret (the newest generation), secret. */
  readonly secrets: Record<string, pulumi.Output<string>>;
  /** caller name -> the secrets being rotated out; the relay still signs with each, secret. */
  readonly previous: Record<string, pulumi.Output<string>[]>;

  constructor(name: string, args: WebhookSecretsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mail-relay:relay:WebhookSecrets", name, {}, opts);
    this.secrets = {};
    this.previous = {};
    const secret = (caller: string, generation: number) =>
      pulumi.secret(
        new random.RandomPassword(
          generationName(`${name}-${caller}`, generation),
          { length: 44, special: false },
          { parent: this, additionalSecretOutputs: ["result"] },
        ).result.apply(webhookSecretFrom),
      );
    for (const caller of args.callers) {
      const { current, previous } = splitGenerations(args.generations?.[caller]);
      this.secrets[caller] = secret(caller, current);
      this.previous[caller] = previous.map((g) => secret(caller, g));
    }
    this.registerOutputs({ callers: Object.keys(this.secrets) });
  }
}
