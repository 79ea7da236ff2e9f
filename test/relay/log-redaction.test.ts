import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { censorNested, createLogger, REDACTED_LOG_KEYS } from "../../relay/server";

/** A logger writing into an array of parsed lines. */
function capture(): {
  log: ReturnType<typeof createLogger>;
  lines: () => Record<string, unknown>[];
  text: () => string;
} {
  let text = "";
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  // pino writes synchronously to a plain stream's write()
  const log = createLogger("info", dest as unknown as Parameters<typeof createLogger>[1]);
  return {
    log,
    text: () => text,
    lines: () =>
      text
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const SECRET = "s3cr3t-value-that-must-not-be-logged";

/** Every placement a redacted key can take in a log call's object: top level, or one level down under any name. */
function placements(key: string): { name: string; obj: Record<string, unknown> }[] {
  return [
    { name: `top-level ${key}`, obj: { id: "m1", [key]: SECRET } },
    { name: `${key} under headers`, obj: { id: "m1", headers: { host: "h", [key]: SECRET } } },
    { name: `${key} under job`, obj: { job: { id: "m1", [key]: SECRET, to: ["a@example.net"] } } },
    { name: `${key} under an unusual name`, obj: { "x-y": { [key]: SECRET } } },
    { name: `${key} beside another object`, obj: { a: { n: 1 }, b: { [key]: SECRET }, c: [1, 2] } },
    {
      name: `${key} on an Error`,
      obj: { err: Object.assign(new Error("handoff failed"), { [key]: SECRET }) },
    },
  ];
}

describe("a log line never carries a token, a header, a message or a body", () => {
  for (const key of REDACTED_LOG_KEYS)
    for (const { name, obj } of placements(key))
      it(`${name}: censored, the rest of the line kept, the caller's object untouched`, () => {
        const { log, text, lines } = capture();
        const before = JSON.stringify(obj);
        log.info(obj, "a line");
        log.child({ reqId: "r1" }).info(obj, "a child's line"); // fastify's req.log is a child
        expect(text()).not.toContain(SECRET);
        // pino's err serializer drops an Error's own "raw" (it keeps the Error there): no censor to see then
        if (!("err" in obj && key === "raw")) expect(text().match(/\[redacted\]/g)).toHaveLength(2);
        for (const line of lines()) {
          if ("id" in obj) expect(line.id).toBe("m1");
          if ("job" in obj) expect((line.job as { to: string[] }).to).toEqual(["a@example.net"]);
          if ("err" in obj) expect((line.err as { message: string }).message).toBe("handoff failed");
        }
        expect(JSON.stringify(obj)).toBe(before);
      });

  it("an object without those keys is logged as is, and censorNested returns it without copying", () => {
    const obj = { id: "m1", domains: ["example.net"], tags: ["t"], meta: { subject: "hi", bytes: 10 } };
    expect(censorNested(obj)).toBe(obj);
    const { log, lines } = capture();
    log.info(obj, "queued");
    expect(lines()[0]).toMatchObject(obj);
  });
});
