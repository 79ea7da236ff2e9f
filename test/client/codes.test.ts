// One source per fact: the client's error codes and message states are copies (client/ ships alone, without relay/),
// so these tests tie each copy to the relay's own definition, at compile time (tsc) and at run time.
import { describe, expect, it } from "vitest";
import { ERROR_STATUS, type ErrorCode } from "../../relay/errors";
import { DELIVERY_STATES, type DeliveryState } from "../../relay/storage/delivery-store";
import type { JobStatus } from "../../relay/storage/job";
import { MESSAGE_STATES, RELAY_ERROR_CODES, type MessageState, type RelayErrorCode } from "../../client/src/index";

/** true only when A and B are the same union; assigning `true` to it fails `npm run typecheck` otherwise. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const codesTie: Same<RelayErrorCode, ErrorCode> = true;
const statesTie: Same<MessageState, JobStatus["state"] | DeliveryState> = true;

describe("the client's copies of the relay's facts", () => {
  it("the client's error code union is exactly relay/errors.ts's codes", () => {
    expect(codesTie).toBe(true);
    expect([...RELAY_ERROR_CODES].sort()).toEqual(Object.keys(ERROR_STATUS).sort());
    expect(new Set(RELAY_ERROR_CODES).size).toBe(RELAY_ERROR_CODES.length);
  });

  it("the client's message states are exactly the queue's and the delivery tracker's", () => {
    expect(statesTie).toBe(true);
    const queueStates: JobStatus["state"][] = ["queued", "sending", "handed_off", "failed"];
    expect([...MESSAGE_STATES].sort()).toEqual([...new Set([...queueStates, ...DELIVERY_STATES])].sort());
  });
});
