import { describe, expect, it } from "vitest";
import {
  MASTER_SERVICES,
  MTA_STS_LISTEN,
  messageSizeLimitFor,
  renderPostfixMainCf,
  renderPostfixMasterCf,
} from "../../cloud-init";
import { TLS_POLICY_LISTEN, TLS_POLICY_MAP_NAME } from "../../relay/tls-policy/contract";
import { buildConfig } from "../../testkit/node-config";
import { parseMainCf, parseMasterCf, postfixList } from "./parsers";

const direct = buildConfig();
const smarthost = buildConfig({ smarthost: true });
const variants = [
  ["direct, ipv4", buildConfig({ ipv6: false })],
  ["direct, ipv6", buildConfig({ ipv6: true })],
  ["smarthost, ipv4", buildConfig({ smarthost: true })],
  ["smarthost, ipv6, staging subdomain", buildConfig({ smarthost: true, ipv6: true, domain: "staging.example.com" })],
] as const;

describe("main.cf parser (test helper)", () => {
  it("joins continuation lines and skips comments", () => {
    const m = parseMainCf("# c\na = 1\nb = x,\n  y\n\n#d = 2\n");
    expect(m.get("a")).toBe("1");
    expect(m.get("b")).toBe("x, y");
    expect(m.has("d")).toBe(false);
  });
  it("rejects garbage", () => {
    expect(() => parseMainCf("not a parameter\n")).toThrow();
  });
});

describe.each(variants)("Postfix main.cf (%s)", (_name, cfg) => {
  const m = parseMainCf(renderPostfixMainCf(cfg.host));

  it("listens on loopback only", () => {
    expect(m.get("inet_interfaces")).toBe("loopback-only");
  });
  it("trusts only loopback in mynetworks (never a private range, never a container/NAT network)", () => {
    expect(postfixList(m.get("mynetworks")).sort()).toEqual(["127.0.0.0/8", "[::1]/128"]);
    expect(m.get("mynetworks_style")).toBe("host");
  });
  it("does not treat the sending domain (or the MTA hostname) as local: mydestination is localhost only", () => {
    expect(postfixList(m.get("mydestination"))).toEqual(["localhost"]);
    expect(m.get("mydestination")).not.toContain(cfg.host.domain);
    expect(m.get("relay_domains")).toBe("");
  });
  it("relays only for mynetworks: relay and recipient restrictions end in reject_unauth_destination", () => {
    for (const key of ["smtpd_relay_restrictions", "smtpd_recipient_restrictions"]) {
      const r = postfixList(m.get(key));
      expect(r[0], key).toBe("permit_mynetworks");
      expect(r[r.length - 1], key).toBe("reject_unauth_destination");
      expect(r, key).not.toContain("permit");
      expect(r, key).not.toContain("permit_sasl_authenticated");
    }
    expect(postfixList(m.get("smtpd_client_restrictions"))).toEqual(["permit_mynetworks", "reject"]);
  });
  it("accepts no SASL or TLS from clients (loopback listener only)", () => {
    expect(m.get("smtpd_sasl_auth_enable")).toBe("no");
    expect(m.get("smtpd_tls_security_level")).toBe("none");
  });
  it("announces the node's MTA hostname in EHLO", () => {
    expect(m.get("myhostname")).toBe(cfg.host.mtaHostname);
    expect(m.get("smtp_helo_name")).toBe(cfg.host.mtaHostname);
    expect(m.get("mydomain")).toBe(cfg.host.domain);
  });
  it("keeps local notices on the host: unqualified addresses (root, postmaster) get the local domain, which mydestination lists", () => {
    expect(m.get("myorigin")).toBe("localhost");
    expect(postfixList(m.get("mydestination"))).toContain(m.get("myorigin"));
    expect(m.get("myorigin")).not.toContain(cfg.host.domain);
  });
  it("uses IPv6 only when enabled", () => {
    expect(m.get("inet_protocols")).toBe(cfg.host.ipv6 ? "all" : "ipv4");
  });
  it("lets only root and the relay user submit locally or see the queue", () => {
    for (const key of ["authorized_submit_users", "authorized_mailq_users"]) {
      expect(postfixList(m.get(key)).sort(), key).toEqual(["mailrelay", "root"]);
    }
  });
  it("signs through OpenDKIM on the unix socket inside the queue directory, and defers (tempfail) when it is down", () => {
    // Two OpenDKIM instances, RSA then Ed25519 (one algorithm per instance): every message gets both signatures.
    const milters = "unix:opendkim/opendkim.sock, unix:opendkim/opendkim-ed25519.sock";
    expect(m.get("smtpd_milters")).toBe(milters);
    expect(m.get("non_smtpd_milters")).toBe(milters);
    expect(m.get("milter_protocol")).toBe("6");
    expect(m.get("milter_default_action")).toBe("tempfail");
  });
  it("hides the software version and VRFY", () => {
    expect(m.get("smtpd_banner")).toBe("$myhostname ESMTP");
    expect(m.get("disable_vrfy_command")).toBe("yes");
  });
  it("keeps mailbox limits at or above message_size_limit", () => {
    const size = Number(m.get("message_size_limit"));
    expect(size).toBe(messageSizeLimitFor(cfg.host.relayBodyLimitBytes));
    expect(Number(m.get("mailbox_size_limit"))).toBeGreaterThanOrEqual(size);
    expect(Number(m.get("virtual_mailbox_limit"))).toBeGreaterThanOrEqual(size);
  });
  it("bounds how long undeliverable mail and bounces sit in the queue", () => {
    expect(m.get("maximal_queue_lifetime")).toBe("2d");
    expect(m.get("bounce_queue_lifetime")).toBe("1d");
  });
});

