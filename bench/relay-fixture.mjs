// What bench:relay and bench:gc share, so both measure the same relay with the same message: the bundle they run,
// the caller token, the request body, and the loopback SMTP sink that answers like Postfix.
import * as path from "node:path";
import { SMTPServer } from "smtp-server";

/** relay/dist/relay.js, or BENCH_RELAY_BUNDLE=FILE (another build, e.g. an older commit's, for an A/B). */
export function relayBundle(repo) {
  return process.env.BENCH_RELAY_BUNDLE
    ? path.resolve(process.env.BENCH_RELAY_BUNDLE)
    : path.join(repo, "relay/dist/relay.js");
}

export const BENCH_TOKEN = "bench-token-0123456789abcdefghijklmnopqrstuvwxyz";

/** A typical transactional message: ~2 KB of text and HTML with lines long enough to need quoted-printable. */
export const BENCH_PAYLOAD = JSON.stringify({
  to: ["user@example.net"],
  from: { email: "noreply@example.com", name: "Bench" },
  subject: "Your receipt #12345",
  text: "Thanks for your order. ".repeat(40),
  html: `<p>${"Thanks for your <b>order</b>. ".repeat(40)}</p>`,
});

/** A loopback SMTP sink answering 250 with a queue id per message; `sunk()` counts what it took. */
export async function startSink() {
  let sunk = 0;
  const sink = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    onData(stream, _s, cb) {
      stream.resume();
      stream.on("end", () => cb(null, `2.0.0 Ok: queued as B${(++sunk).toString(36).toUpperCase()}`));
    },
  });
  sink.on("error", () => undefined); // a relay stopped mid-session
  await new Promise((r) => sink.listen(0, "127.0.0.1", r));
  return { port: sink.server.address().port, sunk: () => sunk, close: () => sink.close() };
}
