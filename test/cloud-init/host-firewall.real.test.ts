// The host ruleset the deploy step pushes, loaded by the real nft into two private network namespaces joined by a
// veth pair: "host" (the ruleset, the local listeners) and "net" (a remote MX and the metadata address). Connections
// are made as real uids (setpriv), so the output chain's skuid rules are what decides. The ruleset is rendered with
// users that exist on the test machine: daemon stands in for the relay, bin for cloudflared; postfix is itself.
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderHostNftablesConf } from "../../cloud-init";
import { netnsUnavailable, waitFor } from "../../testkit/postfix-instance";
import { missing, removeDir, run, safeScratchDir, tool } from "../../testkit/real-tools";

const users = { relay: "daemon", postfix: "postfix", cloudflared: "bin" };
const skip = missing("host ruleset in network namespaces", {
  tools: ["nft", "ip", "setpriv", "node"],
  root: true,
  check: () =>
    netnsUnavailable(`mrfwprobe${process.pid}`) ??
    (run("id", ["-u", "postfix"]).status !== 0 ? "no postfix user" : undefined),
});

const HOST_NS = `mrfwh${process.pid}`;
const NET_NS = `mrfwn${process.pid}`;
const REMOTE = "10.231.0.2";
const METADATA = "169.254.169.254";
const RELAY_PORT = 2525;
const SMTP_INGRESS_PORT = 2587;
const SMARTHOST_PORT = 2587;

const LISTENER = `const net=require("net");for(const [h,p] of JSON.parse(process.argv[1])){net.createServer(s=>{s.on("error",()=>{});s.end("220 ok\\r\\n")}).listen(p,h)}`;
const CONNECT = `const s=require("net").connect(+process.argv[2],process.argv[1]);s.on("connect",()=>{console.log("connected");process.exit(0)});s.on("error",e=>{console.log(e.code);process.exit(1)});setTimeout(()=>{console.log("timeout");process.exit(2)},3000)`;

const listeners: ChildProcess[] = [];
let dir = "";
const ip = () => tool("ip") as string;

function inNs(ns: string, cmd: string, args: string[]) {
  return run(ip(), ["netns", "exec", ns, cmd, ...args]);
}

/** Connects from the host namespace as `user` (uid and its groups); "connected" or the error code. */
function connectAs(user: string, host: string, port: number): string {
  const ids =
    user === "root"
      ? ["--reuid=0", "--regid=0"]
      : [`--reuid=${user}`, `--regid=${run("id", ["-g", user]).stdout.trim()}`];
  return inNs(HOST_NS, tool("setpriv") as string, [
    ...ids,
    "--clear-groups",
    tool("node") as string,
    "-e",
    CONNECT,
    host,
    String(port),
  ]).stdout.trim();
}

function listen(ns: string, endpoints: [string, number][]): ChildProcess {
  const p = spawn(ip(), ["netns", "exec", ns, tool("node") as string, "-e", LISTENER, JSON.stringify(endpoints)], {
    stdio: "ignore",
  });
  listeners.push(p);
  return p;
}

