import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";
import {
  bimiRecord,
  BimiInput,
  dkimRecord,
  dmarcRecord,
  DmarcInput,
  spfRecord,
  txtContent,
  zoneFileLine,
  ZoneLine,
} from "./records";

export interface DnsNode {
  /** Stable resource-name stem, e.g. "node1". */
  readonly key: string;
  readonly mtaHostname: string;
  readonly ipv4: pulumi.Input<string>;
  readonly ipv6?: pulumi.Input<string>;
}

export interface MailDnsArgs {
  readonly zoneId: pulumi.Input<string>;
  readonly domain: string;
  readonly ttl: number;
  readonly nodes: readonly DnsNode[];
  readonly spf: { readonly includes: readonly string[]; readonly all: "~all" | "-all" };
  /** selector -> public key PEM; every listed selector stays published. */
  readonly dkimPublicKeys: Record<string, pulumi.Input<string>>;
  readonly dmarc: DmarcInput;
  readonly mx: readonly { readonly host: string; readonly priority: number }[];
  readonly bimi?: BimiInput;
}

/** Resource names come from a record's role (and its selector, node or MX host), never its list position. */
export function recordName(prefix: string, role: string): string {
  return `${prefix}-${role.replace(/[^a-z0-9-]+/gi, "-").toLowerCase()}`;
}

/** One DNS record the stack manages. */
export interface ManagedRecordArgs {
  readonly zoneId: pulumi.Input<string>;
  readonly name: string;
  readonly type: string;
  readonly content: pulumi.Input<string>;
  readonly ttl: number;
  readonly proxied?: boolean;
  readonly priority?: number;
  readonly comment: string;
}

/**
 * Create a DNS record together with its zone-file line: every record of the stack is made here, so the dnsZoneFile
 * output can't leave one out.
 */
export function managedRecord(
  resourceName: string,
  r: ManagedRecordArgs,
  opts: pulumi.CustomResourceOptions,
): { record: cloudflare.DnsRecord; line: pulumi.Output<ZoneLine> } {
  const record = new cloudflare.DnsRecord(
    resourceName,
    {
      zoneId: r.zoneId,
      name: r.name,
      type: r.type,
      content: r.content,
      ttl: r.ttl,
      proxied: r.proxied ?? false,
      ...(r.priority !== undefined ? { priority: r.priority } : {}),
      comment: r.comment,
    },
    opts,
  );
  const line = pulumi.output(r.content).apply((content) => ({
    name: r.name,
    type: r.type,
    ttl: r.ttl,
    content,
    priority: r.priority,
    proxied: r.proxied ?? false,
  }));
  return { record, line };
}

/** Zone-file lines as one text, in the order given. */
export function zoneFile(lines: readonly pulumi.Output<ZoneLine>[]): pulumi.Output<string> {
  return pulumi.all([...lines]).apply((ls) => ls.map(zoneFileLine).join("\n"));
}

/**
 * The domain's sending identity on Cloudflare: A/AAAA for each MTA hostname (never proxied, or FCrDNS
 * breaks), one SPF record, a DKIM record per selector, DMARC, the existing mailbox provider's MX, BIMI.
 */
export class MailDns extends pulumi.ComponentResource {
  readonly records: cloudflare.DnsRecord[] = [];
  /** Each record's zone-file line. */
  readonly lines: pulumi.Output<ZoneLine>[] = [];
  /** The whole set as zone-file lines. */
  readonly zoneFile: pulumi.Output<string>;

  constructor(name: string, args: MailDnsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mail-relay:dns:MailDns", name, {}, opts);
    const add = (
      role: string,
      r: { name: string; type: string; content: pulumi.Input<string>; priority?: number; proxied?: boolean },
    ) => {
      const { record, line } = managedRecord(
        recordName(name, role),
        { ...r, zoneId: args.zoneId, ttl: args.ttl, comment: `mail-relay: ${role}` },
        { parent: this },
      );
      this.records.push(record);
      this.lines.push(line);
    };

    for (const n of args.nodes) {
      add(`a-${n.key}`, { name: n.mtaHostname, type: "A", content: n.ipv4 });
      if (n.ipv6 !== undefined) add(`aaaa-${n.key}`, { name: n.mtaHostname, type: "AAAA", content: n.ipv6 });
    }

    const ipv4s = pulumi.all(args.nodes.map((n) => n.ipv4));
    const ipv6s = pulumi.all(args.nodes.flatMap((n) => (n.ipv6 !== undefined ? [n.ipv6] : [])));
    add("spf", {
      name: args.domain,
      type: "TXT",
      content: pulumi
        .all([ipv4s, ipv6s])
        .apply(([v4, v6]) =>
          txtContent(spfRecord({ ipv4: v4, ipv6: v6, includes: args.spf.includes, all: args.spf.all })),
        ),
    });

    for (const [selector, pem] of Object.entries(args.dkimPublicKeys)) {
      add(`dkim-${selector}`, {
        name: `${selector}._domainkey.${args.domain}`,
        type: "TXT",
        content: pulumi.output(pem).apply((p) => txtContent(dkimRecord(p))),
      });
    }
    add("dmarc", { name: `_dmarc.${args.domain}`, type: "TXT", content: txtContent(dmarcRecord(args.dmarc)) });
    for (const mx of args.mx)
      add(`mx-${mx.host}`, { name: args.domain, type: "MX", content: mx.host, priority: mx.priority });
    if (args.bimi)
      add("bimi", { name: `default._bimi.${args.domain}`, type: "TXT", content: txtContent(bimiRecord(args.bimi)) });

    this.zoneFile = zoneFile(this.lines);
    this.registerOutputs({ zoneFile: this.zoneFile });
  }
}
