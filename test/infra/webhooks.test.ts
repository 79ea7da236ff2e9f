/**
 * Callers with a webhookUrl: a signing secret per caller, pushed in the relay env file, exported as a secret output.
 */
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../infra/config";
import { CONFIG_CTX, CONFIG_SECRETS, minimalConfig } from "../helpers/config";
import { pushedFiles, runStack } from "../helpers/stack";

describe("webhook config", () => {
  it("callers may be names or {name, webhookUrl, events}; only https is accepted", () => {
    const base = minimalConfig({ tunnel: false });
    const c = parseConfig(
      {
        ...base,
        callers: [
          "app",
          { name: "billing", webhookUrl: "https://hooks.example.com/mail" },
          { name: "crm", webhookUrl: "https://crm.example.com/h", events: ["deferred"] },
        ],
      },
      CONFIG_SECRETS,
      CONFIG_CTX,
    );
    expect(c.callers).toEqual(["app", "billing", "crm"]);
    expect(c.webhooks).toEqual([
      {
        caller: "billing",
        url: "https://hooks.example.com/mail",
        events: ["delivered", "bounced", "expired", "suppressed"],
      },
      { caller: "crm", url: "https://crm.example.com/h", events: ["deferred"] },
    ]);
    expect(() =>
      parseConfig(
        { ...base, callers: [{ name: "app", webhookUrl: "http://hooks.example.com" }] },
        CONFIG_SECRETS,
        CONFIG_CTX,
      ),
    ).toThrow(/https:\/\//);
    expect(() => parseConfig({ ...base, callers: [{ name: "Bad Name" }] }, CONFIG_SECRETS, CONFIG_CTX)).toThrow(
      /caller names are lowercase words/,
    );
  });

  it("the program generates a whsec_ secret per webhook caller, pushes it in the env file, and exports it as a secret", async () => {
    const run = await runStack("prod", {
      callers: ["app", { name: "billing", webhookUrl: "https://hooks.example.com/mail" }],
    });
    expect(run.secretOutputs).toContain("webhookSecrets");
    const secrets = run.outputs.webhookSecrets as Record<string, string>;
    expect(Object.keys(secrets)).toEqual(["billing"]);
    expect(secrets.billing).toMatch(/^whsec_[A-Za-z0-9]{44}$/);
    expect(Buffer.from((secrets.billing as string).slice(6), "base64").length).toBe(33);
    const env = pushedFiles(run.resources).find((f) => f.path === "/etc/mail-relay.env");
    expect(env?.content).toContain("RELAY_WEBHOOK_URLS=billing=https://hooks.example.com/mail\n");
    expect(env?.content).toContain(`RELAY_WEBHOOK_SECRETS=billing=${secrets.billing}\n`);
    const userData = run.resources
      .filter((r) => r.type === "hcloud:index/server:Server")
      .map((r) => String(r.props.userData))
      .join("\n");
    expect(userData).not.toContain(secrets.billing as string);
  }, 120_000);
});
