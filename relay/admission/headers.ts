// Header fields a caller may not set, whichever door the message comes through. The HTTP API additionally allows
// only X- headers (its JSON fields make the standard ones); the SMTP door keeps the client's own standard fields.

/**
 * Fields receivers judge a message's origin and authenticity by (trace, authentication results, signatures), which
 * the relay, Postfix and OpenDKIM write. Resent-* re-sending is not this relay's business.
 */
export const FORBIDDEN_HEADERS: readonly (string | RegExp)[] = [
  "return-path",
  "received-spf",
  "authentication-results",
  "dkim-signature",
  "domainkey-signature",
  /^arc-/,
  /^resent-/,
];

/**
 * X- fields that receivers and filters write themselves (spam verdicts, Exchange transport, antivirus), which a caller
 * could forge to look pre-approved; and X-Original-Message-ID, where the relay keeps an SMTP client's Message-ID.
 */
export const RESERVED_X_HEADERS =
  /^X-(Spam|MS-Exchange|Microsoft-Antispam|Forefront-Antispam|Virus|Mailer-Daemon|Original-To|Envelope-|Original-Message-ID$)/i;

/** The header that keeps an SMTP client's own Message-ID (the relay writes its own Message-ID). */
export const ORIGINAL_MESSAGE_ID_HEADER = "X-Original-Message-ID";

/** Why a header field name is refused, or undefined when a caller may set it. */
export function forbiddenHeader(name: string): string | undefined {
  const lower = name.toLowerCase();
  if (FORBIDDEN_HEADERS.some((f) => (typeof f === "string" ? f === lower : f.test(lower))))
    return "receivers read it as trace, authentication results or a signature, which the relay and Postfix write";
  if (RESERVED_X_HEADERS.test(name))
    return (
      "receivers' spam and transport verdicts (X-Spam-*, X-MS-Exchange-*, ...) and the relay's own " +
      `${ORIGINAL_MESSAGE_ID_HEADER} can't be set by a caller`
    );
  return undefined;
}
