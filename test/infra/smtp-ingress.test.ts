/**
 * smtpIngress in the stack config and in the program under Pulumi's mocks: checked at the edge with errors that name
 * the fix; when off, the program is exactly what it was; when on, a second tunnel route and Access application, the
 * certificate and key as secret host files, and the outputs callers need to trust it.
 */
import { X509Certificate } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../infra/config";
import type { OfflineRun } from "../../infra/offline";
import { certificateFingerprint, smtpCertificateNames } from "../../infra/smtpTls";
import { tunnelIngress } from "../../infra/tunnel";
import { promiseOf } from "../../infra/offline";
import { CONFIG_CTX, CONFIG_SECRETS, configProblems, minimalConfig } from "../helpers/config";
import { ofType, pushedFiles, runStack, T, useStandInBundleIfUnbuilt } from "../helpers/stack";
import { parseEnvFile } from "../cloud-init/parsers";

useStandInBundleIfUnbuilt();

describe("config: smtpIngress", () => {
  it("is off by default; enabled, it listens on 2587 as smtp-relay.<domain>", () => {
    expect(parseConfig(minimalConfig(), CONFIG_SECRETS, CONFIG_CTX).smtpIngress).toBeUndefined();
    expect(
      parseConfig(minimalConfig({ smtpIngress: { enabled: true } }), CONFIG_SECRETS, CONFIG_CTX).smtpIngress,
    ).toEqual({
      hostname: "smtp-relay.example.com",
      port: 2587,
    });
    expect(
      parseConfig(
        minimalConfig({ smtpIngress: { enabled: true, hostname: "SMTP.Example.com." } }),
        CONFIG_SECRETS,
        CONFIG_CTX,
      ).smtpIngress?.hostname,
    ).toBe("smtp.example.com");
    // on a host without the tunnel it is still there, for apps on the host itself
    expect(
      parseConfig(minimalConfig({ tunnel: false, smtpIngress: { enabled: true } }), CONFIG_SECRETS, CONFIG_CTX)
        .smtpIngress,
    ).toEqual({
      hostname: "smtp-relay.example.com",
      port: 2587,
    });
  });

  const cases: [string, Record<string, unknown>, RegExp][] = [
    [
      "a boolean instead of the object",
      { smtpIngress: true },
      /^mail-relay:smtpIngress must be an object like \{enabled: true, hostname: smtp-relay\.example\.com\} \(got boolean true\); set it with `pulumi config set --path 'mail-relay:smtpIngress\.enabled' <enabled>`$/,
    ],
    [
      "enabled as a string",
      { smtpIngress: { enabled: "yes" } },
      /mail-relay:smtpIngress\.enabled must be true or false/,
    ],
    [
      "an unknown key",
      { smtpIngress: { enabled: true, port: 25 } },
      /^mail-relay:smtpIngress\.port is not a key of mail-relay:smtpIngress \(its keys: enabled, hostname\)$/,
    ],
    [
      "a hostname that is not a DNS name",
      { smtpIngress: { enabled: true, hostname: "smtp relay" } },
      /mail-relay:smtpIngress\.hostname must be a DNS name like smtp-relay\.example\.com/,
    ],
    [
      "a hostname without enabled",
      { smtpIngress: { hostname: "smtp.example.com" } },
      /mail-relay:smtpIngress\.hostname is set but mail-relay:smtpIngress\.enabled is not true; set enabled: true or remove the hostname/,
    ],
    [
      "a hostname outside the zone",
      { smtpIngress: { enabled: true, hostname: "smtp.example.org" } },
      /mail-relay:smtpIngress\.hostname "smtp\.example\.org" must be inside the zone "example\.com"/,
    ],
    [
      "the relay's hostname",
      { smtpIngress: { enabled: true, hostname: "mail-relay.example.com" } },
      /mail-relay:smtpIngress\.hostname must differ from relayHostname and the MTA hostnames/,
    ],
    [
      "the MTA hostname",
      { smtpIngress: { enabled: true, hostname: "mail.example.com" } },
      /mail-relay:smtpIngress\.hostname must differ/,
    ],
    [
      "a hostname without the tunnel",
      { tunnel: false, smtpIngress: { enabled: true, hostname: "smtp.example.com" } },
      /mail-relay:smtpIngress\.hostname is only routed through the tunnel, and mail-relay:tunnel is false/,
    ],
    [
      "an MX at the SMTP ingress",
      { smtpIngress: { enabled: true }, mx: [{ host: "smtp-relay.example.com", priority: 10 }] },
      /mail-relay:mx must not point at smtp-relay\.example\.com/,
    ],
  ];
  for (const [what, over, re] of cases) {
    it(`refuses ${what}, naming the key and the fix`, () => {
      const ps = configProblems(minimalConfig(over));
      expect(
        ps.some((p) => re.test(p)),
        `problems were:\n${ps.join("\n")}`,
      ).toBe(true);
    });
  }
});

