// relay/validate.ts picks a union's member by the value's JS type instead of letting zod try each in turn (issue 23's
// CPU budget). The rule this enforces: for every value, the picked union and zod's own union agree: the same data on
// success, the same issues (code, path, message) on failure.
import fc from "fast-check";
import { z } from "zod";
import { describe, expect, it } from "vitest";
import { NAME_MAX, UNIONS_FOR_TEST } from "../../relay/validate";

/** `from` as it was declared before the picked union: object first, then string. */
const senderAsBefore = z.union([
  z.object({ email: z.string(), name: z.string().max(NAME_MAX).optional() }).strict(),
  z.string(),
]);

const longName = "n".repeat(NAME_MAX + 1);
const mailboxLike = fc.oneof(
  fc.string(),
  fc.emailAddress(),
  fc.record({ email: fc.emailAddress() }),
  fc.record({ email: fc.emailAddress(), name: fc.oneof(fc.string(), fc.constant(longName)) }),
  fc.record({ email: fc.anything(), name: fc.anything() }, { requiredKeys: [] }),
  fc.record({ email: fc.emailAddress(), extra: fc.string() }),
  fc.constantFrom(null, undefined, 0, 1.5, true, [], {}, [[]], [{}], new Date(0)),
  fc.anything(),
);
const values = fc.oneof(mailboxLike, fc.array(mailboxLike, { maxLength: 5 }), fc.anything());

/** What a parse says, in the terms validateSendRequest reads: the data, or every issue's code, path and message. */
function outcome(schema: z.ZodTypeAny, v: unknown): unknown {
  const r = schema.safeParse(v);
  return r.success
    ? { ok: r.data }
    : { issues: r.error.issues.map((i) => ({ code: i.code, path: i.path, message: i.message })) };
}

describe("the picked unions answer exactly as zod's unions (generated values)", () => {
  for (const [name, { union, picked }] of Object.entries(UNIONS_FOR_TEST)) {
    it(`${name}: same data or same issues for 3,000 generated values`, () => {
      fc.assert(
        fc.property(values, (v) => {
          expect(outcome(picked, v)).toEqual(outcome(union, v));
        }),
        { numRuns: 3000 },
      );
    });
  }

  it("from (a mailbox): same as the object-first union it was declared as before", () => {
    fc.assert(
      fc.property(values, (v) => {
        expect(outcome(UNIONS_FOR_TEST.mailbox.picked, v)).toEqual(outcome(senderAsBefore, v));
      }),
      { numRuns: 3000 },
    );
  });

  it("inside an object, an issue's path starts at the field (to[1].name), as the union's does", () => {
    const wrap = (s: z.ZodTypeAny) => z.object({ to: s }).strict();
    const v = { to: ["a@example.com", { email: "b@example.com", name: longName }] };
    const picked = outcome(wrap(UNIONS_FOR_TEST.mailboxes.picked), v);
    expect(picked).toEqual(outcome(wrap(UNIONS_FOR_TEST.mailboxes.union), v));
    expect((picked as { issues: { path: unknown }[] }).issues[0]!.path).toEqual(["to", 1, "name"]);
  });
});
