import { parse } from "yaml";
import { describe, expect, expectTypeOf, it } from "vitest";
import { HOST_PACKAGES, renderUserData, type BootstrapSettings } from "../../cloud-init";
import {
  SECRET_SMARTHOST_PASSWORD,
  SECRET_TOKEN,
  SECRET_TUNNEL_TOKEN,
  buildConfig,
  dkimKeyPem,
} from "../../testkit/node-config";

const bootstrap: BootstrapSettings = { hostname: "mail", fqdn: "mail.example.com" };
const text = renderUserData(bootstrap);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const doc = parse(text) as any;

type RuncmdItem = string | string[];
const runcmd = (doc.runcmd as RuncmdItem[]).map((c) => (Array.isArray(c) ? c.join(" ") : c));
const file = (path: string) =>
  (doc.write_files as { path: string; content: string; permissions: string; defer?: boolean }[]).find(
    (f) => f.path === path,
  );

// renderUserData's only parameter is BootstrapSettings. A type fact, so tsc checks it (npm test runs `npm run
// typecheck` over test/); at run time expectTypeOf does nothing, which is why it is not dressed up as an it().
expectTypeOf(renderUserData).parameters.toEqualTypeOf<[BootstrapSettings]>();

describe("user-data is bootstrap only", () => {
  it("is byte-identical for two very different full configurations with the same bootstrap values", () => {
    const a = buildConfig({ smarthost: false, ipv6: false, tunnel: false, bodyLimit: 65_536, selector: "mail202601" });
    const b = buildConfig({
      smarthost: true,
      ipv6: true,
      tunnel: true,
      bodyLimit: 10_000_000,
      selector: "rot2027",
      tokens: [{ name: "other", token: "z".repeat(48) }],
    });
    expect(a.host).not.toEqual(b.host);
    expect(a.secrets).not.toEqual(b.secrets);
    expect(renderUserData(a.bootstrap)).toBe(renderUserData(b.bootstrap));
  });
  it("reads nothing but hostname and fqdn: extra fields (settings, secrets, relay code) change nothing", () => {
    const full = buildConfig({ smarthost: true, tunnel: true });
    const everything = {
      ...full.bootstrap,
      ...full.host,
      ...full.relayEnv,
      ...full.secrets,
      relayBundle: "console.log('v2')",
    };
    expect(renderUserData(everything as unknown as BootstrapSettings)).toBe(renderUserData(full.bootstrap));
  });
  it("contains no secret value", () => {
    for (const secret of [
      SECRET_TOKEN,
      SECRET_SMARTHOST_PASSWORD,
      SECRET_TUNNEL_TOKEN,
      dkimKeyPem().split("\n")[1] as string,
    ]) {
      expect(text).not.toContain(secret);
    }
    expect(text).not.toMatch(/PRIVATE KEY|TUNNEL_TOKEN|SMTP_RELAY_TOKEN|sasl_passwd/);
  });
  it("changes when the bootstrap values change (the test above could fail)", () => {
    expect(renderUserData({ hostname: "mail2", fqdn: "mail2.example.com" })).not.toBe(text);
  });
});

describe("user-data content", () => {
  it("is #cloud-config YAML", () => {
    expect(text.startsWith("#cloud-config\n")).toBe(true);
    expect(doc.hostname).toBe("mail");
    expect(doc.fqdn).toBe("mail.example.com");
  });
  it("installs every package the host needs", () => {
    for (const p of [
      "postfix",
      "opendkim",
      "opendkim-tools",
      "nodejs",
      "nftables",
      "unattended-upgrades",
      "ca-certificates",
      "curl",
      "gnupg",
      "libsasl2-modules",
    ]) {
      expect(doc.packages, p).toContain(p);
    }
    expect(doc.packages).toEqual([...HOST_PACKAGES]);
  });
  it("preseeds Postfix as Local only before it is installed", () => {
    const sel = Object.values(doc.apt.debconf_selections as Record<string, string>).join("\n");
    expect(sel).toMatch(/^postfix postfix\/main_mailer_type select Local only$/m);
    expect(doc.apt.preserve_sources_list).toBe(true);
  });
  it("creates the mailrelay system user without login shell or home", () => {
    const u = (doc.users as { name: string }[]).find((x) => x.name === "mailrelay") as Record<string, unknown>;
    expect(u).toMatchObject({ system: true, no_create_home: true, shell: "/usr/sbin/nologin", lock_passwd: true });
  });
  it("creates the queue root and subdirectories owned by mailrelay 0750", () => {
    for (const d of ["", "/pending", "/processing", "/failed", "/sent"]) {
      expect(runcmd, d).toContain(`install -d -o mailrelay -g mailrelay -m 0750 /var/spool/mail-relay${d}`);
    }
  });
  it("creates the OpenDKIM socket dir opendkim:postfix (setgid) and adds postfix to the opendkim group", () => {
    expect(runcmd).toContain("install -d -o opendkim -g postfix -m 2750 /var/spool/postfix/opendkim");
    expect(runcmd).toContain("usermod -a -G opendkim postfix");
    expect(runcmd).toContain("install -d -o root -g root -m 0755 /opt/mail-relay/releases");
  });
  it("stops at the first failing command and checks the firewall before enabling it", () => {
    expect(runcmd[0]).toBe("set -eu");
    expect(runcmd.indexOf("nft -c -f /etc/nftables.conf")).toBeLessThan(
      runcmd.indexOf("systemctl enable --now nftables.service"),
    );
  });
  it("ships the firewall and sshd hardening; firewall written after packages (defer)", () => {
    expect(file("/etc/nftables.conf")?.defer).toBe(true);
    expect(file("/etc/nftables.conf")?.content).toContain("policy drop");
    expect(file("/etc/ssh/sshd_config.d/10-mail-relay-hardening.conf")?.content).toMatch(
      /^PasswordAuthentication no$/m,
    );
    expect(file("/etc/apt/apt.conf.d/20auto-upgrades")?.content).toContain('APT::Periodic::Unattended-Upgrade "1";');
  });
  it("never allows password SSH logins; root keeps key login for the deploy step", () => {
    expect(doc.ssh_pwauth).toBe(false);
    expect(doc.disable_root).toBe(false);
  });
  it("sets a locale every Debian image has without locale-gen (C.UTF-8), so an image without LANG cannot stop cloud-init", () => {
    expect(doc.locale).toBe("C.UTF-8");
  });
  it("refuses a bad hostname", () => {
    expect(() => renderUserData({ hostname: "mail", fqdn: "mail.example.com\nruncmd: [reboot]" })).toThrow(/fqdn/);
    expect(() => renderUserData({ hostname: "web", fqdn: "mail.example.com" })).toThrow(/must start with hostname/);
  });
  it("snapshot (second line of defence)", () => {
    expect(text).toMatchSnapshot();
  });
});
