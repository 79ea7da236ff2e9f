import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { generationName, splitGenerations } from "./credentials";

export interface RelayTokensArgs {
  /** Calling services; each gets its own bearer token, named in the relay's logs and rate limits. */
  readonly callers: readonly string[];
  /** Per caller, its token's generations (oldest first; default [1]): two while the token is rotated. */
  readonly generations?: Readonly<Record<string, readonly number[]>>;
}

/** Relay bearer tokens (one per caller, 48 characters from a 62-symbol alphabet: ~285 bits, over 32 bytes). */
export class RelayTokens extends pulumi.ComponentResource {
  /** caller name -> its current token (the newest generation), secret. */
  readonly tokens: Record<string, pulumi.Output<string>>;
  /** caller name -> the tokens being rotated out, still accepted by the relay, secret. */
  readonly previous: Record<string, pulumi.Output<string>[]>;

  constructor(name: string, args: RelayTokensArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mail-relay:relay:RelayTokens", name, {}, opts);
    this.tokens = {};
    this.previous = {};
    const token = (caller: string, generation: number) =>
      pulumi.secret(
        new random.RandomPassword(
          generationName(`${name}-${caller}`, generation),
          { length: 48, special: false },
          { parent: this, additionalSecretOutputs: ["result"] },
        ).result,
      );
    for (const caller of args.callers) {
      const { current, previous } = splitGenerations(args.generations?.[caller]);
      this.tokens[caller] = token(caller, current);
      this.previous[caller] = previous.map((g) => token(caller, g));
    }
    this.registerOutputs({ callers: Object.keys(this.tokens) });
  }
}
