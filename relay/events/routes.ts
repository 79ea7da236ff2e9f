import type { FastifyInstance } from "fastify";
import { RelayError } from "../errors";
import type { JobStatus } from "../storage";
import type { SuppressionEntry, SuppressionList } from "../storage";
import {
  aggregateState,
  DELIVERY_STATES,
  type DeliveryState,
  type DeliveryStore,
  type MessageDelivery,
} from "../storage";

export interface RecipientView {
  readonly email: string;
  readonly state: string;
  readonly dsn?: string;
  readonly remoteReply?: string;
  readonly at?: string;
  readonly attempts: number;
  readonly nextRetryEstimate?: string;
}

const iso = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : new Date(ms).toISOString());

function recipientsView(d: MessageDelivery): RecipientView[] {
  return d.recipients.map((r) => ({
    email: r.address,
    state: r.state,
    attempts: r.attempts,
    ...(r.dsn !== undefined ? { dsn: r.dsn } : {}),
    ...(r.reply !== undefined ? { remoteReply: r.reply } : {}),
    ...(r.at !== undefined ? { at: iso(r.at) } : {}),
    ...(r.state === "deferred" && r.retryEstimateAt !== undefined ? { nextRetryEstimate: iso(r.retryEstimateAt) } : {}),
  }));
}

/** GET /messages/:id: the queue's status, and once Postfix has it, the state aggregated from its recipients. */
export function messageView(
  status: JobStatus | undefined,
  d: MessageDelivery | undefined,
): Record<string, unknown> | undefined {
  if (status && status.state !== "handed_off") return { ...status };
  if (!d || d.handedOffAt === undefined) return status ? { ...status } : undefined;
  const base: object = status ?? { id: d.id, handedOffAt: d.handedOffAt };
  return Object.assign({}, base, { state: aggregateState(d.recipients), recipients: recipientsView(d) });
}

function parseSince(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const s = String(v);
  const n = /^\d+$/.test(s) ? Number(s) : Date.parse(s);
  if (!Number.isFinite(n))
    throw new RelayError("invalid_field", "since must be an ISO 8601 time or milliseconds since the epoch", "since");
  return n;
}

function parseCursor(v: unknown): { at: number; id: string } | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+):([0-9a-f-]{36})$/.exec(Buffer.from(String(v), "base64url").toString("utf8"));
  if (!m) throw new RelayError("invalid_field", "cursor is not one this relay returned", "cursor");
  return { at: Number(m[1]), id: m[2] as string };
}

function suppressionView(e: SuppressionEntry): Record<string, unknown> {
  return {
    email: e.email,
    reason: e.reason,
    origin: e.origin,
    createdAt: new Date(e.createdAt).toISOString(),
    ...(e.messageId !== undefined ? { messageId: e.messageId } : {}),
    ...(e.dsn !== undefined ? { dsn: e.dsn } : {}),
  };
}

/** Caller routes for delivery state and the suppression list; registered inside the authenticated scope. */
export function registerEventRoutes(
  authed: FastifyInstance,
  deps: { deliveries?: DeliveryStore; suppressions?: SuppressionList },
): void {
  const rl = { config: { rateLimit: { groupId: "messages" } } };

  authed.get<{ Querystring: Record<string, string | undefined> }>("/messages", rl, async (req, reply) => {
    const q = req.query;
    for (const k of Object.keys(q))
      if (!["state", "since", "limit", "cursor"].includes(k))
        throw new RelayError("invalid_field", `unknown query parameter ${k}`, k);
    if (q.state !== undefined && !DELIVERY_STATES.includes(q.state as DeliveryState)) {
      throw new RelayError("invalid_field", `state must be one of ${DELIVERY_STATES.join(", ")}`, "state");
    }
    const limit = q.limit === undefined ? 50 : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100)
      throw new RelayError("invalid_field", "limit must be 1-100", "limit");
    const since = parseSince(q.since);
    const after = parseCursor(q.cursor);
    const page =
      deps.deliveries?.list(req.caller, {
        limit: limit + 1,
        ...(q.state ? { state: q.state as DeliveryState } : {}),
        ...(since !== undefined ? { since } : {}),
        ...(after ? { after } : {}),
      }) ?? [];
    const more = page.length > limit;
    const shown = page.slice(0, limit);
    const last = shown[shown.length - 1];
    return reply.send({
      ok: true,
      messages: shown.map((d) => ({
        id: d.id,
        handedOffAt: d.handedOffAt,
        state: aggregateState(d.recipients),
        recipients: recipientsView(d),
      })),
      ...(more && last ? { nextCursor: Buffer.from(`${last.handedOffAt}:${last.id}`).toString("base64url") } : {}),
    });
  });

  authed.get("/suppressions", rl, async (req, reply) => {
    if (!deps.suppressions) return reply.send({ ok: true, suppressions: [] });
    await deps.suppressions.refresh();
    return reply.send({ ok: true, suppressions: deps.suppressions.list({ caller: req.caller }).map(suppressionView) });
  });

  authed.delete<{ Params: { email: string } }>("/suppressions/:email", rl, async (req, reply) => {
    const list = deps.suppressions;
    await list?.refresh();
    const e = list?.find(req.params.email);
    // Another caller's entry (or the operator's) is not this caller's to lift: it answers as unknown.
    if (!list || !e || e.caller !== req.caller)
      throw new RelayError("not_found", `${req.params.email} is not on this caller's suppression list`);
    await list.remove(e.email, `caller:${req.caller}`);
    req.log.info({ caller: req.caller, reason: e.reason }, "suppression removed by caller");
    return reply.send({ ok: true, removed: e.email });
  });
}
