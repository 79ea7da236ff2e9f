import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import type { DkimSelector } from "./config";

export interface DkimKeysArgs {
  /** Every published selector; the active one signs. */
  readonly selectors: readonly DkimSelector[];
  /** RSA size; 2048 is the minimum receivers accept. */
  readonly rsaBits?: number;
}

/**
 * One RSA key pair per DKIM selector, generated in the program. Each key is named after its selector, so
 * adding a selector for a rotation never replaces another one; removing a selector deletes only its key.
 */
export class DkimKeys extends pulumi.ComponentResource {
  /** selector -> public key PEM. */
  readonly publicKeys: Record<string, pulumi.Output<string>>;
  readonly activeSelector: string;
  /** The active selector's private key (PEM), secret. */
  readonly activePrivateKeyPem: pulumi.Output<string>;

  constructor(name: string, args: DkimKeysArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mail-relay:dns:DkimKeys", name, {}, opts);
    const bits = Math.max(2048, args.rsaBits ?? 2048);
    this.publicKeys = {};
    let active: pulumi.Output<string> | undefined;
    for (const s of args.selectors) {
      const key = new tls.PrivateKey(
        `${name}-${s.name}`,
        { algorithm: "RSA", rsaBits: bits },
        { parent: this, additionalSecretOutputs: ["privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"] },
      );
      this.publicKeys[s.name] = key.publicKeyPem;
      if (s.active) active = pulumi.secret(key.privateKeyPem);
    }
    const activeSel = args.selectors.find((s) => s.active);
    if (!activeSel || !active) throw new Error("DkimKeys needs exactly one active selector");
    this.activeSelector = activeSel.name;
    this.activePrivateKeyPem = active;
    this.registerOutputs({ activeSelector: this.activeSelector });
  }
}
