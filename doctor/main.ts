/**
 * `npm run doctor -- <stack> [--outputs <file>] [--resolver <ip>] [--json] [--identity <key>] [--ssh-user root]
 *  [--smtp-probe <host[:port]>] [--timeout <s>]`
 *
 * Compares what the stack published (its real outputs) with the live world: DNS from the chosen resolver, each node
 * over SSH with its pinned host key, DNS blocklists, and the credentials' expiry dates. One line per check; exit 1 on
 * any fail, 2 when it cannot start. It reads and connects, and never changes anything. See docs/doctor.md.
 */
import { checkDmarc, checkFcrdns, checkHelo, checkRecord, checkSpf } from "./checks-dns";
import { certificateExpiry, expiryChecks } from "./checks-expiry";
import { dkimPublicKey, heloFromProbe, hostChecks } from "./checks-host";
import { checkDomainBlocklist, checkIpBlocklists } from "./checks-reputation";
import { type Lookup, nodeLookup } from "./dns";
import { runProbe } from "./host-probe";
import { parseZoneFile, readInputs, runAsProgram, signingDomain, type StackOutputs } from "./outputs";
import { type Check, exitCode, fail, formatLine, summary } from "./report";
import { spfEvaluator } from "./spf";

export interface DoctorOptions {
  readonly stack: string;
  readonly outputsFile?: string;
  readonly resolver?: string;
  readonly json: boolean;
  readonly identity?: string;
  readonly sshUser: string;
  readonly smtpHost: string;
  readonly smtpPort: number;
  readonly timeoutSeconds: number;
}

export const DEFAULT_SMTP_PROBE = "gmail-smtp-in.l.google.com:25";

const USAGE =
  "usage: npm run doctor -- <stack> [--outputs <file>] [--resolver <ip>] [--json] [--identity <ssh key>] " +
  `[--ssh-user root] [--smtp-probe <host[:port]> (default ${DEFAULT_SMTP_PROBE})] [--timeout <seconds> (default 5)]`;

export function parseArgs(argv: readonly string[]): DoctorOptions {
  const flags = new Map<string, string>();
  const rest: string[] = [];
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--json") json = true;
    else if (a.startsWith("--")) {
      const [k, inline] = a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a, undefined];
      const v = inline ?? argv[++i];
      if (!["--outputs", "--resolver", "--identity", "--ssh-user", "--smtp-probe", "--timeout"].includes(k))
        throw new Error(`unknown option ${k}; ${USAGE}`);
      if (v === undefined || v === "") throw new Error(`${k} needs a value; ${USAGE}`);
      flags.set(k, v);
    } else rest.push(a);
  }
  if (rest.length !== 1) throw new Error(USAGE);
  const probe = flags.get("--smtp-probe") ?? DEFAULT_SMTP_PROBE;
  const m = /^(\[[0-9a-f:]+\]|[A-Za-z0-9.-]+)(?::(\d+))?$/.exec(probe);
  if (!m) throw new Error(`--smtp-probe ${JSON.stringify(probe)}: expected <host> or <host>:<port>`);
  const timeout = Number(flags.get("--timeout") ?? "5");
  if (!Number.isInteger(timeout) || timeout < 1 || timeout > 120)
    throw new Error(`--timeout must be a whole number of seconds from 1 to 120, got ${flags.get("--timeout")}`);
  return {
    stack: rest[0],
    outputsFile: flags.get("--outputs"),
    resolver: flags.get("--resolver"),
    json,
    identity: flags.get("--identity"),
    sshUser: flags.get("--ssh-user") ?? "root",
    smtpHost: m[1].replace(/^\[|\]$/g, ""),
    smtpPort: Number(m[2] ?? "25"),
    timeoutSeconds: timeout,
  };
}

