// Postfix's own parser, each tested release's (release-tools.ts), reads the main.cf/master.cf rendered for that
// release: postconf -n (no unknown or deprecated parameter), postconf -h (the values Postfix actually uses),
// postconf -M (the service table) and postfix check (a full instance check).
import { chownSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RELEASES, releaseName, renderPostfixMainCf, renderPostfixMasterCf, type HostSettings } from "../../cloud-init";
import { buildConfig } from "../../testkit/node-config";
import { missing, removeDir, safeScratchDir } from "../../testkit/real-tools";
import { eachRelease, type ReleaseTools } from "./release-tools";

const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDir));

function configDir(host: HostSettings, mainCfExtra = ""): string {
  const dir = safeScratchDir("postconf-");
  dirs.push(dir);
  writeFileSync(join(dir, "main.cf"), renderPostfixMainCf(host) + mainCfExtra);
  writeFileSync(join(dir, "master.cf"), renderPostfixMasterCf(host));
  return dir;
}

for (const { release, tools: found, skip } of eachRelease("postconf on rendered main.cf/master.cf", [
  "postconf",
  "postfix",
])) {
  const t = () => found as ReleaseTools;
  const skipPostconf = skip ?? missing(`postconf on ${releaseName(release)}`, { scratch: true });
  const skipCheck = skipPostconf ?? missing(`postfix check on ${releaseName(release)}`, { root: true });
  const r = RELEASES[release];

  function postconf(dir: string, ...args: string[]) {
    const res = t().run("postconf", ["-c", dir, ...args]);
    if (res.status !== 0) throw new Error(`postconf ${args.join(" ")} failed: ${res.stderr}`);
    return res;
  }

  const variants = [
    ["direct, ipv4", buildConfig({ ipv6: false, release })],
    ["direct, ipv6", buildConfig({ ipv6: true, release })],
    ["smarthost, ipv4", buildConfig({ smarthost: true, release })],
    ["smarthost, ipv6", buildConfig({ smarthost: true, ipv6: true, release })],
  ] as const;

  describe.skipIf(skipPostconf)(`${releaseName(release)}: postconf reads the files rendered for it`, () => {
    it(`is the release's Postfix (${r.ships.postfix})`, () => {
      expect(t().run("postconf", ["-h", "mail_version"]).stdout.trim()).toMatch(
        new RegExp(`^${r.ships.postfix.replace(".", "\\.")}\\.`),
      );
    });
    it("warns about a misspelled parameter (so the no-warning rule below can fail)", () => {
      const dir = configDir(buildConfig({ release }).host, "milter_default_acton = accept\n");
      expect(postconf(dir, "-n").stderr).toMatch(/unused parameter: milter_default_acton/);
    });
    it(`compatibility_level is ${r.postfix.compatibilityLevel}, the level Debian's own main.cf sets on this release`, () => {
      const dir = configDir(buildConfig({ release }).host);
      expect(postconf(dir, "-h", "compatibility_level").stdout.trim()).toBe(r.postfix.compatibilityLevel);
      // Debian's own default main.cf, as the package ships it in this release.
      const debian = t().run("sh", ["-c", "grep -h '^compatibility_level' /usr/share/postfix/main.cf.debian"]);
      expect(debian.stdout.trim()).toBe(`compatibility_level = ${r.postfix.compatibilityLevel}`);
    });
    it("bare-newline handling never reaches a client: every client Postfix can have is loopback, and the default exclusions are $mynetworks", () => {
      // Postfix 3.7 defaults smtpd_forbid_bare_newline to no, 3.10 to normalize; both exclude $mynetworks, which
      // is loopback only, and inet_interfaces is loopback-only: the setting applies to no client on either release.
      const dir = configDir(buildConfig({ release }).host);
      expect(postconf(dir, "-h", "smtpd_forbid_bare_newline_exclusions").stdout.trim()).toBe("$mynetworks");
      expect(
        postconf(dir, "-x", "-h", "smtpd_forbid_bare_newline_exclusions")
          .stdout.trim()
          .split(/[\s,]+/)
          .sort(),
      ).toEqual(["127.0.0.0/8", "[::1]/128"]);
    });
    describe.each(variants)("%s", (_name, cfg) => {
      let dir = "";
      beforeAll(() => void (dir = configDir(cfg.host))); // not at collection: a skipped block writes nothing
      const get = (key: string) => postconf(dir, "-h", key).stdout.trim();

      it("every parameter is one Postfix knows (postconf -n prints no warning)", () => {
        const r = postconf(dir, "-n");
        expect(r.stderr).toBe("");
        expect(r.stdout).toContain("inet_interfaces = loopback-only");
      });
      it("Postfix sees: loopback-only listener, loopback-only mynetworks, localhost-only mydestination", () => {
        expect(get("inet_interfaces")).toBe("loopback-only");
        expect(
          get("mynetworks")
            .split(/[\s,]+/)
            .sort(),
        ).toEqual(["127.0.0.0/8", "[::1]/128"]);
        expect(get("mydestination")).toBe("localhost");
        expect(get("relay_domains")).toBe("");
        expect(get("inet_protocols")).toBe(cfg.host.ipv6 ? "all" : "ipv4");
      });
      it("Postfix sees: relay restrictions ending in reject_unauth_destination, milter tempfail on the unix socket", () => {
        expect(
          get("smtpd_relay_restrictions")
            .split(/[\s,]+/)
            .pop(),
        ).toBe("reject_unauth_destination");
        expect(
          get("smtpd_recipient_restrictions")
            .split(/[\s,]+/)
            .pop(),
        ).toBe("reject_unauth_destination");
        expect(get("milter_default_action")).toBe("tempfail");
        const milters = "unix:opendkim/opendkim.sock, unix:opendkim/opendkim-ed25519.sock";
        expect(get("smtpd_milters")).toBe(milters);
        expect(get("non_smtpd_milters")).toBe(milters);
        expect(get("myhostname")).toBe(cfg.host.mtaHostname);
      });
      it("Postfix sees the outbound mode", () => {
        if (cfg.host.smarthost) {
          expect(get("relayhost")).toBe("[smtp.eu.mailgun.org]:587");
          expect(get("smtp_tls_security_level")).toBe("secure");
          expect(get("smtp_sasl_auth_enable")).toBe("yes");
        } else {
          expect(get("relayhost")).toBe("");
          expect(get("smtp_tls_security_level")).toBe("dane");
          expect(get("smtp_dns_support_level")).toBe("dnssec");
          expect(get("smtp_tls_policy_maps")).toBe(
            "socketmap:inet:127.0.0.1:8462:dane, socketmap:inet:127.0.0.1:8461:postfix",
          );
          expect(get("smtp_sasl_auth_enable")).toBe("no");
        }
      });
      it("postconf -M: the only listening service is smtp/inet; no submission, no smtps", () => {
        const services = postconf(dir, "-M")
          .stdout.trim()
          .split("\n")
          .map((l) => l.split(/\s+/));
        const listeners = services.filter((f) => f[1] === "inet" || f[1] === "pass" || f[1] === "fifo");
        expect(listeners.map((f) => `${f[0]}/${f[1]}`)).toEqual(["smtp/inet"]);
        expect(services.map((f) => f[0])).not.toContain("submission");
        expect(services.map((f) => f[0])).not.toContain("smtps");
      });
    });
  });

  describe.skipIf(skipCheck)(
    `${releaseName(release)}: postfix check on an instance made of the files rendered for it`,
    () => {
      it.each(variants)("%s passes postfix check", (_name, cfg) => {
        const dir = configDir(cfg.host);
        const q = join(dir, "queue");
        const data = join(dir, "data");
        mkdirSync(q);
        mkdirSync(data);
        // The postfix uid of the release's own root (the tools image's may differ from this machine's).
        const pw = t().run("id", ["-u", "postfix"]);
        chownSync(data, Number(pw.stdout.trim()), 0);
        // Only the instance paths move to the scratch dir; every rendered setting stays as it is.
        postconf(
          dir,
          "-e",
          `queue_directory=${q}`,
          `data_directory=${data}`,
          `maillog_file_prefixes=${dir}`,
          `maillog_file=${dir}/maillog`,
          "alias_maps=",
          "alias_database=",
        );
        const sp = t().run("postfix", ["-c", dir, "set-permissions"]);
        expect(sp.status, sp.stderr).toBe(0);
        const check = t().run("postfix", ["-c", dir, "check"]);
        expect(check.status, check.stderr + check.stdout).toBe(0);
        expect(check.stderr + check.stdout).not.toMatch(/fatal|error/i);
      });
    },
  );
}
