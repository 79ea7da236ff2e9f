// The relay under abuse: HTML built to make the text converter or the composer spin, headers a caller could
// forge to look pre-approved, and whole messages smuggled in as attachments.
import { monitorEventLoopDelay } from "node:perf_hooks";
import { describe, expect, it } from "vitest";
import { HTML_LIMITS } from "../../relay/mime";
import { appsClosedAfterEach, auth, validBody, type TestApp } from "./fixtures";

const app = appsClosedAfterEach();

const post = (t: TestApp, body: unknown) =>
  t.app.inject({ method: "POST", url: "/send", headers: auth(), payload: JSON.stringify(body) });

describe("HTML that would stall the event loop is refused quickly", () => {
  // Big enough for both payloads (the 100,000 nested <div> are 1.1 MB of JSON).
  const config = { bodyLimitBytes: 2 * 1024 * 1024 };

  it.each([
    ["125,000 <hr> (4.6 s of conversion and composition before)", "<hr>".repeat(125_000)],
    [
      "100,000 nested <div> (a 500 from the converter's recursion before)",
      `${"<div>".repeat(100_000)}x${"</div>".repeat(100_000)}`,
    ],
  ])("%s: a 4xx, with the event loop never blocked for 100 ms", async (_what, html) => {
    const t = await app({ config });
    const h = monitorEventLoopDelay({ resolution: 5 });
    h.enable();
    const started = performance.now();
    const res = await post(t, validBody({ text: undefined, html }));
    const elapsed = performance.now() - started;
    // Let the monitor take one more sample after the request.
    await new Promise((r) => setTimeout(r, 20));
    h.disable();
    const maxDelayMs = h.max / 1e6;
    console.info(
      `[measured] ${_what}: ${res.statusCode} in ${elapsed.toFixed(1)} ms, event-loop delay max ${maxDelayMs.toFixed(1)} ms`,
    );
    expect(res.statusCode).toBeGreaterThanOrEqual(400);
    expect(res.statusCode).toBeLessThan(500);
    expect(res.json().error.code).toBe("message_too_complex");
    expect(maxDelayMs).toBeLessThan(100);
    expect(t.queue.depth().pending).toBe(0);
  });

  it("ordinary HTML (a few hundred elements, tables nested a dozen deep) is accepted", async () => {
    const t = await app({ config });
    const row = "<tr><td><a href='https://example.com/x'>link</a></td><td><b>bold</b> text</td></tr>";
    const html = `${"<table><tr><td>".repeat(12)}${`<table>${row.repeat(40)}</table>`.repeat(5)}${"</td></tr></table>".repeat(12)}`;
    const res = await post(t, validBody({ text: undefined, html }));
    expect(res.statusCode, res.body).toBe(202);
  });

  it("the limits are exact: maxElements elements pass, one more is refused", async () => {
    const t = await app({ config });
    expect((await post(t, validBody({ html: "<br>".repeat(HTML_LIMITS.maxElements) }))).statusCode).toBe(202);
    expect((await post(t, validBody({ html: "<br>".repeat(HTML_LIMITS.maxElements + 1) }))).json().error.code).toBe(
      "message_too_complex",
    );
    expect((await post(t, validBody({ html: `${"<div>".repeat(HTML_LIMITS.maxDepth)}x` }))).statusCode).toBe(202);
    expect((await post(t, validBody({ html: `${"<div>".repeat(HTML_LIMITS.maxDepth + 1)}x` }))).json().error.code).toBe(
      "message_too_complex",
    );
  });
});

describe("caller-supplied headers: X- headers only, and not the ones receivers write", () => {
  it.each([
    "Received",
    "Return-Path",
    "DKIM-Signature",
    "ARC-Seal",
    "ARC-Authentication-Results",
    "Authentication-Results",
    "X-Spam-Status",
    "X-Spam-Flag",
    "X-MS-Exchange-Organization-SCL",
    "X-MS-Exchange-Organization-AuthAs",
    "X-Microsoft-Antispam",
    "x-spam-score",
  ])("%s is refused with 400 header_not_allowed", async (name) => {
    const t = await app();
    const res = await post(t, validBody({ headers: { [name]: "pass" } }));
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatchObject({ code: "header_not_allowed", field: `headers.${name}` });
  });

  it("an ordinary X- header is still accepted", async () => {
    const t = await app();
    expect(
      (await post(t, validBody({ headers: { "X-Campaign": "welcome", "X-Entity-Ref-ID": "42" } }))).statusCode,
    ).toBe(202);
  });
});

describe("attachments", () => {
  it.each(["message/rfc822", "message/global", "Message/Partial", "message/delivery-status"])(
    "a %s attachment is refused",
    async (contentType) => {
      const t = await app();
      const res = await post(
        t,
        validBody({
          attachments: [
            {
              filename: "fwd.eml",
              contentType,
              content: Buffer.from("From: ceo@example.com\r\n\r\nhi").toString("base64"),
            },
          ],
        }),
      );
      expect(res.statusCode).toBe(400);
      expect(res.json().error).toMatchObject({ code: "invalid_attachment", field: "attachments[0].contentType" });
    },
  );

  it("a PDF is still accepted", async () => {
    const t = await app();
    expect(
      (
        await post(
          t,
          validBody({ attachments: [{ filename: "a.pdf", contentType: "application/pdf", content: "JVBERi0=" }] }),
        )
      ).statusCode,
    ).toBe(202);
  });
});