describe("tunnel ingress: one function computes the list", () => {
  it("adds the tcp:// route for the SMTP hostname between the HTTP route and the 404 catch-all, only when given, each behind its own Access app", () => {
    const aud = "a".repeat(64);
    const smtpAud = "b".repeat(64);
    expect(tunnelIngress("mail-relay.example.com", 2525, "example", aud).map((r) => r.service)).toEqual([
      "http://127.0.0.1:2525",
      "http_status:404",
    ]);
    expect(
      tunnelIngress("mail-relay.example.com", 2525, "example", aud, {
        hostname: "smtp-relay.example.com",
        port: 2587,
        audTag: smtpAud,
      }),
    ).toEqual([
      expect.objectContaining({ hostname: "mail-relay.example.com", service: "http://127.0.0.1:2525" }),
      {
        hostname: "smtp-relay.example.com",
        service: "tcp://127.0.0.1:2587",
        originRequest: { access: { required: true, teamName: "example", audTag: [smtpAud] } },
      },
      { service: "http_status:404" },
    ]);
  });
});

describe("program under mocks: the SMTP ingress", () => {
  let off: OfflineRun;
  let on: OfflineRun;
  let hostOnly: OfflineRun;
  beforeAll(async () => {
    off = await runStack("prod", { smtpIngress: { enabled: false } });
    on = await runStack("prod", { smtpIngress: { enabled: true } });
    hostOnly = await runStack("prod", { smtpIngress: { enabled: true }, tunnel: false });
  }, 240_000);

  const names = (r: OfflineRun) => new Set(r.resources.map((x) => `${x.type}::${x.name}`));

  it("off (the default): no second route, Access app, CNAME, key or certificate, and no SMTP output", () => {
    expect(ofType(off.resources, T.accessApp)).toHaveLength(1);
    expect(ofType(off.resources, T.dnsRecord).filter((r) => r.props.type === "CNAME")).toHaveLength(1);
    const offIngress = JSON.parse(
      pushedFiles(off.resources).find((f) => f.path === "/etc/cloudflared/mail-relay.yml")!.content,
    ).ingress as { service: string }[];
    expect(offIngress.map((i) => i.service)).toEqual(["http://127.0.0.1:2525", "http_status:404"]);
    expect(off.resources.filter((r) => r.type === "tls:index/selfSignedCert:SelfSignedCert")).toEqual([]);
    expect(pushedFiles(off.resources).filter((f) => f.path.startsWith("/etc/mail-relay/"))).toEqual([]);
    expect(pushedFiles(off.resources).find((f) => f.path === "/etc/mail-relay.env")!.content).not.toMatch(
      /RELAY_SMTP_/,
    );
    for (const k of ["smtpIngressHostname", "smtpIngressInternal", "smtpIngressCertificate", "smtpIngressFingerprint"])
      expect(off.outputs[k], k).toBeUndefined();
  });

  it("on: exactly these resources are added (route CNAME, Access app, key, certificate, two secret file pushes); nothing is renamed", () => {
    const a = names(off);
    const added = [...names(on)].filter((n) => !a.has(n)).sort();
    expect(added).toEqual(
      [
        `${T.dnsRecord}::mail-relay-route-smtp-cname`,
        `${T.accessApp}::mail-relay-tunnel-smtp-access-app`,
        "mail-relay:relay:SmtpIngressTls::mail-relay-smtp-tls",
        `${T.privateKey}::mail-relay-smtp-tls-key`,
        "tls:index/selfSignedCert:SelfSignedCert::mail-relay-smtp-tls-cert",
        `${T.command}::mail-relay-node1-secret-etc-mail-relay-smtp-ingress-crt`,
        `${T.command}::mail-relay-node1-secret-etc-mail-relay-smtp-ingress-key`,
      ].sort(),
    );
    expect([...a].filter((n) => !names(on).has(n))).toEqual([]);
  });

  it("on: the tunnel routes the SMTP hostname to tcp://127.0.0.1:2587 behind its own Access app with the callers' policy", () => {
    const apps = ofType(on.resources, T.accessApp);
    const smtpApp = apps.find((a) => a.props.domain === "smtp-relay.example.com")!;
    const httpApp = apps.find((a) => a.props.domain === "mail-relay.example.com")!;
    // The ingress is locally managed: it is the cloudflared config file the deploy pushes.
    const config = pushedFiles(on.resources).find((f) => f.path === "/etc/cloudflared/mail-relay.yml")?.content;
    expect(JSON.parse(String(config)).ingress).toEqual(
      tunnelIngress(
        "mail-relay.example.com",
        2525,
        String(on.config.values["mail-relay:accessTeamName"]),
        String(httpApp.props.aud),
        {
          hostname: "smtp-relay.example.com",
          port: 2587,
          audTag: String(smtpApp.props.aud),
        },
      ),
    );
    const policy = ofType(on.resources, T.accessPolicy);
    expect(policy).toHaveLength(1);
    expect(policy[0]!.props.decision).toBe("non_identity");
    expect(smtpApp.props).toMatchObject({
      type: "self_hosted",
      destinations: [{ type: "public", uri: "smtp-relay.example.com" }],
      policies: [{ id: policy[0]!.id, precedence: 1 }],
    });
    const cname = ofType(on.resources, T.dnsRecord).find((r) => r.props.name === "smtp-relay.example.com")!;
    expect(cname.props).toMatchObject({
      type: "CNAME",
      proxied: true,
      content: `${ofType(on.resources, T.tunnel)[0]!.id}.cfargotunnel.com`,
    });
    expect(on.outputs.smtpIngressHostname).toBe("smtp-relay.example.com");
  });

  it("on: the key and certificate are pushed as secret files the relay can read, and the env file points at them", () => {
    const key = ofType(on.resources, T.command).find(
      (c) => c.props.triggers?.[0] === "/etc/mail-relay/smtp-ingress.key",
    )!;
    const cert = ofType(on.resources, T.command).find(
      (c) => c.props.triggers?.[0] === "/etc/mail-relay/smtp-ingress.crt",
    )!;
    expect(key.secretProps).toContain("stdin");
    expect(key.props.create).toMatch(/chmod -- '0640'/);
    expect(key.props.create).toMatch(/chown -- 'root:mailrelay'/);
    expect(key.props.stdin).toBe(
      ofType(on.resources, T.privateKey).find((k) => k.name === "mail-relay-smtp-tls-key")!.props.privateKeyPemPkcs8,
    );
    expect(cert.props.stdin).toBe(on.outputs.smtpIngressCertificate);
    const env = Object.fromEntries(
      parseEnvFile(pushedFiles(on.resources).find((f) => f.path === "/etc/mail-relay.env")!.content),
    );
    expect(env).toMatchObject({
      RELAY_SMTP_LISTEN: "127.0.0.1:2587",
      RELAY_SMTP_HOSTNAME: "smtp-relay.example.com",
      RELAY_SMTP_TLS_KEY: "/etc/mail-relay/smtp-ingress.key",
      RELAY_SMTP_TLS_CERT: "/etc/mail-relay/smtp-ingress.crt",
    });
    // the key never appears in a command line or in user-data
    const pem = key.props.stdin as string;
    const body = pem.split("\n").filter((l) => /^[A-Za-z0-9+/=]{40,}$/.test(l));
    expect(body.length).toBeGreaterThan(0);
    for (const c of ofType(on.resources, T.command))
      for (const f of ["create", "update", "delete"])
        for (const l of body) expect(String(c.props[f] ?? "").includes(l), c.name).toBe(false);
    for (const s of ofType(on.resources, T.server))
      for (const l of body) expect(String(s.props.userData).includes(l)).toBe(false);
  });

  it("on: a certificate change restarts the relay (it is one of the activation step's triggers); user-data stays bootstrap-only", () => {
    const trig = (r: OfflineRun) =>
      ofType(r.resources, T.command).find((c) => c.name === "mail-relay-node1-relay-activate")!.props.triggers;
    expect(trig(on)).not.toEqual(trig(off)); // env file and TLS files are in the hash
    const ud = (r: OfflineRun) => ofType(r.resources, T.server).map((s) => s.props.userData);
    expect(ud(on)).toEqual(ud(off));
  });

  it("on: the certificate output is real, names the hostname and the loopback names, and the fingerprint output is its SHA-256", () => {
    const x = new X509Certificate(on.outputs.smtpIngressCertificate as string);
    expect(x.subject).toMatch(/CN=smtp-relay\.example\.com/);
    const names = smtpCertificateNames("smtp-relay.example.com");
    for (const d of names.dnsNames) expect(x.checkHost(d)).toBe(d);
    expect(x.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(on.outputs.smtpIngressFingerprint).toBe(x.fingerprint256);
    expect(on.outputs.smtpIngressFingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(on.secretOutputs).not.toContain("smtpIngressCertificate"); // public: callers pin it
    expect(on.outputs.smtpIngressInternal).toBe("smtp://127.0.0.1:2587");
  });

  it("tunnel off: the listener, key and certificate are there for apps on the host, with no route, CNAME or Access app", () => {
    expect(ofType(hostOnly.resources, T.tunnelConfig)).toEqual([]);
    expect(ofType(hostOnly.resources, T.accessApp)).toEqual([]);
    expect(pushedFiles(hostOnly.resources).map((f) => f.path)).toEqual(
      expect.arrayContaining(["/etc/mail-relay/smtp-ingress.key", "/etc/mail-relay/smtp-ingress.crt"]),
    );
    expect(hostOnly.outputs.smtpIngressHostname).toBeUndefined();
    expect(hostOnly.outputs.smtpIngressInternal).toBe("smtp://127.0.0.1:2587");
  });
});

describe("SmtpIngressTls under mocks (its own run)", () => {
  it("the private key output is secret, the certificate is not", async () => {
    const run = await runStack("prod", { smtpIngress: { enabled: true } });
    void run;
    // Built again under the mocks the run left in place: the component on its own.
    const { SmtpIngressTls } = await import("../../infra/smtpTls");
    const t = new SmtpIngressTls("isolated", { hostname: "smtp-relay.example.com" });
    expect(await pulumi.isSecret(t.privateKeyPem)).toBe(true);
    expect(await pulumi.isSecret(t.certPem)).toBe(false);
    expect(certificateFingerprint(await promiseOf(t.certPem))).toBe(await promiseOf(t.fingerprint));
  });
});
