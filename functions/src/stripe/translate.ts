import type Stripe from "stripe";
import type { Command, EventMeta, OrderRef, PaymentIds, Translation } from "../domain/commands";
import { isDocumentId } from "../domain/ids";
import { idOf, malformedReason, nonEmpty, recordOf, textOf } from "./fields";

/**
 * The only module that reads Stripe objects: it turns a verified event into the project's own
 * command, or says why the event is none of our business. Pure.
 */

export const HANDLED_EVENT_TYPES = [
  "payment_intent.succeeded",
  "payment_intent.payment_failed",
  "payment_intent.canceled",
  "checkout.session.completed",
  "checkout.session.async_payment_succeeded",
  "checkout.session.async_payment_failed",
  "checkout.session.expired",
  "charge.succeeded",
  "charge.refunded",
  "charge.dispute.created",
  "charge.dispute.closed",
] as const;

export function eventMeta(event: Stripe.Event): EventMeta {
  return { id: event.id, type: event.type, created: new Date(event.created * 1000), livemode: event.livemode };
}

export function translateEvent(event: Stripe.Event): Translation {
  switch (event.type) {
    case "payment_intent.succeeded": {
      const pi = event.data.object;
      return forOrder(metadataOrderId(pi.metadata), null, {
        kind: "payment_succeeded",
        amount: positiveOr(amountOf(pi.amount_received), amountOf(pi.amount)),
        currency: currencyOf(pi.currency),
        ...piIds(idOf(pi.id)),
      });
    }
    case "payment_intent.payment_failed": {
      const pi = event.data.object;
      const error: unknown = pi.last_payment_error;
      const field = (name: string) => (typeof error === "object" && error !== null ? textOf((error as Record<string, unknown>)[name]) : null);
      return forOrder(metadataOrderId(pi.metadata), null, {
        kind: "payment_failed",
        code: field("decline_code") ?? field("code"),
        message: field("message"),
        ...piIds(idOf(pi.id)),
      });
    }
    case "payment_intent.canceled": {
      const pi = event.data.object;
      return forOrder(metadataOrderId(pi.metadata), null, {
        kind: "payment_canceled",
        reason: textOf(pi.cancellation_reason),
        ...piIds(idOf(pi.id)),
      });
    }
    case "checkout.session.completed":
    case "checkout.session.async_payment_succeeded": {
      const session = event.data.object;
      const ids = sessionIds(session);
      const amount = amountOf(session.amount_total);
      const currency = currencyOf(session.currency);
      const paid = session.payment_status === "paid" || session.payment_status === "no_payment_required";
      if (session.mode !== "payment") return ignored(`checkout mode ${String(session.mode)} carries no order payment`, sessionOrderId(session));
      return forOrder(sessionOrderId(session), null, paid
        ? { kind: "payment_succeeded", amount, currency, ...ids }
        : { kind: "checkout_awaiting_payment", amount, currency, ...ids });
    }
    case "checkout.session.async_payment_failed": {
      const session = event.data.object;
      return forOrder(sessionOrderId(session), null, {
        kind: "payment_failed",
        code: "async_payment_failed",
        message: "The delayed payment method of the Checkout Session failed.",
        ...sessionIds(session),
      });
    }
    case "checkout.session.expired": {
      const session = event.data.object;
      return forOrder(sessionOrderId(session), null, { kind: "payment_canceled", reason: "checkout_session_expired", ...sessionIds(session) });
    }
    case "charge.succeeded": {
      const charge = event.data.object;
      // An authorization without capture is not money received; payment_intent.succeeded follows on capture.
      if (charge.paid !== true || charge.captured !== true) return ignored("charge authorized but not captured", metadataOrderId(charge.metadata));
      const piId = idOf(charge.payment_intent);
      return forOrder(metadataOrderId(charge.metadata), piId, {
        kind: "payment_succeeded",
        amount: positiveOr(amountOf(charge.amount_captured), amountOf(charge.amount)),
        currency: currencyOf(charge.currency),
        ...piIds(piId),
      });
    }
    case "charge.refunded": {
      const charge = event.data.object;
      const piId = idOf(charge.payment_intent);
      const amountRefunded = amountOf(charge.amount_refunded);
      // The identity guard does not compare it and the refund writes it onto the order: an unusable one is not applied.
      if (Number.isNaN(amountRefunded)) return malformed(event.type, "amount_refunded", metadataOrderId(charge.metadata));
      return forOrder(metadataOrderId(charge.metadata), piId, {
        kind: "refund_updated",
        chargeAmount: amountOf(charge.amount),
        amountRefunded,
        currency: currencyOf(charge.currency),
        ...piIds(piId),
      });
    }
    case "charge.dispute.created":
    case "charge.dispute.closed": {
      const dispute = event.data.object;
      const piId = idOf(dispute.payment_intent);
      const orderId = metadataOrderId(dispute.metadata);
      const disputeId = idOf(dispute.id);
      const disputeStatus = textOf(dispute.status);
      const amount = amountOf(dispute.amount);
      // The identity guard compares only a dispute's currency; these are written onto the order: unusable ones are not applied.
      if (disputeId === null) return malformed(event.type, "id", orderId);
      if (disputeStatus === null) return malformed(event.type, "status", orderId);
      if (Number.isNaN(amount)) return malformed(event.type, "amount", orderId);
      return forOrder(orderId, piId, {
        kind: event.type === "charge.dispute.created" ? "dispute_opened" : "dispute_closed",
        disputeId,
        amount,
        currency: currencyOf(dispute.currency),
        disputeStatus,
        ...piIds(piId),
      });
    }
    default:
      return ignored(`unhandled event type ${event.type}`, null);
  }
}

