// End to end through real software: swaks speaks SMTP (STARTTLS, AUTH LOGIN) to the relay bundle's SMTP ingress, the
// relay queues the message and hands it to a real Postfix + OpenDKIM built from the rendered files (the netns instance
// of testkit/postfix-instance.ts), and the message arrives at an smtp-sink DKIM-signed, with a signature that
// verifies against the key and the client's headers intact. The relay runs from the rendered env file, with only
// instance paths moved (queue, TLS files).
import { spawn, type ChildProcess } from "node:child_process";
import { createPrivateKey, createPublicKey, createHash, verify } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderRelayEnv } from "../../cloud-init";
import { RELAY_SMTP_PORT } from "../../relay/host-contract";
import { BUNDLE, haveNode18, NODE18 } from "../relay/bundle-process";
import { selfSignedCert } from "../../testkit/self-signed-cert";
import { buildConfig, SECRET_TOKEN } from "../../testkit/node-config";
import { parseEnvFile } from "./parsers";
import { INSTANCE_TOOLS, netnsUnavailable, PostfixInstance, waitFor } from "../../testkit/postfix-instance";
import { missing, run, tool } from "../../testkit/real-tools";

const skip = missing("SMTP ingress -> relay -> Postfix + OpenDKIM in a network namespace", {
  tools: [...INSTANCE_TOOLS, "swaks", "openssl", "curl"],
  root: true,
  check: () => {
    if (!existsSync(BUNDLE)) return `${BUNDLE} is missing: run \`npm run build\``;
    const tls = run(tool("swaks") as string, ["--support"]);
    if (!/TLS supported/.test(tls.stdout + tls.stderr))
      return "swaks has no TLS support (apt-get install libnet-ssleay-perl libio-socket-ssl-perl)";
    return netnsUnavailable(`mrsiprobe${process.pid}`);
  },
});

const cfg = buildConfig({ ipv6: false });
const SINK = "127.0.0.1:2626";
let inst: PostfixInstance;
let relay: ChildProcess | undefined;
let relayLog = "";

/**
 * Verifies a DKIM-Signature with c=relaxed/simple and a=rsa-sha256 (RFC 6376 3.4.2, 3.4.3, 3.5) against a public key:
 * the body hash over the simple-canonicalized body, the signature over the relaxed-canonicalized signed headers.
 */
function verifyDkim(
  message: string,
  publicKeyPem: string,
): { bodyHashOk: boolean; signatureOk: boolean; tags: Map<string, string> } {
  const split = message.indexOf("\r\n\r\n");
  const head = message.slice(0, split + 2);
  const body = message.slice(split + 4);
  const fields: string[] = [];
  for (const line of head.split("\r\n").slice(0, -1)) {
    if (/^[ \t]/.test(line)) fields[fields.length - 1] += `\r\n${line}`;
    else fields.push(line);
  }
  const relaxed = (f: string): string => {
    const i = f.indexOf(":");
    return `${f.slice(0, i).trim().toLowerCase()}:${f
      .slice(i + 1)
      .replace(/\r\n/g, "")
      .replace(/[ \t]+/g, " ")
      .trim()}`;
  };
  // The RSA signature (the host also signs with Ed25519, RFC 8463, in a DKIM-Signature of its own).
  const sigField =
    fields.find((f) => /^dkim-signature:/i.test(f) && /(^|;)a=rsa-sha256(;|$)/.test(f.replace(/\s+/g, ""))) ?? "";
  const tags = new Map(
    sigField
      .slice(sigField.indexOf(":") + 1)
      .replace(/\s+/g, "")
      .split(";")
      .filter(Boolean)
      .map((t) => [t.slice(0, t.indexOf("=")), t.slice(t.indexOf("=") + 1)] as [string, string]),
  );
  const simpleBody = body.replace(/(\r\n)*$/, "") + "\r\n";
  const bodyHashOk = createHash("sha256").update(simpleBody).digest("base64") === tags.get("bh");
  const used = new Set<number>();
  const signed = (tags.get("h") ?? "").split(":").map((name) => {
    for (let i = fields.length - 1; i >= 0; i--) {
      if (!used.has(i) && fields[i]!.toLowerCase().startsWith(`${name.toLowerCase()}:`)) {
        used.add(i);
        return `${relaxed(fields[i]!)}\r\n`;
      }
    }
    return ""; // a name signed but absent (oversigning) contributes nothing
  });
  const sigNoB = relaxed(sigField).replace(/b=[^;]*$|b=[^;]*(?=;)/, "b=");
  const data = signed.join("") + sigNoB;
  const signatureOk = verify("sha256", Buffer.from(data), publicKeyPem, Buffer.from(tags.get("b") ?? "", "base64"));
  return { bodyHashOk, signatureOk, tags };
}

