import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";

export interface WebhookSecretsArgs {
  /** Callers with a webhookUrl; each gets its own signing secret. */
  readonly callers: readonly string[];
}

/**
 * `whsec_` + 44 alphanumeric characters: valid base64 (33 bytes of HMAC key, ~262 bits), as Standard Webhooks expects.
 */
export function webhookSecretFrom(random44: string): string {
  return `whsec_${random44}`;
}

/** One Standard Webhooks signing secret per caller with a webhook, pushed in the relay's env file. */
export class WebhookSecrets extends pulumi.ComponentResource {
  /** caller name -> whsec_ secret, secret. */
  readonly secrets: Record<string, pulumi.Output<string>>;

  constructor(name: string, args: WebhookSecretsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mail-relay:relay:WebhookSecrets", name, {}, opts);
    this.secrets = {};
    for (const caller of args.callers) {
      const pw = new random.RandomPassword(
        `${name}-${caller}`,
        { length: 44, special: false },
        { parent: this, additionalSecretOutputs: ["result"] },
      );
      this.secrets[caller] = pulumi.secret(pw.result.apply(webhookSecretFrom));
    }
    this.registerOutputs({ callers: Object.keys(this.secrets) });
  }
}
