/**
 * Phase 3: two network namespaces joined by a veth pair. `vps` is the server's (the booted host configures its
 * own side from the NoCloud network-config); `world` is the internet: the host's gateway, a DNS server with exactly
 * the program's records, the recipient MX, the Cloudflare edge stand-in and (smarthost stacks) the smarthost.
 * Every client the rehearsal runs, runs inside `world` (or on the host over SSH): no traffic leaves these two.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Capture } from "./capture";
import { Processes, run } from "./proc";
import { DOMAIN_BLOCKLIST, IP_BLOCKLISTS } from "../doctor/checks-reputation";
import { WORLD, waitTcp, worldCa, issueCert, type Names } from "./world/common";
import { renderRehearsalUnboundConf, servedTlds } from "./world/resolver";
import { startTlsWorld, TLS_WORLD, TLS_WORLD_ADDRESSES, tlsWorldDnsmasqLines, type TlsWorld } from "./world/tls-world";

export { WORLD, namesFor, worldCa, issueCert, waitTcp, type Names, type WorldCa } from "./world/common";

export interface HostAddresses {
  readonly ipv4: string;
  readonly ipv6?: string;
  readonly gw4: string;
  readonly gw6?: string;
}

export function hostAddresses(c: Capture): HostAddresses {
  const n = c.nodes[0];
  const gw4 = n.ipv4.replace(/\.\d+$/, ".1");
  if (gw4 === n.ipv4) throw new Error(`the host's IPv4 ${n.ipv4} is the rehearsal's gateway address; use another`);
  const gw6 = n.ipv6 ? `${n.ipv6.replace(/::[0-9a-f]*$/i, "")}::ffff` : undefined;
  return { ipv4: n.ipv4, ipv6: n.ipv6, gw4, gw6 };
}

async function ip(args: string[]): Promise<void> {
  const r = await run("ip", args);
  if (r.code !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.trim()}`);
}

/** Removes the namespaces (and with them the veth pair and every address). Missing ones are fine. */
export async function deleteNamespaces(n: Names): Promise<void> {
  for (const ns of [n.vps, n.world]) {
    const pids = await run("ip", ["netns", "pids", ns]);
    for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        /* gone */
      }
    }
    await run("ip", ["netns", "del", ns]);
  }
}

export async function createNamespaces(n: Names, h: HostAddresses): Promise<void> {
  await deleteNamespaces(n);
  await ip(["netns", "add", n.vps]);
  await ip(["netns", "add", n.world]);
  await ip(["link", "add", n.vethWorld, "netns", n.world, "type", "veth", "peer", "name", "eth0", "netns", n.vps]);
  const w = (args: string[]) => ip(["-n", n.world, ...args]);
  await w(["link", "set", "lo", "up"]);
  await w(["addr", "add", `${h.gw4}/24`, "dev", n.vethWorld]);
  if (h.gw6) await w(["addr", "add", `${h.gw6}/64`, "dev", n.vethWorld, "nodad"]);
  await w(["link", "set", n.vethWorld, "up"]);
  // The world's own servers' addresses sit on its loopback, reached by the host through its default route.
  for (const a of [WORLD.dns, WORLD.mx4, WORLD.edge, WORLD.smarthost, WORLD.stranger4, ...TLS_WORLD_ADDRESSES])
    await w(["addr", "add", `${a}/32`, "dev", "lo"]);
  for (const a of [WORLD.mx6, WORLD.stranger6]) await w(["addr", "add", `${a}/128`, "dev", "lo", "nodad"]);
}

/**
 * dnsmasq config: exactly the program's records, the PTRs, the recipient domain's MX into `world`, and the DNS
 * blocklists' zones (the doctor's); NXDOMAIN for any other name in those zones. `extra`:
 * lines the doctor's fault phases add (a blocklist entry).
 */
