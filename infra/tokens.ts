import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";

export interface RelayTokensArgs {
  /** Calling services; each gets its own bearer token, named in the relay's logs and rate limits. */
  readonly callers: readonly string[];
}

/** Relay bearer tokens (one per caller, 48 characters from a 62-symbol alphabet: ~285 bits, over 32 bytes). */
export class RelayTokens extends pulumi.ComponentResource {
  /** caller name -> token, secret. */
  readonly tokens: Record<string, pulumi.Output<string>>;

  constructor(name: string, args: RelayTokensArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mail-relay:relay:RelayTokens", name, {}, opts);
    this.tokens = {};
    for (const caller of args.callers) {
      const pw = new random.RandomPassword(
        `${name}-${caller}`,
        { length: 48, special: false },
        { parent: this, additionalSecretOutputs: ["result"] },
      );
      this.tokens[caller] = pulumi.secret(pw.result);
    }
    this.registerOutputs({ callers: Object.keys(this.tokens) });
  }
}
