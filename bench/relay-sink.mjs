// The loopback SMTP sink of bench:relay and bench:gc, in a process of its own, as Postfix is on a host: it answers
// like Postfix (250 with a queue id per message). Started by startSink() (bench/relay-fixture.mjs) over IPC: it sends
// { port } once it listens, and { sunk } (messages taken) for each "count" it is sent.
// In the bench's own process it shared one event loop with the load generator, so a hand-off waited for the client's
// work and the client's clock read the sink's (issue 23: requests over the open loop's p99 were slow outside the
// relay's own request handling).
import { SMTPServer } from "smtp-server";

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
sink.listen(0, "127.0.0.1", () => process.send({ port: sink.server.address().port }));
process.on("message", (m) => {
  if (m === "count") process.send({ sunk });
});
// The bench exited or closed the channel: nothing is left to answer.
process.on("disconnect", () => process.exit(0));
