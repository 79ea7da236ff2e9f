// The one admission policy of the relay: whether a message from an authenticated caller may enter the queue. Both
// doors (POST /send in app.ts, the SMTP ingress) are thin adapters around it: they translate their input into these
// calls and a RelayError back into an HTTP status or an SMTP reply (errors.ts). No other module applies these rules.
//
// The rules, in the order a door meets them:
// - recipientCount: the recipient limit, on a count alone (before any address is parsed);
// - address / sender: every address in canonical form (canonical-address.ts), senders on the caller's list;
// - headerName: the fields no caller may set (headers.ts);
// - author: From: and Sender: as exactly one allowed mailbox, parsed strictly (author.ts);
// - size: the message size limit;
// - messageId: the Message-ID the relay writes (the only one the delivery tracker trusts);
// - admit: the last checks on the message as it will be queued (its From: domain is one OpenDKIM signs, its
//   Message-ID is the relay's, no suppressed recipient), then the caller's quotas, charged only if the queue takes it.
import type { Quotas } from "../config/env";
import { RelayError } from "../errors";
import { CallerQuotas } from "../quota";
import type { SuppressionList } from "../storage";
import { parseAuthor } from "./author";
import { addressKey, canonicalAddress, lookupKey } from "./canonical-address";
import { forbiddenHeader } from "./headers";

export { addressKey, canonicalAddress, lookupKey } from "./canonical-address";
export { FORBIDDEN_HEADERS, ORIGINAL_MESSAGE_ID_HEADER, RESERVED_X_HEADERS } from "./headers";
export { parseAuthor } from "./author";

export interface AdmissionConfig {
  readonly allowedFrom: ReadonlySet<string>;
  /** Caller -> its own sender list (a subset of allowedFrom); a caller without one may use allowedFrom. */
  readonly callerFrom: ReadonlyMap<string, ReadonlySet<string>>;
  readonly quotas: Quotas;
  readonly maxRecipients: number;
  readonly maxMessageBytes: number;
  readonly messageIdDomain: string;
}

export interface AdmissionDeps {
  readonly suppressions?: Pick<SuppressionList, "assertDeliverable">;
}

/** A message as it will be queued: envelope addresses already canonical (from address() and sender()). */
export interface Candidate {
  readonly id: string;
  readonly caller: string;
  readonly envelope: { readonly from: string; readonly to: readonly string[] };
  /** The message, CRLF line ends, as it will be handed to Postfix. */
  readonly raw: string;
  readonly createdAt: number;
}

/** Unfolded values of the fields named `name` (lower-case) in the header of `raw`. */
export function headerValues(raw: string, name: string): string[] {
  const end = raw.indexOf("\r\n\r\n");
  const head = end < 0 ? raw : raw.slice(0, end + 2);
  const out: string[] = [];
  const lines = head.split("\r\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const colon = line.indexOf(":");
    if (colon <= 0 || line.slice(0, colon).trimEnd().toLowerCase() !== name) continue;
    let value = line.slice(colon + 1);
    while (i + 1 < lines.length && /^[ \t]/.test(lines[i + 1] as string)) value += lines[++i];
    out.push(value);
  }
  return out;
}

export class Admission {
  private readonly quotas: CallerQuotas;
  private readonly allowedFrom: ReadonlySet<string>;
  private readonly callerFrom: ReadonlyMap<string, ReadonlySet<string>>;
  /** The domains OpenDKIM signs: infra renders SigningTable `*@domain` and keeps every allowed sender at `domain`. */
  readonly signingDomains: ReadonlySet<string>;

  constructor(
    private readonly config: AdmissionConfig,
    private readonly deps: AdmissionDeps = {},
  ) {
    this.quotas = new CallerQuotas(config.quotas);
    // Sender lists in the same canonical form as what they are compared with.
    const keys = (set: ReadonlySet<string>): ReadonlySet<string> => new Set([...set].map(lookupKey));
    this.allowedFrom = keys(config.allowedFrom);
    this.callerFrom = new Map([...config.callerFrom].map(([caller, set]) => [caller, keys(set)]));
    this.signingDomains = new Set([...this.allowedFrom].map((a) => a.slice(a.lastIndexOf("@") + 1)));
  }

  /** The recipient limit, on the count alone: a door calls it before it parses a single address. */
  recipientCount(n: number, what = "to+cc+bcc"): void {
    if (n > this.config.maxRecipients)
      throw new RelayError(
        "too_many_recipients",
        `more than ${this.config.maxRecipients} recipients (RELAY_MAX_RECIPIENTS): ${what} has ${n}; send the rest ` +
          `in another message`,
        "to",
      );
  }

