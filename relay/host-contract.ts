// What the relay and the host's configuration (cloud-init/) must agree on, in one place; no dependencies, so the
// renderers can import it without pulling in the relay.

/** Exit status on a bad environment (EX_CONFIG): the unit's RestartPreventExitStatus stops a restart loop on it. */
export const EXIT_CONFIG = 78;

/**
 * Size limits the relay and the host's Postfix must agree on (cloud-init/postfix.ts imports them). This is the one
 * place the factor and its reasons are written down.
 *
 * MIME encoding grows a body (base64 4/3, quoted-printable up to 3x, html-to-text's generated text part on top), so the
 * composed message may be several times the JSON body. test/cloud-init/message-size.test.ts composes worst cases with
 * the relay's own composer at a 512 KiB body: many one-byte attachments 5.0x (per-part headers), HTML-only with a
 * generated text part 2.7x, base64 attachments 1.03x; 8x leaves headroom. No factor covers everything (html-to-text
 * turns a 4-byte <hr> into a 78-dash line, ~28x), so the relay refuses (413 message_too_large) a composed message above
 * MESSAGE_SIZE_FACTOR x RELAY_BODY_LIMIT_BYTES, and Postfix's message_size_limit is that plus room for the headers
 * Postfix and OpenDKIM add. So nothing the relay queues can be refused by Postfix for its size.
 */
export const MESSAGE_SIZE_FACTOR = 8;

/** The default RELAY_MAX_MESSAGE_BYTES for a body limit. */
export function defaultMaxMessageBytes(bodyLimitBytes: number): number {
  return MESSAGE_SIZE_FACTOR * bodyLimitBytes;
}

/**
 * The relay's two listeners on the host's loopback, and the only ports the tunnel may reach: the HTTP API (the tunnel's
 * http:// route) and the optional SMTP ingress (its tcp:// route). The policy pack keeps its own copy, tied to these by
 * a test (test/policy/smtp-ingress.test.ts).
 */
export const RELAY_HTTP_PORT = 2525;
export const RELAY_SMTP_PORT = 2587;
