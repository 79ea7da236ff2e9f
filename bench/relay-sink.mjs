// The loopback SMTP sink of bench:relay and bench:gc, in a process of its own, as Postfix is on a host: it answers
// like Postfix (250 with a queue id per message). Started by startSink() (bench/relay-fixture.mjs) over IPC: it sends
// { port } once it listens, and { sunk } (messages taken) for each "count" it is sent.
// In the bench's own process it shared one event loop with the load generator, so a hand-off waited for the client's
// work and the client's clock read the sink's (issue 23: requests over the open loop's p99 were slow outside the
// relay's own request handling).
// It offers PIPELINING and CHUNKING as Postfix does (bench/chunking-sink.mjs), so the relay hands off over BDAT, one
// write per message, as on the host; smtp-server, the sink before, offers no CHUNKING and got DATA.
// BENCH_SINK_CHUNKING=0: no CHUNKING offered, so the relay hands off over DATA (for an A/B of the two paths).
import { createSinkServer } from "./chunking-sink.mjs";

let sunk = 0;
const sink = createSinkServer({
  chunking: process.env.BENCH_SINK_CHUNKING !== "0",
  queueId: (n) => `B${n.toString(36).toUpperCase()}`,
  onMessage: () => void sunk++,
});
sink.on("error", () => undefined);
sink.listen(0, "127.0.0.1", () => process.send({ port: sink.address().port }));
process.on("message", (m) => {
  if (m === "count") process.send({ sunk });
});
// The bench exited or closed the channel: nothing is left to answer.
process.on("disconnect", () => process.exit(0));
