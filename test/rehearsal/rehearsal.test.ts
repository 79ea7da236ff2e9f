/**
 * The rehearsal's own logic, without booting anything: what it captures from the program, the order it replays
 * and tears down in, and the world's DNS it serves. The boot itself runs in `npm run rehearse` (and CI).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { fromRun, type Capture, type RemoteStep } from "../../rehearsal/capture";
import { renderMetaData, renderNetworkConfig, type HostShell } from "../../rehearsal/host";
import { releaseImageArg } from "../../rehearsal/main";
import { deleteOrder, replay } from "../../rehearsal/replay";
import { renderDnsmasqConf, reverseName } from "../../rehearsal/world";
import { parse } from "yaml";
import { runStack } from "../helpers/stack";

let capture: Capture;
beforeAll(async () => {
  capture = fromRun("prod", await runStack("prod"));
}, 120_000);

const step = (name: string, after: string[] = [], del?: string): RemoteStep => ({
  name,
  kind: "command",
  connection: { host: "203.0.113.11", port: 22, user: "root", privateKey: "k", dialErrorLimit: 1, perDialTimeout: 1 },
  create: `echo ${name}`,
  ...(del ? { delete: del } : {}),
  after,
});

describe("the capture is the program's, not a re-derivation", () => {
  it("user-data is byte for byte the server's userData, and the image is the program's", () => {
    expect(capture.nodes).toHaveLength(1);
    expect(capture.nodes[0].userData.startsWith("#cloud-config\n")).toBe(true);
    expect(capture.nodes[0].image).toMatch(/^debian-/);
  });
  it("every remote step is captured with its connection; only the first (trust on first use) has no pinned host key", () => {
    const first = capture.steps.filter((s) => s.after.length === 0);
    expect(first.map((s) => s.name)).toEqual(["mail-relay-node1-host-key"]);
    expect(first[0].connection.hostKey).toBeUndefined();
    for (const s of capture.steps.filter((x) => x !== first[0])) {
      expect(s.connection.host).toBe(capture.nodes[0].ipv4);
      expect(s.connection.hostKey, s.name).toMatch(/^ssh-ed25519 /);
      expect(s.connection.dialErrorLimit).toBeGreaterThan(1);
    }
    const wait = capture.steps.find((s) => s.name.endsWith("-wait-cloud-init"))!;
    const pushes = capture.steps.filter((s) => /-(file|secret)-/.test(s.name));
    expect(pushes.length).toBeGreaterThan(5);
    for (const p of pushes) expect(p.after).toContain(wait.name);
  });
  it("the engine's dependencies are kept: mail config waits for every Postfix/OpenDKIM file, activation for the upload", () => {
    const apply = capture.steps.find((s) => s.name.endsWith("-apply-mail-config"))!;
    const mailFiles = capture.steps
      .filter((s) => /-(file|secret)-etc-(postfix|opendkim)/.test(s.name))
      .map((s) => s.name);
    expect(mailFiles.length).toBeGreaterThan(3);
    for (const f of mailFiles) expect(apply.after).toContain(f);
    const activate = capture.steps.find((s) => s.name.endsWith("-relay-activate"))!;
    expect(activate.after).toEqual(
      expect.arrayContaining([apply.name, capture.steps.find((s) => s.kind === "copy")!.name]),
    );
  });
  it("the upload names the relay bundle file", () => {
    const up = capture.steps.find((s) => s.kind === "copy")!;
    expect(up.source).toMatch(/relay\.js$/);
    expect(up.remotePath).toMatch(/^\//);
  });
  it("records, PTRs and the tunnel ingress come from the program's resources", () => {
    expect(capture.records.map((r) => r.type)).toEqual(expect.arrayContaining(["A", "AAAA", "TXT", "MX"]));
    expect(capture.ptrs.map((p) => p.ip)).toContain(capture.nodes[0].ipv4);
    expect(capture.tunnel?.ingress.at(-1)?.service).toBe("http_status:404");
    expect(capture.tunnel?.token).toMatch(/.{20,}/);
  });
});

describe("replay order", () => {
  it("a step starts only after every step it depends on succeeded; independent steps overlap (fake shell)", async () => {
    const log: string[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const fakeShell = {
      async exec(_c: unknown, script: string) {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        log.push(`start ${script}`);
        await new Promise((r) => setTimeout(r, 20));
        log.push(`end ${script}`);
        inFlight--;
        return {
          code: script.includes("bad") ? 1 : 0,
          stdout: "",
          stderr: script.includes("bad") ? "boom" : "",
          dials: 1,
        };
      },
    } as unknown as HostShell;
    const steps = [
      step("a"),
      step("b", ["a"]),
      step("c", ["a"]),
      step("d", ["b", "c"]),
      step("bad", ["a"]),
      step("after-bad", ["bad"]),
    ];
    const results = await replay(fakeShell, steps, () => undefined);
    const at = (e: string) => log.indexOf(e);
    expect(at("start echo b")).toBeGreaterThan(at("end echo a"));
    expect(at("start echo d")).toBeGreaterThan(Math.max(at("end echo b"), at("end echo c")));
    expect(maxInFlight).toBeGreaterThanOrEqual(3);
    expect(results.find((r) => r.name === "bad")).toMatchObject({ ok: false, code: 1, stderr: "boom" });
    expect(results.find((r) => r.name === "after-bad")).toMatchObject({ ok: false, skipped: "not run: bad failed" });
    expect(log.some((l) => l.includes("after-bad"))).toBe(false);
  });
  it("deletes run dependants first: the cloudflared guard before the relay guard", () => {
    const order = deleteOrder(capture.steps).map((s) => s.name.replace(/^mail-relay-node1-/, ""));
    expect(order).toEqual(["cloudflared-guard", "relay-guard"]);
  });
  it("delete order follows dependencies through steps that have no delete", () => {
    const order = deleteOrder([step("x", [], "del x"), step("y", ["x"]), step("z", ["y"], "del z")]).map((s) => s.name);
    expect(order).toEqual(["z", "x"]);
  });
});

describe("the world's DNS serves exactly the program's records", () => {
  it("every record appears; TXT records keep their 255-byte strings apart", () => {
    const conf = renderDnsmasqConf(capture);
    for (const r of capture.records.filter((x) => !x.proxied)) expect(conf).toContain(r.name);
    const dkim = capture.records.find((r) => r.name.includes("._domainkey.") && r.content.includes("k=rsa"))!;
    const line = conf.split("\n").find((l) => l.startsWith(`txt-record=${dkim.name},`))!;
    const parts = [...line.matchAll(/"([^"]*)"/g)].map((m) => m[1]);
    expect(parts.length).toBeGreaterThan(1);
    expect(parts.join("")).toBe([...dkim.content.matchAll(/"([^"]*)"/g)].map((m) => m[1]).join(""));
    for (const p of parts) expect(p.length).toBeLessThanOrEqual(255);
  });
  it("PTR names are the reverse of the host's addresses", () => {
    expect(reverseName("203.0.113.11")).toBe("11.113.0.203.in-addr.arpa");
    expect(reverseName("2001:db8:1::1")).toBe(
      "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
    );
    const conf = renderDnsmasqConf(capture);
    for (const p of capture.ptrs) expect(conf).toContain(`ptr-record=${reverseName(p.ip)},${p.name}`);
  });
  it("a record type the world cannot serve is an error, not a silent gap", () => {
    expect(() =>
      renderDnsmasqConf({
        ...capture,
        records: [{ name: "x.example.com", type: "SRV", content: "0 0 1 y", proxied: false }],
      }),
    ).toThrow(/cannot serve a SRV record/);
  });
});

describe("the NoCloud seed", () => {
  it("meta-data carries the root key in public-keys (as Hetzner injects it); the user-data has none", () => {
    const md = parse(renderMetaData(capture, "i-1", "ssh-ed25519 AAAAtest rehearsal"));
    expect(md["public-keys"]).toEqual(["ssh-ed25519 AAAAtest rehearsal"]);
    expect(capture.nodes[0].userData).not.toContain("ssh-ed25519 AAAAtest");
  });
  it("network-config gives the host the program's primary IPs", () => {
    const nc = parse(renderNetworkConfig(capture));
    const eth0 = nc.config.find((i: { name: string }) => i.name === "eth0");
    expect(eth0.subnets.map((s: { address: string }) => s.address)).toEqual([
      `${capture.nodes[0].ipv4}/24`,
      `${capture.nodes[0].ipv6}/64`,
    ]);
    expect(eth0.subnets.every((s: { gateway?: string }) => s.gateway)).toBe(true);
  });
});

describe("--release overrides the stack's image for the rehearsal", () => {
  it.each([
    [["prod", "--release", "12"], "debian-12"],
    [["prod", "--release=13"], "debian-13"],
    [["--release", "bookworm", "prod", "--keep"], "debian-12"],
    [["prod", "--release", "debian-13"], "debian-13"],
  ])("%j -> %s, the other arguments kept", (argv, image) => {
    const r = releaseImageArg(argv);
    expect(r.image).toBe(image);
    expect(r.error).toBeUndefined();
    expect(r.rest).toEqual(
      argv.filter((a) => !a.startsWith("--release") && !["12", "13", "bookworm", "debian-13"].includes(a)),
    );
  });
  it("--upgrade-from is read the same way, by its own name", () => {
    const r = releaseImageArg(["prod", "--upgrade-from", "12"], "--upgrade-from");
    expect(r).toEqual({ rest: ["prod"], image: "debian-12" });
    expect(releaseImageArg(["prod", "--upgrade-from", "12"]).rest).toEqual(["prod", "--upgrade-from", "12"]);
  });
  it("without the flag: the stack's own image", () => {
    expect(releaseImageArg(["prod", "--keep"])).toEqual({ rest: ["prod", "--keep"] });
  });
  it("an unknown release names the known ones", () => {
    expect(releaseImageArg(["prod", "--release", "11"]).error).toBe(
      '--release "11": the rehearsal knows 12 (bookworm, debian-12), 13 (trixie, debian-13)',
    );
    expect(releaseImageArg(["prod", "--release"]).error).toMatch(/^--release "": /);
  });
});