export function renderDnsmasqConf(
  c: Pick<Capture, "records" | "ptrs" | "smarthost">,
  extra: readonly string[] = [],
): string {
  const lines = [
    "# mail-relay rehearsal: the world's only DNS server",
    "no-resolv",
    "no-hosts",
    "bind-interfaces",
    `listen-address=${WORLD.dns}`,
    "log-queries",
    "port=53",
  ];
  const txtParts = (content: string) => {
    const parts = [...content.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);
    return parts.length > 0 ? parts : [content];
  };
  for (const r of c.records) {
    switch (r.type) {
      case "A":
      case "AAAA":
        lines.push(`host-record=${r.name},${r.content}`);
        break;
      case "TXT":
        lines.push(
          `txt-record=${r.name},${txtParts(r.content)
            .map((p) => `"${p}"`)
            .join(",")}`,
        );
        break;
      case "MX":
        lines.push(`mx-host=${r.name},${r.content},${r.priority ?? 10}`);
        break;
      case "CNAME":
        // The relay hostname is proxied: it resolves to Cloudflare's edge, here the rehearsal's.
        lines.push(r.proxied ? `host-record=${r.name},${WORLD.edge}` : `cname=${r.name},${r.content}`);
        break;
      default:
        throw new Error(`the rehearsal's DNS cannot serve a ${r.type} record (${r.name}); teach rehearsal/world.ts`);
    }
  }
  for (const p of c.ptrs) lines.push(`ptr-record=${reverseName(p.ip)},${p.name}`);
  lines.push(
    `mx-host=${WORLD.recipientDomain},${WORLD.mxHost},10`,
    `host-record=${WORLD.mxHost},${WORLD.mx4},${WORLD.mx6}`,
  );
  if (c.smarthost) lines.push(`host-record=${c.smarthost.host},${WORLD.smarthost}`);
  // The outbound TLS phases' recipient domains: the unsigned ones here, the signed ones delegated to their server.
  lines.push(...tlsWorldDnsmasqLines());
  // SPF includes point outside the stack (e.g. _spf.mx.cloudflare.net): the world stands in for their owners with a
  // record authorising nothing, so an SPF chain resolves (the doctor counts its lookups) without inventing addresses.
  const served = new Set(c.records.filter((r) => r.type === "TXT").map((r) => r.name));
  const includes = c.records
    .filter((r) => r.type === "TXT" && r.content.includes("v=spf1"))
    .flatMap((r) => [...r.content.matchAll(/\binclude:([^\s"]+)/g)].map((m) => m[1]));
  for (const target of new Set(includes)) if (!served.has(target)) lines.push(`txt-record=${target},"v=spf1 -all"`);
  // Authoritative for what it serves: a name it does not hold is NXDOMAIN (as from the zones' real servers), not
  // REFUSED. The blocklists' zones hold nothing: every address is "not listed".
  const zones = new Set([
    WORLD.recipientDomain,
    ...c.records.map((r) => r.name.split(".").slice(-2).join(".")),
    ...[...IP_BLOCKLISTS, DOMAIN_BLOCKLIST].map((l) => l.zone),
  ]);
  for (const z of zones) lines.push(`local=/${z}/`);
  lines.push(...extra);
  return lines.join("\n") + "\n";
}

export function reverseName(addr: string): string {
  if (addr.includes(":")) {
    const [head, tail = ""] = addr.split("::");
    const h = head ? head.split(":") : [];
    const t = tail ? tail.split(":") : [];
    const groups = [...h, ...Array(8 - h.length - t.length).fill("0"), ...t].map((g) => g.padStart(4, "0"));
    return `${groups.join("").split("").reverse().join(".")}.ip6.arpa`;
  }
  return `${addr.split(".").reverse().join(".")}.in-addr.arpa`;
}

export interface WorldServices {
  readonly mxDir: string;
  /** Smarthost stacks: where the smarthost writes what it accepted (all mail goes there). */
  readonly smarthostDir?: string;
  /** The world CA the host trusts (the smarthost's and the MTA-STS recipients' certificates). */
  readonly caCert: string;
  /** The outbound TLS recipients (rehearsal/world/tls-world.ts): their MXs, policies and signed zones. */
  readonly tls: TlsWorld;
  /** The host's unbound drop-in for this world (rehearsal/world/resolver.ts). */
  readonly unboundDropIn: string;
}

/** Starts the world's dnsmasq with `conf` (dnsmasq re-reads records only at start: a change is a restart). */
function startDns(conf: string, n: Names, dir: string, procs: Processes): void {
  fs.writeFileSync(path.join(dir, "dnsmasq.conf"), conf);
  const out = fs.openSync(path.join(dir, "dnsmasq.log"), "a");
  procs.start(
    "dnsmasq",
    "ip",
    [
      "netns",
      "exec",
      n.world,
      "dnsmasq",
      "--keep-in-foreground",
      `--conf-file=${path.join(dir, "dnsmasq.conf")}`,
      "--pid-file=",
      "--user=root",
      "--log-facility=-",
    ],
    { stdio: ["ignore", out, out] },
  );
}

/** Serves `conf` from now on: stops the world's dnsmasq by its PID, starts it with the new records, waits for it. */
export async function restartDns(conf: string, n: Names, dir: string, procs: Processes): Promise<void> {
  await procs.stop("dnsmasq");
  startDns(conf, n, dir, procs);
  await waitTcp(n.world, WORLD.dns, 53, 10_000);
}

export async function startWorld(c: Capture, n: Names, dir: string, procs: Processes): Promise<WorldServices> {
  const exec = (name: string, args: string[], log: string) => {
    const out = fs.openSync(path.join(dir, log), "a");
    return procs.start(name, "ip", ["netns", "exec", n.world, ...args], { stdio: ["ignore", out, out] });
  };
  startDns(renderDnsmasqConf(c), n, dir, procs);
  const mxDir = path.join(dir, "mx");
  // Counts at the MX are this run's: nothing left from an earlier one.
  fs.rmSync(mxDir, { recursive: true, force: true });
  const tsx = [process.execPath, "--import", "tsx"];
  exec("recipient MX", [...tsx, path.join(__dirname, "world", "mx.ts"), mxDir, WORLD.mx4, WORLD.mx6], "mx.log");
  let smarthostDir: string | undefined;
  const ca = await worldCa(dir);
  const tlsWorld = await startTlsWorld(ca, n, dir, procs);
  if (c.smarthost) {
    smarthostDir = path.join(dir, "smarthost");
    fs.rmSync(smarthostDir, { recursive: true, force: true });
    const tls = await issueCert(ca, "smarthost", [c.smarthost.host]);
    // The credentials file is read by the smarthost; they are the program's (the pushed sasl_passwd), never in argv.
    fs.writeFileSync(path.join(dir, "smarthost-auth"), `${c.smarthost.username}:${c.smarthost.password}`, {
      mode: 0o600,
    });
    exec(
      "smarthost",
      [
        ...tsx,
        path.join(__dirname, "world", "mx.ts"),
        smarthostDir,
        WORLD.smarthost,
        "--port",
        String(c.smarthost.port),
        "--auth-file",
        path.join(dir, "smarthost-auth"),
        "--tls",
        `${tls.key},${tls.cert}`,
      ],
      "smarthost.log",
    );
  }
  if (c.tunnel) {
    // Each hostname's Access application (its AUD tag), as the program's ingress rules name them.
    const apps: Record<string, string> = {};
    for (const r of c.tunnel.ingress) {
      const aud = r.originRequest?.access?.audTag?.[0];
      if (r.hostname && aud) apps[r.hostname] = aud;
    }
    const teamName = c.tunnel.ingress.find((r) => r.originRequest?.access)?.originRequest?.access?.teamName;
    fs.writeFileSync(
      path.join(dir, "access-tokens.json"),
      JSON.stringify({ tokens: c.tunnel.accessTokens, apps, teamName }),
      { mode: 0o600 },
    );
    exec(
      "edge",
      [...tsx, path.join(__dirname, "world", "edge.ts"), WORLD.edge, path.join(dir, "access-tokens.json")],
      "edge.log",
    );
  }
  const ports: [string, number][] = [
    [WORLD.dns, 53],
    [WORLD.mx4, 25],
  ];
  if (c.smarthost) ports.push([WORLD.smarthost, c.smarthost.port]);
  if (c.tunnel) ports.push([WORLD.edge, 80], [WORLD.edge, 7844]);
  for (const [a, p] of ports) await waitTcp(n.world, a, p, 20_000);
  const unboundDropIn = renderRehearsalUnboundConf(
    servedTlds(renderDnsmasqConf(c)),
    tlsWorld.zones.map((z) => ({ zone: z.zone, ds: z.ds, server: TLS_WORLD.authDns })),
  );
  return { mxDir, smarthostDir, caCert: ca.caCert, tls: tlsWorld, unboundDropIn };
}
