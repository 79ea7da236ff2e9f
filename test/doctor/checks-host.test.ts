import { describe, expect, it } from "vitest";
import {
  checkClock,
  checkDisk,
  checkDkimKey,
  checkOutbound,
  checkQueue,
  checkServices,
  dkimPublicKey,
  heloFromProbe,
  hostChecks,
  type HostContext,
} from "../../doctor/checks-host";
import { probeScript, sections } from "../../doctor/host-probe";

const ctx: HostContext = {
  node: "node1",
  stack: "prod",
  selector: "mail202611",
  domain: "example.com",
  publishedDkimKey: "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAx",
  tunnel: true,
  nowSeconds: 1_796_000_000,
};

/** What the probe prints on a healthy Debian 13 host (recorded shape; values made up). */
const healthy = [
  "@@os",
  "13",
  "@@units",
  "postfix@-.service inactive disabled",
  "postfix.service active enabled",
  "opendkim.service active enabled",
  "mail-relay.service active enabled",
  "cloudflared-mail-relay.service active enabled",
  "@@helo",
  "mx1.example.com",
  "mx1.example.com",
  "",
  "@@dkim",
  "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAx",
  "@@queue",
  "",
  "@@disk",
  "/dev/vda1 40000000000 8000000000 32000000000 20% /",
  "@@clock",
  "NTP=yes",
  "NTPSynchronized=yes",
  "now=1796000002",
  "@@smtp",
  "mode=direct target=gmail-smtp-in.l.google.com:25",
  "220 mx.google.com ESMTP",
  "rc=0",
].join("\n");

describe("host checks from the probe's output", () => {
  it("a healthy host passes every check", () => {
    const checks = hostChecks(healthy, ctx);
    expect(checks.filter((c) => c.status !== "pass")).toEqual([]);
    expect(checks.map((c) => c.id)).toEqual([
      "host.dkim",
      "host.service",
      "host.service",
      "host.service",
      "host.service",
      "host.smtp-out",
      "host.queue",
      "host.disk",
      "host.clock",
    ]);
  });
  it.each(["postfix.service", "opendkim.service", "mail-relay.service", "cloudflared-mail-relay.service"])(
    "%s stopped fails exactly its own check, with systemctl start as the fix",
    (unit) => {
      const out = healthy.replace(`${unit} active enabled`, `${unit} inactive enabled`);
      const bad = hostChecks(out, ctx).filter((c) => c.status !== "pass");
      expect(bad).toHaveLength(1);
      expect(bad[0].subject).toBe(`${unit} on node1`);
      expect(bad[0].fix).toContain(`systemctl start ${unit}`);
    },
  );
  it("on Debian 12 Postfix is postfix@-.service", () => {
    const checks = checkServices("postfix@-.service active enabled\npostfix.service active enabled", "12", ctx);
    expect(checks.map((c) => c.subject)[0]).toBe("postfix@-.service on node1");
  });
  it("cloudflared is expected only with the tunnel", () => {
    const checks = checkServices("", "13", { ...ctx, tunnel: false });
    expect(checks.map((c) => c.subject)).not.toContain("cloudflared-mail-relay.service on node1");
  });
  it("the DKIM key on the host must be the published p=", () => {
    expect(checkDkimKey(ctx.publishedDkimKey!, ctx).status).toBe("pass");
    const other = checkDkimKey("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAy", ctx);
    expect(other.status).toBe("fail");
    expect(other.fix).toContain("pulumi up --stack prod");
    expect(checkDkimKey("missing /etc/opendkim/keys/example.com/mail202611.private", ctx).status).toBe("fail");
    expect(checkDkimKey(ctx.publishedDkimKey!, { ...ctx, publishedDkimKey: undefined }).status).toBe("fail");
  });
  it("p= is read from a DKIM record with spaces and other tags", () => {
    expect(dkimPublicKey("v=DKIM1; k=rsa; p=MIIB IjAN")).toBe("MIIBIjAN");
    expect(dkimPublicKey("v=DKIM1; k=rsa")).toBeUndefined();
  });
});

