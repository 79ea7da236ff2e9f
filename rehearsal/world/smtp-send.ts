/**
 * An SMTP-only app of the rehearsal's world (runs inside `world`): sends each message over its own connection to
 * `port` on loopback (where `cloudflared access tcp` listens), with STARTTLS required and verified against the
 * SMTP ingress's certificate, and AUTH as the caller. Everything, the password included, comes as JSON on stdin;
 * one JSON line per message goes to stdout: the server's answer, or the command it refused and its reply code.
 *
 *   node --import tsx rehearsal/world/smtp-send.ts < {port, user, pass, ca, messages: [{from, to, subject, text}]}
 */
import nodemailer from "nodemailer";

interface Input {
  readonly port: number;
  readonly user?: string;
  readonly pass?: string;
  readonly ca: string;
  readonly messages: { from: string; to: string; subject: string; text: string }[];
}

async function main(): Promise<void> {
  let raw = "";
  for await (const chunk of process.stdin) raw += String(chunk);
  const input = JSON.parse(raw) as Input;
  for (const m of input.messages) {
    const transport = nodemailer.createTransport({
      host: "127.0.0.1",
      port: input.port,
      secure: false,
      requireTLS: true,
      tls: { ca: input.ca, minVersion: "TLSv1.2" },
      ...(input.user ? { auth: { user: input.user, pass: input.pass ?? "" } } : {}),
      connectionTimeout: 10_000,
      greetingTimeout: 10_000,
      socketTimeout: 20_000,
    });
    try {
      const info = await transport.sendMail({
        envelope: { from: m.from, to: [m.to] },
        from: m.from,
        to: m.to,
        subject: m.subject,
        text: m.text,
      });
      console.log(JSON.stringify({ ok: true, response: info.response }));
    } catch (e) {
      const err = e as { code?: string; command?: string; responseCode?: number; response?: string; message: string };
      console.log(
        JSON.stringify({
          ok: false,
          code: err.code,
          command: err.command,
          responseCode: err.responseCode,
          response: err.response ?? err.message,
        }),
      );
    } finally {
      transport.close();
    }
  }
}

void main();
