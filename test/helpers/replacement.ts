/**
 * The one table of inputs whose change makes `pulumi up` replace a resource instead of updating it in place, for every
 * resource type the program creates. The npm SDKs do not carry the flag; each entry names the provider source it was
 * read from (the Terraform provider the SDK bridges, at a pinned commit, or @pulumi/command's own schema), so a
 * provider upgrade is re-checked by reading the same file at the new version.
 *
 * Read with the `fetch` mirrors and `git show <commit>:<path> | grep -n 'ForceNew\|RequiresReplace'`. Versions:
 * - hcloud: @pulumi/hcloud 1.41.0 documents the `datacenter` removal "since v1.67.0", so it bridges v1.67.0 or later;
 *   the five resource files are identical from v1.67.0 to the mirror's newest commit (v1.68.0 and after).
 * - cloudflare: @pulumi/cloudflare 6.22.1 bridges a v5 release newer than the mirror's newest tag, v5.22.0 (its service
 *   token has `enabled` and the `forever` duration, which v5.22.0 lacks). The RequiresReplace lines of the five schema
 *   files below are the same from v5.12.0 to v5.22.0; the newer release is not in the mirror.
 * - tls and random: the mirrors' newest tags (v4.2.1, v3.9.0); their RequiresReplace lines are unchanged since v4.0.0
 *   and v3.6.0, which covers what @pulumi/tls 5.x and @pulumi/random 4.x bridge.
 * - @pulumi/command 1.2.1: its own provider (pulumi-go-provider): `replaceOnChanges` tags, also in schema.json.
 */

export interface ProviderSource {
  readonly repo: string;
  readonly tag: string;
  readonly commit: string;
}

const HCLOUD: ProviderSource = {
  repo: "hetznercloud/terraform-provider-hcloud",
  tag: "v1.67.0",
  commit: "5705c821e2688012a23bec519cd98dbf165626a6",
};
const CLOUDFLARE: ProviderSource = {
  repo: "cloudflare/terraform-provider-cloudflare",
  tag: "v5.22.0",
  commit: "a2efdc5786ae9726d56928dbfe91933bd92404ca",
};
const TLS: ProviderSource = {
  repo: "hashicorp/terraform-provider-tls",
  tag: "v4.2.1",
  commit: "857b38cda3fca4b6539f23b6dfc9724c6537f7e7",
};
const RANDOM: ProviderSource = {
  repo: "hashicorp/terraform-provider-random",
  tag: "v3.9.0",
  commit: "f8d869dc98d90785f6c8f7131081fa5ef88f9d95",
};
const COMMAND: ProviderSource = {
  repo: "pulumi/pulumi-command",
  tag: "v1.2.1",
  commit: "7f3eb6f3b77cd0fa3895ba437a695dd393f7dd25",
};

export interface ReplacementEntry {
  readonly source: ProviderSource;
  /** The file in `source.repo` that declares the schema, with the lines that carry the flag. */
  readonly file: string;
  readonly lines: readonly number[];
  /** How the provider spells the flag. */
  readonly flag: "ForceNew" | "RequiresReplace" | "replaceOnChanges";
  /** The provider's attribute names (snake_case for Terraform) whose change forces replacement. */
  readonly attributes: readonly string[];
  /** The SDK module (node_modules/@pulumi/<pkg>/<module>.d.ts) whose Args interface names the same inputs. */
  readonly sdk: string;
  /** What else about the entry matters to a diff. */
  readonly note?: string;
}

/**
 * By Pulumi type token. Every other input of these types is updated in place: notably every `name` (Hetzner and
 * Cloudflare rename in place), a DNS record's name and content, a firewall's rules, a server's type and firewall ids.
 */
