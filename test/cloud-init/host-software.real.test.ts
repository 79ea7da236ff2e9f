// Real Debian tools on the rendered bootstrap/system files: cloud-init schema, nft -c, sshd -t/-T, systemd-analyze
// verify, opendkim -n. Each block proves first that the tool rejects a broken file, so a pass means something.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  renderCloudflaredUnit,
  renderNftablesConf,
  renderOpendkimConf,
  renderOpendkimKeyTable,
  renderOpendkimSigningTable,
  renderOpendkimTrustedHosts,
  renderRelayUnit,
  renderSshdHardening,
  renderUserData,
} from "../../cloud-init";
import { buildConfig } from "./fixtures";
import { missing, removeDir, run, safeScratchDir, tool } from "./real-tools";

const cfg = buildConfig();
const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDir));
/** A scratch dir made when the block's tests start (a skipped block makes none: a non-root run can't write /var/lib). */
function scratch(prefix: string): () => string {
  let d: string | undefined;
  beforeAll(() => {
    d = safeScratchDir(prefix);
    dirs.push(d);
  });
  return () => d as string;
}

const skipCloudInit = missing("cloud-init schema", { tools: ["cloud-init"], scratch: true });
describe.skipIf(skipCloudInit)("cloud-init schema accepts the rendered user-data", () => {
  const dir = scratch("ci-");
  const check = (content: string) => {
    const f = join(dir(), `ud-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(f, content);
    return run(tool("cloud-init") as string, ["schema", "--config-file", f]);
  };
  it("rejects an invalid cloud-config (the check can fail)", () => {
    const r = check("#cloud-config\npackages: 5\n");
    expect(r.status).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/packages/);
  });
  it.each([
    ["mail", "mail.example.com"],
    ["mail2", "mail2.staging.example.com"],
  ])("user-data for %s is valid cloud-config", (hostname, fqdn) => {
    const r = check(renderUserData({ hostname, fqdn }));
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Valid cloud-config/);
  });
});

const skipNft = missing("nft -c", {
  tools: ["nft"],
  scratch: true,
  check: () => {
    const r = run(tool("nft") as string, ["-c", "-f", "/dev/null"]);
    return r.status === 0 ? undefined : `nft -c cannot run here (needs CAP_NET_ADMIN): ${r.stderr.trim()}`;
  },
});
// Loading a ruleset needs its own network namespace (never the machine's own tables): ip and root.
const skipNftLoad = skipNft ?? missing("nft ruleset loaded into a private network namespace", { tools: ["ip"], root: true });
describe.skipIf(skipNft)("nft accepts the rendered firewall", () => {
  const dir = scratch("nft-");
  it("rejects a broken ruleset (the check can fail)", () => {
    writeFileSync(join(dir(), "bad.conf"), renderNftablesConf().replace("policy drop;", "policy dorp;"));
    expect(run(tool("nft") as string, ["-c", "-f", join(dir(), "bad.conf")]).status).not.toBe(0);
  });
  it("nft -c -f nftables.conf succeeds", () => {
    writeFileSync(join(dir(), "nftables.conf"), renderNftablesConf());
    const r = run(tool("nft") as string, ["-c", "-f", join(dir(), "nftables.conf")]);
    expect(r.status, r.stderr).toBe(0);
  });
  it.skipIf(skipNftLoad)("loaded into a private network namespace, inbound policy is drop and only port 22 is opened", () => {
    const ip = tool("ip") as string;
    const ns = `mrnft${process.pid}`;
    expect(run(ip, ["netns", "add", ns]).status).toBe(0);
    try {
      writeFileSync(join(dir(), "nftables.conf"), renderNftablesConf());
      const load = run(ip, ["netns", "exec", ns, tool("nft") as string, "-f", join(dir(), "nftables.conf")]);
      expect(load.status, load.stderr).toBe(0);
      const list = run(ip, ["netns", "exec", ns, tool("nft") as string, "-j", "list", "ruleset"]);
      const rules = (JSON.parse(list.stdout).nftables as Record<string, any>[]).filter((x) => x.rule).map((x) => x.rule);
      const chains = (JSON.parse(list.stdout).nftables as Record<string, any>[]).filter((x) => x.chain).map((x) => x.chain);
      expect(chains.find((c) => c.name === "input")?.policy).toBe("drop");
      const ports = rules
        .filter((r) => r.chain === "input")
        .flatMap((r) => r.expr as Record<string, any>[])
        .filter((e) => e.match?.left?.payload?.field === "dport" && e.match?.left?.payload?.protocol === "tcp")
        .map((e) => e.match.right);
      expect(ports).toEqual([22]);
    } finally {
      run(ip, ["netns", "del", ns]);
    }
  });
});

const skipSshd = missing("sshd -t", { tools: ["sshd", "ssh-keygen"], root: true, scratch: true });
describe.skipIf(skipSshd)("sshd accepts the hardening drop-in and applies it over the main config", () => {
  const dir = scratch("sshd-");
  beforeAll(() => {
    mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
    run(tool("ssh-keygen") as string, ["-q", "-t", "ed25519", "-N", "", "-f", join(dir(), "hostkey")]);
  });
  const sshdConfig = (dropin: string) => {
    writeFileSync(join(dir(), "dropin.conf"), dropin);
    // Like Debian's sshd_config: the Include comes first, then settings that must lose to the drop-in.
    writeFileSync(join(dir(), "sshd_config"), `Include ${join(dir(), "dropin.conf")}\nHostKey ${join(dir(), "hostkey")}\nPasswordAuthentication yes\nX11Forwarding yes\nPermitRootLogin yes\n`);
    return join(dir(), "sshd_config");
  };
  it("rejects an unknown option (the check can fail)", () => {
    expect(run(tool("sshd") as string, ["-t", "-f", sshdConfig("Bogus yes\n")]).status).not.toBe(0);
  });
  it("sshd -t passes and sshd -T shows the hardened values", () => {
    const f = sshdConfig(renderSshdHardening());
    const t = run(tool("sshd") as string, ["-t", "-f", f]);
    expect(t.status, t.stderr).toBe(0);
    const eff = new Map(run(tool("sshd") as string, ["-T", "-f", f]).stdout.split("\n").map((l) => [l.split(" ")[0], l.slice(l.indexOf(" ") + 1)] as const));
    expect(eff.get("passwordauthentication")).toBe("no");
    expect(eff.get("kbdinteractiveauthentication")).toBe("no");
    expect(["prohibit-password", "without-password"]).toContain(eff.get("permitrootlogin"));
    expect(eff.get("x11forwarding")).toBe("no");
    expect(eff.get("allowtcpforwarding")).toBe("no");
    expect(eff.get("allowagentforwarding")).toBe("no");
    expect(eff.get("permittunnel")).toBe("no");
    expect(eff.get("pubkeyauthentication")).toBe("yes");
  });
});

const skipSystemd = missing("systemd-analyze verify", {
  tools: ["systemd-analyze"],
  scratch: true,
  check: () => (tool("node") === undefined ? "/usr/bin/node missing (ExecStart must exist)" : undefined),
});
describe.skipIf(skipSystemd)("systemd-analyze verify accepts the units", () => {
  const dir = scratch("units-");
  const verify = (name: string, content: string) => {
    writeFileSync(join(dir(), name), content);
    return run(tool("systemd-analyze") as string, ["verify", join(dir(), name)]);
  };
  it("reports an unknown setting (the check can fail)", () => {
    const r = verify("bogus.service", renderRelayUnit(cfg.host).replace("[Service]\n", "[Service]\nProtectBogus=yes\n"));
    expect(r.stderr).toMatch(/Unknown key/);
  });
  it("mail-relay.service: no warning at all", () => {
    const r = verify("mail-relay.service", renderRelayUnit(cfg.host));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
  });
  it("cloudflared-mail-relay.service: no warning (ExecStart pointed at /bin/true: cloudflared is not installed here)", () => {
    const r = verify("cloudflared-mail-relay.service", renderCloudflaredUnit().replace("/usr/bin/cloudflared", "/bin/true"));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
  });
});

const skipOpendkim = missing("opendkim -n", { tools: ["opendkim"], scratch: true });
describe.skipIf(skipOpendkim)("opendkim accepts the rendered configuration and tables", () => {
  const dir = scratch("odk-");
  const place = (conf: string) => conf.replaceAll("/etc/opendkim", dir()).replaceAll("/var/spool/postfix", dir()).replaceAll("/run/opendkim", dir());
  beforeAll(() => {
    writeFileSync(join(dir(), "KeyTable"), place(renderOpendkimKeyTable(cfg.host)));
    writeFileSync(join(dir(), "SigningTable"), renderOpendkimSigningTable(cfg.host));
    writeFileSync(join(dir(), "TrustedHosts"), renderOpendkimTrustedHosts());
  });
  it("rejects an unknown keyword (the check can fail)", () => {
    writeFileSync(join(dir(), "bad.conf"), place(renderOpendkimConf(cfg.host)) + "Bogus yes\n");
    expect(run(tool("opendkim") as string, ["-n", "-x", join(dir(), "bad.conf")]).status).not.toBe(0);
  });
  it("opendkim -n -x opendkim.conf succeeds (tables opened)", () => {
    writeFileSync(join(dir(), "opendkim.conf"), place(renderOpendkimConf(cfg.host)));
    const r = run(tool("opendkim") as string, ["-n", "-x", join(dir(), "opendkim.conf")]);
    expect(r.status, r.stderr).toBe(0);
  });
});
