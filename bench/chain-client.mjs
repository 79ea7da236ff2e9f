// Child of bench/chain-bench.ts, run inside its network namespace: POSTs N messages (~4 KB text+HTML each) to the
// relay's /send at CONCURRENCY concurrent keep-alive connections and prints one JSON line: for each message its id and
// the wall-clock time (ms since epoch) of its 202, the time of the first request, and how many 202s said
// "state":"handed_off" (the relay's fast path), and its own CPU time.
import * as http from "node:http";

const { url, n, concurrency, phase } = JSON.parse(process.argv[2]);
const token = process.env.CHAIN_BENCH_TOKEN;
const { hostname, port } = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
const body = (i) =>
  JSON.stringify({
    to: "someone@example.org",
    from: { email: "noreply@example.com", name: "Chain bench" },
    subject: `Your receipt #${i}`,
    text: "Thanks for your order. ".repeat(60),
    html: `<p>${"Thanks for your <b>order</b>. ".repeat(60)}</p>`,
    headers: { "X-Bench-Phase": phase },
  });

function post(i) {
  return new Promise((resolve, reject) => {
    const payload = body(i);
    const req = http.request(
      {
        hostname,
        port,
        path: "/send",
        method: "POST",
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          "content-length": Buffer.byteLength(payload),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (text += c));
        res.on("end", () =>
          resolve({
            status: res.statusCode,
            at: Date.now(),
            id: res.statusCode === 202 ? JSON.parse(text).id : undefined,
            handedOff: res.statusCode === 202 && JSON.parse(text).state === "handed_off",
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

const firstAt = Date.now();
const accepted = [];
let refused = 0;
let handedOff = 0; // 202s whose message went to Postfix during the request (the fast path)
let next = 0;
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next < n) {
      const i = next++;
      const r = await post(i);
      if (r.status === 202) accepted.push([r.id, r.at]);
      else refused++;
      if (r.handedOff) handedOff++;
    }
  }),
);
agent.destroy();
// The client's own CPU (user + system, ms): it runs on the same cores as the chain, as smtp-source does in the limit.
const cpu = process.cpuUsage();
const cpuMs = (cpu.user + cpu.system) / 1000;
process.stdout.write(`${JSON.stringify({ firstAt, lastAt: Date.now(), accepted, refused, handedOff, cpuMs })}\n`);
