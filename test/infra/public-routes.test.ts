/**
 * The relay's routes (relay/app.ts) and the tunnel's ingress path (infra/tunnel.ts) are written in two places; this
 * ties them: every route the relay serves is either host-only or reachable through the tunnel, never both.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HOST_ONLY_ROUTES } from "../../relay/app";
import { PUBLIC_PATH_REGEX, tunnelIngress } from "../../infra/tunnel";
import { makeApp } from "../relay/fixtures";

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
    ])
      expect(tunnelPath.test(no), no).toBe(false);
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
