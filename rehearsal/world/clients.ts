/**
 * Runs inside `world` as a caller's app would: the client (client/) and its nodemailer transport send one message
 * each through the edge and the tunnel stand-in, with the Access headers and the relay token, and wait until the
 * relay reports them delivered. The relay hostname resolves through the world's DNS (/etc/netns/<world>/resolv.conf).
 *
 *   node --import tsx rehearsal/world/clients.ts <job.json>   ({url, token, accessClientId, accessClientSecret, ...})
 * Prints one JSON line: {client, transport, suppressionDelete}.
 */
import * as fs from "node:fs";
import nodemailer from "nodemailer";
import { RelayApiError, RelayClient } from "../../client/src/index";
import { relayTransport } from "../../client/src/nodemailer";

interface Job {
  readonly url: string;
  readonly token: string;
  readonly accessClientId: string;
  readonly accessClientSecret: string;
  readonly from: string;
  readonly to: readonly [string, string];
  readonly subjects: readonly [string, string];
}

async function main(): Promise<void> {
  const job = JSON.parse(fs.readFileSync(process.argv[2] as string, "utf8")) as Job;
  const client = new RelayClient({
    url: job.url,
    token: job.token,
    accessClientId: job.accessClientId,
    accessClientSecret: job.accessClientSecret,
  });
  const sent = await client.send({
    from: job.from,
    to: job.to[0],
    subject: job.subjects[0],
    text: "sent by client/\n",
  });
  const info = await nodemailer.createTransport(relayTransport(client)).sendMail({
    from: `"Rehearsal" <${job.from}>`,
    to: job.to[1],
    subject: job.subjects[1],
    text: "sent by the nodemailer transport\n",
    html: "<p>sent by the <b>nodemailer</b> transport</p>",
    headers: { "X-Rehearsal": "nodemailer" },
    attachments: [{ filename: "note.txt", content: "attached\n" }],
  });
  const wait = { states: ["delivered", "bounced", "expired", "failed"] as const, timeoutMs: 60_000, intervalMs: 500 };
  const [a, b] = await Promise.all([client.waitFor(sent.id, wait), client.waitFor(info.messageId, wait)]);
  // DELETE with the address percent-encoded (%40) must reach the relay (its JSON not_found), not the tunnel's 404.
  const del = await client.removeSuppression(`nobody.${Date.now()}@example.net`).catch((e: unknown) => e);
  const suppressionDelete =
    del instanceof RelayApiError ? `relay ${del.status} ${del.code}` : `not the relay: ${String(del)}`;
  console.log(
    JSON.stringify({
      client: { id: sent.id, state: a.state, reply: a.recipients?.[0]?.remoteReply },
      transport: { id: info.messageId, accepted: info.accepted, state: b.state, reply: b.recipients?.[0]?.remoteReply },
      suppressionDelete,
    }),
  );
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exit(1);
});