export const REPLACEMENT_TABLE: Readonly<Record<string, ReplacementEntry>> = {
  "hcloud:index/server:Server": {
    source: HCLOUD,
    file: "internal/server/resource.go",
    lines: [58, 70, 90, 113],
    flag: "ForceNew",
    attributes: ["image", "location", "user_data", "ssh_keys"],
    sdk: "@pulumi/hcloud/server",
    note: "user_data is stored as a hash (StateFunc) and diffed through userDataDiffSuppress: same content, no diff",
  },
  "hcloud:index/primaryIp:PrimaryIp": {
    source: HCLOUD,
    file: "internal/primaryip/resource.go",
    lines: [89, 97],
    flag: "RequiresReplace",
    attributes: ["type", "location"],
    sdk: "@pulumi/hcloud/primaryIp",
  },
  "hcloud:index/rdns:Rdns": {
    source: HCLOUD,
    file: "internal/rdns/resource.go",
    lines: [70, 77, 84, 91, 99],
    flag: "RequiresReplace",
    attributes: ["server_id", "primary_ip_id", "floating_ip_id", "load_balancer_id", "ip_address"],
    sdk: "@pulumi/hcloud/rdns",
  },
  "hcloud:index/sshKey:SshKey": {
    source: HCLOUD,
    file: "internal/sshkey/resource.go",
    lines: [72],
    flag: "RequiresReplace",
    attributes: ["public_key"],
    sdk: "@pulumi/hcloud/sshKey",
  },
  "hcloud:index/firewall:Firewall": {
    source: HCLOUD,
    file: "internal/firewall/resource.go",
    lines: [],
    flag: "ForceNew",
    attributes: [],
    sdk: "@pulumi/hcloud/firewall",
    note: "no ForceNew attribute: name, labels and rules are all updated in place",
  },
  "cloudflare:index/dnsRecord:DnsRecord": {
    source: CLOUDFLARE,
    file: "internal/services/dns_record/schema.go",
    lines: [47, 98],
    flag: "RequiresReplace",
    attributes: ["zone_id", "type"],
    sdk: "@pulumi/cloudflare/dnsRecord",
  },
  "cloudflare:index/zeroTrustTunnelCloudflared:ZeroTrustTunnelCloudflared": {
    source: CLOUDFLARE,
    file: "internal/services/zero_trust_tunnel_cloudflared/schema.go",
    lines: [45, 54],
    flag: "RequiresReplace",
    attributes: ["account_id", "config_src"],
    sdk: "@pulumi/cloudflare/zeroTrustTunnelCloudflared",
    note: "config_src is RequiresReplaceIfConfigured; tunnel_secret is updated in place",
  },
  "cloudflare:index/zeroTrustAccessApplication:ZeroTrustAccessApplication": {
    source: CLOUDFLARE,
    file: "internal/services/zero_trust_access_application/schema.go",
    lines: [39, 44],
    flag: "RequiresReplace",
    attributes: ["account_id", "zone_id"],
    sdk: "@pulumi/cloudflare/zeroTrustAccessApplication",
  },
  "cloudflare:index/zeroTrustAccessPolicy:ZeroTrustAccessPolicy": {
    source: CLOUDFLARE,
    file: "internal/services/zero_trust_access_policy/schema.go",
    lines: [44],
    flag: "RequiresReplace",
    attributes: ["account_id"],
    sdk: "@pulumi/cloudflare/zeroTrustAccessPolicy",
  },
  "cloudflare:index/zeroTrustAccessServiceToken:ZeroTrustAccessServiceToken": {
    source: CLOUDFLARE,
    file: "internal/services/zero_trust_access_service_token/schema.go",
    lines: [42, 47],
    flag: "RequiresReplace",
    attributes: ["account_id", "zone_id"],
    sdk: "@pulumi/cloudflare/zeroTrustAccessServiceToken",
    note: "duration is updated in place and does not move expires_at (resource.go Update sends no refresh)",
  },
  "tls:index/privateKey:PrivateKey": {
    source: TLS,
    file: "internal/provider/resource_private_key.go",
    lines: [60, 75, 84],
    flag: "RequiresReplace",
    attributes: ["algorithm", "rsa_bits", "ecdsa_curve"],
    sdk: "@pulumi/tls/privateKey",
  },
  "tls:index/selfSignedCert:SelfSignedCert": {
    source: TLS,
    file: "internal/provider/resource_self_signed_cert.go",
    lines: [55, 66, 77, 97, 105, 118, 147, 156, 169, 179, 247],
    flag: "RequiresReplace",
    attributes: [
      "private_key_pem",
      "validity_period_hours",
      "allowed_uses",
      "dns_names",
      "ip_addresses",
      "uris",
      "is_ca_certificate",
      "max_path_length",
      "set_subject_key_id",
      "set_authority_key_id",
      "subject",
    ],
    sdk: "@pulumi/tls/selfSignedCert",
    note: "also replaced once ready_for_renewal (internal/provider/common_cert.go:310): early_renewal_hours before the end",
  },
  "random:index/randomPassword:RandomPassword": {
    source: RANDOM,
    file: "internal/provider/resource_password.go",
    lines: [576, 585, 604, 614, 624, 637, 657, 674, 684, 694, 704, 714],
    flag: "RequiresReplace",
    attributes: [
      "keepers",
      "length",
      "special",
      "upper",
      "lower",
      "number",
      "numeric",
      "min_numeric",
      "min_upper",
      "min_lower",
      "min_special",
      "override_special",
    ],
    sdk: "@pulumi/random/randomPassword",
  },
  "random:index/randomBytes:RandomBytes": {
    source: RANDOM,
    file: "internal/provider/resource_bytes.go",
    lines: [148, 155],
    flag: "RequiresReplace",
    attributes: ["keepers", "length"],
    sdk: "@pulumi/random/randomBytes",
  },
  "command:remote:Command": {
    source: COMMAND,
    file: "provider/pkg/provider/common/inputs.go",
    lines: [10],
    flag: "replaceOnChanges",
    attributes: ["triggers"],
    sdk: "@pulumi/command/remote/command",
    note: "connection, create, stdin are updated in place (the update re-runs `create` when no `update` is set)",
  },
  "command:remote:CopyToRemote": {
    source: COMMAND,
    file: "provider/pkg/provider/remote/copy.go",
    lines: [38],
    flag: "replaceOnChanges",
    attributes: ["triggers"],
    sdk: "@pulumi/command/remote/copyToRemote",
  },
};

/** Terraform's snake_case attribute as the bridged SDK names the input (user_data -> userData). */
export function sdkPropertyName(attribute: string): string {
  return attribute.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** The SDK inputs whose change replaces a resource of `type`; a type missing from the table is an error. */
export function replacementInputs(type: string): readonly string[] {
  const e = REPLACEMENT_TABLE[type];
  if (!e)
    throw new Error(`${type} is not in REPLACEMENT_TABLE (test/helpers/replacement.ts): read its provider schema`);
  return e.attributes.map(sdkPropertyName);
}
