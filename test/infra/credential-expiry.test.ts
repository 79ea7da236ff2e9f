/**
 * The stack output `credentialExpiry`: every credential that has a date, with the date the provider reports and the
 * change that renews it. Under mocks the dates are the providers' rules applied now (infra/offline.ts): Cloudflare's
 * creation time + duration for a service token, the tls provider's start + validityPeriodHours for the certificate.
 */
import { X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import type { CredentialExpiry } from "../../infra/credentials";
import { goDurationMs, type OfflineRun } from "../../infra/offline";
import { credentialExpiryLines } from "../../infra/plan";
import { ofType, runStack, T, useStandInBundleIfUnbuilt } from "../helpers/stack";

useStandInBundleIfUnbuilt();

const HOUR = 3_600_000;
let prod: OfflineRun;
let withSmtp: OfflineRun;
let noTunnel: OfflineRun;
let startedAt: number;

beforeAll(async () => {
  startedAt = Date.now();
  // Pulumi.prod.yaml enables the SMTP ingress; `prod` here is the same stack with it off, to tell the two apart.
  prod = await runStack("prod", { smtpIngress: { enabled: false } });
  withSmtp = await runStack("prod", { smtpIngress: { enabled: true } });
  noTunnel = await runStack("prod", { tunnel: false, smtpIngress: { enabled: false } });
}, 180_000);

const expiry = (r: OfflineRun) => r.outputs.credentialExpiry as CredentialExpiry[];

describe("credentialExpiry: every credential with a date", () => {
  it("lists one entry per Access service token, named as Cloudflare names it, with the provider's expiresAt", () => {
    const tokens = ofType(prod.resources, T.serviceToken);
    expect(tokens.map((t) => t.props.name).sort()).toEqual(["mail-relay-prod-app", "mail-relay-prod-billing"]);
    expect(expiry(prod).map((e) => e.credential)).toEqual(tokens.map((t) => t.props.name).sort());
    for (const t of tokens) {
      const e = expiry(prod).find((x) => x.credential === t.props.name)!;
      expect(e.kind).toBe("cloudflare-access-service-token");
      expect(e.expiresAt).toBe(t.props.expiresAt);
      expect(e.expiresAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    }
  });

  it("a service token expires one year (8760 h) after it is created: the duration the program sets", () => {
    for (const t of ofType(prod.resources, T.serviceToken)) {
      expect(t.props.duration).toBe("8760h");
      const at = Date.parse(t.props.expiresAt);
      expect(at).toBeGreaterThanOrEqual(startedAt + 8760 * HOUR - 1000);
      expect(at).toBeLessThanOrEqual(Date.now() + 8760 * HOUR);
    }
  });

  it("each entry says how to renew it: a config command that works as printed, and where the steps are", () => {
    for (const e of expiry(withSmtp)) {
      expect(e.renew).toMatch(/docs\/day-two\.md/);
      if (e.kind === "cloudflare-access-service-token")
        expect(e.renew).toMatch(/^pulumi config set --path 'mail-relay:rotations\.accessTokens\[1\]' 2 && pulumi up /);
    }
  });

  it("the SMTP-ingress certificate is listed with its end date (the certificate's own notAfter, to the day)", () => {
    const cert = ofType(withSmtp.resources, "tls:index/selfSignedCert:SelfSignedCert");
    expect(cert).toHaveLength(1);
    const e = expiry(withSmtp).find((x) => x.kind === "smtp-ingress-certificate")!;
    expect(e.credential).toBe("SMTP ingress certificate smtp-relay.example.com");
    expect(e.expiresAt).toBe(cert[0].props.validityEndTime);
    const notAfter = Date.parse(new X509Certificate(withSmtp.outputs.smtpIngressCertificate as string).validTo);
    expect(Math.abs(Date.parse(e.expiresAt) - notAfter)).toBeLessThan(24 * HOUR);
    expect(e.renew).toMatch(/30 days before expiresAt/);
    expect(expiry(prod).some((x) => x.kind === "smtp-ingress-certificate")).toBe(false);
  });

  it("soonest first, and not secret (the dates and names are what an operator checks)", () => {
    const dates = expiry(withSmtp).map((e) => Date.parse(e.expiresAt));
    expect(dates).toEqual([...dates].sort((a, b) => a - b));
    expect(expiry(withSmtp)).toHaveLength(3);
    expect(withSmtp.secretOutputs).not.toContain("credentialExpiry");
  });

  it("without the tunnel there are no service tokens, so nothing expires", () => {
    expect(ofType(noTunnel.resources, T.serviceToken)).toEqual([]);
    expect(expiry(noTunnel)).toEqual([]);
    expect(credentialExpiryLines(expiry(noTunnel))).toEqual(["(none)"]);
  });

  it("npm run plan prints each entry as a date line and a renew line", () => {
    const lines = credentialExpiryLines(expiry(prod));
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^\d{4}-.*Z {2}cloudflare-access-service-token {2}mail-relay-prod-app$/);
    expect(lines[1]).toMatch(/^ {4}renew: pulumi config set --path/);
  });
});

describe("goDurationMs: the service token's duration as Cloudflare reads it (Go's time.ParseDuration units)", () => {
  it.each([
    ["8760h", 8760 * HOUR],
    ["2h45m", 2 * HOUR + 45 * 60_000],
    ["300ms", 300],
    ["1.5h", 1.5 * HOUR],
    ["90s", 90_000],
  ])("%s is %d ms", (d, ms) => expect(goDurationMs(d)).toBe(ms));
  it.each(["", "8760", "1y", "h", "2h x"])("%j is refused", (d) =>
    expect(() => goDurationMs(d)).toThrow(/Go duration/),
  );
});
