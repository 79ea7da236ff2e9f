// bench:relay's witness of the machine: a process of its own that only sleeps 1 ms at a time and records how late
// each wake-up comes. It does no I/O and next to no work, so when it wakes 5 ms late the machine did not run it: the
// same stall any other process of the bench met at that moment (issue 23: the open loop's slow requests came in
// bursts during which the relay's every step, its disk-free loopback SMTP included, waited at once).
// Started by startWakeProbe() (bench/relay-fixture.mjs) over IPC: { phase: "name" } attributes the wake-ups that follow
// to that phase (null: to none); "report" answers { report: { phase: { n, p99, max, over5, stalledMs } } }.

let phase = null;
const byPhase = new Map();
let due = performance.now() + 1;

function tick() {
  const now = performance.now();
  if (phase !== null) {
    let late = byPhase.get(phase);
    if (!late) byPhase.set(phase, (late = []));
    late.push(now - due);
  }
  due = now + 1;
  setTimeout(tick, 1);
}
setTimeout(tick, 1);

/** Wake-ups, their lateness p99 and max (ms), how many were over 5 ms late, and the ms those spent past 1 ms late. */
function summary(late) {
  const sorted = [...late].sort((a, b) => a - b);
  const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
  const over5 = sorted.filter((l) => l > 5);
  return {
    n: sorted.length,
    p99: q(0.99),
    max: sorted[sorted.length - 1] ?? 0,
    over5: over5.length,
    stalledMs: over5.reduce((s, l) => s + l - 1, 0),
  };
}

process.on("message", (m) => {
  if (m === "report") process.send({ report: Object.fromEntries([...byPhase].map(([k, v]) => [k, summary(v)])) });
  else if (m && typeof m === "object" && "phase" in m) phase = m.phase;
});
// The bench exited or closed the channel.
process.on("disconnect", () => process.exit(0));
