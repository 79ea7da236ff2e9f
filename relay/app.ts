import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyRequest,
} from "fastify";
import rateLimit from "@fastify/rate-limit";
import type { Logger } from "pino";
import type { CallerToken, RelayConfig } from "./config";
import { Admission } from "./admission";
import { errorBody, GENERIC_5XX, RelayError, type ErrorCode } from "./errors";
import type { Handoff } from "./handoff/types";
import { RelayMetrics } from "./metrics";
import { composeForQueue } from "./mime";
import type { DeliveryStore, Job, LoadProgress, QueueStore } from "./storage";
import { messageView, registerEventRoutes } from "./events/routes";
import type { SuppressionList } from "./storage";
import { canonicalJson, sha256, validateSendRequest } from "./validate";

declare module "fastify" {
  interface FastifyRequest {
    caller: string;
  }
}

export interface AppDeps {
  readonly config: Pick<
    RelayConfig,
    | "tokens"
    | "allowedFrom"
    | "callerFrom"
    | "quotas"
    | "messageIdDomain"
    | "rateLimitPerMin"
    | "bodyLimitBytes"
    | "maxMessageBytes"
    | "maxRecipients"
  >;
  readonly queue: QueueStore;
  readonly handoff: Pick<Handoff, "check">;
  readonly log: Logger;
  readonly clock?: { now(): number };
  readonly metrics?: RelayMetrics;
  /** What Postfix did with handed-off messages (GET /messages, /messages/:id recipients). */
  readonly deliveries?: DeliveryStore;
  readonly suppressions?: SuppressionList;
  /**
   * The admission policy both doors share (one quota budget per caller); built from config and suppressions when
   * absent.
   */
  readonly admission?: Admission;
  /** Called after a job is durable in pending/ (the worker's wake-up). */
  readonly onEnqueued?: () => void;
}

/**
 * Headers cloudflared (or any proxy) adds: a request carrying one came through the tunnel, whatever its source address.
 */
export const TUNNEL_HEADERS = ["cf-connecting-ip", "cf-ray", "cf-warp-tag-id", "x-forwarded-for"] as const;

/**
 * Routes served to the host only: the tunnel never forwards them. Every other route is public, and infra/tunnel.ts's
 * PUBLIC_PATH_REGEX must match it (test/infra/public-routes.test.ts ties the two).
 */
export const HOST_ONLY_ROUTES: readonly string[] = ["/ready", "/metrics"];

const MAX_IDEMPOTENCY_KEY = 256;

function digest(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

/**
 * Token check in constant time: the presented token is hashed to 32 bytes (so the length of a guess leaks nothing)
 * and compared with every configured digest (the host stores only digests), even after a match.
 */
export function makeAuthenticator(
  tokens: readonly CallerToken[],
): (authorization: string | undefined) => string | undefined {
  const known = tokens.map((t) => ({ name: t.name, digest: Buffer.from(t.sha256, "hex") }));
  return (authorization) => {
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization ?? "");
    const candidate = digest(m?.[1] ?? "");
    let caller: string | undefined;
    for (const k of known) {
      if (timingSafeEqual(candidate, k.digest) && m) caller = k.name;
    }
    return caller;
  };
}

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === "::1" || /^(::ffff:)?127\./.test(address);
}