describe("Postfix outbound modes", () => {
  it("direct mode: no relayhost, DANE over validated DNSSEC, the DANE-first map before MTA-STS, no SASL client", () => {
    const m = parseMainCf(renderPostfixMainCf(direct.host));
    expect(m.get("relayhost")).toBe("");
    expect(m.get("smtp_tls_security_level")).toBe("dane");
    expect(m.get("smtp_dns_support_level")).toBe("dnssec");
    // Postfix takes the first map that answers: DANE first, so a domain's DANE wins over its MTA-STS policy.
    expect(
      m
        .get("smtp_tls_policy_maps")
        ?.split(/[\s,]+/)
        .filter(Boolean),
    ).toEqual([
      `socketmap:inet:${TLS_POLICY_LISTEN.host}:${TLS_POLICY_LISTEN.port}:${TLS_POLICY_MAP_NAME}`,
      `socketmap:inet:${MTA_STS_LISTEN.host}:${MTA_STS_LISTEN.port}:postfix`,
    ]);
    expect(m.has("smtp_sasl_auth_enable")).toBe(false);
    expect(m.has("smtp_sasl_password_maps")).toBe(false);
  });
  it("smarthost mode: relayhost [host]:port with verified TLS and mandatory SASL", () => {
    const m = parseMainCf(renderPostfixMainCf(smarthost.host));
    expect(m.get("relayhost")).toBe("[smtp.eu.mailgun.org]:587");
    // secure = encrypt + certificate must match the smarthost's name (encrypt alone would leak the password to a MITM).
    expect(["secure", "verify"]).toContain(m.get("smtp_tls_security_level"));
    expect(m.get("smtp_tls_CAfile")).toBe("/etc/ssl/certs/ca-certificates.crt");
    expect(m.get("smtp_sasl_auth_enable")).toBe("yes");
    expect(m.get("smtp_sasl_password_maps")).toBe("hash:/etc/postfix/sasl_passwd");
    expect(m.get("smtp_sasl_security_options")).toBe("noanonymous");
    expect(m.get("smtp_sasl_tls_security_options")).toBe("noanonymous");
    expect(m.has("smtp_tls_wrappermode")).toBe(false);
  });
  it("smarthost on port 465 uses TLS wrapper mode", () => {
    const host = { ...smarthost.host, smarthost: { host: "smtp.example.net", port: 465, username: "u" } };
    const m = parseMainCf(renderPostfixMainCf(host));
    expect(m.get("relayhost")).toBe("[smtp.example.net]:465");
    expect(m.get("smtp_tls_wrappermode")).toBe("yes");
  });
  it("refuses values that would break out of their line", () => {
    expect(() =>
      renderPostfixMainCf({ ...direct.host, mtaHostname: "mail.example.com\nmynetworks = 0.0.0.0/0" }),
    ).toThrow(/mtaHostname/);
    expect(() => renderPostfixMainCf({ ...direct.host, domain: "example.com mynetworks=0.0.0.0/0" })).toThrow(/domain/);
    expect(() =>
      renderPostfixMainCf({ ...smarthost.host, smarthost: { host: "smtp.example.net", port: 587, username: "a b" } }),
    ).toThrow(/username/);
  });
});

