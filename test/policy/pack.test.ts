/**
 * The pack as the Pulumi CLI runs it: infra/policy/index.ts is started as its own process (it serves the
 * analyzer over gRPC on 127.0.0.1 and prints the port), and we speak the analyzer protocol to it the way the
 * engine does. This proves `pulumi preview --policy-pack infra/policy` gets 17 mandatory policies that refuse
 * a violating resource, without the Pulumi CLI (not installed here).
 */
import { ChildProcess, spawn } from "node:child_process";
import { createRequire } from "node:module";
import * as path from "node:path";
import type { AnalyzeRequest, AnalyzeResponse, AnalyzerInfo } from "@pulumi/pulumi/proto/analyzer_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rules } from "../../infra/policy/rules";

const pulumiRequire = createRequire(require.resolve("@pulumi/pulumi/proto/analyzer_pb"));
const analyzerPb = pulumiRequire("./analyzer_pb");
const analyzerGrpc = pulumiRequire("./analyzer_grpc_pb");
const grpc = pulumiRequire("@grpc/grpc-js");
const { Struct } = pulumiRequire("google-protobuf/google/protobuf/struct_pb");
const { Empty } = pulumiRequire("google-protobuf/google/protobuf/empty_pb");
const unknownString = (createRequire(require.resolve("@pulumi/policy")) as NodeRequire)("./proxy")
  .unknownStringValue as string;

const PACK_DIR = path.join(__dirname, "../../infra/policy");
const ROOT = path.join(__dirname, "../..");
const FIREWALL = "hcloud:index/firewall:Firewall";

let child: ChildProcess | undefined;
/** The generated gRPC client's unary methods, called by name with a node-style callback. */
type UnaryCall = (req: unknown, callback: (err: Error | null, res: unknown) => void) => void;
let client: (Record<string, UnaryCall> & { close(): void }) | undefined;

function call<T>(method: "getAnalyzerInfo" | "analyze" | "analyzeStack", req: unknown): Promise<T> {
  return new Promise((resolve, reject) => client![method](req, (err, res) => (err ? reject(err) : resolve(res as T))));
}

function firewallRequest(port: string): AnalyzeRequest {
  return new analyzerPb.AnalyzeRequest()
    .setType(FIREWALL)
    .setName("fw")
    .setUrn(`urn:pulumi:test::mail-relay::${FIREWALL}::fw`)
    .setOptions(new analyzerPb.AnalyzerResourceOptions())
    .setProperties(
      Struct.fromJavaScript({ rules: [{ direction: "in", protocol: "tcp", port, sourceIps: ["0.0.0.0/0"] }] }),
    );
}

const MAIN_CF_ALL = [
  "inet_interfaces = all",
  "smtp_dns_support_level = dnssec",
  "smtp_tls_security_level = dane",
  "smtp_tls_policy_maps = socketmap:inet:127.0.0.1:8462:dane, socketmap:inet:127.0.0.1:8461:postfix",
  "mynetworks = 127.0.0.0/8",
  "mydestination = localhost",
  "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
  "milter_default_action = tempfail",
  "smtpd_milters = unix:opendkim/opendkim.sock",
  "non_smtpd_milters = $smtpd_milters",
].join("\n");

function mainCfPush(stdin: string) {
  const type = "command:remote:Command";
  return new analyzerPb.AnalyzerResource()
    .setType(type)
    .setName("file-main-cf")
    .setUrn(`urn:pulumi:test::mail-relay::${type}::file-main-cf`)
    .setOptions(new analyzerPb.AnalyzerResourceOptions())
    .setProperties(
      Struct.fromJavaScript({
        triggers: ["/etc/postfix/main.cf", "hash"],
        stdin,
        connection: { host: "198.51.100.10", user: "root" },
      }),
    );
}