/** Routes only: no listen. server.ts owns the socket, timeouts and shutdown. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, queue, log } = deps;
  const now = (): number => (deps.clock ?? Date).now();
  const metrics = deps.metrics;
  const authenticate = makeAuthenticator(config.tokens);
  const admission =
    deps.admission ?? new Admission(config, deps.suppressions ? { suppressions: deps.suppressions } : {});

  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // the relay logs its own lines, with caller and id
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimitBytes,
    trustProxy: false, // never believe X-Forwarded-For: the tunnel makes every caller look local
    return503OnClosing: true,
    genReqId: () => randomUUID(),
  });
  app.decorateRequest("caller", "");
  app.removeContentTypeParser("text/plain"); // JSON only: anything else is a 415

  const count = (req: FastifyRequest, outcome: string): void => {
    metrics?.requests.inc({ route: req.routeOptions.url ?? "unknown", outcome });
  };

  app.setErrorHandler((err: FastifyError | RelayError, req, reply) => {
    const relayErr = toRelayError(err);
    count(req, relayErr.code);
    if (relayErr.statusCode >= 500) {
      req.log.error({ caller: req.caller || undefined, code: relayErr.code, err: err.message }, "request failed");
      const generic = new RelayError(
        relayErr.code,
        GENERIC_5XX[relayErr.code as keyof typeof GENERIC_5XX] ?? GENERIC_5XX.internal,
      );
      return reply.code(generic.statusCode).send(errorBody(generic));
    }
    req.log.info(
      { caller: req.caller || undefined, code: relayErr.code, field: relayErr.field, status: relayErr.statusCode },
      "request refused",
    );
    return reply.code(relayErr.statusCode).send(errorBody(relayErr));
  });
  app.setNotFoundHandler((req, reply) => {
    count(req, "not_found");
    return reply
      .code(404)
      .send(errorBody(new RelayError("not_found", `no route ${req.method} ${req.url.split("?")[0]}`)));
  });

  // Healthy while the queue's index loads (new jobs are accepted); the second line says how far the load is.
  app.get("/health", async (_req, reply) =>
    reply.type("text/plain; charset=utf-8").send(healthText(queue.loadProgress())),
  );

  app.get("/ready", async (req, reply) => {
    const problems: string[] = [];
    try {
      await queue.probeWritable();
    } catch (err) {
      problems.push("queue");
      req.log.warn({ err: (err as Error).message }, "not ready: queue");
    }
    try {
      await deps.handoff.check();
    } catch (err) {
      problems.push("handoff");
      req.log.warn({ err: (err as Error).message }, "not ready: hand-off to postfix");
    }
    if (problems.length === 0) return reply.send({ ok: true });
    const code: ErrorCode = problems.includes("queue") ? "queue_unavailable" : "handoff_unavailable";
    return reply.code(503).send(errorBody(new RelayError(code, `not ready: ${problems.join(", ")}`)));
  });

  app.get("/metrics", async (req, reply) => {
    const tunneled = TUNNEL_HEADERS.some((h) => req.headers[h] !== undefined);
    if (!isLoopback(req.socket.remoteAddress) || tunneled) {
      throw new RelayError("forbidden", "metrics are served only to loopback callers without proxy headers");
    }
    if (!metrics) return reply.code(404).send(errorBody(new RelayError("not_found", "metrics are disabled")));
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  // Everything below needs a caller token: checked first (onRequest, before the body is even read), on every request.
  await app.register(async (authed) => {
    authed.addHook("onRequest", async (req) => {
      const caller = authenticate(req.headers.authorization);
      if (caller === undefined) throw new RelayError("unauthorized", "missing or wrong bearer token");
      req.caller = caller;
    });
    await authed.register(rateLimit, {
      max: config.rateLimitPerMin,
      timeWindow: 60_000,
      // per token, never per IP: through the tunnel every IP is 127.0.0.1
      keyGenerator: (req) => `caller:${req.caller}`,
      enableDraftSpec: true,
      errorResponseBuilder: (_req, ctx) =>
        new RelayError(
          "rate_limited",
          `more than ${ctx.max} requests per minute for this token; retry in ${ctx.after}`,
        ),
    });

    authed.post("/send", { config: { rateLimit: { groupId: "send" } } }, async (req, reply) => {
      const keyHeader = req.headers["idempotency-key"];
      let idemKey: string | undefined;
      if (keyHeader !== undefined) {
        if (
          typeof keyHeader !== "string" ||
          keyHeader.length === 0 ||
          keyHeader.length > MAX_IDEMPOTENCY_KEY ||
          !/^[\x21-\x7e]+$/.test(keyHeader)
        ) {
          throw new RelayError(
            "invalid_idempotency_key",
            `Idempotency-Key must be 1-${MAX_IDEMPOTENCY_KEY} visible ASCII characters`,
            "Idempotency-Key",
          );
        }
        idemKey = keyHeader;
      }
      // The adapter: the body -> admission's calls (validateSendRequest applies the address, sender, recipient-limit
      // and header rules), the composed message -> admission's size rule and its last checks.
      const send = validateSendRequest(req.body, { admission, caller: req.caller });
      const id = randomUUID();
      const createdAt = now();
      const { raw, bytes } = await composeForQueue(send, {
        messageId: admission.messageId(id),
        date: new Date(createdAt),
      });
      // MIME encoding and the generated text part can grow a body many times (html-to-text turns <hr> into a 78-char
      // line): refuse here what Postfix would later refuse with a 552, instead of queueing a message that must fail.
      admission.size(bytes);
      const recipients = [...new Set([...send.to, ...send.cc, ...send.bcc].map((m) => m.canonical ?? m.email))];
      const recipientDomains = [...new Set(recipients.map((r) => r.slice(r.lastIndexOf("@") + 1)))];
      const job: Job = {
        id,
        caller: req.caller,
        createdAt,
        attempts: 0,
        nextAttemptAt: createdAt,
        envelope: { from: send.from.canonical ?? send.from.email, to: recipients },
        subject: send.subject,
        recipientDomains,
        tags: send.tags,
        raw,
        ...(idemKey !== undefined
          ? { idempotency: { keyHash: sha256(`${req.caller}\n${idemKey}`), bodyHash: sha256(canonicalJson(req.body)) } }
          : {}),
      };
      // Quotas are charged only when the queue takes the job; an idempotent replay of an accepted message is counted
      // again (it is rare, and a caller replaying in a loop should meet its quota).
      const result = await admission.admit(job, () => queue.accept(job));
      count(req, result.duplicate ? "duplicate" : "accepted");
      const outcome = result.duplicate ? "duplicate" : result.handedOff ? "handed_off" : "queued";
      req.log.info(
        {
          id: result.id,
          caller: req.caller,
          recipients: recipients.length,
          domains: recipientDomains,
          tags: send.tags,
          bytes: raw.length,
          outcome,
          ...(result.handedOff?.postfixQueueId !== undefined
            ? { postfixQueueId: result.handedOff.postfixQueueId }
            : {}),
        },
        result.duplicate ? "idempotent replay" : outcome === "handed_off" ? "handed off during the request" : "queued",
      );
      if (outcome === "queued") deps.onEnqueued?.();
      if (result.duplicate) reply.header("idempotent-replayed", "true");
      // queued: true means accepted durably (in our queue or in Postfix's); state says which.
      return reply.code(202).send({
        ok: true,
        queued: true,
        id: result.id,
        state: result.handedOff ? "handed_off" : "queued",
        ...(result.handedOff?.postfixQueueId !== undefined ? { postfixQueueId: result.handedOff.postfixQueueId } : {}),
      });
    });

    authed.get<{ Params: { id: string } }>(
      "/messages/:id",
      { config: { rateLimit: { groupId: "messages" } } },
      async (req, reply) => {
        const d = deps.deliveries?.get(req.params.id);
        const status = messageView(
          await queue.status(req.params.id, req.caller),
          d?.caller === req.caller ? d : undefined,
        );
        if (!status) throw new RelayError("not_found", `no message ${req.params.id} for this token`);
        count(req, "ok");
        return reply.send({ ok: true, message: status });
      },
    );
    registerEventRoutes(authed, deps);
  });

  return app;
}

/** "ok", plus a line on the queue's index while it loads after a start. */
export function healthText(load: LoadProgress | undefined): string {
  if (!load) return "ok";
  return (
    `ok\nqueue index loading: ${load.phase}, ${load.read} of ${load.total} files read; new jobs are accepted, ` +
    `the worker starts once the jobs are read\n`
  );
}

/** Maps fastify's own errors onto the relay's codes. */
function toRelayError(err: FastifyError | RelayError): RelayError {
  if (err instanceof RelayError) return err;
  switch (err.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new RelayError("payload_too_large", "request body is larger than RELAY_BODY_LIMIT_BYTES");
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return err.statusCode === 415
        ? new RelayError("unsupported_media_type", "send the body as Content-Type: application/json")
        : new RelayError("invalid_json", err.message);
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new RelayError("invalid_json", "the JSON body is empty");
    default:
      if (err.statusCode === 400 || err instanceof SyntaxError)
        return new RelayError("invalid_json", "the body is not valid JSON");
      if (err.statusCode === 413) return new RelayError("payload_too_large", "request body is too large");
      if (err.statusCode === 415)
        return new RelayError("unsupported_media_type", "send the body as Content-Type: application/json");
      return new RelayError("internal", err.message);
  }
}