/** Every check, in report order: DNS, host, reputation, expiry. */
export async function runDoctor(o: DoctorOptions, out: StackOutputs, dns: Lookup, now = new Date()): Promise<Check[]> {
  const records = parseZoneFile(out.dnsZoneFile);
  const fromDomain = out.defaultSender.split("@")[1].toLowerCase();
  const signDomain = signingDomain(records, out.dkimSelector) ?? fromDomain;
  const spfRecord = records.find((r) => r.type === "TXT" && r.name === fromDomain && r.value.startsWith("v=spf1"));

  const probes = await Promise.all(
    out.nodes.map(async (n) => {
      if (!n.sshHostKey) return { node: n, error: "the outputs have no sshHostKey for this node" };
      try {
        const text = await runProbe(
          n.ipv4,
          n.sshHostKey,
          {
            selector: out.dkimSelector,
            domain: signDomain,
            smtpHost: o.smtpHost,
            smtpPort: o.smtpPort,
            smtpTimeout: o.timeoutSeconds,
          },
          { identity: o.identity, user: o.sshUser, timeoutSeconds: o.timeoutSeconds },
        );
        return { node: n, text };
      } catch (e) {
        return { node: n, error: e instanceof Error ? e.message : String(e) };
      }
    }),
  );

  const evaluate = spfEvaluator(dns);
  const addresses = out.nodes.flatMap((n) => [{ ip: n.ipv4, node: n }, ...(n.ipv6 ? [{ ip: n.ipv6, node: n }] : [])]);
  const dnsChecks = await Promise.all([
    ...records.map((r) => checkRecord(r, dns, o.stack)),
    ...addresses.map(({ ip, node }) => checkSpf(fromDomain, ip, node.name, evaluate, spfRecord, o.stack)),
    checkDmarc(fromDomain, signDomain, dns, o.stack),
    ...addresses.map(({ ip, node }) => checkFcrdns(ip, node, dns, o.stack)),
    ...probes.map((p) => {
      const helo = p.text ? heloFromProbe(p.text.split("@@helo\n")[1]?.split("\n@@")[0] ?? "") : undefined;
      return checkHelo(
        helo ?? p.node.mtaHostname.toLowerCase(),
        helo ? "Postfix's smtp_helo_name" : "the stack's mtaHostname",
        p.node,
        dns,
        o.stack,
      );
    }),
  ]);

  let published: string | undefined;
  try {
    const txt = await dns.txt(`${out.dkimSelector}._domainkey.${signDomain}`);
    published = txt.map(dkimPublicKey).find((k) => k !== undefined);
  } catch {
    published = undefined;
  }
  const host = probes.flatMap((p) =>
    p.text
      ? hostChecks(p.text, {
          node: p.node.name,
          stack: o.stack,
          selector: out.dkimSelector,
          domain: signDomain,
          publishedDkimKey: published,
          tunnel: Boolean(out.relayUrl),
          nowSeconds: Math.floor(Date.now() / 1000),
        })
      : [
          fail(
            "host.ssh",
            "host",
            `SSH to ${p.node.name} (${p.node.ipv4})`,
            p.error ?? "no output",
            "check that this machine's address is in mail-relay:adminCidrs and that --identity is the stack's " +
              "sshPrivateKey; a host-key mismatch means the server is not the one the stack deployed",
          ),
        ],
  );

  const reputation = (
    await Promise.all([
      ...addresses.map(({ ip, node }) => checkIpBlocklists(ip, node.name, dns)),
      checkDomainBlocklist(fromDomain, dns).then((c) => [c]),
    ])
  ).flat();

  const dated = [...(out.credentialExpiry ?? [])];
  // Outputs from before credentialExpiry listed the certificate: read its date from the PEM instead.
  if (out.smtpIngressCertificate && !dated.some((r) => r.kind === "smtp-ingress-certificate"))
    dated.push(certificateExpiry(out.smtpIngressCertificate, o.stack));
  return [...dnsChecks, ...host, ...reputation, ...expiryChecks(dated, now)];
}

async function main(argv: string[]): Promise<number> {
  const inputs = readInputs("doctor", parseArgs, argv);
  if (!inputs) return 2;
  const { o, outputs: outputs } = inputs;
  const dns = nodeLookup(o.resolver, o.timeoutSeconds * 500);
  const checks = await runDoctor(o, outputs, dns);
  if (o.json) {
    console.log(JSON.stringify({ stack: o.stack, resolver: o.resolver ?? "system", checks }, null, 2));
  } else {
    console.log(
      `mail-relay doctor: stack ${o.stack}, resolver ${o.resolver ?? "system"}, ` +
        `${outputs.nodes.length} node(s), outbound probe ${o.smtpHost}:${o.smtpPort}`,
    );
    for (const c of checks) console.log(formatLine(c));
    console.log(summary(checks));
  }
  return exitCode(checks);
}

runAsProgram(module, main);
