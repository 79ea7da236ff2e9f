/**
 * The relay's routes (relay/app.ts) and the tunnel's ingress path (infra/tunnel.ts) are written in two places; this
 * ties them: every route the relay serves is either host-only or reachable through the tunnel, never both.
 */
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HOST_ONLY_ROUTES } from "../../relay/app";
import { canonicalAddress } from "../../relay/admission/canonical-address";
import { PUBLIC_PATH_REGEX, tunnelIngress } from "../../infra/tunnel";
import { makeApp } from "../relay/fixtures";
import { missing } from "../../testkit/real-tools";

type App = Awaited<ReturnType<typeof makeApp>>;
let t: App;
/** Every path the relay registers, read from fastify's own route table. */
let routes: string[];

beforeAll(async () => {
  t = await makeApp();
  await t.app.ready();
  // The tree nests a route under its parent (/messages, then "    └── /:id"): the depth is the prefix's length / 4.
  const stack: string[] = [];
  routes = [];
  for (const l of t.app.printRoutes({ commonPrefix: false }).split("\n")) {
    const m = /^([\s│├└─]*)(\/\S*) \(/.exec(l);
    if (!m) continue;
    const depth = Math.floor((m[1] as string).length / 4) - 1;
    stack.length = depth;
    stack.push(m[2] as string);
    routes.push(stack.join(""));
  }
});
afterAll(() => t?.close());

/** A concrete path for a route pattern: parameters become a message id. */
const sample = (route: string): string =>
  route.replace(/:email/g, "gone@example.net").replace(/:[A-Za-z]+/g, "6f1c2d3e-0000-4000-8000-000000000001");
const tunnelPath = new RegExp(PUBLIC_PATH_REGEX);

describe("the tunnel forwards exactly the relay's public routes", () => {
  it("the route table was read (the checks below can fail)", () => {
    expect(routes).toContain("/send");
    expect(routes).toContain("/metrics");
    expect(routes).toContain("/messages/:id"); // a nested route is read with its parent's prefix
    expect(routes.length).toBeGreaterThanOrEqual(5);
  });

  it("every route that is not host-only matches the ingress path", () => {
    const publicRoutes = routes.filter((r) => !HOST_ONLY_ROUTES.includes(r));
    expect(publicRoutes.length).toBeGreaterThan(0);
    for (const r of publicRoutes)
      expect(tunnelPath.test(sample(r)), `${r} is served by the relay but the tunnel answers 404`).toBe(true);
  });

  it("no host-only route (/metrics, /ready) matches the ingress path, and each really exists", () => {
    for (const r of HOST_ONLY_ROUTES) {
      expect(routes, r).toContain(r);
      expect(tunnelPath.test(sample(r)), `${r} must stay on the host`).toBe(false);
    }
  });

  it("paths the relay does not serve, and tricks on the real ones, do not match", () => {
    for (const no of [
      "/",
      "/send/x",
      "/messages/",
      "/messages/../metrics",
      "/metrics?x=/send",
      "/health/",
      "//send",
      "/suppressions/../metrics",
      "/suppressions/x/y@example.net",
      "/suppressions/..%2Fmetrics",
      "/suppressions/%2E%2E/metrics@example.net",
      "/suppressions/gone%40example.net/x",
    ])
      expect(tunnelPath.test(no), no).toBe(false);
  });

  it("every public route matches in both spellings a caller's client sends: encoded (%40) and decoded, as cloudflared matches", () => {
    const publicRoutes = routes.filter((r) => !HOST_ONLY_ROUTES.includes(r));
    for (const r of publicRoutes) {
      const encoded = r
        .replace(/:email/g, encodeURIComponent("gone+tag@example.net"))
        .replace(/:[A-Za-z]+/g, "6f1c2d3e-0000-4000-8000-000000000001");
      for (const p of [encoded, decodeURIComponent(encoded)])
        expect(tunnelPath.test(p), `${p} (route ${r}) answers 404 at the tunnel`).toBe(true);
    }
  });

  it("every address the relay accepts (no / in it) can be lifted from the suppression list through the tunnel", () => {
    // The client sends /suppressions/<encodeURIComponent(email)>; cloudflared matches the decoded path (Go's
    // url.URL.Path); the relay decodes the parameter. A "/" in an address would be a path separator once decoded.
    fc.assert(
      fc.property(
        fc.oneof(fc.emailAddress(), fc.constantFrom("gone@bücher.example", "o'brien+x@example.net", "a%b@example.net")),
        (email) => {
          fc.pre(canonicalAddress(email).ok && !email.includes("/"));
          const raw = `/suppressions/${encodeURIComponent(email)}`;
          expect(tunnelPath.test(raw), raw).toBe(true);
          expect(tunnelPath.test(decodeURIComponent(raw)), decodeURIComponent(raw)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("the ingress uses that path for the relay hostname and ends in a 404", () => {
    expect(tunnelIngress("mail-relay.example.com", 2525, "example", "a".repeat(64))).toEqual([
      {
        hostname: "mail-relay.example.com",
        path: PUBLIC_PATH_REGEX,
        service: "http://127.0.0.1:2525",
        originRequest: { access: { required: true, teamName: "example", audTag: ["a".repeat(64)] } },
      },
      { service: "http_status:404" },
    ]);
  });
});

const noPython = missing("the tunnel stand-in's ingress matcher", { tools: ["python3"] });

describe.skipIf(noPython)("the rehearsal's tunnel stand-in routes as cloudflared does", () => {
  const script = path.join(__dirname, "../../rehearsal/tunnel-standin.py");
  /** The stand-in's own route() (imported from the script), for each path: the service it picks. */
  const services = (ingress: unknown, paths: string[]): string[] =>
    JSON.parse(
      execFileSync(
        "python3",
        [
          "-c",
          "import importlib.util, json, sys\n" +
            "spec = importlib.util.spec_from_file_location('standin', sys.argv[1])\n" +
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n" +
            "ingress = json.loads(sys.argv[2])\n" +
            "print(json.dumps([m.route(ingress, 'mail-relay.example.com', p)['service'] for p in sys.argv[3:]]))",
          script,
          JSON.stringify(ingress),
          ...paths,
        ],
        { encoding: "utf8" },
      ),
    ) as string[];

  it("its route() matches a regex that wants a literal @ for %40: the decoded path, as cloudflared", () => {
    const ingress = [
      { path: "^/suppressions/[^/%]+@[^/]+$", service: "http://127.0.0.1:1" },
      { service: "http_status:404" },
    ];
    expect(services(ingress, ["/suppressions/gone%40example.net", "/suppressions/gone%2540example.net"])).toEqual([
      "http://127.0.0.1:1",
      "http_status:404",
    ]);
  });

  it("with the program's ingress, both spellings reach the relay and /metrics, /ready stay 404", () => {
    const ingress = tunnelIngress("mail-relay.example.com", 2525, "example", "a".repeat(64));
    const paths = ["/suppressions/gone%40example.net", "/suppressions/gone@example.net", "/send", "/metrics", "/ready"];
    expect(services(ingress, paths)).toEqual([
      "http://127.0.0.1:2525",
      "http://127.0.0.1:2525",
      "http://127.0.0.1:2525",
      "http_status:404",
      "http_status:404",
    ]);
  });
});
