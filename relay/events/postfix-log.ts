/**
 * Parses the Postfix delivery log (maillog_file written by postlogd, or syslog lines: same shape) into the few facts
 * the tracker needs. Pure functions: test/relay/events/postfix-log.test.ts feeds it real Postfix lines.
 */

export type RecipientStatus = "sent" | "deferred" | "bounced";

export type LogFact =
  /** cleanup: the queue id belongs to the message with this Message-ID. */
  | { readonly kind: "message-id"; readonly queueId: string; readonly messageId: string; readonly at: number }
  /** smtp/lmtp/error/local/virtual/discard: one delivery attempt for one recipient. */
  | {
      readonly kind: "recipient";
      readonly queueId: string;
      readonly recipient: string;
      readonly status: RecipientStatus;
      readonly dsn: string;
      readonly relay: string;
      /** Postfix's `delay=`: seconds since the message arrived in Postfix. */
      readonly delaySeconds: number;
      /** The text in parentheses after status=…: the remote reply or Postfix's reason. */
      readonly reply: string;
      readonly at: number;
    }
  /** qmgr: the message reached maximal_queue_lifetime and was returned to the sender. */
  | { readonly kind: "expired"; readonly queueId: string; readonly at: number }
  /** qmgr: the queue file is gone (every recipient is final). */
  | { readonly kind: "removed"; readonly queueId: string; readonly at: number };

export type ParseResult =
  { readonly kind: "fact"; readonly fact: LogFact } | { readonly kind: "ignored" } | { readonly kind: "unparsed" };

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

// The service is the last part of the tag: "postfix/smtp", "postfix/relay/smtp" (syslog_name=postfix/$service_name).
// "Nov 30 10:00:01.123456 host postfix/smtp[126]: " (postlogd, syslog) or "2026-11-30T10:00:01.123456+00:00 host
// postfix/smtp[126]: " (rsyslog)
const HEADER =
  /^(?:([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.(\d+))?|(\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:?\d\d)?)) +\S+ +postfix[\w.-]*(?:\/[\w.-]+)*\/([\w.-]+)\[\d+\]: (.*)$/;
const QUEUE_ID = /^([0-9A-Za-z]{5,20}): (.*)$/;
const DELIVERY_AGENTS = new Set(["smtp", "lmtp", "error", "retry", "local", "virtual", "pipe", "discard"]);

/**
 * Syslog timestamps have no year: take the reader's year, or last year if that would put the line >1 day in the future.
 */
function timeOf(m: RegExpExecArray, now: number): number {
  if (m[7] !== undefined) {
    const t = Date.parse(m[7]);
    return Number.isNaN(t) ? now : t;
  }
  const month = MONTHS.indexOf(m[1] as string);
  const year = new Date(now).getUTCFullYear();
  const ms = m[6] !== undefined ? Math.round(Number(`0.${m[6]}`) * 1000) : 0;
  const at = (y: number): number => Date.UTC(y, month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]), ms);
  const t = at(year);
  return t - now > 86_400_000 ? at(year - 1) : t;
}

/**
 * `key=value, key=value, ... status=sent (reply)`: read left to right. A `<...>` value (to=, orig_to=) ends at the
 * `>` outside a quoted local part, so a recipient such as `<"a>, b (c"@example.net>` stays one value; other values
 * end at the next ", " or " (" (the status text is taken separately).
 */
function fields(rest: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < rest.length) {
    const eq = rest.indexOf("=", i);
    if (eq < 0) break;
    const key = rest.slice(i, eq);
    let j = eq + 1;
    if (rest[j] === "<") {
      let quoted = false;
      for (j++; j < rest.length; j++) {
        const c = rest[j];
        if (quoted && c === "\\") j++;
        else if (c === '"') quoted = !quoted;
        else if (c === ">" && !quoted) break;
      }
      j = Math.min(j + 1, rest.length);
    } else {
      const comma = rest.indexOf(", ", j);
      const paren = rest.indexOf(" (", j);
      const ends = [comma, paren].filter((x) => x >= 0);
      j = ends.length > 0 ? Math.min(...ends) : rest.length;
    }
    out.set(key, rest.slice(eq + 1, j));
    if (rest.startsWith(" (", j)) break; // the status text follows: no more key=value pairs
    if (!rest.startsWith(", ", j)) break;
    i = j + 2;
  }
  return out;
}