  /** Any address -> its canonical form, or the refusal naming `field`. */
  address(input: string, field: string): string {
    const c = canonicalAddress(input);
    if (c.ok) return c.address;
    switch (c.problem) {
      case "invalid":
        return this.fail(
          "invalid_address",
          `${field} ${JSON.stringify(input)} is not a valid address: ${c.detail}`,
          field,
        );
      case "needs_quoting":
        return this.fail("address_needs_quoting", `${field} ${JSON.stringify(input)}: ${c.detail}`, field);
      case "confusable_domain":
        return this.fail("confusable_domain", `${field} ${JSON.stringify(input)}: ${c.detail}`, field);
      default: {
        const never: never = c.problem;
        throw new Error(`unknown address problem ${String(never)}`);
      }
    }
  }

  private fail(code: "invalid_address" | "address_needs_quoting" | "confusable_domain", msg: string, f: string): never {
    throw new RelayError(code, msg, f);
  }

  /** The senders `caller` may use (lower-case canonical). */
  sendersOf(caller: string): ReadonlySet<string> {
    return this.callerFrom.get(caller) ?? this.allowedFrom;
  }

  /** A sender address (HTTP `from`, SMTP MAIL FROM): canonical, and on the caller's list. */
  sender(caller: string, input: string, field: string): string {
    if (input === "")
      throw new RelayError("from_not_allowed", `${field} <> (the null sender) is not an allowed sender`, field);
    const address = this.address(input, field);
    if (!this.sendersOf(caller).has(addressKey(address)))
      throw new RelayError(
        "from_not_allowed",
        `${field} ${address} is not an allowed sender for this caller (its list in RELAY_CALLER_FROM, else ` +
          `RELAY_ALLOWED_FROM)`,
        field,
      );
    return address;
  }

  /** An author field (From:, Sender:): exactly one mailbox, parsed strictly, whose address the caller may use. */
  author(caller: string, label: "From:" | "Sender:", value: string): string {
    const a = parseAuthor(value);
    if (!a.ok) throw new RelayError("invalid_author", `the ${label} header is refused: ${a.detail}`, label);
    return this.sender(caller, a.address, `the ${label} header address`);
  }

  /** A header field a caller sets (an HTTP custom header, an SMTP client's field). */
  headerName(name: string, field = name): void {
    const why = forbiddenHeader(name);
    if (why !== undefined) throw new RelayError("header_not_allowed", `${field} is not allowed: ${why}`, field);
  }

  /** The size limit on the message as it will be queued (after MIME encoding on the HTTP door). */
  size(bytes: number, hint = ""): void {
    if (bytes > this.config.maxMessageBytes)
      throw new RelayError(
        "message_too_large",
        `the message is ${bytes} bytes; the limit is ${this.config.maxMessageBytes} (RELAY_MAX_MESSAGE_BYTES${hint})`,
      );
  }

  /** The Message-ID the relay writes for job `id`: the only form the delivery tracker ties to a message. */
  messageId(id: string): string {
    return `<${id}@${this.config.messageIdDomain}>`;
  }

  /**
   * The last checks on the message as it will be queued, then `enqueue`. The caller's quotas are charged only when
   * the queue takes it (a refusal, a conflict or a failed write counts nothing).
   */
  async admit<R>(c: Candidate, enqueue: () => Promise<R>): Promise<R> {
    this.recipientCount(c.envelope.to.length, "the envelope");
    this.assertSignable(c);
    await this.deps.suppressions?.assertDeliverable(c.envelope.to, c.caller);
    const bytes = Buffer.byteLength(c.raw, "utf8");
    this.quotas.charge(c.caller, c.envelope.to.length, bytes, c.createdAt);
    try {
      return await enqueue();
    } catch (err) {
      this.quotas.refund(c.caller, c.envelope.to.length, bytes, c.createdAt);
      throw err;
    }
  }

  /**
   * Invariants, whatever door built the message: one From: whose domain OpenDKIM signs, and the relay's own
   * Message-ID. A violation is a relay bug; it is refused, never handed off unsigned or untrackable.
   */
  private assertSignable(c: Candidate): void {
    const from = headerValues(c.raw, "from");
    const author = from.length === 1 ? parseAuthor(from[0] as string) : undefined;
    const canonical = author?.ok ? canonicalAddress(author.address) : undefined;
    if (!canonical?.ok || !this.signingDomains.has(canonical.domain))
      throw new RelayError(
        "from_not_signable",
        `the message's From: is not one address in a domain OpenDKIM signs (${[...this.signingDomains].join(", ")})`,
        "from",
      );
    const ids = headerValues(c.raw, "message-id");
    if (ids.length !== 1 || (ids[0] as string).trim() !== this.messageId(c.id))
      throw new RelayError("internal", `message ${c.id} does not carry the relay's Message-ID`);
  }
}
