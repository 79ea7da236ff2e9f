// The cross-door equivalence test (issue 19): every admission rule gives the same verdict through POST /send
// (fastify's app.inject) and through the SMTP ingress (a real SMTP client on 127.0.0.1:0), over a table of cases and
// a property over address spellings. A rule added to one door and not the other fails here.
import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../relay/app";
import type { RelayConfig } from "../../relay/config";
import { SMTP_REPLY, type ErrorCode } from "../../relay/errors";
import type { Job } from "../../relay/storage/queue";
import { QueueStore } from "../../relay/storage/queue";
import { SmtpIngress } from "../../relay/smtp-ingress";
import { SuppressionList } from "../../relay/storage/suppression";
import { RawSmtp } from "../../testkit/raw-smtp";
import { haveOpenssl, selfSignedCert } from "../../testkit/self-signed-cert";
import { auth, captureLog, okHandoff, queueOptions, tempDir, testConfig, TOKEN_APP, TOKEN_BILLING } from "./fixtures";

type Caller = "app" | "billing";
const TOKENS: Record<Caller, string> = { app: TOKEN_APP, billing: TOKEN_BILLING };

/** One message as both doors can express it: the HTTP body's fields, or MAIL FROM/RCPT TO and the same header. */
interface Msg {
  readonly from?: string;
  readonly to?: readonly string[];
  /** Extra header fields (HTTP `headers`, SMTP header lines). */
  readonly headers?: Readonly<Record<string, string>>;
  readonly text?: string;
}

type Verdict = "accepted" | ErrorCode;

interface Case {
  readonly rule: string;
  readonly caller?: Caller;
  readonly config?: Partial<RelayConfig>;
  readonly suppressed?: readonly string[];
  /** Sent in order; each step's verdict is compared. */
  readonly steps: readonly (Msg & { readonly expect: Verdict })[];
}

/** What a door needs: a queue and a suppression list in a temp dir, the config of the case, a log. */
interface RelayParts {
  readonly root: string;
  readonly queue: QueueStore;
  readonly suppressions: SuppressionList;
  readonly log: ReturnType<typeof captureLog>["log"];
  readonly config: RelayConfig;
  close(): void;
}

async function relayParts(c: Case): Promise<RelayParts> {
  const tmp = tempDir("doors-");
  const queue = new QueueStore(queueOptions(tmp.dir));
  await queue.open();
  const suppressions = new SuppressionList(tmp.dir);
  await suppressions.open();
  for (const email of c.suppressed ?? []) await suppressions.add({ email, reason: "manual", origin: "operator" });
  const { log } = captureLog();
  const config = testConfig({ queueRoot: tmp.dir, ...c.config });
  return { root: tmp.dir, queue, suppressions, log, config, close: tmp.cleanup };
}

async function sendHttp(c: Case): Promise<{ verdicts: Verdict[]; jobs: Job[] }> {
  const r = await relayParts(c);
  const app = await buildApp({
    config: r.config,
    queue: r.queue,
    handoff: okHandoff,
    log: r.log,
    suppressions: r.suppressions,
  });
  const verdicts: Verdict[] = [];
  try {
    for (const m of c.steps) {
      const res = await app.inject({
        method: "POST",
        url: "/send",
        headers: auth(TOKENS[c.caller ?? "app"]),
        payload: {
          from: m.from ?? "noreply@example.com",
          to: m.to ?? ["user@example.net"],
          subject: "Same rule, both doors",
          text: m.text ?? "hello",
          ...(m.headers ? { headers: m.headers } : {}),
        },
      });
      verdicts.push(res.statusCode === 202 ? "accepted" : (res.json().error.code as ErrorCode));
    }
    return { verdicts, jobs: pendingJobs(r.root) };
  } finally {
    await app.close();
    r.close();
  }
}

