import type Stripe from "stripe";
import type { Command, EventMeta, OrderRef, PaymentIds, Translation } from "../domain/commands";
import { isDocumentId } from "../domain/ids";

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
      const amount = pi.amount_received > 0 ? pi.amount_received : pi.amount;
      return forOrder(metadataOrderId(pi.metadata), null, {
        kind: "payment_succeeded",
        amount,
        currency: pi.currency,
        ...piIds(pi.id),
      });
    }
    case "payment_intent.payment_failed": {
      const pi = event.data.object;
      return forOrder(metadataOrderId(pi.metadata), null, {
        kind: "payment_failed",
        code: pi.last_payment_error?.decline_code ?? pi.last_payment_error?.code ?? null,
        message: pi.last_payment_error?.message ?? null,
        ...piIds(pi.id),
      });
    }
    case "payment_intent.canceled": {
      const pi = event.data.object;
      return forOrder(metadataOrderId(pi.metadata), null, {
        kind: "payment_canceled",
        reason: pi.cancellation_reason ?? null,
        ...piIds(pi.id),
      });
    }
    case "checkout.session.completed":
    case "checkout.session.async_payment_succeeded": {
      const session = event.data.object;
      const ids = sessionIds(session);
      const amount = session.amount_total ?? 0;
      const currency = session.currency ?? "";
      const paid = session.payment_status === "paid" || session.payment_status === "no_payment_required";
      if (session.mode !== "payment") return ignored(`checkout mode ${session.mode} carries no order payment`, sessionOrderId(session));
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
      if (!charge.paid || !charge.captured) return ignored("charge authorized but not captured", metadataOrderId(charge.metadata));
      const piId = idOf(charge.payment_intent);
      return forOrder(metadataOrderId(charge.metadata), piId, {
        kind: "payment_succeeded",
        amount: charge.amount_captured > 0 ? charge.amount_captured : charge.amount,
        currency: charge.currency,
        ...piIds(piId),
      });
    }
    case "charge.refunded": {
      const charge = event.data.object;
      const piId = idOf(charge.payment_intent);
      return forOrder(metadataOrderId(charge.metadata), piId, {
        kind: "refund_updated",
        chargeAmount: charge.amount,
        amountRefunded: charge.amount_refunded,
        currency: charge.currency,
        ...piIds(piId),
      });
    }
    case "charge.dispute.created":
    case "charge.dispute.closed": {
      const dispute = event.data.object;
      const piId = idOf(dispute.payment_intent);
      return forOrder(metadataOrderId(dispute.metadata), piId, {
        kind: event.type === "charge.dispute.created" ? "dispute_opened" : "dispute_closed",
        disputeId: dispute.id,
        amount: dispute.amount,
        currency: dispute.currency,
        disputeStatus: dispute.status,
        ...piIds(piId),
      });
    }
    default:
      return ignored(`unhandled event type ${event.type}`, null);
  }
}

function forOrder(orderId: string | null, paymentIntentId: string | null, command: Command): Translation {
  const normalized = { ...command, ...("currency" in command ? { currency: command.currency.toLowerCase() } : {}) } as Command;
  let ref: OrderRef;
  if (orderId !== null && !isDocumentId(orderId)) return ignored(`order reference ${JSON.stringify(orderId)} is not a valid order id`, null);
  if (orderId !== null) ref = { by: "orderId", orderId };
  else if (paymentIntentId !== null) ref = { by: "paymentIntent", paymentIntentId };
  else return ignored("no order reference (metadata.orderId / client_reference_id): not a payment of this shop", null);
  return { kind: "command", ref, command: normalized };
}

function ignored(reason: string, orderId: string | null): Translation {
  return { kind: "ignored", reason, orderId };
}

function piIds(paymentIntentId: string | null): PaymentIds {
  return { paymentIntentId, checkoutSessionId: null };
}

function sessionIds(session: Stripe.Checkout.Session): PaymentIds {
  return { paymentIntentId: idOf(session.payment_intent), checkoutSessionId: session.id };
}

function sessionOrderId(session: Stripe.Checkout.Session): string | null {
  return nonEmpty(session.client_reference_id) ?? metadataOrderId(session.metadata);
}

function metadataOrderId(metadata: Stripe.Metadata | null | undefined): string | null {
  return nonEmpty(metadata?.orderId);
}

function nonEmpty(value: string | null | undefined): string | null {
  return typeof value === "string" && value.trim().length > 0 ? value.trim() : null;
}

function idOf(value: string | { id: string } | null | undefined): string | null {
  if (typeof value === "string") return nonEmpty(value);
  return value ? nonEmpty(value.id) : null;
}
