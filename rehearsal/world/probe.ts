/**
 * A stranger on the internet (runs inside `world`, from a world address): tries TCP to each host:port and, where
 * a port answers SMTP, tries to relay. Prints one JSON line per target.
 *
 *   node --import tsx rehearsal/world/probe.ts <source-address> <host:port>...
 */
import * as net from "node:net";

const [source, ...targets] = process.argv.slice(2);

function attempt(target: string): Promise<Record<string, unknown>> {
  const i = target.lastIndexOf(":");
  const host = target.slice(0, i).replace(/^\[|\]$/g, "");
  const port = Number(target.slice(i + 1));
  return new Promise((resolve) => {
    const s = net.connect({
      host,
      port,
      localAddress: host.includes(":") === source.includes(":") ? source : undefined,
      timeout: 4000,
    });
    let transcript = "";
    let step = 0;
    const done = (r: Record<string, unknown>) => {
      s.destroy();
      resolve({ target, ...r, transcript });
    };
    s.on("timeout", () =>
      done({ connected: step > 0, outcome: step > 0 ? "timeout after connect" : "no connection (timeout)" }),
    );
    s.on("error", (e: NodeJS.ErrnoException) => done({ connected: step > 0, outcome: `no connection (${e.code})` }));
    s.on("connect", () => {
      step = 1;
    });
    const script = ["EHLO stranger.example.org", "MAIL FROM:<ceo@example.com>", "RCPT TO:<victim@example.net>", "DATA"];
    s.on("data", (b) => {
      transcript += b.toString();
      const lines = transcript.trim().split(/\r?\n/);
      const last = lines[lines.length - 1] ?? "";
      if (!/^\d{3} /.test(last)) return;
      if (step - 1 < script.length && /^[23]/.test(last)) {
        s.write(`${script[step - 1]}\r\n`);
        step++;
        if (step - 1 === script.length) return;
      } else {
        done({ connected: true, outcome: /^354/.test(last) ? "RELAY ACCEPTED" : `refused: ${last}` });
      }
      if (/^354/.test(last)) done({ connected: true, outcome: "RELAY ACCEPTED" });
    });
    s.on("close", () => done({ connected: step > 0, outcome: step > 0 ? "closed" : "no connection" }));
  });
}

(async () => {
  for (const r of await Promise.all(targets.map(attempt))) console.log(JSON.stringify(r));
})();
