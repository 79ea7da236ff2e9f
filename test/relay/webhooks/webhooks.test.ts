import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import fc from "fast-check";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it } from "vitest";
import type { DeliveryEvent } from "../../../relay/storage/delivery-store";
import { WebhookOutbox } from "../../../relay/storage/webhook-outbox";
import { deliveryPayload } from "../../../relay/webhooks/payload";
import { checkedLookup, isForbiddenAddress, WebhookSender, type CallerWebhook } from "../../../relay/webhooks/sender";
import { newWebhookSecret, signWebhook, verifyWebhook, webhookHeaders } from "../../../relay/webhooks/signature";
import { captureLog, tempDir } from "../fixtures";

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const EVENT: DeliveryEvent = {
  id: "evt_3f2a",
  messageId: "6f1c2d3e-0000-4000-8000-000000000001",
  caller: "app",
  recipient: "gone@example.net",
  state: "bounced",
  dsn: "5.1.1",
  reply: "550 5.1.1 user unknown",
  at: Date.UTC(2026, 10, 30, 10, 0, 1),
  attempts: 1,
  hard: true,
};

describe("webhook signatures follow Standard Webhooks (checked with the standardwebhooks package)", () => {
  const secret = newWebhookSecret();
  const body = JSON.stringify(deliveryPayload(EVENT));
  const now = Math.floor(Date.now() / 1000);

  it("a signed event verifies with the independent implementation", () => {
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/=]{44}$/);
    const headers = webhookHeaders([secret], EVENT.id, now, body);
    expect(new Webhook(secret).verify(body, headers)).toMatchObject({
      type: "email.bounced",
      data: { bounce: { type: "hard", dsn: "5.1.1" } },
    });
    expect(verifyWebhook(secret, headers, body, now)).toBe(true);
    expect(headers["webhook-signature"]).toBe(new Webhook(secret).sign(EVENT.id, new Date(now * 1000), body));
  });

  it("a tampered body, a stale (replayed) timestamp and another secret all fail", () => {
    const headers = webhookHeaders([secret], EVENT.id, now, body);
    expect(() => new Webhook(secret).verify(body.replace("5.1.1", "2.0.0"), headers)).toThrow();
    const stale = webhookHeaders([secret], EVENT.id, now - 6 * 60, body); // a capture replayed 6 minutes later
    expect(() => new Webhook(secret).verify(body, stale)).toThrow(/timestamp/i);
    expect(verifyWebhook(secret, stale, body, now)).toBe(false);
    expect(() => new Webhook(newWebhookSecret()).verify(body, headers)).toThrow();
    expect(verifyWebhook(secret, { ...headers, "webhook-id": "evt_other" }, body, now)).toBe(false);
  });

  it("rotation: two space-separated signatures, each secret verifies", () => {
    const next = newWebhookSecret();
    const sig = signWebhook([next, secret], EVENT.id, now, body);
    expect(sig.split(" ")).toHaveLength(2);
    const headers = { "webhook-id": EVENT.id, "webhook-timestamp": String(now), "webhook-signature": sig };
    expect(() => new Webhook(secret).verify(body, headers)).not.toThrow();
    expect(() => new Webhook(next).verify(body, headers)).not.toThrow();
  });
});

