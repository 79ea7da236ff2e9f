// A loopback SMTP sink that speaks like Postfix's smtpd where the relay's hand-off can tell: PIPELINING, and CHUNKING
// when asked (Postfix offers both; smtp-sink and smtp-server offer no CHUNKING). It takes DATA (up to
// <CR><LF>.<CR><LF>) and BDAT <n> [LAST], answers every command 250 (354 to DATA), and each message with a
// Postfix-like "250 2.0.0 Ok: queued as <id>", and discards the bodies.
// - As a module: createSinkServer() (bench/relay-sink.mjs, the sink of bench:relay and bench:gc).
// - As a program, for bench/handoff-cpu-bench.ts: `node bench/chunking-sink.mjs <port> chunking|data` prints
//   "listening" once it listens.
import * as net from "node:net";
import { pathToFileURL } from "node:url";

/**
 * A net.Server speaking the sink's SMTP. `queueId(n)` names the n-th message taken (from 1); `onMessage()` is called
 * once per message, before its reply.
 */
export function createSinkServer({ chunking, queueId = (n) => `S${n}`, onMessage = () => undefined }) {
  const ehlo = `250-sink\r\n250-PIPELINING\r\n${chunking ? "250-CHUNKING\r\n" : ""}250 8BITMIME\r\n`;
  let taken = 0;
  const took = () => {
    onMessage();
    return `250 2.0.0 Ok: queued as ${queueId(++taken)}\r\n`;
  };
  return net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on("error", () => undefined);
    socket.write("220 sink ESMTP\r\n");
    let buf = Buffer.alloc(0);
    let chunkLeft = -1; // bytes of a BDAT chunk still to come
    let last = false;
    let inData = false;
    socket.on("data", (c) => {
      buf = buf.length ? Buffer.concat([buf, c]) : c;
      let out = "";
      for (;;) {
        if (chunkLeft >= 0) {
          const n = Math.min(chunkLeft, buf.length);
          buf = buf.subarray(n);
          chunkLeft -= n;
          if (chunkLeft > 0) break;
          chunkLeft = -1;
          out += last ? took() : "250 2.0.0 chunk ok\r\n";
          continue;
        }
        if (inData) {
          const end = buf.indexOf("\r\n.\r\n");
          if (end < 0) {
            // keep only what could still be the start of the terminator
            if (buf.length > 4) buf = buf.subarray(buf.length - 4);
            break;
          }
          buf = buf.subarray(end + 5);
          inData = false;
          out += took();
          continue;
        }
        const nl = buf.indexOf("\r\n");
        if (nl < 0) break;
        const cmd = buf.subarray(0, nl).toString("latin1").toUpperCase();
        buf = buf.subarray(nl + 2);
        const bdat = chunking ? /^BDAT (\d+)( LAST)?$/.exec(cmd) : null;
        if (bdat) {
          chunkLeft = Number(bdat[1]);
          last = bdat[2] !== undefined;
        } else if (cmd.startsWith("EHLO")) out += ehlo;
        else if (cmd === "DATA") {
          inData = true;
          out += "354 End data with <CR><LF>.<CR><LF>\r\n";
        } else if (cmd === "QUIT") {
          socket.end("221 2.0.0 Bye\r\n");
          return;
        } else out += "250 2.1.0 Ok\r\n";
      }
      if (out) socket.write(out);
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const [port, mode] = [Number(process.argv[2]), process.argv[3]];
  createSinkServer({ chunking: mode === "chunking" }).listen(port, "127.0.0.1", () => console.log("listening"));
  process.on("SIGTERM", () => process.exit(0));
}