/** swaks to the relay's SMTP ingress: STARTTLS verified against the test CA, AUTH as "app", from noreply@. */
function swaksToIngress(auth: "LOGIN" | "PLAIN", to: string, data: string[], input?: string) {
  return inst.inNs(
    tool("swaks") as string,
    [
      "--server",
      `127.0.0.1:${RELAY_SMTP_PORT}`,
      "--tls",
      "--tls-verify",
      "--tls-ca-path",
      join(inst.base, "relay", "ca.pem"),
      "--tls-sni",
      "localhost",
      "--auth",
      auth,
      "--auth-user",
      "app",
      "--auth-password",
      SECRET_TOKEN,
      "--from",
      "noreply@example.com",
      "--to",
      to,
      ...data,
      "--timeout",
      "15",
    ],
    input,
  );
}

describe.skipIf(skip)("SMTP ingress end to end: swaks -> relay SMTP ingress -> Postfix + OpenDKIM -> sink", () => {
  beforeAll(async () => {
    inst = new PostfixInstance(`mrsi${process.pid}`, "smtp-ingress-");
    await inst.start({ host: cfg.host, dkimPrivateKeyPem: cfg.secrets.dkimPrivateKeyPem, sink: SINK, sinkBacklog: 10 });
    const dir = join(inst.base, "relay");
    mkdirSync(dir, { recursive: true });
    const { key, cert } = selfSignedCert();
    writeFileSync(join(dir, "smtp-ingress.key"), key, { mode: 0o640 });
    writeFileSync(join(dir, "smtp-ingress.crt"), cert);
    writeFileSync(join(dir, "ca.pem"), cert);
    // The env file as the host gets it, with only the instance paths (queue, TLS files) moved.
    const envText = renderRelayEnv({
      ...cfg.relayEnv,
      queueRoot: join(dir, "queue"),
      smtpIngress: {
        listen: `127.0.0.1:${RELAY_SMTP_PORT}`,
        hostname: "smtp-relay.example.com",
        tlsKeyFile: join(dir, "smtp-ingress.key"),
        tlsCertFile: join(dir, "smtp-ingress.crt"),
      },
    });
    const node = haveNode18 ? NODE18 : { bin: process.execPath, env: {} };
    relay = spawn(tool("ip") as string, ["netns", "exec", inst.ns, node.bin, BUNDLE], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...node.env, ...Object.fromEntries(parseEnvFile(envText)) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    relay.stdout!.on("data", (d: Buffer) => (relayLog += d));
    relay.stderr!.on("data", (d: Buffer) => (relayLog += d));
    await waitFor(
      () => /"msg":"mail-relay listening"/.test(relayLog) || relay!.exitCode !== null,
      "the relay to listen",
    );
    if (relay.exitCode !== null) throw new Error(`relay exited: ${relayLog}`);
  }, 90_000);

  afterAll(async () => {
    if (relay && relay.exitCode === null) {
      relay.kill("SIGTERM");
      await waitFor(() => relay!.exitCode !== null || relay!.signalCode !== null, "the relay to stop").catch(() =>
        relay!.kill("SIGKILL"),
      );
    }
    inst?.stop();
  });

  it("a message sent over SMTP ingress arrives DKIM-signed (the signature verifies), with the client's headers intact and Bcc gone", async () => {
    const dataFile = join(inst.base, "relay", "message.eml");
    const headers = [
      "From: Gitea <noreply@example.com>",
      "To: someone@example.org",
      "Bcc: hidden@example.net",
      "Subject: [gitea] a folded",
      " subject line",
      "X-Gitea-Reason: review_requested",
      "MIME-Version: 1.0",
      "Content-Type: text/plain; charset=UTF-8",
    ];
    writeFileSync(
      dataFile,
      [...headers, "", "Hello from an app that only speaks SMTP.", "", "-- ", "signature"].join("\r\n") + "\r\n",
    );
    const before = inst.sunk().length;
    const r = swaksToIngress("LOGIN", "someone@example.org,hidden@example.net", ["--data", dataFile]);
    const out = r.stdout + r.stderr;
    const id = /<~ {2}250 2\.0\.0 queued as ([0-9a-f-]{36})/.exec(out)?.[1];
    expect(id, out).toBeDefined();
    await waitFor(() => inst.sunk().length > before, "delivery to the sink", 30_000);

    const files = inst
      .sunk()
      .sort()
      .map((f) => readFileSync(join(inst.sinkDir, f), "utf8"));
    const msgs = files.filter((m) => m.includes(`Message-ID: <${id}@`));
    expect(msgs.length, files.join("\n=====\n").slice(0, 3000)).toBeGreaterThanOrEqual(1);
    // smtp-sink puts its own X-Client-*/X-Helo-*/X-Mail-*/X-Rcpt-* lines first; the message follows.
    const raw = msgs[0]!
      .replace(/\r?\n/g, "\r\n")
      .replace(/^(X-(Client-Addr|Client-Proto|Helo-Args|Mail-Args|Rcpt-Args):[^\r\n]*\r\n)+/, "");
    for (const h of [
      "From: Gitea <noreply@example.com>",
      "To: someone@example.org",
      "Subject: [gitea] a folded\r\n subject line",
      "X-Gitea-Reason: review_requested",
      "Content-Type: text/plain; charset=UTF-8",
    ]) {
      expect(raw, h).toContain(`\r\n${h}\r\n`);
    }
    expect(raw).not.toMatch(/^Bcc:/im);
    // (smtp-sink ends its dump with empty lines of its own)
    expect(raw).toMatch(/\r\n\r\nHello from an app that only speaks SMTP\.\r\n\r\n-- \r\nsignature\r\n(\r\n)*$/);

    const publicKey = createPublicKey(createPrivateKey(cfg.secrets.dkimPrivateKeyPem))
      .export({ type: "spki", format: "pem" })
      .toString();
    const v = verifyDkim(raw, publicKey);
    expect(v.tags.get("d")).toBe("example.com");
    expect(v.tags.get("s")).toBe("mail202611");
    expect(v.tags.get("h")?.toLowerCase().split(":")).toEqual(
      expect.arrayContaining(["from", "to", "subject", "date"]),
    );
    expect(v.bodyHashOk).toBe(true);
    expect(v.signatureOk).toBe(true);
    // the checker can fail: one changed header byte breaks the signature
    expect(
      verifyDkim(
        raw.replace("review_requested", "review_requestee").replace("Subject: [gitea]", "Subject: [GITEA]"),
        publicKey,
      ).signatureOk,
    ).toBe(false);

    // the same status lookup as /send: handed off, with Postfix's queue id
    const status = inst.inNs(tool("curl") as string, [
      "-s",
      "-H",
      `Authorization: Bearer ${SECRET_TOKEN}`,
      `http://127.0.0.1:2525/messages/${id}`,
    ]);
    expect(JSON.parse(status.stdout).message).toMatchObject({
      id,
      state: "handed_off",
      postfixQueueId: expect.stringMatching(/^[0-9A-Za-z]+$/),
    });
  });

  it("a smuggling attempt through the same path is refused with 554 and nothing reaches Postfix", async () => {
    const dataFile = join(inst.base, "relay", "smuggle.eml");
    // swaks would turn every LF into CRLF; --no-data-fixup sends these bytes as they are (terminator included)
    writeFileSync(
      dataFile,
      "From: noreply@example.com\r\nTo: someone@example.org\r\nSubject: x\r\n\r\nhello\n.\nMAIL FROM:<noreply@example.com>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n",
    );
    const before = inst.sunk().length;
    const r = swaksToIngress(
      "PLAIN",
      "someone@example.org",
      ["--data", "-", "--no-data-fixup"],
      readFileSync(dataFile, "utf8"),
    );
    const out = r.stdout + r.stderr;
    expect(out).toMatch(/<~\* +554 5\.5\.2 message refused: bare <LF>/);
    await new Promise((res) => setTimeout(res, 2000));
    expect(inst.sunk().length).toBe(before);
    expect(
      inst
        .sunk()
        .map((f) => readFileSync(join(inst.sinkDir, f), "utf8"))
        .some((m) => m.includes("smuggled")),
    ).toBe(false);
  });
});