async function receiver(port = 0, status = 200) {
  const got: { headers: IncomingMessage["headers"]; body: string }[] = [];
  const server: Server = createServer((req, res) => {
    let b = "";
    req.on("data", (c) => (b += c));
    req.on("end", () => {
      got.push({ headers: req.headers, body: b });
      res.statusCode = status;
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
  const close = () => new Promise<void>((r) => server.close(() => r()));
  cleanups.push(close);
  return { got, port: (server.address() as AddressInfo).port, close };
}

async function setup(url: string, extra: Partial<ConstructorParameters<typeof WebhookSender>[0]> = {}) {
  const tmp = tempDir("webhooks-");
  cleanups.push(tmp.cleanup);
  const outbox = new WebhookOutbox(tmp.dir);
  await outbox.open();
  const secret = newWebhookSecret();
  let clock = Date.UTC(2026, 10, 30, 10, 0, 0);
  const { log, lines } = captureLog();
  const webhooks = new Map<string, CallerWebhook>([["app", { url, secrets: [secret] }]]);
  const sender = new WebhookSender({
    outbox,
    webhooks,
    log,
    now: () => clock,
    unsafeAllowLoopbackForTests: true,
    ...extra,
  });
  return { outbox, sender, secret, lines, advance: (ms: number) => (clock += ms), now: () => clock };
}

describe("webhook delivery: durable outbox, at-least-once, retried, refused to private addresses", () => {
  it("the receiver is down for a while: every event arrives after it comes back, signed, with a stable id; none lost", async () => {
    const probe = await receiver();
    const port = probe.port;
    await probe.close(); // a port nobody listens on: the receiver is down
    const t = await setup(`http://127.0.0.1:${port}/hooks`);
    for (let i = 0; i < 5; i++)
      await t.outbox.add(
        `evt_${i}`,
        "app",
        deliveryPayload({ ...EVENT, id: `evt_${i}`, recipient: `r${i}@example.net` }),
        t.now(),
      );
    expect(await t.outbox.add("evt_0", "app", deliveryPayload(EVENT), t.now())).toBe(false); // the same event twice is one webhook
    expect(await t.sender.runOnce()).toBe(0);
    expect((await t.outbox.list("pending")).map((i) => i.attempts)).toEqual([1, 1, 1, 1, 1]);
    t.advance(5_000);
    expect(await t.sender.runOnce()).toBe(0);
    const up = await receiver(port);
    t.advance(300_000);
    expect(await t.sender.runOnce()).toBe(5);
    expect(up.got.map((g) => g.headers["webhook-id"]).sort()).toEqual(["evt_0", "evt_1", "evt_2", "evt_3", "evt_4"]);
    for (const g of up.got) {
      // the receiver checks with the real clock: sign time comes from the sender's (fake) clock, so verify against it
      expect(verifyWebhook(t.secret, g.headers as Record<string, string>, g.body, Math.floor(t.now() / 1000))).toBe(
        true,
      );
    }
    expect(await t.outbox.list("pending")).toEqual([]);
  });

  it("a non-2xx answer is retried; after 24 h the webhook is failed (kept on disk, not dropped)", async () => {
    const r = await receiver(0, 500);
    const t = await setup(`http://127.0.0.1:${r.port}/hooks`);
    await t.outbox.add("evt_x", "app", deliveryPayload(EVENT), t.now());
    for (let i = 0; i < 12 && (await t.outbox.list("pending")).length > 0; i++) {
      await t.sender.runOnce();
      t.advance(5 * 3_600_000);
    }
    expect(r.got.length).toBeGreaterThan(3);
    expect(await t.outbox.list("pending")).toEqual([]);
    const failed = await t.outbox.list("failed");
    expect(failed).toHaveLength(1);
    expect(failed[0]?.lastError).toBe("HTTP 500");
  });

  it("a name that resolves to a private, loopback, link-local or metadata address is refused at send time", async () => {
    for (const bad of [
      "169.254.169.254",
      "10.0.0.5",
      "127.0.0.1",
      "192.168.1.1",
      "::1",
      "fd00:ec2::254",
      "::ffff:10.0.0.1",
      "100.64.0.1",
    ])
      expect(isForbiddenAddress(bad), bad).toBe(true);
    for (const ok of ["93.184.216.34", "2606:4700::1111"]) expect(isForbiddenAddress(ok), ok).toBe(false);
    let answer = "93.184.216.34";
    const t = await setup("https://hooks.example.com/x", {
      unsafeAllowLoopbackForTests: false,
      lookup: async () => [{ address: answer, family: 4 }],
    });
    answer = "169.254.169.254"; // the name was fine at config time; now it points at the metadata service
    await t.outbox.add("evt_m", "app", deliveryPayload(EVENT), t.now());
    await t.sender.runOnce();
    expect((await t.outbox.list("pending"))[0]?.lastError).toMatch(
      /refused: hooks\.example\.com resolves to 169\.254\.169\.254/,
    );
  });

  it("http:// is refused outside tests", async () => {
    const r = await receiver();
    const t = await setup(`http://127.0.0.1:${r.port}/hooks`, { unsafeAllowLoopbackForTests: false });
    await t.outbox.add("evt_h", "app", deliveryPayload(EVENT), t.now());
    await t.sender.runOnce();
    expect(r.got).toEqual([]);
    expect((await t.outbox.list("pending"))[0]?.lastError).toMatch(/https only/);
  });
});

describe("webhook delivery by host name: every address connected to has passed the check (on any Node)", () => {
  it(`a host-name URL is delivered on this Node (${process.version}; a fake resolver maps the name to the loopback receiver)`, async () => {
    // Node 20 asks `lookup` for all addresses (autoSelectFamily): a lookup that answers one address fails every
    // attempt there with "Invalid IP address: undefined" (issue 19, finding 6).
    const r = await receiver();
    const asked: string[] = [];
    const t = await setup(`http://hooks.example.test:${r.port}/hooks`, {
      lookup: async (host) => {
        asked.push(host);
        return [{ address: "127.0.0.1", family: 4 }];
      },
    });
    await t.outbox.add("evt_n", "app", deliveryPayload(EVENT), t.now());
    expect(await t.sender.runOnce()).toBe(1);
    expect(await t.outbox.list("pending")).toEqual([]);
    expect(r.got.map((g) => g.headers["webhook-id"])).toEqual(["evt_n"]);
    expect(r.got[0]?.headers.host).toBe(`hooks.example.test:${r.port}`);
    expect(asked).toEqual(["hooks.example.test"]);
  });

  it("the lookup answers in the shape Node asks for: a list for all: true, one address otherwise, filtered by family", async () => {
    const answer = [
      { address: "2606:4700::1111", family: 6 },
      { address: "93.184.216.34", family: 4 },
    ];
    const lookup = checkedLookup(async () => answer, false);
    const ask = (options: Parameters<typeof lookup>[1]) =>
      new Promise<unknown[]>((resolve) => lookup("hooks.example.com", options, (...args) => resolve(args)));
    expect(await ask({ all: true })).toEqual([null, answer]);
    expect(await ask({})).toEqual([null, "2606:4700::1111", 6]);
    expect(await ask({ family: 4 })).toEqual([null, "93.184.216.34", 4]);
    expect(await ask({ all: true, family: 6 })).toEqual([null, [answer[0]]]);
    const none = await new Promise<unknown[]>((resolve) =>
      checkedLookup(async () => [answer[1]!], false)("v4only.example.com", { family: 6 }, (...a) => resolve(a)),
    );
    expect((none[0] as NodeJS.ErrnoException).code).toBe("ENOTFOUND");
  });

  it("an answer with any forbidden address is refused whole, wherever it stands and whatever else the answer holds", async () => {
    const forbidden = [
      "10.0.0.5",
      "169.254.169.254",
      "192.168.1.1",
      "172.16.0.9",
      "100.64.0.1",
      "0.0.0.0",
      "::ffff:10.0.0.1",
      "fd00:ec2::254",
      "fe80::1",
      "64:ff9b::a00:1",
    ];
    const publicAddrs = ["93.184.216.34", "2606:4700::1111"];
    const r = await receiver();
    // Public addresses only ever appear beside a forbidden one: this test must never connect off the machine.
    const answers = fc
      .record({
        bad: fc.array(fc.constantFrom(...forbidden), { maxLength: 3 }),
        good: fc.array(fc.constantFrom(...publicAddrs), { maxLength: 2 }),
        seed: fc.integer(),
      })
      .map(({ bad, good, seed }) => {
        const all = [...bad, ...(bad.length > 0 ? good : []), "127.0.0.1"];
        // a deterministic shuffle from the seed, so the loopback receiver is not always last
        return all
          .map((a, i) => ({ a, k: Math.imul(seed ^ (i + 1), 2654435761) >>> 0 }))
          .sort((x, y) => x.k - y.k)
          .map((x) => x.a);
      });
    let n = 0;
    await fc.assert(
      fc.asyncProperty(answers, async (answer) => {
        const id = `evt_p${n++}`;
        const before = r.got.length;
        const t = await setup(`http://hooks.example.test:${r.port}/hooks`, {
          lookup: async () => answer.map((address) => ({ address, family: address.includes(":") ? 6 : 4 })),
        });
        await t.outbox.add(id, "app", deliveryPayload({ ...EVENT, id }), t.now());
        const delivered = await t.sender.runOnce();
        const firstBad = answer.find((a) => isForbiddenAddress(a) && a !== "127.0.0.1");
        if (firstBad === undefined) {
          expect(delivered).toBe(1);
          expect(r.got.length).toBe(before + 1);
        } else {
          expect(delivered).toBe(0);
          expect(r.got.length).toBe(before);
          expect((await t.outbox.list("pending"))[0]?.lastError).toBe(
            `refused: hooks.example.test resolves to ${firstBad} (private, loopback, link-local or metadata)`,
          );
        }
      }),
      { numRuns: 40 },
    );
  });
});
