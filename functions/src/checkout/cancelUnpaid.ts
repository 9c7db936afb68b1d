import type { Firestore } from "firebase-admin/firestore";
import Stripe from "stripe";
import { auditLog, type AuditEntry } from "../collections/auditLog";
import { ORDER_STATUSES, orderFromData, type Order, type OrderStatus } from "../collections/orders";
import type { ErrorLog } from "./errors";

/**
 * "Out of stock → no charge" (SPEC 7): once an order can no longer be fulfilled as placed — the
 * reservation trigger marked it `out_of_stock`, or the sweep `canceled` it — its unpaid PaymentIntent
 * is canceled (or its open Checkout Session expired), so nobody pays for nothing. Handler of the
 * `orders/{orderId}` update trigger, retried; every outcome is idempotent.
 *
 * A payment that succeeds in the race anyway follows SPEC 3 (finalized if units are available, else
 * needs_review): canceling is best effort, the webhook is the guard.
 */

const CLOSED: readonly OrderStatus[] = ["out_of_stock", "canceled"];

export type CancelAction =
  | { kind: "none"; reason: string }
  | { kind: "cancel_payment_intent"; paymentIntentId: string; cancellationReason?: "abandoned" }
  | { kind: "expire_checkout_session"; checkoutSessionId: string };

/**
 * Pure. Acts when the order is (now) closed and names a payment, and either the status or the payment
 * id just changed — so it covers both orders of "PaymentIntent stored" and "order closed", and a later
 * unrelated update of a closed order makes no second call.
 */
export function decideUnpaidCancellation(before: Order | null, after: Order | null): CancelAction {
  if (after === null) return { kind: "none", reason: "order deleted" };
  if (!CLOSED.includes(after.status)) return { kind: "none", reason: `order is ${after.status}` };
  if (!after.checkoutSessionId && !after.paymentIntentId) return { kind: "none", reason: "no payment to cancel" };
  const changed =
    before === null ||
    before.status !== after.status ||
    before.paymentIntentId !== after.paymentIntentId ||
    before.checkoutSessionId !== after.checkoutSessionId;
  if (!changed) return { kind: "none", reason: "already handled" };
  const last = after.statusHistory?.at(-1);
  if (after.status === "canceled" && last?.to === "canceled" && last.eventId !== null) {
    // payment_intent.canceled / checkout.session.expired: Stripe closed it first.
    return { kind: "none", reason: "canceled by Stripe" };
  }
  // A Session owns its PaymentIntent: expiring the Session is what stops the shopper paying.
  if (after.checkoutSessionId) return { kind: "expire_checkout_session", checkoutSessionId: after.checkoutSessionId };
  return {
    kind: "cancel_payment_intent",
    paymentIntentId: after.paymentIntentId as string,
    ...(after.status === "canceled" ? { cancellationReason: "abandoned" as const } : {}),
  };
}

export type CancelOutcome =
  | "none"
  | "canceled"
  | "expired"
  | "already_canceled"
  | "already_expired"
  | "already_paid"
  | "not_cancelable"
  | "unknown_to_stripe";

export interface CancelDeps {
  db: Firestore;
  stripe: () => Stripe;
  now: () => Date;
  log: ErrorLog;
}

/** Background calls may retry inside the call too: nothing waits on them. */
const REQUEST = { maxNetworkRetries: 2 };

/** A document whose status is not one of ours (typed by hand) is no order this trigger can act on. */
function snapshotOrder(id: string, data: Record<string, unknown> | undefined): Order | null {
  if (data === undefined || !(ORDER_STATUSES as readonly unknown[]).includes(data.status)) return null;
  return orderFromData(id, data);
}

export async function cancelUnpaidPayment(
  deps: CancelDeps,
  orderId: string,
  beforeData: Record<string, unknown> | undefined,
  afterData: Record<string, unknown> | undefined,
): Promise<CancelOutcome> {
  const after = snapshotOrder(orderId, afterData);
  const action = decideUnpaidCancellation(snapshotOrder(orderId, beforeData), after);
  if (action.kind === "none" || after === null) return "none";
  const outcome = action.kind === "cancel_payment_intent" ? await cancelIntent(deps.stripe(), action) : await expireSession(deps.stripe(), action.checkoutSessionId);
  if (outcome === "unknown_to_stripe" || outcome === "not_cancelable") {
    deps.log("Unpaid payment of a closed order was not canceled", { orderId, action: action.kind, outcome });
  }
  const paymentId = action.kind === "cancel_payment_intent" ? action.paymentIntentId : action.checkoutSessionId;
  const now = deps.now();
  const audit: AuditEntry = {
    eventId: null,
    eventType: null,
    orderId,
    action: action.kind,
    result: outcome,
    reason: `order ${after.status}: ${paymentId}`,
    before: after.status,
    after: after.status,
    at: now,
  };
  // One entry per order and payment, however often the trigger is retried.
  await auditLog(deps.db).doc(`${action.kind}:${orderId}:${paymentId}`).set(audit);
  return outcome;
}

function isNotFound(error: unknown): boolean {
  return error instanceof Stripe.errors.StripeInvalidRequestError && error.statusCode === 404;
}

async function cancelIntent(stripe: Stripe, action: Extract<CancelAction, { kind: "cancel_payment_intent" }>): Promise<CancelOutcome> {
  const { paymentIntentId: id } = action;
  try {
    await stripe.paymentIntents.cancel(id, action.cancellationReason ? { cancellation_reason: action.cancellationReason } : {}, REQUEST);
    return "canceled";
  } catch (error) {
    if (isNotFound(error)) return "unknown_to_stripe";
    // Stripe refuses to cancel a PaymentIntent that is past it (payment_intent_unexpected_state): ask it where it is.
    if (!(error instanceof Stripe.errors.StripeInvalidRequestError)) throw error;
    const pi = await stripe.paymentIntents.retrieve(id, {}, REQUEST);
    if (pi.status === "canceled") return "already_canceled";
    if (pi.status === "succeeded") return "already_paid";
    if (pi.status === "processing") return "not_cancelable";
    throw error;
  }
}

async function expireSession(stripe: Stripe, id: string): Promise<CancelOutcome> {
  try {
    await stripe.checkout.sessions.expire(id, {}, REQUEST);
    return "expired";
  } catch (error) {
    if (isNotFound(error)) return "unknown_to_stripe";
    if (!(error instanceof Stripe.errors.StripeInvalidRequestError)) throw error;
    // Only an open Session can be expired.
    const session = await stripe.checkout.sessions.retrieve(id, {}, REQUEST);
    if (session.status === "expired") return "already_expired";
    if (session.status === "complete") return "already_paid";
    throw error;
  }
}
