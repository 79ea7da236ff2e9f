import { promises as fs } from "node:fs";
import * as path from "node:path";

export type JobState = "pending" | "processing" | "sent" | "failed";
export const JOB_STATES: readonly JobState[] = ["pending", "processing", "sent", "failed"];

/** A job as stored in pending/, processing/ and failed/: the composed message plus what the worker and the CLI need. */
export interface Job {
  readonly id: string;
  readonly caller: string;
  readonly createdAt: number;
  attempts: number;
  nextAttemptAt: number;
  lastError?: string;
  failedAt?: number;
  /** Envelope: the From address (DMARC alignment) and every To/Cc/Bcc address, domains in ASCII. */
  readonly envelope: { readonly from: string; readonly to: readonly string[] };
  readonly subject: string;
  readonly recipientDomains: readonly string[];
  readonly tags: readonly string[];
  readonly idempotency?: { readonly keyHash: string; readonly bodyHash: string };
  /** The complete MIME message, built once at acceptance so every retry sends the same bytes. */
  readonly raw: string;
}

/** What stays after hand-off: enough for status lookups and idempotency, not the message. */
export interface SentRecord {
  readonly id: string;
  readonly caller: string;
  readonly createdAt: number;
  readonly handedOffAt: number;
  readonly attempts: number;
  readonly postfixQueueId?: string;
  readonly recipientCount: number;
  readonly idempotency?: { readonly keyHash: string; readonly bodyHash: string };
}

export interface JobStatus {
  readonly id: string;
  readonly state: "queued" | "sending" | "handed_off" | "failed";
  readonly attempts: number;
  readonly createdAt: number;
  readonly nextAttemptAt?: number;
  readonly lastError?: string;
  readonly handedOffAt?: number;
  readonly postfixQueueId?: string;
}

export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;
const ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isJobId(id: string): boolean {
  return ID_PATTERN.test(id);
}

/** Delay before the next attempt after `failures` failed attempts: base, doubling, capped. */
export function backoffMs(failures: number, baseMs: number, maxMs: number): number {
  if (failures < 1) return 0;
  const exp = Math.min(failures - 1, 52);
  return Math.min(baseMs * 2 ** exp, maxMs);
}

export function jobFile(root: string, state: JobState, id: string): string {
  return path.join(root, state, `${id}.json`);
}

/** Status as GET /messages/:id shows it, from a job file. */
export function jobStatus(
  state: "pending" | "processing" | "failed",
  j: Pick<Job, "id" | "attempts" | "createdAt" | "nextAttemptAt" | "lastError">,
): JobStatus {
  return {
    id: j.id,
    state: state === "pending" ? "queued" : state === "processing" ? "sending" : "failed",
    attempts: j.attempts,
    createdAt: j.createdAt,
    ...(state === "pending" ? { nextAttemptAt: j.nextAttemptAt } : {}),
    ...(j.lastError !== undefined ? { lastError: j.lastError } : {}),
  };
}

/** Status from a hand-off record. */
export function sentStatus(rec: SentRecord): JobStatus {
  return {
    id: rec.id,
    state: "handed_off",
    attempts: rec.attempts,
    createdAt: rec.createdAt,
    handedOffAt: rec.handedOffAt,
    ...(rec.postfixQueueId !== undefined ? { postfixQueueId: rec.postfixQueueId } : {}),
  };
}

export async function readSentRecord(root: string, id: string): Promise<SentRecord | undefined> {
  try {
    return JSON.parse(await fs.readFile(jobFile(root, "sent", id), "utf8")) as SentRecord;
  } catch {
    return undefined;
  }
}

/** Reads a job straight from disk, looking in the given states in order; undefined when it is in none of them. */
export async function readJobFile(
  root: string,
  id: string,
  states: readonly ("pending" | "processing" | "failed")[],
): Promise<{ state: "pending" | "processing" | "failed"; job: Job } | undefined> {
  if (!isJobId(id)) return undefined;
  for (const state of states) {
    try {
      return { state, job: JSON.parse(await fs.readFile(jobFile(root, state, id), "utf8")) as Job };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  return undefined;
}
