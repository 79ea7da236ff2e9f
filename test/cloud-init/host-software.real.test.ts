// Each tested Debian release's own tools on the bootstrap/system files rendered for that release: cloud-init schema,
// nft -c, sshd -t/-T, systemd-analyze verify, opendkim -n (release-tools.ts: this machine's tools for its own
// release, the release's tools image otherwise). Each block first proves its tool is that release's and that it
// rejects a broken file, so a pass means something.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  RELEASES,
  renderCloudflaredUnit,
  renderHostNftablesConf,
  renderNftablesConf,
  renderOpendkimConf,
  renderOpendkimEd25519Unit,
  renderOpendkimKeyTable,
  renderOpendkimSigningTable,
  renderOpendkimTrustedHosts,
  renderRelayUnit,
  renderSshdHardening,
  renderTlsPolicyUnit,
  renderUserData,
  renderWebhookUnit,
  releaseName,
} from "../../cloud-init";
import { buildConfig } from "../../testkit/node-config";
import { missing, run, tool } from "../../testkit/real-tools";
import { eachRelease, scratch, type ReleaseTools } from "./release-tools";

/** The parts of `nft -j list ruleset` this test reads. */
interface NftJson {
  nftables: {
    chain?: { name: string; policy?: string };
    rule?: {
      chain: string;
      expr?: { match?: { left?: { payload?: { field?: string; protocol?: string } }; right: unknown } }[];
    };
  }[];
}

const tools = (t: ReleaseTools | undefined) => t as ReleaseTools;

for (const { release, tools: found, skip } of eachRelease("cloud-init schema", ["cloud-init"])) {
  describe.skipIf(skip)(`${releaseName(release)}: cloud-init schema accepts the rendered user-data`, () => {
    const t = () => tools(found);
    const dir = scratch("ci-");
    const check = (content: string) => {
      const f = join(dir(), `ud-${Math.random().toString(36).slice(2)}.yaml`);
      writeFileSync(f, content);
      return t().run("cloud-init", ["schema", "--config-file", f]);
    };
    it(`is the release's cloud-init (${RELEASES[release].ships.cloudInit})`, () => {
      const v = t().run("cloud-init", ["--version"]);
      expect(v.stdout + v.stderr).toMatch(
        new RegExp(`cloud-init ${RELEASES[release].ships.cloudInit.replace(".", "\\.")}\\b`),
      );
    });
    it("rejects an invalid cloud-config (the check can fail)", () => {
      const r = check("#cloud-config\npackages: 5\n");
      expect(r.status).not.toBe(0);
      expect(r.stdout + r.stderr).toMatch(/packages/);
    });
    it.each([
      ["mail", "mail.example.com"],
      ["mail2", "mail2.staging.example.com"],
    ])("user-data for %s is valid, with no deprecated key", (hostname, fqdn) => {
      const r = check(renderUserData({ hostname, fqdn }));
      expect(r.status, r.stdout + r.stderr).toBe(0);
      // 22.4 says "Valid cloud-config", 25.1 "Valid schema"; a deprecated key would be listed under "Deprecations".
      expect(r.stdout).toMatch(/Valid (cloud-config|schema)/);
      expect(r.stdout + r.stderr).not.toMatch(/deprecat/i);
    });
  });
}

