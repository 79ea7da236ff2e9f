// The bundle's SMTP ingress on Debian 12's Node 18 (smtp-server declares node >= 20; this is what proves the bundle
// still runs where the host runs it): STARTTLS with the pushed certificate, AUTH, queued with our id, handed off over
// SMTP.
import { writeFileSync } from "node:fs";
import * as path from "node:path";
import nodemailer from "nodemailer";
import { SMTPServer } from "smtp-server";
import { afterAll, describe, expect, it } from "vitest";
import { haveBundle, haveNode18, NODE18, startBundle, waitHandedOff, type BundleProcess } from "./bundle-process";
import { tempDir, fakePostfix } from "./fixtures";
import { haveOpenssl, selfSignedCert } from "../../testkit/self-signed-cert";

const TOKEN = "node18-smtp-token-0123456789abcdefghijk";
const tmp = tempDir("relay-node18-smtp-");
let relay: BundleProcess | undefined;
let sink: SMTPServer | undefined;
afterAll(async () => {
  await relay?.stop("SIGKILL");
  await new Promise<void>((r) => (sink ? sink.close(() => r()) : r()));
  tmp.cleanup();
});

describe.skipIf(!haveNode18 || !haveBundle || !haveOpenssl)("the bundle's SMTP ingress runs on Node 18", () => {
  it("accepts a message over STARTTLS + AUTH, answers 250 2.0.0 queued as <id>, and hands it off", async () => {
    const fake = await fakePostfix("N18SMTP");
    sink = fake.server;
    const { received } = fake;
    const sinkPort = fake.port;
    const { key, cert } = selfSignedCert();
    writeFileSync(path.join(tmp.dir, "key.pem"), key, { mode: 0o600 });
    writeFileSync(path.join(tmp.dir, "cert.pem"), cert);
    relay = await startBundle(path.join(tmp.dir, "r"), TOKEN, NODE18, {
      RELAY_HANDOFF: `smtp://127.0.0.1:${sinkPort}`,
      RELAY_SMTP_LISTEN: "127.0.0.1:0",
      RELAY_SMTP_HOSTNAME: "smtp-relay.example.com",
      RELAY_SMTP_TLS_KEY: path.join(tmp.dir, "key.pem"),
      RELAY_SMTP_TLS_CERT: path.join(tmp.dir, "cert.pem"),
    });
    const port = Number(/"smtpAddress":"smtp:\/\/127\.0\.0\.1:(\d+)"/.exec(relay.stdout())?.[1]);
    expect(port).toBeGreaterThan(0);
    const transport = nodemailer.createTransport({
      host: "127.0.0.1",
      port,
      secure: false,
      requireTLS: true,
      auth: { user: "app", pass: TOKEN },
      tls: { ca: cert, servername: "localhost" },
    });
    const info = await transport.sendMail({
      from: "noreply@example.com",
      to: "user@example.net",
      subject: "node 18 smtp ingress",
      text: "hello",
    });
    transport.close();
    const id = /^250 2\.0\.0 queued as ([0-9a-f-]{36})$/.exec(info.response)?.[1];
    expect(id, info.response).toBeDefined();
    expect((await waitHandedOff(relay, TOKEN, id as string)).state).toBe("handed_off");
    expect(received).toHaveLength(1);
    expect(received[0]).toMatch(/^Subject: node 18 smtp ingress$/m);
    expect(received[0]).toMatch(new RegExp(`^Message-ID: <.*>$`, "m"));
    expect(await relay.stop("SIGTERM")).toBe(0);
  });
});
