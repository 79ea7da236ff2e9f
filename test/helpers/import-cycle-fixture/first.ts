// A deliberate import cycle (first.ts <-> second.ts, one side type-only): test/layering.test.ts proves with it that
// its cycle finder can fail. Nothing else imports these files.
import type { Second } from "./second";

export interface First {
  readonly next?: Second;
}