/**
 * The text inside the outermost parentheses after `status=...`: Postfix's reason, which may itself contain parentheses.
 */
function statusText(rest: string, from: number): string {
  const at = rest.slice(from).search(/status=\w+ \(/);
  if (at < 0) return "";
  const i = from + at;
  const open = rest.indexOf("(", i);
  return rest.endsWith(")") ? rest.slice(open + 1, -1) : rest.slice(open + 1);
}

function unbracket(v: string | undefined): string | undefined {
  const m = v === undefined ? null : /^<(.*)>$/.exec(v);
  return m ? (m[1] as string) : undefined;
}

/**
 * One log line -> a fact, "ignored" (a Postfix line we do not need) or "unparsed" (a line we should understand and
 * don't).
 */
export function parsePostfixLogLine(line: string, now = Date.now()): ParseResult {
  const m = HEADER.exec(line);
  if (!m) return { kind: "unparsed" };
  const service = m[8] as string;
  const q = QUEUE_ID.exec(m[9] as string);
  if (!q) return { kind: "ignored" }; // connect/disconnect, warnings, daemon started, statistics
  const queueId = q[1] as string;
  const rest = q[2] as string;
  const at = timeOf(m, now);

  if (service === "cleanup" && rest.startsWith("message-id=")) {
    const id = unbracket(rest.slice("message-id=".length).trim()) ?? rest.slice("message-id=".length).trim();
    return { kind: "fact", fact: { kind: "message-id", queueId, messageId: id, at } };
  }
  if (service === "qmgr") {
    if (rest === "removed") return { kind: "fact", fact: { kind: "removed", queueId, at } };
    if (/, status=expired, returned to sender$/.test(rest))
      return { kind: "fact", fact: { kind: "expired", queueId, at } };
    return { kind: "ignored" }; // from=<…>, size=…, nrcpt=… (queue active)
  }
  if (DELIVERY_AGENTS.has(service) && rest.startsWith("to=<")) {
    const f = fields(rest);
    const recipient = unbracket(f.get("to"));
    const status = f.get("status")?.split(" ")[0];
    const dsn = f.get("dsn");
    if (recipient === undefined || dsn === undefined || !/^[245]\.\d{1,3}\.\d{1,3}$/.test(dsn))
      return { kind: "unparsed" };
    if (status !== "sent" && status !== "deferred" && status !== "bounced") {
      // "status=undeliverable"/"deliverable" come from address verification probes (sendmail -bv): not deliveries.
      return status === "undeliverable" || status === "deliverable" ? { kind: "ignored" } : { kind: "unparsed" };
    }
    const delay = Number(f.get("delay"));
    return {
      kind: "fact",
      fact: {
        kind: "recipient",
        queueId,
        recipient,
        status,
        dsn,
        relay: f.get("relay") ?? "none",
        delaySeconds: Number.isFinite(delay) ? delay : 0,
        reply: statusText(rest, 3 + (f.get("to")?.length ?? 0)),
        at,
      },
    };
  }
  return { kind: "ignored" }; // smtpd client=, bounce "sender non-delivery notification", pickup uid=…
}

/**
 * A hard bounce suppresses the address: a permanent 5.x.x DSN that says the mailbox or its domain cannot take mail.
 * Not one that says this message was refused (RFC 3463): 5.7.x (policy: spam, DMARC, relaying denied, content),
 * 5.6.x (media: the message's content or encoding), 5.3.4 (too big for the system) and 5.2.3 (over the mailbox's
 * message size limit). Another message from another caller could reach the same mailbox, so those must not suppress
 * it for everyone.
 */
export function isHardBounce(dsn: string): boolean {
  return /^5\./.test(dsn) && !/^5\.(7|6)\./.test(dsn) && dsn !== "5.3.4" && dsn !== "5.2.3";
}
