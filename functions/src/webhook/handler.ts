import { performance } from "node:perf_hooks";
import type { EventMeta } from "../domain/commands";
import { AppError, classify, DeferredError, httpStatusOf, MethodNotAllowedError } from "../errors";
import { verifyStripeEvent, type VerifiedEvent } from "../stripe/signature";
import { eventMeta } from "../stripe/translate";
import type { SubscriptionOptions } from "../subscriptions/machine";
import { applyVerifiedEvent } from "../subscriptions/dispatch";
import type { PipelineDeps } from "./applyEvent";
import { recordFailedDelivery, type FailureOptions } from "./failures";

/** The parts of an Express / Cloud Functions request the endpoint reads. */
export interface WebhookRequest {
  method: string;
  rawBody?: Buffer;
  headers: Record<string, string | string[] | undefined>;
}

export interface WebhookResponse {
  status(code: number): WebhookResponse;
  set(field: string, value: string): WebhookResponse;
  json(body: unknown): void;
}

export interface DeliveryLog {
  event_id: string | null;
  event_type: string | null;
  order_id: string | null;
  result: "processed" | "duplicate" | "ignored" | "rejected" | "dead_lettered" | "failed" | "signature_invalid" | "bad_request";
  detail: string | null;
  http_status: number;
  duration_ms: number;
  attempt: number | null;
}

export interface WebhookDeps extends PipelineDeps {
  failure: FailureOptions;
  /** Read at request time: secrets are only available at run time. */
  webhookSecrets: () => readonly string[];
  /** One structured line per delivery; never the secret, the signature or card data. */
  logDelivery: (entry: DeliveryLog) => void;
  /** GRACE_PERIOD_HOURS for subscription events (24 h when absent). */
  subscriptionOptions?: SubscriptionOptions;
}

/** The `stripeWebhook` endpoint: verify → translate → apply in one transaction → answer. */
export function createWebhookHandler(deps: WebhookDeps): (req: WebhookRequest, res: WebhookResponse) => Promise<void> {
  return async (req, res) => {
    const started = performance.now();
    let meta: EventMeta | null = null;
    const finish = (httpStatus: number, body: unknown, log: Omit<DeliveryLog, "http_status" | "duration_ms" | "event_id" | "event_type">) => {
      res.status(httpStatus).json(body);
      deps.logDelivery({
        event_id: meta?.id ?? null,
        event_type: meta?.type ?? null,
        ...log,
        http_status: httpStatus,
        duration_ms: Math.round((performance.now() - started) * 10) / 10,
      });
    };
    const fail = (error: AppError, log: Omit<DeliveryLog, "http_status" | "duration_ms" | "event_id" | "event_type" | "detail">) =>
      finish(httpStatusOf(error), { error: { code: error.code, message: error.message } }, { ...log, detail: error.message });

    if (req.method !== "POST") {
      res.set("Allow", "POST");
      return fail(new MethodNotAllowedError(`${req.method} is not allowed: Stripe delivers webhooks with POST.`), {
        order_id: null,
        result: "bad_request",
        attempt: null,
      });
    }
    const receivedAt = deps.now();
    let verified;
    try {
      verified = verifyStripeEvent(req.rawBody, req.headers["stripe-signature"], deps.webhookSecrets(), receivedAt);
    } catch (error) {
      const appError = classify(error);
      return fail(appError, {
        order_id: null,
        result: appError.code === "signature_invalid" ? "signature_invalid" : appError.code === "not_a_stripe_event" ? "bad_request" : "failed",
        attempt: null,
      });
    }
    const event = eventMeta(verified.event);
    meta = event;
    // Copies of one event that arrive together (a retry storm) share the first copy's work: one
    // transaction instead of a hundred queuing on the same order, and one attempt counted if it fails.
    const flight = await deps.locks.coalesce(`event:${event.id}`, () => deliver(deps, event, verified, receivedAt));
    const reply = flight.leader ? flight.value : followerReply(flight.value, event.id);
    return finish(reply.httpStatus, reply.body, reply.log);
  };
}

interface Reply {
  httpStatus: number;
  body: unknown;
  log: Omit<DeliveryLog, "http_status" | "duration_ms" | "event_id" | "event_type">;
}

/**
 * Translate, apply in one transaction, and on failure count the attempt: the answer to one verified
 * delivery. Subscription events take the subscription pipeline, the others the order pipeline.
 */
async function deliver(deps: WebhookDeps, meta: EventMeta, verified: VerifiedEvent, receivedAt: Date): Promise<Reply> {
  try {
    const outcome = await applyVerifiedEvent(deps, verified.event, receivedAt);
    const body =
      outcome.status === "duplicate"
        ? { received: true, eventId: meta.id, status: "duplicate" }
        : { received: true, eventId: meta.id, status: outcome.status, result: outcome.result };
    return { httpStatus: 200, body, log: { order_id: outcome.orderId, result: outcome.status, detail: outcome.result, attempt: outcome.attempt } };
  } catch (error) {
    const appError = classify(error);
    const orderId = appError instanceof DeferredError ? appError.orderId : null;
    let attempt: number | null = null;
    try {
      const failure = await recordFailedDelivery(deps, meta, verified.rawBody, appError, receivedAt);
      attempt = failure.attempts;
      if (failure.parked) {
        return {
          httpStatus: 200,
          body: { received: true, eventId: meta.id, status: "rejected", result: "dead_lettered" },
          log: { order_id: orderId, result: "dead_lettered", detail: appError.message, attempt },
        };
      }
    } catch (recordError) {
      // Firestore is likely down: the non-2xx below makes Stripe redeliver, which is the real safety net.
      appError.message += ` (and the dead letter could not be recorded: ${classify(recordError).message})`;
    }
    return {
      httpStatus: httpStatusOf(appError),
      body: { error: { code: appError.code, message: appError.message } },
      log: { order_id: orderId, result: "failed", detail: appError.message, attempt },
    };
  }
}

/**
 * The answer to a copy that waited for a concurrent delivery of the same event: once that one was
 * answered 2xx the event is recorded, so this copy is a duplicate; a failure is this copy's failure too.
 */
function followerReply(leader: Reply, eventId: string): Reply {
  if (leader.httpStatus >= 300) return { ...leader, log: { ...leader.log, detail: `${leader.log.detail ?? ""} (shared with a concurrent delivery)`, attempt: null } };
  return { httpStatus: 200, body: { received: true, eventId, status: "duplicate" }, log: { order_id: null, result: "duplicate", detail: "concurrent delivery", attempt: null } };
}
