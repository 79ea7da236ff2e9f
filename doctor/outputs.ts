/**
 * What the stack should look like: its real outputs (`pulumi stack output --json --show-secrets`), or a file holding
 * the same JSON (`--outputs`; the rehearsal captures one). Never mock values: they would check nothing.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { z } from "zod";
import { txtValue } from "../infra/records";

const nodeSchema = z.object({
  name: z.string(),
  mtaHostname: z.string(),
  ipv4: z.string(),
  ipv6: z.string().optional().nullable(),
  sshHostKey: z.string().optional(),
});

/** The lifecycle output: one row per dated credential. */
const expirySchema = z.object({
  credential: z.string(),
  kind: z.string(),
  expiresAt: z.string(),
  renew: z.string(),
});

export const outputsSchema = z.object({
  nodes: z.array(nodeSchema).min(1),
  dnsZoneFile: z.string(),
  dkimSelector: z.string(),
  defaultSender: z.string(),
  relayUrl: z.string().optional().nullable(),
  relayTokens: z.record(z.string()).optional(),
  accessClientIds: z.record(z.string()).optional().nullable(),
  accessClientSecrets: z.record(z.string()).optional().nullable(),
  smtpIngressCertificate: z.string().optional().nullable(),
  credentialExpiry: z.array(expirySchema).optional().nullable(),
});

export type StackOutputs = z.infer<typeof outputsSchema>;
export type ExpectedNode = z.infer<typeof nodeSchema>;
export type CredentialExpiry = z.infer<typeof expirySchema>;

/** Checks the outputs' shape; an error names every missing or wrong key. */
export function parseOutputs(json: unknown, source: string): StackOutputs {
  const r = outputsSchema.safeParse(json);
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => `${i.path.join(".") || "(top)"}: ${i.message}`).join("; ");
  throw new Error(
    `${source} does not hold this program's stack outputs (${issues}); ` +
      "take them from `pulumi stack output --json --show-secrets` of a stack deployed with this version",
  );
}

/**
 * The outputs from `--outputs <file>`, or from `pulumi stack output` for `stack`. Throws a message saying what to
 * do when neither is there.
 */
export function loadOutputs(stack: string, file: string | undefined): StackOutputs {
  if (file) {
    if (!fs.existsSync(file)) throw new Error(`--outputs ${file}: no such file`);
    return parseOutputs(JSON.parse(fs.readFileSync(file, "utf8")), file);
  }
  let text: string;
  try {
    text = execFileSync("pulumi", ["stack", "output", "--json", "--show-secrets", "--stack", stack], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (e) {
    const why = (e as { stderr?: string }).stderr?.trim() || (e as Error).message;
    throw new Error(
      `cannot read the stack's outputs (\`pulumi stack output --json --show-secrets --stack ${stack}\`: ${why}). ` +
        "The doctor compares the live world with what the stack published; without the real outputs it has nothing " +
        "to compare with (mock values would check nothing). Log in to the stack's backend, or pass " +
        "--outputs <file> holding that command's JSON.",
      { cause: e },
    );
  }
  return parseOutputs(JSON.parse(text), `pulumi stack output (${stack})`);
}

/** One record the stack manages, read back from its `dnsZoneFile` output. */
export interface ManagedRecord {
  readonly name: string;
  readonly type: string;
  /** TXT: the assembled value (strings joined); MX/CNAME: the target without the final dot. */
  readonly value: string;
  readonly priority?: number;
  readonly proxied: boolean;
}

/** Parses the zone-file lines `zoneFileLine` (infra/records.ts) writes. */
export function parseZoneFile(text: string): ManagedRecord[] {
  const out: ManagedRecord[] = [];
  for (const line of text.split("\n").filter((l) => l.trim() !== "")) {
    const m = /^(\S+?)\.\t\S+\tIN\t(\S+)\t(.*?)( ; proxied by Cloudflare)?$/.exec(line);
    if (!m) throw new Error(`dnsZoneFile: cannot read the line ${JSON.stringify(line)}`);
    const [, name, type, data, proxied] = m;
    const base = { name: name.toLowerCase(), type, proxied: proxied !== undefined };
    switch (type) {
      case "MX": {
        const mx = /^(\d+) (\S+?)\.?$/.exec(data);
        if (!mx) throw new Error(`dnsZoneFile: MX data ${JSON.stringify(data)} is not "<priority> <host>."`);
        out.push({ ...base, value: mx[2].toLowerCase(), priority: Number(mx[1]) });
        break;
      }
      case "CNAME":
        out.push({ ...base, value: data.replace(/\.$/, "").toLowerCase() });
        break;
      case "TXT":
        out.push({ ...base, value: txtValue(data) });
        break;
      default:
        out.push({ ...base, value: data });
    }
  }
  return out;
}

/** The domain the relay signs for (d=): the one whose `<selector>._domainkey` record the stack publishes. */
export function signingDomain(records: readonly ManagedRecord[], selector: string): string | undefined {
  const prefix = `${selector.toLowerCase()}._domainkey.`;
  return records.find((r) => r.type === "TXT" && r.name.startsWith(prefix))?.name.slice(prefix.length);
}

/**
 * The start of `npm run doctor` and `npm run smoke`: parse the arguments and read the stack's outputs. A problem is
 * printed as `<tool>: <why>` and gives undefined (the caller exits 2).
 */
export function readInputs<O extends { readonly stack: string; readonly outputsFile?: string }>(
  tool: string,
  parse: (argv: string[]) => O,
  argv: string[],
): { o: O; outputs: StackOutputs } | undefined {
  try {
    const o = parse(argv);
    return { o, outputs: loadOutputs(o.stack, o.outputsFile) };
  } catch (e) {
    console.error(`${tool}: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  }
}

/** Runs a tool's main when its file is the program: its exit code, or 2 with the stack of an unexpected error. */
export function runAsProgram(mod: NodeModule, main: (argv: string[]) => Promise<number>): void {
  if (require.main !== mod) return;
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(e instanceof Error ? (e.stack ?? e.message) : e);
      process.exit(2);
    },
  );
}