for (const { release, tools: found, skip } of eachRelease("nft -c", ["nft"])) {
  const t = () => tools(found);
  // nft -c needs CAP_NET_ADMIN; it never loads anything.
  const cannotCheck =
    skip ??
    missing(`nft -c on ${releaseName(release)}`, {
      scratch: true,
      check: () => {
        const r = tools(found).run("nft", ["-c", "-f", "-"], { input: "" });
        return r.status === 0 ? undefined : `nft -c cannot run here (needs CAP_NET_ADMIN): ${r.stderr.trim()}`;
      },
    });
  // Loading a ruleset needs its own network namespace (never the machine's own tables): ip and root.
  const cannotLoad =
    cannotCheck ??
    missing(`nft ruleset loaded into a private network namespace on ${releaseName(release)}`, {
      tools: ["ip"],
      root: true,
    });
  describe.skipIf(cannotCheck)(`${releaseName(release)}: nft accepts the rendered firewalls`, () => {
    const dir = scratch("nft-");
    const nftCheck = (name: string, content: string) => {
      writeFileSync(join(dir(), name), content);
      return t().run("nft", ["-c", "-f", join(dir(), name)]);
    };
    // Users that exist in every Debian root (the tools image has no mailrelay or cloudflared user).
    const hostRuleset = () =>
      renderHostNftablesConf({
        adminCidrs: ["203.0.113.0/24", "2001:db8:1234::/48"],
        relayPort: 2525,
        smarthostPort: 2587,
        users: { relay: "daemon", postfix: "postfix", cloudflared: "bin" },
      });
    it(`is the release's nft (${RELEASES[release].ships.nftables})`, () => {
      expect(t().run("nft", ["--version"]).stdout).toContain(`v${RELEASES[release].ships.nftables}`);
    });
    it("rejects a broken ruleset (the check can fail)", () => {
      expect(nftCheck("bad.conf", renderNftablesConf().replace("policy drop;", "policy dorp;")).status).not.toBe(0);
    });
    it("nft -c accepts the bootstrap ruleset (user-data) and the host ruleset (deploy step)", () => {
      const boot = nftCheck("nftables.conf", renderNftablesConf());
      expect(boot.status, boot.stderr).toBe(0);
      const host = nftCheck("host-nftables.conf", hostRuleset());
      expect(host.status, host.stderr).toBe(0);
    });
    it.skipIf(cannotLoad)(
      "loaded into a private network namespace, inbound policy is drop and only port 22 is opened",
      () => {
        const ip = tool("ip") as string;
        const ns = `mrnft${release.slice(0, 3)}${process.pid}`;
        expect(run(ip, ["netns", "add", ns]).status).toBe(0);
        try {
          writeFileSync(join(dir(), "nftables.conf"), renderNftablesConf());
          const load = t().run("nft", ["-f", join(dir(), "nftables.conf")], { netns: ns });
          expect(load.status, load.stderr).toBe(0);
          const list = t().run("nft", ["-j", "list", "ruleset"], { netns: ns });
          const objects = (JSON.parse(list.stdout) as NftJson).nftables;
          const rules = objects.flatMap((x) => (x.rule ? [x.rule] : []));
          const chains = objects.flatMap((x) => (x.chain ? [x.chain] : []));
          expect(chains.find((c) => c.name === "input")?.policy).toBe("drop");
          const ports = rules
            .filter((r) => r.chain === "input")
            .flatMap((r) => r.expr ?? [])
            .filter((e) => e.match?.left?.payload?.field === "dport" && e.match?.left?.payload?.protocol === "tcp")
            .map((e) => e.match?.right);
          expect(ports).toEqual([22]);
        } finally {
          run(ip, ["netns", "del", ns]);
        }
      },
    );
  });
}

for (const { release, tools: found, skip: skip0 } of eachRelease("sshd -t", ["sshd"])) {
  const skip =
    skip0 ?? missing(`sshd -t on ${releaseName(release)}`, { tools: ["ssh-keygen"], root: true, scratch: true });
  describe.skipIf(skip)(
    `${releaseName(release)}: sshd accepts the hardening drop-in and applies it over the main config`,
    () => {
      const t = () => tools(found);
      const dir = scratch("sshd-");
      beforeAll(() => {
        mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
        run(tool("ssh-keygen") as string, ["-q", "-t", "ed25519", "-N", "", "-f", join(dir(), "hostkey")]);
      });
      const sshdConfig = (dropin: string) => {
        writeFileSync(join(dir(), "dropin.conf"), dropin);
        // Like Debian's sshd_config: the Include comes first, then settings that must lose to the drop-in.
        writeFileSync(
          join(dir(), "sshd_config"),
          `Include ${join(dir(), "dropin.conf")}\nHostKey ${join(dir(), "hostkey")}\nPasswordAuthentication yes\nX11Forwarding yes\nPermitRootLogin yes\n`,
        );
        return join(dir(), "sshd_config");
      };
      it(`is the release's OpenSSH (${RELEASES[release].ships.openssh})`, () => {
        const v = t().run("sshd", ["-V"]);
        expect(v.stdout + v.stderr).toContain(`OpenSSH_${RELEASES[release].ships.openssh}`);
      });
      it("rejects an unknown option (the check can fail)", () => {
        expect(t().run("sshd", ["-t", "-f", sshdConfig("Bogus yes\n")]).status).not.toBe(0);
      });
      it("sshd -t passes and sshd -T shows the hardened values", () => {
        const f = sshdConfig(renderSshdHardening());
        const check = t().run("sshd", ["-t", "-f", f]);
        expect(check.status, check.stderr).toBe(0);
        expect(check.stderr, "a deprecated or unsupported option").toBe("");
        const eff = new Map(
          t()
            .run("sshd", ["-T", "-f", f])
            .stdout.split("\n")
            .map((l) => [l.split(" ")[0], l.slice(l.indexOf(" ") + 1)] as const),
        );
        expect(eff.get("passwordauthentication")).toBe("no");
        expect(eff.get("kbdinteractiveauthentication")).toBe("no");
        expect(["prohibit-password", "without-password"]).toContain(eff.get("permitrootlogin"));
        expect(eff.get("x11forwarding")).toBe("no");
        expect(eff.get("allowtcpforwarding")).toBe("no");
        expect(eff.get("allowagentforwarding")).toBe("no");
        expect(eff.get("allowstreamlocalforwarding")).toBe("no");
        expect(eff.get("permittunnel")).toBe("no");
        expect(eff.get("pubkeyauthentication")).toBe("yes");
        expect(eff.get("maxauthtries")).toBe("3");
      });
    },
  );
}