beforeAll(async () => {
  // The same entry point the CLI uses: the pack's index.ts, cwd = the pack folder (it reads package.json's version).
  child = spawn(process.execPath, [path.join(ROOT, "node_modules/tsx/dist/cli.mjs"), "index.ts"], {
    cwd: PACK_DIR,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += String(d)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`policy pack did not start: ${stderr}`)), 30_000);
    child!.stdout!.once("data", (d) => {
      clearTimeout(timer);
      resolve(Number(String(d).trim().split("\n")[0]));
    });
    child!.once("exit", (code) => reject(new Error(`policy pack exited ${code}: ${stderr}`)));
  });
  client = new analyzerGrpc.AnalyzerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
});

afterAll(() => {
  client?.close();
  if (child?.pid && child.exitCode === null) child.kill("SIGTERM");
});

describe("the policy pack served to the engine", () => {
  it("announces mail-relay-policies with one mandatory policy per rule", async () => {
    const info = await call<AnalyzerInfo>("getAnalyzerInfo", new Empty());
    expect(info.getName()).toBe("mail-relay-policies");
    const policies = info.getPoliciesList();
    expect(policies.map((p) => p.getName())).toEqual(rules.map((r) => r.name));
    expect(new Set(policies.map((p) => p.getEnforcementlevel()))).toEqual(
      new Set([analyzerPb.EnforcementLevel.MANDATORY]),
    );
  });

  it("refuses a firewall that opens 25 to the Internet (mandatory diagnostic from no-public-smtp-ports)", async () => {
    const res = await call<AnalyzeResponse>("analyze", firewallRequest("25"));
    const ds = res.getDiagnosticsList();
    expect(ds.map((d) => d.getPolicyname())).toEqual(["no-public-smtp-ports"]);
    expect(ds[0].getEnforcementlevel()).toBe(analyzerPb.EnforcementLevel.MANDATORY);
    expect(ds[0].getMessage()).toMatch(/hcloud:index\/firewall:Firewall "fw".*port 25/);
  });

  it("an unknown port during preview fails closed with a mandatory violation (not an advisory 'can't run')", async () => {
    const res = await call<AnalyzeResponse>("analyze", firewallRequest(unknownString));
    const ds = res.getDiagnosticsList().map((d) => `${d.getPolicyname()}: ${d.getMessage()}`);
    expect(ds.length).toBeGreaterThan(0);
    for (const d of ds) expect(d).toMatch(/unknown port/);
  });

  it("stack analysis refuses a main.cf with inet_interfaces = all, and a main.cf whose content is unknown (fails closed)", async () => {
    const res = await call<AnalyzeResponse>(
      "analyzeStack",
      new analyzerPb.AnalyzeStackRequest().setResourcesList([mainCfPush(MAIN_CF_ALL)]),
    );
    const ds = res.getDiagnosticsList();
    expect(ds.map((d) => d.getPolicyname())).toEqual(["postfix-loopback-only"]);
    expect(ds[0].getMessage()).toMatch(/command:remote:Command "file-main-cf".*inet_interfaces = all/);
    const unknown = await call<AnalyzeResponse>(
      "analyzeStack",
      new analyzerPb.AnalyzeStackRequest().setResourcesList([mainCfPush(unknownString)]),
    );
    const ud = unknown.getDiagnosticsList();
    expect(ud.map((d) => d.getPolicyname())).toEqual(["postfix-loopback-only"]);
    expect(ud[0].getMessage()).toMatch(
      /command:remote:Command "file-main-cf": the content of \/etc\/postfix\/main\.cf is unknown/,
    );
  });

  it("a range containing both 22 and 25 from the Internet trips both firewall rules", async () => {
    const both = await call<AnalyzeResponse>("analyze", firewallRequest("20-30"));
    expect(
      both
        .getDiagnosticsList()
        .map((d) => d.getPolicyname())
        .sort(),
    ).toEqual(["no-public-smtp-ports", "ssh-restricted"]);
  });
});
