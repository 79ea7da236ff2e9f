import { describe, expect, it } from "vitest";
import { checkExpiry, expiryChecks, WARN_DAYS } from "../../doctor/checks-expiry";
import { loadOutputs, parseOutputs } from "../../doctor/outputs";
import { pickCaller, timeline } from "../../doctor/smoke";

const now = new Date("2026-12-04T12:00:00Z");
const row = (days: number) => ({
  credential: "accessServiceToken/app",
  kind: "Access service token",
  expiresAt: new Date(now.getTime() + days * 86_400_000).toISOString(),
  renew: "pulumi up --stack prod",
});

describe("credential expiry: warn 30 days before, fail when past", () => {
  it.each([
    [365, "pass"],
    [WARN_DAYS + 1, "pass"],
    [WARN_DAYS, "warn"],
    [10, "warn"],
    [0.01, "warn"],
    [0, "fail"],
    [-3, "fail"],
  ])("%d days left is %s, with the renewal as the fix", (days, status) => {
    const c = checkExpiry(row(days), now);
    expect(c.status).toBe(status);
    if (status !== "pass") expect(c.fix).toBe("pulumi up --stack prod");
  });
  it("a date that is not a date is a warn", () => {
    expect(checkExpiry({ ...row(1), expiresAt: "soon" }, now).status).toBe("warn");
  });
  it("no dated credential at all is said, not hidden", () => {
    expect(expiryChecks([], now)[0].saw).toMatch(/none/);
  });
});

describe("the stack's outputs", () => {
  const outputs = {
    nodes: [{ name: "node1", mtaHostname: "mx1.example.com", ipv4: "203.0.113.11" }],
    dnsZoneFile: "",
    dkimSelector: "s",
    defaultSender: "noreply@example.com",
    relayTokens: { app: "t1", billing: "t2" },
    accessClientIds: { app: "id1" },
    accessClientSecrets: { app: "sec1" },
  };
  it("a file without the program's outputs is refused, naming the missing keys", () => {
    expect(() => parseOutputs({ nodes: [] }, "x.json")).toThrow(/x.json does not hold.*nodes.*dnsZoneFile/);
  });
  it("without --outputs and without a reachable stack the doctor says it has nothing to compare with", () => {
    const path = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      expect(() => loadOutputs("prod", undefined)).toThrow(/mock values would check nothing.*--outputs/);
    } finally {
      process.env.PATH = path;
    }
  });
  it("the smoke test sends as the stack's first caller (or --caller), with its Access service token when it has one", () => {
    const out = parseOutputs(outputs, "t");
    expect(pickCaller(out)).toEqual({ name: "app", relayToken: "t1", accessId: "id1", accessSecret: "sec1" });
    expect(pickCaller(out, "billing")).toEqual({
      name: "billing",
      relayToken: "t2",
      accessId: undefined,
      accessSecret: undefined,
    });
    expect(() => pickCaller(out, "nobody")).toThrow(/callers are app, billing/);
  });
  it("the smoke timeline shows accepted, handed off, and each recipient's outcome with the MX's reply", () => {
    const ev = timeline("id1", now, {
      state: "delivered",
      handedOffAt: now.getTime() + 100,
      postfixQueueId: "4XyZ",
      recipients: [
        {
          email: "a@example.net",
          state: "delivered",
          dsn: "2.0.0",
          remoteReply: "250 2.0.0 Ok",
          at: "2026-12-04T12:00:01Z",
        },
      ],
    });
    expect(ev.map((e) => e.event)).toEqual(["accepted", "handed off", "delivered"]);
    expect(ev[1].detail).toContain("4XyZ");
    expect(ev[2].detail).toContain("remote reply: 250 2.0.0 Ok");
  });
});