describe.skipIf(skip)(
  "the host ruleset decides who may talk SMTP, reach the metadata service, or reach loopback from cloudflared",
  () => {
    beforeAll(async () => {
      dir = safeScratchDir("fw-");
      for (const ns of [HOST_NS, NET_NS]) expect(run(ip(), ["netns", "add", ns]).status).toBe(0);
      expect(
        run(ip(), ["link", "add", "mrfwa", "netns", HOST_NS, "type", "veth", "peer", "name", "mrfwb", "netns", NET_NS])
          .status,
      ).toBe(0);
      for (const [ns, dev, addr] of [
        [HOST_NS, "mrfwa", "10.231.0.1/24"],
        [NET_NS, "mrfwb", `${REMOTE}/24`],
      ] as const) {
        inNs(ns, ip(), ["link", "set", "lo", "up"]);
        inNs(ns, ip(), ["addr", "add", addr, "dev", dev]);
        inNs(ns, ip(), ["link", "set", dev, "up"]);
      }
      inNs(NET_NS, ip(), ["addr", "add", `${METADATA}/32`, "dev", "lo"]);
      inNs(HOST_NS, ip(), ["route", "add", `${METADATA}/32`, "via", REMOTE]);

      const conf = join(dir, "nftables.conf");
      writeFileSync(
        conf,
        renderHostNftablesConf({
          adminCidrs: ["203.0.113.0/24", "2001:db8:1234::/48"],
          relayPort: RELAY_PORT,
          smtpIngressPort: SMTP_INGRESS_PORT,
          smarthostPort: SMARTHOST_PORT,
          users,
        }),
      );
      const load = inNs(HOST_NS, tool("nft") as string, ["-f", conf]);
      expect(load.status, load.stderr).toBe(0);

      listen(HOST_NS, [
        ["127.0.0.1", 25],
        ["127.0.0.1", 465],
        ["127.0.0.1", 587],
        ["127.0.0.1", RELAY_PORT],
        ["127.0.0.1", SMTP_INGRESS_PORT],
        ["127.0.0.1", 9999],
      ]);
      listen(NET_NS, [
        [REMOTE, 25],
        [REMOTE, SMARTHOST_PORT],
        [REMOTE, 443],
        [METADATA, 80],
      ]);
      await waitFor(
        () =>
          connectAs("root", "127.0.0.1", 25) === "connected" && connectAs(users.postfix, REMOTE, 25) === "connected",
        "the listeners",
        10_000,
        300,
      );
    }, 60_000);

    afterAll(() => {
      for (const p of listeners) p.kill("SIGTERM");
      for (const ns of [HOST_NS, NET_NS]) run(ip(), ["netns", "del", ns]);
      if (dir) removeDir(dir);
    });

    it("the check can fail: without the ruleset, nobody reaches loopback :25", () => {
      // Proven in a namespace of its own so the loaded one stays untouched.
      const bare = `mrfwc${process.pid}`;
      run(ip(), ["netns", "add", bare]);
      try {
        run(ip(), ["netns", "exec", bare, ip(), "link", "set", "lo", "up"]);
        const p = spawn(
          ip(),
          ["netns", "exec", bare, tool("node") as string, "-e", LISTENER, JSON.stringify([["127.0.0.1", 25]])],
          { stdio: "ignore" },
        );
        try {
          const ok = () =>
            run(ip(), [
              "netns",
              "exec",
              bare,
              tool("setpriv") as string,
              "--reuid=nobody",
              "--regid=nogroup",
              "--clear-groups",
              tool("node") as string,
              "-e",
              CONNECT,
              "127.0.0.1",
              "25",
            ]).stdout.trim();
          let r = "";
          for (let i = 0; i < 20 && r !== "connected"; i++) r = ok();
          expect(r).toBe("connected");
        } finally {
          p.kill("SIGTERM");
        }
      } finally {
        run(ip(), ["netns", "del", bare]);
      }
    });

    it.each([25, 465, 587])("loopback :%i: nobody and cloudflared are refused; the relay and root connect", (port) => {
      expect(connectAs("nobody", "127.0.0.1", port)).toBe("ECONNREFUSED");
      expect(connectAs(users.cloudflared, "127.0.0.1", port)).toBe("ECONNREFUSED");
      expect(connectAs(users.postfix, "127.0.0.1", port)).toBe("ECONNREFUSED");
      expect(connectAs(users.relay, "127.0.0.1", port)).toBe("connected");
      expect(connectAs("root", "127.0.0.1", port)).toBe("connected");
    });

    it.each([25, SMARTHOST_PORT])("outbound SMTP to port %i: only Postfix's uid", (port) => {
      expect(connectAs(users.postfix, REMOTE, port)).toBe("connected");
      for (const u of ["nobody", users.relay, users.cloudflared, "root"])
        expect(connectAs(u, REMOTE, port), u).toBe("ECONNREFUSED");
    });

    it("other outbound traffic is not affected (HTTPS to the remote host)", () => {
      for (const u of ["nobody", users.relay, users.cloudflared])
        expect(connectAs(u, REMOTE, 443), u).toBe("connected");
    });

    it("the metadata service (it serves user-data): root only", () => {
      expect(connectAs("root", METADATA, 80)).toBe("connected");
      for (const u of ["nobody", users.relay, users.postfix, users.cloudflared])
        expect(connectAs(u, METADATA, 80), u).toBe("ECONNREFUSED");
    });

    it("cloudflared reaches loopback only on the relay's ports (HTTP, and the SMTP ingress the tunnel's tcp route needs)", () => {
      expect(connectAs(users.cloudflared, "127.0.0.1", RELAY_PORT)).toBe("connected");
      expect(connectAs(users.cloudflared, "127.0.0.1", SMTP_INGRESS_PORT)).toBe("connected");
      expect(connectAs(users.cloudflared, "127.0.0.1", 9999)).toBe("ECONNREFUSED");
      expect(connectAs("nobody", "127.0.0.1", 9999)).toBe("connected");
    });

    it("nft -c refuses the ruleset when a named user does not exist (so the deploy step must create cloudflared first)", () => {
      const conf = join(dir, "missing-user.conf");
      writeFileSync(
        conf,
        renderHostNftablesConf({
          adminCidrs: ["203.0.113.0/24"],
          relayPort: RELAY_PORT,
          users: { ...users, cloudflared: "no-such-user-mr" },
        }),
      );
      const r = run(tool("nft") as string, ["-c", "-f", conf]);
      expect(r.status).not.toBe(0);
    });

    it("SSH is accepted only from adminCidrs (input chain)", () => {
      const list = inNs(HOST_NS, tool("nft") as string, ["list", "chain", "inet", "filter", "input"]).stdout;
      expect(list).toMatch(/ip saddr 203\.0\.113\.0\/24 tcp dport 22 ct state new accept/);
      expect(list).toMatch(/ip6 saddr 2001:db8:1234::\/48 tcp dport 22 ct state new accept/);
      expect(list).not.toMatch(/^\s*tcp dport 22 ct state new accept/m);
      expect(list).toMatch(/ip saddr 172\.31\.1\.1 udp sport 67 udp dport 68 accept/);
    });
  },
);
