// Types for queue-prefill.mjs, so that bench:chain (type-checked) can import it; bench:relay (.mjs) uses it as is.

/** A job file as the relay writes it: the benches read `id` and `raw` and copy the rest unchanged. */
export interface JobFile {
  readonly id: string;
  readonly raw: string;
  readonly [field: string]: unknown;
}

export function sampleJobFile(queueRoot: string): { stop(): JobFile | undefined };

export function prefillQueue(root: string, n: number, template: JobFile): string[];
