// bench:chain's recipient MX side: what smtp-sink wrote to disk, per phase, and the DKIM check of a sample.
import { createPublicKey } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import * as path from "node:path";
import { dkimVerify } from "mailauth/lib/dkim/verify";

export interface Captured {
  readonly phase: string;
  readonly id: string;
  readonly signed: boolean;
  readonly at: number;
  readonly file: string;
}

/** Reads new sink files; a file counts once its X-Bench-Phase line is there (headers come first). */
export class Sink {
  private readonly seen = new Map<string, Captured>();
  constructor(
    private readonly dir: string,
    /** The DKIM selector a signed message names (with d=example.com). */
    private readonly selector: string,
    private readonly opts: { readonly timeoutMs: number; readonly progress: (s: string) => void },
  ) {}

  scan(): void {
    for (const name of readdirSync(this.dir)) {
      if (this.seen.has(name)) continue;
      const file = path.join(this.dir, name);
      const text = readFileSync(file, "latin1");
      const phase = /^X-Bench-Phase: *(\S+)/im.exec(text)?.[1];
      if (!phase || !/\r?\n\r?\n/.test(text)) continue; // still being written
      const id = /^Message-ID: *<([^@>]+)@/im.exec(text)?.[1] ?? name;
      // Every DKIM-Signature header: since the Ed25519 twin, the RSA signature is not always the first one.
      const sigs = [...text.matchAll(/^DKIM-Signature:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)/gim)].map((m) => m[1] ?? "");
      const selector = new RegExp(`\\bs=${this.selector};`);
      const signed = sigs.some((sig) => /\bd=example\.com;/.test(sig) && selector.test(sig));
      this.seen.set(name, { phase, id, signed, at: statSync(file).mtimeMs, file });
    }
  }

  of(phase: string): Captured[] {
    this.scan();
    return [...this.seen.values()].filter((c) => c.phase === phase);
  }

  /** Waits until `want` messages of a phase are captured (or the timeout); returns them. */
  async wait(phase: string, want: number, timeoutMs = this.opts.timeoutMs): Promise<Captured[]> {
    const end = Date.now() + timeoutMs;
    let got = this.of(phase);
    let told = Date.now();
    while (got.length < want && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 200));
      got = this.of(phase);
      if (Date.now() - told > 15_000) {
        this.opts.progress(`  ${phase}: ${got.length}/${want} captured`);
        told = Date.now();
      }
    }
    return got;
  }
}

/** Verifies DKIM cryptographically (mailauth) on `count` captured messages, spread over the run. */
export async function verifySample(
  messages: readonly Captured[],
  count: number,
  dkim: { readonly privateKeyPem: string; readonly selector: string },
): Promise<{ checked: number; passed: number }> {
  const pub = createPublicKey(dkim.privateKeyPem).export({ type: "spki", format: "der" }).toString("base64");
  const name = `${dkim.selector}._domainkey.example.com`;
  const resolver = async (host: string, type: string): Promise<string[][]> => {
    if (type === "TXT" && host === name) return [[`v=DKIM1; k=rsa; p=${pub}`]];
    throw Object.assign(new Error(`no ${type} for ${host}`), { code: "ENOTFOUND" });
  };
  const step = Math.max(1, Math.floor(messages.length / count));
  let checked = 0;
  let passed = 0;
  for (let i = 0; i < messages.length && checked < count; i += step) {
    const m = messages[i] as Captured;
    const res = await dkimVerify(readFileSync(m.file), { resolver } as Parameters<typeof dkimVerify>[1]);
    checked++;
    if (res.results.some((r) => r.status?.result === "pass" && r.signingDomain === "example.com")) passed++;
  }
  return { checked, passed };
}
