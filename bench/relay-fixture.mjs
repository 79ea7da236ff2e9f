// What bench:relay and bench:gc share, so both measure the same relay with the same message: the bundle they run,
// the caller token, the request body, and the loopback SMTP sink that answers like Postfix (its own process).
import { fork } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

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

/** A helper process of the bench (bench/<file>) over IPC, with node's default flags; killed when the bench exits. */
function forkHelper(file) {
  const child = fork(path.join(path.dirname(fileURLToPath(import.meta.url)), file), [], {
    execArgv: [],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  process.on("exit", () => child.kill());
  return child;
}

/**
 * The loopback SMTP sink (bench/relay-sink.mjs) as a child process, answering 250 with a queue id per message.
 * `sunk()` resolves to the number of messages it took; `pid` is for its CPU figures (/proc/PID/stat).
 */
export async function startSink() {
  const child = forkHelper("relay-sink.mjs");
  const port = await new Promise((resolve, reject) => {
    child.once("message", (m) => resolve(m.port));
    child.once("exit", (code) => reject(new Error(`the SMTP sink (bench/relay-sink.mjs) exited with ${code}`)));
  });
  return {
    port,
    pid: child.pid,
    sunk: () =>
      new Promise((resolve) => {
        child.once("message", (m) => resolve(m.sunk));
        child.send("count");
      }),
    close: () => {
      child.disconnect();
    },
  };
}

/**
 * The wake-up probe (bench/wake-probe.mjs) as a child process. `phase(name)` resolves once the probe has the message
 * (so a spawnSync right after it cannot hold it back); `report()` resolves to its figures per phase.
 */
export async function startWakeProbe() {
  const child = forkHelper("wake-probe.mjs");
  return {
    phase: (name) =>
      new Promise((resolve, reject) => child.send({ phase: name }, (err) => (err ? reject(err) : resolve()))),
    report: () =>
      new Promise((resolve) => {
        child.once("message", (m) => resolve(m.report));
        child.send("report");
      }),
    close: () => {
      child.disconnect();
    },
  };
}