function forOrder(orderId: string | null, paymentIntentId: string | null, command: Command): Translation {
  let ref: OrderRef;
  if (orderId !== null && !isDocumentId(orderId)) return ignored(`order reference ${JSON.stringify(orderId)} is not a valid order id`, null);
  if (orderId !== null) ref = { by: "orderId", orderId };
  else if (paymentIntentId !== null) ref = { by: "paymentIntent", paymentIntentId };
  else return ignored("no order reference (metadata.orderId / client_reference_id): not a payment of this shop", null);
  return { kind: "command", ref, command };
}

/** The order id is kept on the event's record, where webhookEventStatus reads the order by it: only a valid one. */
function ignored(reason: string, orderId: string | null): Translation {
  return { kind: "ignored", reason, orderId: orderId !== null && isDocumentId(orderId) ? orderId : null };
}

function malformed(type: string, field: string, orderId: string | null): Translation {
  return ignored(malformedReason(type, field), orderId);
}

/*
 * Fields are read as unknown (fields.ts). An amount or currency the identity guard compares that is
 * missing or malformed becomes a value no order has (NaN, ""): the guard then rejects the event (200,
 * order untouched, audit entry and admin alert), as it rejects any amount or currency that does not
 * match the order.
 */

/** A Stripe amount in minor units; NaN, which equals no order's amount, when it is not one. */
function amountOf(value: unknown): number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : Number.NaN;
}

function positiveOr(preferred: number, fallback: number): number {
  return preferred > 0 ? preferred : fallback;
}

/** A currency code, lowercased as orders store it; "", which no order has, when it is not one. */
function currencyOf(value: unknown): string {
  return typeof value === "string" ? value.toLowerCase() : "";
}

function piIds(paymentIntentId: string | null): PaymentIds {
  return { paymentIntentId, checkoutSessionId: null };
}

function sessionIds(session: Stripe.Checkout.Session): PaymentIds {
  return { paymentIntentId: idOf(session.payment_intent), checkoutSessionId: idOf(session.id) };
}

function sessionOrderId(session: Stripe.Checkout.Session): string | null {
  return nonEmpty(session.client_reference_id) ?? metadataOrderId(session.metadata);
}

function metadataOrderId(metadata: unknown): string | null {
  return nonEmpty(recordOf(metadata)?.orderId);
}