describe("outbound SMTP", () => {
  it.each([
    ["mode=direct target=mx:25\n220 mx ESMTP\nrc=0", "pass"],
    ["mode=direct target=mx:25\nrc=124", "fail"],
    ["mode=direct target=mx:25\nbash: connect: Connection refused\nrc=2", "fail"],
    ["mode=direct target=mx:25\n554 no\nrc=0", "fail"],
    ["mode=smarthost target=[smtp.example.org]:587\n250-AUTH PLAIN\n235 2.7.0 Authentication successful\nrc=0", "pass"],
    ["mode=smarthost target=[smtp.example.org]:587\n535 5.7.8 bad credentials\nrc=0", "fail"],
    ["mode=smarthost target=[smtp.example.org]:587\nverify error:num=20\nrc=1", "fail"],
  ])("%j is %s", (text, status) => {
    const c = checkOutbound(text, ctx);
    expect(c.status).toBe(status);
    expect(c.id).toBe(text.includes("smarthost") ? "host.smarthost" : "host.smtp-out");
    if (status === "fail") expect(c.fix).toMatch(/Hetzner|smarthost/);
  });
  it("a dropped connection says port 25 is blocked", () => {
    expect(checkOutbound("mode=direct target=mx:25\nrc=124", ctx).saw).toMatch(/blocked/);
  });
});

describe("queue, disk and clock", () => {
  const entry = (queue: string, reason?: string) =>
    JSON.stringify({
      queue_name: queue,
      recipients: [{ address: "a@b", ...(reason ? { delay_reason: reason } : {}) }],
    });
  it("deferred mail is a warn listing the commonest reasons first", () => {
    const text = [
      entry("deferred", "connect to mx.b[192.0.2.1]:25: Connection timed out"),
      entry("deferred", "connect to mx.b[192.0.2.2]:25: Connection timed out"),
      entry("deferred", "host mx.c said: 450 greylisted"),
      entry("active"),
    ].join("\n");
    const c = checkQueue(text, ctx);
    expect(c.status).toBe("warn");
    expect(c.saw).toMatch(
      /^4 message\(s\), 3 deferred; top reasons: 2x "connect to mx.b\[…\]:25: Connection timed out"; 1x/,
    );
    expect(c.fix).toContain("postqueue -f");
  });
  it("an empty queue passes; a huge one fails", () => {
    expect(checkQueue("", ctx).status).toBe("pass");
    expect(checkQueue(Array(1000).fill(entry("active")).join("\n"), ctx).status).toBe("fail");
  });
  it.each([
    ["/dev/vda1 40000000000 8000000000 32000000000 20% /", "pass"],
    ["/dev/vda1 40000000000 36000000000 4000000000 90% /", "warn"],
    ["/dev/vda1 40000000000 39800000000 200000000 99% /", "fail"],
    ["df: /var/spool/postfix: No such file", "warn"],
  ])("df %j is %s", (line, status) => {
    expect(checkDisk(line, ctx).status).toBe(status);
  });
  it.each([
    ["NTP=yes\nNTPSynchronized=yes\nnow=1796000002", "pass"],
    ["NTP=no\nNTPSynchronized=no\nnow=1796000002", "warn"],
    ["Failed to connect to bus\nnow=1796000000", "warn"],
    ["NTP=yes\nNTPSynchronized=yes\nnow=1796000300", "fail"],
  ])("clock %j is %s", (text, status) => {
    const c = checkClock(text, ctx);
    expect(c.status).toBe(status);
    if (status !== "pass") expect(c.fix).toContain("timedatectl");
  });
});

describe("the probe script", () => {
  it("prints every section the checks read, and its bash parses", async () => {
    const script = probeScript();
    for (const s of ["os", "units", "helo", "dkim", "queue", "disk", "clock", "smtp"])
      expect(script).toContain(`section ${s}`);
    const { execFileSync } = await import("node:child_process");
    expect(() => execFileSync("bash", ["-n"], { input: script })).not.toThrow();
    expect(() => execFileSync("bash", ["-n"], { input: "if then" })).toThrow();
  });
  it("sections split output on @@ lines; the HELO name comes from smtp_helo_name", () => {
    const s = sections(healthy);
    expect(s.get("os")).toBe("13");
    expect(heloFromProbe(s.get("helo")!)).toBe("mx1.example.com");
    expect(heloFromProbe("$myhostname\nmx2.example.com")).toBe("mx2.example.com");
  });
});