for (const { release, tools: found, skip: skip0 } of eachRelease("systemd-analyze verify", [
  "systemd-analyze",
  "node",
])) {
  const skip = skip0 ?? missing(`systemd-analyze verify on ${releaseName(release)}`, { scratch: true });
  describe.skipIf(skip)(`${releaseName(release)}: systemd-analyze verify accepts the units`, () => {
    const t = () => tools(found);
    const cfg = buildConfig({ release });
    const dir = scratch("units-");
    const verify = (name: string, content: string) => {
      writeFileSync(join(dir(), name), content);
      return t().run("systemd-analyze", ["verify", join(dir(), name)]);
    };
    it(`is the release's systemd (${RELEASES[release].ships.systemd})`, () => {
      expect(t().run("systemd-analyze", ["--version"]).stdout).toMatch(
        new RegExp(`^systemd ${RELEASES[release].ships.systemd} `),
      );
    });
    it("reports an unknown setting (the check can fail)", () => {
      const r = verify(
        "bogus.service",
        renderRelayUnit(cfg.host).replace("[Service]\n", "[Service]\nProtectBogus=yes\n"),
      );
      expect(r.stderr).toMatch(/Unknown key/);
    });
    it("mail-relay.service: no warning at all", () => {
      const r = verify("mail-relay.service", renderRelayUnit(cfg.host));
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toBe("");
    });
    it("mail-relay-webhooks.service: no warning at all", () => {
      const r = verify("mail-relay-webhooks.service", renderWebhookUnit());
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toBe("");
    });
    it("mail-relay-tls-policy.service (the DANE-first TLS policy socketmap): no warning at all", () => {
      const r = verify("mail-relay-tls-policy.service", renderTlsPolicyUnit());
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toBe("");
    });
    it("opendkim-ed25519.service (the second OpenDKIM, Ed25519 signatures): no warning at all", () => {
      const r = verify("opendkim-ed25519.service", renderOpendkimEd25519Unit());
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toBe("");
    });
    it("cloudflared-mail-relay.service: no warning (ExecStart pointed at /bin/true: cloudflared is not installed here)", () => {
      const r = verify(
        "cloudflared-mail-relay.service",
        renderCloudflaredUnit().replace("/usr/bin/cloudflared", "/bin/true"),
      );
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toBe("");
    });
  });
}

for (const { release, tools: found, skip: skip0 } of eachRelease("opendkim -n", ["opendkim"])) {
  const skip = skip0 ?? missing(`opendkim -n on ${releaseName(release)}`, { scratch: true });
  describe.skipIf(skip)(`${releaseName(release)}: opendkim accepts the rendered configuration and tables`, () => {
    const t = () => tools(found);
    const cfg = buildConfig({ release });
    const dir = scratch("odk-");
    const place = (conf: string) =>
      conf
        .replaceAll("/etc/opendkim", dir())
        .replaceAll("/var/spool/postfix", dir())
        .replaceAll("/run/opendkim", dir());
    beforeAll(() => {
      writeFileSync(join(dir(), "KeyTable"), place(renderOpendkimKeyTable(cfg.host)));
      writeFileSync(join(dir(), "SigningTable"), renderOpendkimSigningTable(cfg.host));
      writeFileSync(join(dir(), "TrustedHosts"), renderOpendkimTrustedHosts());
    });
    it("rejects an unknown keyword (the check can fail)", () => {
      writeFileSync(join(dir(), "bad.conf"), place(renderOpendkimConf(cfg.host)) + "Bogus yes\n");
      expect(t().run("opendkim", ["-n", "-x", join(dir(), "bad.conf")]).status).not.toBe(0);
    });
    it("opendkim -n -x opendkim.conf succeeds (tables opened)", () => {
      writeFileSync(join(dir(), "opendkim.conf"), place(renderOpendkimConf(cfg.host)));
      const r = t().run("opendkim", ["-n", "-x", join(dir(), "opendkim.conf")]);
      expect(r.status, r.stderr).toBe(0);
    });
  });
}