async function sendSmtp(c: Case): Promise<{ verdicts: Verdict[]; jobs: Job[] }> {
  const r = await relayParts(c);
  const { log, lines } = captureLog();
  const ingress = new SmtpIngress({
    config: { ...r.config, smtpIngress: { listen: { host: "127.0.0.1", port: 0 }, hostname: "smtp.example.com" } },
    tls: selfSignedCert(),
    queue: r.queue,
    suppressions: r.suppressions,
    log,
  });
  const port = Number(new URL(await ingress.listen("127.0.0.1", 0)).port);
  const { client } = await RawSmtp.connect(port);
  const caller = c.caller ?? "app";
  const verdicts: Verdict[] = [];
  try {
    expect(await client.login(selfSignedCert().cert, caller, TOKENS[caller])).toMatch(/^235 /);
    for (const m of c.steps) {
      const from = m.from ?? "noreply@example.com";
      const to = m.to ?? ["user@example.net"];
      const data =
        [
          `From: Same Rule <${from}>`,
          `To: ${to.join(", ")}`,
          "Subject: Same rule, both doors",
          ...Object.entries(m.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
          "",
          m.text ?? "hello",
        ].join("\r\n") + "\r\n.\r\n";
      const before = lines.length;
      let reply = await client.cmd(`MAIL FROM:<${from}>`);
      for (const rcpt of to) if (reply.startsWith("250")) reply = await client.cmd(`RCPT TO:<${rcpt}>`);
      if (reply.startsWith("250")) reply = await client.cmd("DATA");
      if (reply.startsWith("354")) {
        client.send(data);
        reply = await client.reply();
      }
      if (reply.startsWith("250 2.0.0 queued")) verdicts.push("accepted");
      else {
        // The reason the ingress logged, and the reply SMTP_REPLY maps it to.
        const refused = lines
          .slice(before)
          .map((l) => JSON.parse(l) as { msg: string; code?: string })
          .filter((l) => l.msg === "smtp refused" || l.msg === "smtp failed");
        const code = refused[refused.length - 1]?.code as ErrorCode | undefined;
        expect(code, `no refusal logged for ${reply}`).toBeDefined();
        const mapped = SMTP_REPLY[code as ErrorCode];
        if (mapped) expect(reply).toMatch(new RegExp(`^${mapped.code} ${mapped.enhanced.replace(/\./g, "\\.")} `));
        verdicts.push(code as ErrorCode);
        expect(await client.cmd("RSET")).toMatch(/^250 /);
      }
    }
    return { verdicts, jobs: pendingJobs(r.root) };
  } finally {
    client.close();
    await ingress.close();
    r.close();
  }
}

function pendingJobs(root: string): Job[] {
  const dir = path.join(root, "pending");
  return readdirSync(dir).map((f) => JSON.parse(readFileSync(path.join(dir, f), "utf8")) as Job);
}

const CASES: readonly Case[] = [
  // sender lists
  { rule: "an allowed sender is accepted", steps: [{ expect: "accepted" }] },
  {
    rule: "a sender outside RELAY_ALLOWED_FROM is refused",
    steps: [{ from: "ceo@example.com", expect: "from_not_allowed" }],
  },
  {
    rule: "a caller's own sender list is applied (billing may use tickets@ only)",
    caller: "billing",
    config: {
      allowedFrom: new Set(["noreply@example.com", "tickets@example.com"]),
      callerFrom: new Map([["billing", new Set(["tickets@example.com"])]]),
    },
    steps: [
      { from: "noreply@example.com", expect: "from_not_allowed" },
      { from: "tickets@example.com", expect: "accepted" },
    ],
  },
  {
    rule: "a sender is compared in canonical form (quoted local part, domain case)",
    steps: [
      { from: '"noreply"@example.com', expect: "accepted" },
      { from: "noreply@EXAMPLE.com", expect: "accepted" },
    ],
  },
  // quotas
  {
    rule: "the per-caller recipient quota holds, and a refused message uses none of it",
    config: { quotas: { recipientsPerMin: 2, recipientsPerDay: 100, bytesPerMin: 1e9, bytesPerDay: 1e9 } },
    suppressed: ["gone@example.net"],
    steps: [
      { to: ["gone@example.net", "a@example.net"], expect: "recipient_suppressed" },
      { to: ["a@example.net", "b@example.net"], expect: "accepted" },
      { to: ["c@example.net"], expect: "quota_exceeded" },
    ],
  },
  {
    rule: "the per-caller byte quota holds",
    config: { quotas: { recipientsPerMin: 100, recipientsPerDay: 100, bytesPerMin: 1500, bytesPerDay: 1e9 } },
    steps: [
      { text: "x".repeat(300), expect: "accepted" },
      { text: "y".repeat(900), expect: "quota_exceeded" },
    ],
  },
  // suppression, in every spelling of the mailbox
  ...["gone@example.net", '"gone"@example.net', "gone@EXAMPLE.NET", "Gone@example.net"].map((spelling): Case => ({
    rule: `a suppressed mailbox is refused, spelled ${spelling}`,
    suppressed: ["gone@example.net"],
    steps: [{ to: ["ok@example.net", spelling], expect: "recipient_suppressed" }],
  })),
  // canonical addresses
  {
    rule: "a quoted local part that needs quoting is refused",
    steps: [{ to: ['"x,y"@example.net'], expect: "address_needs_quoting" }],
  },
  {
    rule: "a mixed-script (confusable) domain is refused",
    steps: [{ to: ["a@xn--pypal-4ve.com"], expect: "confusable_domain" }],
  },
  { rule: "an address starting with - is refused", steps: [{ to: ["-oQ@example.net"], expect: "invalid_address" }] },
  // recipient limits
  {
    rule: "the recipient limit holds",
    config: { maxRecipients: 2 },
    steps: [
      { to: ["a@example.net", "b@example.net"], expect: "accepted" },
      { to: ["a@example.net", "b@example.net", "c@example.net"], expect: "too_many_recipients" },
    ],
  },
  // size
  {
    rule: "the message size limit holds",
    config: { maxMessageBytes: 3000 },
    steps: [
      { text: "z".repeat(500), expect: "accepted" },
      { text: `${"z".repeat(76)}\r\n`.repeat(60), expect: "message_too_large" },
    ],
  },
  // forbidden headers
  ...["X-Spam-Flag", "X-MS-Exchange-Organization-SCL", "DKIM-Signature", "ARC-Seal", "X-Original-Message-ID"].map(
    (name): Case => ({
      rule: `a caller may not set ${name}`,
      steps: [{ headers: { [name]: "1" }, expect: "header_not_allowed" }],
    }),
  ),
  { rule: "an ordinary X- header is kept", steps: [{ headers: { "X-Campaign": "spring" }, expect: "accepted" }] },
];

const skip = !haveOpenssl;
describe.skipIf(skip)("every admission rule gives the same verdict through POST /send and the SMTP ingress", () => {
  for (const c of CASES) {
    it(`${c.rule}`, async () => {
      const http = await sendHttp(c);
      const smtp = await sendSmtp(c);
      const expected = c.steps.map((s) => s.expect);
      expect({ http: http.verdicts, smtp: smtp.verdicts }).toEqual({ http: expected, smtp: expected });
      // Message-ID and canonical envelope: whatever door, the queued message carries the relay's own Message-ID and
      // canonical, lower-case-domain envelope addresses.
      for (const j of [...http.jobs, ...smtp.jobs]) {
        const ids = j.raw.match(/^Message-ID: *(.*)$/gim) ?? [];
        expect(ids).toEqual([`Message-ID: <${j.id}@mail.example.com>`]);
        for (const a of [j.envelope.from, ...j.envelope.to]) expect(a).toMatch(/^[^"@]+@[a-z0-9.-]+$/);
      }
      expect(http.jobs.length).toBe(smtp.jobs.length);
    });
  }
});

// Address spellings: a random local part, quoted or not, with the domain in random case. Each door must queue the
// same canonical envelope, and refuse it alike when the mailbox is suppressed.
const atext = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~".split(""));
const spelling = fc
  .record({
    local: fc.string({ unit: atext, minLength: 1, maxLength: 12 }).filter((l) => !l.startsWith("-")),
    quoted: fc.boolean(),
    domainCase: fc.array(fc.boolean(), { minLength: 11, maxLength: 11 }),
  })
  .map(({ local, quoted, domainCase }) => ({
    canonical: `${local}@example.net`,
    written: `${quoted ? `"${local}"` : local}@${[..."example.net"].map((ch, i) => (domainCase[i] ? ch.toUpperCase() : ch)).join("")}`,
  }));

describe.skipIf(skip)("address spellings: both doors agree (property)", () => {
  it("every spelling of a mailbox queues the same canonical envelope on both doors, and a suppressed one is refused on both", async () => {
    await fc.assert(
      fc.asyncProperty(spelling, fc.boolean(), async (s, suppressed) => {
        const c: Case = {
          rule: "spelling",
          suppressed: suppressed ? [s.canonical] : [],
          steps: [{ to: [s.written], expect: suppressed ? "recipient_suppressed" : "accepted" }],
        };
        const http = await sendHttp(c);
        const smtp = await sendSmtp(c);
        expect(http.verdicts).toEqual(smtp.verdicts);
        expect(http.verdicts).toEqual([c.steps[0]!.expect]);
        expect(http.jobs.map((j) => j.envelope.to)).toEqual(smtp.jobs.map((j) => j.envelope.to));
        if (!suppressed) expect(http.jobs[0]!.envelope.to).toEqual([s.canonical]);
      }),
      { numRuns: 12 },
    );
  });
});
