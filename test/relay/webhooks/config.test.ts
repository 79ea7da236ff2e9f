import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../../relay/config";
import { newWebhookSecret } from "../../../relay/webhooks/signature";

const base = {
  SMTP_RELAY_TOKEN:
    "app=app-token-0123456789abcdefghijklmnopqrstuv,billing=billing-token-0123456789abcdefghijklmnopqrs",
  RELAY_ALLOWED_FROM: "noreply@example.com",
};
const problems = (env: Record<string, string>): string[] => {
  try {
    loadConfig({ ...base, ...env });
    return [];
  } catch (err) {
    return (err as ConfigError).message.split("\n").slice(1);
  }
};

describe("webhook settings in the relay's environment", () => {
  it("per caller: https URL, events (default delivered, bounced, expired, suppressed; deferred opt-in) and whsec_ secrets", () => {
    const s1 = newWebhookSecret();
    const s2 = newWebhookSecret();
    const c = loadConfig({
      ...base,
      RELAY_WEBHOOK_URLS: "app=https://hooks.example.com/mail",
      RELAY_WEBHOOK_SECRETS: `app=${s1}|${s2}`,
    });
    const app = c.webhooks?.get("app");
    expect(app?.url).toBe("https://hooks.example.com/mail");
    expect([...(app?.events ?? [])]).toEqual(["delivered", "bounced", "expired", "suppressed"]);
    expect(app?.secrets).toEqual([s1, s2]);
    expect(c.webhooks?.has("billing")).toBe(false);
    expect(c.autoSuppress).toBe(true);
    expect(c.postfixLog).toBe("/var/log/mail-relay/postfix.log");
  });

  it("refuses http://, an unknown caller, an unknown event and a missing secret, naming the variable and never the secret", () => {
    const secret = newWebhookSecret();
    const p = problems({
      RELAY_WEBHOOK_URLS: "app=http://hooks.example.com,ghost=https://x.example",
      RELAY_WEBHOOK_EVENTS: "app=delivered+opened",
      RELAY_WEBHOOK_SECRETS: `app=${secret}`,
    });
    expect(p.join("\n")).toMatch(/RELAY_WEBHOOK_URLS: the URL of "app" must be https:\/\//);
    expect(p.join("\n")).toMatch(/RELAY_WEBHOOK_URLS: "ghost" is not a caller/);
    expect(p.join("\n")).toMatch(/RELAY_WEBHOOK_EVENTS: "opened"/);
    expect(p.join("\n")).toMatch(/RELAY_WEBHOOK_SECRETS: caller "ghost" needs a whsec_/);
    expect(p.join("\n")).not.toContain(secret);
  });

  it("RELAY_AUTO_SUPPRESS=false and RELAY_POSTFIX_LOG=off switch those off", () => {
    const c = loadConfig({ ...base, RELAY_AUTO_SUPPRESS: "false", RELAY_POSTFIX_LOG: "off" });
    expect(c.autoSuppress).toBe(false);
    expect(c.postfixLog).toBeUndefined();
    expect(problems({ RELAY_AUTO_SUPPRESS: "no" }).join()).toMatch(/RELAY_AUTO_SUPPRESS/);
  });
});
