// The other half of test/layering.test.ts's deliberate cycle (see first.ts).
import type { First } from "./first";

export interface Second {
  readonly back?: First;
}
