// Postfix's own parser reads the rendered main.cf/master.cf: postconf -n (no unknown parameter), postconf -h (the
// values Postfix actually uses), postconf -M (the service table) and postfix check (a full instance check).
import { chownSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderPostfixMainCf, renderPostfixMasterCf, type HostSettings } from "../../cloud-init";
import { buildConfig } from "./fixtures";
import { missing, removeDir, run, safeScratchDir, tool } from "./real-tools";

const skipPostconf = missing("postconf on rendered main.cf/master.cf", { tools: ["postconf"], scratch: true });
const skipCheck = missing("postfix check on a rendered instance", { tools: ["postfix", "postconf"], root: true, scratch: true });

const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDir));

function configDir(host: HostSettings, mainCfExtra = ""): string {
  const dir = safeScratchDir("postconf-");
  dirs.push(dir);
  writeFileSync(join(dir, "main.cf"), renderPostfixMainCf(host) + mainCfExtra);
  writeFileSync(join(dir, "master.cf"), renderPostfixMasterCf(host));
  return dir;
}

function postconf(dir: string, ...args: string[]) {
  const r = run(tool("postconf") as string, ["-c", dir, ...args]);
  if (r.status !== 0) throw new Error(`postconf ${args.join(" ")} failed: ${r.stderr}`);
  return r;
}

const variants = [
  ["direct, ipv4", buildConfig({ ipv6: false })],
  ["direct, ipv6", buildConfig({ ipv6: true })],
  ["smarthost, ipv4", buildConfig({ smarthost: true })],
  ["smarthost, ipv6", buildConfig({ smarthost: true, ipv6: true })],
] as const;

describe.skipIf(skipPostconf)("postconf reads the rendered files", () => {
  it("warns about a misspelled parameter (so the no-warning rule below can fail)", () => {
    const dir = configDir(buildConfig().host, "milter_default_acton = accept\n");
    expect(postconf(dir, "-n").stderr).toMatch(/unused parameter: milter_default_acton/);
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
      expect(get("mynetworks").split(/[\s,]+/).sort()).toEqual(["127.0.0.0/8", "[::1]/128"]);
      expect(get("mydestination")).toBe("localhost");
      expect(get("relay_domains")).toBe("");
      expect(get("inet_protocols")).toBe(cfg.host.ipv6 ? "all" : "ipv4");
    });
    it("Postfix sees: relay restrictions ending in reject_unauth_destination, milter tempfail on the unix socket", () => {
      expect(get("smtpd_relay_restrictions").split(/[\s,]+/).pop()).toBe("reject_unauth_destination");
      expect(get("smtpd_recipient_restrictions").split(/[\s,]+/).pop()).toBe("reject_unauth_destination");
      expect(get("milter_default_action")).toBe("tempfail");
      expect(get("smtpd_milters")).toBe("unix:opendkim/opendkim.sock");
      expect(get("non_smtpd_milters")).toBe("unix:opendkim/opendkim.sock");
      expect(get("myhostname")).toBe(cfg.host.mtaHostname);
    });
    it("Postfix sees the outbound mode", () => {
      if (cfg.host.smarthost) {
        expect(get("relayhost")).toBe("[smtp.eu.mailgun.org]:587");
        expect(get("smtp_tls_security_level")).toBe("secure");
        expect(get("smtp_sasl_auth_enable")).toBe("yes");
      } else {
        expect(get("relayhost")).toBe("");
        expect(get("smtp_tls_security_level")).toBe("may");
        expect(get("smtp_sasl_auth_enable")).toBe("no");
      }
    });
    it("postconf -M: the only listening service is smtp/inet; no submission, no smtps", () => {
      const services = postconf(dir, "-M").stdout.trim().split("\n").map((l) => l.split(/\s+/));
      const listeners = services.filter((f) => f[1] === "inet" || f[1] === "pass" || f[1] === "fifo");
      expect(listeners.map((f) => `${f[0]}/${f[1]}`)).toEqual(["smtp/inet"]);
      expect(services.map((f) => f[0])).not.toContain("submission");
      expect(services.map((f) => f[0])).not.toContain("smtps");
    });
  });
});

describe.skipIf(skipCheck)("postfix check on an instance made of the rendered files", () => {
  it.each(variants)("%s passes postfix check", (_name, cfg) => {
    const dir = configDir(cfg.host);
    const q = join(dir, "queue");
    const data = join(dir, "data");
    mkdirSync(q);
    mkdirSync(data);
    const pw = run("id", ["-u", "postfix"]);
    chownSync(data, Number(pw.stdout.trim()), 0);
    // Only the instance paths move to the scratch dir; every rendered setting stays as it is.
    postconf(dir, "-e", `queue_directory=${q}`, `data_directory=${data}`, `maillog_file_prefixes=${dir}`, `maillog_file=${dir}/maillog`, "alias_maps=", "alias_database=");
    const postfix = tool("postfix") as string;
    const sp = run(postfix, ["-c", dir, "set-permissions"]);
    expect(sp.status, sp.stderr).toBe(0);
    const check = run(postfix, ["-c", dir, "check"]);
    expect(check.status, check.stderr + check.stdout).toBe(0);
    expect(check.stderr + check.stdout).not.toMatch(/fatal|error/i);
  });
});
