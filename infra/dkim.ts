import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { ed25519Selector } from "../cloud-init";
import type { DkimSelector } from "./config";

export interface DkimKeysArgs {
  /** Every published selector; the active one signs. */
  readonly selectors: readonly DkimSelector[];
  /** RSA size; 2048 is the minimum receivers accept. */
  readonly rsaBits?: number;
}

/**
 * Two key pairs per DKIM selector, generated in the program: RSA for the selector itself and Ed25519 (RFC 8463) for
 * `<selector>-ed25519`, so a rotation (a new selector) rotates both. Each key is named after its selector, so adding a
 * selector for a rotation never replaces another one; removing a selector deletes only its keys.
 */
export class DkimKeys extends pulumi.ComponentResource {
  /** selector -> public key PEM (RSA selectors and their `-ed25519` twins alike; the record reads the key type). */
  readonly publicKeys: Record<string, pulumi.Output<string>>;
  readonly activeSelector: string;
  /** The active selector's private key (PEM), secret. */
  readonly activePrivateKeyPem: pulumi.Output<string>;
  /** The active selector's Ed25519 private key (PKCS#8 PEM), secret. */
  readonly activeEd25519PrivateKeyPem: pulumi.Output<string>;

  constructor(name: string, args: DkimKeysArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mail-relay:dns:DkimKeys", name, {}, opts);
    const bits = Math.max(2048, args.rsaBits ?? 2048);
    this.publicKeys = {};
    let active: pulumi.Output<string> | undefined;
    let activeEd: pulumi.Output<string> | undefined;
    for (const s of args.selectors) {
      const ed = new tls.PrivateKey(
        `${name}-${ed25519Selector(s.name)}`,
        { algorithm: "ED25519" },
        { parent: this, additionalSecretOutputs: ["privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"] },
      );
      this.publicKeys[ed25519Selector(s.name)] = ed.publicKeyPem;
      if (s.active) activeEd = pulumi.secret(ed.privateKeyPem);
      const key = new tls.PrivateKey(
        `${name}-${s.name}`,
        { algorithm: "RSA", rsaBits: bits },
        { parent: this, additionalSecretOutputs: ["privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"] },
      );
      this.publicKeys[s.name] = key.publicKeyPem;
      if (s.active) active = pulumi.secret(key.privateKeyPem);
    }
    const activeSel = args.selectors.find((s) => s.active);
    if (!activeSel || !active || !activeEd) throw new Error("DkimKeys needs exactly one active selector");
    this.activeSelector = activeSel.name;
    this.activePrivateKeyPem = active;
    this.activeEd25519PrivateKeyPem = activeEd;
    this.registerOutputs({ activeSelector: this.activeSelector });
  }
}
