// A loopback SMTP sink in a process of its own for bench/handoff-cpu-bench.ts: smtp-sink offers no CHUNKING, so the
// hand-off's BDAT path needs this one. `node bench/chunking-sink.mjs <port> chunking|data` offers PIPELINING, and
// CHUNKING too when asked; it takes DATA (up to <CR><LF>.<CR><LF>) and BDAT <n> [LAST], answers every command 250 (354
// to DATA), and each message with Postfix's "250 2.0.0 Ok: queued as <id>". It prints "listening" once it listens.
import * as net from "node:net";

const [port, mode] = [Number(process.argv[2]), process.argv[3]];
const ehlo = `250-sink\r\n250-PIPELINING\r\n${mode === "chunking" ? "250-CHUNKING\r\n" : ""}250 8BITMIME\r\n`;
let queued = 0;
const server = net.createServer((socket) => {
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
        out += last ? `250 2.0.0 Ok: queued as S${++queued}\r\n` : "250 2.0.0 chunk ok\r\n";
        continue;
      }
      if (inData) {
        const end = buf.indexOf("\r\n.\r\n");
        if (end < 0) break;
        buf = buf.subarray(end + 5);
        inData = false;
        out += `250 2.0.0 Ok: queued as S${++queued}\r\n`;
        continue;
      }
      const nl = buf.indexOf("\r\n");
      if (nl < 0) break;
      const cmd = buf.subarray(0, nl).toString("latin1").toUpperCase();
      buf = buf.subarray(nl + 2);
      const bdat = /^BDAT (\d+)( LAST)?$/.exec(cmd);
      if (bdat) {
        chunkLeft = Number(bdat[1]);
        last = bdat[2] !== undefined;
      } else if (cmd.startsWith("EHLO")) out += ehlo;
      else if (cmd === "DATA") {
        inData = true;
        out += "354 go ahead\r\n";
      } else if (cmd === "QUIT") {
        socket.end("221 bye\r\n");
        return;
      } else out += "250 2.1.0 Ok\r\n";
    }
    if (out) socket.write(out);
  });
});
server.listen(port, "127.0.0.1", () => console.log("listening"));
process.on("SIGTERM", () => process.exit(0));