describe("message_size_limit formula", () => {
  it("is 8 x body limit + 1 MiB rounded up to whole MiB", () => {
    expect(messageSizeLimitFor(524_288)).toBe(5 * 1024 * 1024);
    expect(messageSizeLimitFor(1_000_000)).toBe(9 * 1024 * 1024);
  });
  it("grows with the body limit and refuses nonsense", () => {
    expect(messageSizeLimitFor(2_000_000)).toBeGreaterThan(messageSizeLimitFor(1_000_000));
    expect(() => messageSizeLimitFor(0)).toThrow(/relayBodyLimitBytes/);
    expect(() => messageSizeLimitFor(1.5e3 + 0.5)).toThrow(/relayBodyLimitBytes/);
  });
});

describe("Postfix master.cf", () => {
  const rows = parseMasterCf(renderPostfixMasterCf(direct.host));

  it("has exactly one listener: smtp inet (on loopback through inet_interfaces), not chrooted", () => {
    const listeners = rows.filter((r) => r.type === "inet" || r.type === "pass" || r.type === "fifo");
    expect(listeners.map((r) => `${r.service}/${r.type}/${r.command}`)).toEqual(["smtp/inet/smtpd"]);
    expect(listeners[0]?.chroot).toBe("n");
  });
  it("has no submission, smtps, port-number or second smtpd service", () => {
    const names = rows.map((r) => r.service);
    expect(names).not.toContain("submission");
    expect(names).not.toContain("smtps");
    expect(names).not.toContain("submissions");
    expect(names.filter((n) => /^\d+$/.test(n) || n.includes(":"))).toEqual([]);
    expect(rows.filter((r) => r.command === "smtpd")).toHaveLength(1);
  });
  it("keeps every service Postfix needs", () => {
    const unix = new Set(rows.filter((r) => r.type === "unix" || r.type === "unix-dgram").map((r) => r.service));
    for (const s of [
      "pickup",
      "cleanup",
      "qmgr",
      "tlsmgr",
      "rewrite",
      "bounce",
      "defer",
      "trace",
      "verify",
      "flush",
      "proxymap",
      "proxywrite",
      "smtp",
      "relay",
      "showq",
      "error",
      "retry",
      "discard",
      "local",
      "virtual",
      "lmtp",
      "anvil",
      "scache",
      "postlog",
    ]) {
      expect(unix.has(s), s).toBe(true);
    }
  });
  it("renders every service of the table, none of them overriding restrictions with -o", () => {
    expect(rows).toHaveLength(MASTER_SERVICES.length);
    for (const r of rows) {
      expect(r.args.join(" "), r.service).not.toMatch(/restrictions|mynetworks|sasl/);
    }
  });
});

describe("snapshot (second line of defence)", () => {
  it("direct main.cf", () => {
    expect(renderPostfixMainCf(direct.host)).toMatchSnapshot();
  });
  it("smarthost main.cf", () => {
    expect(renderPostfixMainCf(smarthost.host)).toMatchSnapshot();
  });
  it("master.cf", () => {
    expect(renderPostfixMasterCf(direct.host)).toMatchSnapshot();
  });
});
