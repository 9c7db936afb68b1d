import type Stripe from "stripe";
import { CUSTOMER_UID_METADATA_KEY } from "../collections/customers";
import { isPriceId } from "../collections/plans";
import { isSubscriptionStatus } from "../collections/subscriptions";
import { isDocumentId } from "../domain/ids";
import { idOf, MAX_TIMESTAMP_SECONDS, malformedReason, nonEmpty, recordOf, textOf } from "../stripe/fields";
import type { SubscriptionChange, SubscriptionCommand, SubscriptionState, SubscriptionTranslation } from "./commands";

/**
 * Stripe subscription events → the project's subscription commands. Pure. Returns null for an event
 * that is not about subscriptions (the order translator takes it), `ignored` for one that is but
 * names nothing this backend can use. Every id is validated here, before it names a document.
 */

export const SUBSCRIPTION_EVENT_TYPES = [
  "checkout.session.completed",
  "customer.subscription.created",
  "customer.subscription.updated",
  "customer.subscription.deleted",
  "customer.subscription.paused",
  "customer.subscription.resumed",
  "customer.subscription.trial_will_end",
  "invoice.paid",
  "invoice.payment_failed",
  "invoice.payment_action_required",
] as const;

const CUSTOMER_ID = /^cus_[A-Za-z0-9_]{1,250}$/;
const SUBSCRIPTION_ID = /^sub_[A-Za-z0-9_]{1,250}$/;
const INVOICE_ID = /^in_[A-Za-z0-9_]{1,250}$/;
const SESSION_ID = /^cs_[A-Za-z0-9_]{1,250}$/;

const CHANGES: Partial<Record<Stripe.Event.Type, SubscriptionChange>> = {
  "customer.subscription.created": "created",
  "customer.subscription.updated": "updated",
  "customer.subscription.paused": "paused",
  "customer.subscription.resumed": "resumed",
};

/*
 * A signed event is Stripe's, but its object is still only JSON: the types Stripe's SDK declares are
 * not checked, and a throw here (or a value Firestore refuses later) fails the event's transaction on
 * every redelivery: 500 until it is dead-lettered. So every field is read as unknown. A field Stripe
 * may leave out keeps this module's default for it; one that is present but unusable makes the event
 * `ignored`, with a reason naming the field, rather than write a guess over what an earlier event stored.
 */

type Json = Record<string, unknown>;

export function translateSubscriptionEvent(event: Stripe.Event): SubscriptionTranslation | null {
  switch (event.type) {
    case "checkout.session.completed": {
      const session = dataObject(event);
      // Not null: the order translator would dereference the missing object in turn.
      if (session === null) return malformed(event.type, "object");
      // Payment-mode sessions are orders; setup-mode ones concern neither.
      if (session.mode !== "subscription") return null;
      const checkoutSessionId = stripeId(SESSION_ID, session.id);
      if (checkoutSessionId === null) return ignored(`checkout session id ${shown(session.id)} is not a Checkout Session id`);
      return command(session.customer, session.subscription, claimOf(session.client_reference_id) ?? metadataClaim(session.metadata), (common) => ({
        ...common,
        kind: "checkout_completed",
        checkoutSessionId,
      }));
    }
    case "customer.subscription.created":
    case "customer.subscription.updated":
    case "customer.subscription.paused":
    case "customer.subscription.resumed":
    case "customer.subscription.deleted":
    case "customer.subscription.trial_will_end": {
      const type = event.type;
      const subscription = dataObject(event);
      if (subscription === null) return malformed(type, "object");
      // An expanded object is no subscription's own id: only the string is.
      if (typeof subscription.id !== "string") return malformed(type, "id");
      const state = stateOf(type, subscription);
      if (typeof state === "string") return ignored(state);
      const change = CHANGES[type];
      return command(subscription.customer, subscription.id, metadataClaim(subscription.metadata), (common): SubscriptionCommand => {
        if (type === "customer.subscription.deleted") return { ...common, kind: "subscription_deleted", state };
        if (type === "customer.subscription.trial_will_end") return { ...common, kind: "trial_will_end", state };
        return { ...common, kind: "subscription_changed", change: change ?? "updated", state };
      });
    }
    case "invoice.paid":
    case "invoice.payment_failed":
    case "invoice.payment_action_required": {
      const invoice = dataObject(event);
      if (invoice === null) return malformed(event.type, "object");
      const subscription = invoiceSubscription(invoice);
      if (subscription === null) return ignored("invoice belongs to no subscription");
      const invoiceId = stripeId(INVOICE_ID, invoice.id);
      if (invoiceId === null) return ignored(`invoice id ${shown(invoice.id)} is not an invoice id`);
      const kind = event.type === "invoice.paid" ? "invoice_paid" : event.type === "invoice.payment_failed" ? "invoice_payment_failed" : "invoice_action_required";
      const claim = metadataClaim(recordOf(recordOf(invoice.parent)?.subscription_details)?.metadata);
      // Only a notification's wording reads it: an unusable one is no reason to lose a payment event.
      const billingReason = textOf(invoice.billing_reason);
      return command(invoice.customer, subscription, claim, (common) => ({ ...common, kind, invoiceId, billingReason }));
    }
    default:
      return null;
  }
}

/** `customer` and `subscription` as the object gives them: an id, an expanded object, or anything else. */
function command(
  customer: unknown,
  subscription: unknown,
  uidClaim: string | null,
  build: (common: { customerId: string; subscriptionId: string; uidClaim: string | null }) => SubscriptionCommand,
): SubscriptionTranslation {
  if (customer === null || customer === undefined) return ignored("no customer on the object: it cannot belong to a user");
  const customerId = stripeId(CUSTOMER_ID, idOf(customer));
  if (customerId === null) return ignored(`customer ${shown(customer)} is not a Stripe customer id`);
  if (subscription === null || subscription === undefined) return ignored("no subscription on the object");
  const subscriptionId = stripeId(SUBSCRIPTION_ID, idOf(subscription));
  if (subscriptionId === null) return ignored(`subscription ${shown(subscription)} is not a Stripe subscription id`);
  return { kind: "command", command: build({ customerId, subscriptionId, uidClaim }) };
}

/** The state of a subscription object, or why it cannot be used. */
function stateOf(type: string, subscription: Json): SubscriptionState | string {
  const status = subscription.status;
  if (!isSubscriptionStatus(status)) return `unknown subscription status ${shown(status)}`;
  const items = recordOf(subscription.items)?.data;
  const item = Array.isArray(items) ? recordOf(items[0]) : null;
  const priceId = recordOf(item?.price)?.id;
  if (!isPriceId(priceId) || !isDocumentId(priceId)) return `subscription item price (items.data[0].price.id) ${shown(priceId ?? null)} is not a usable price id`;
  // Since API 2025-03-31 the period lives on the items; older versions put it on the subscription.
  const itemPeriodEnd = timeOf(item?.current_period_end);
  if (itemPeriodEnd === MALFORMED) return malformedReason(type, "items.data[0].current_period_end");
  const legacyPeriodEnd = timeOf(subscription.current_period_end);
  if (itemPeriodEnd === null && legacyPeriodEnd === MALFORMED) return malformedReason(type, "current_period_end");
  const created = timeOf(subscription.created);
  if (created === MALFORMED) return malformedReason(type, "created");
  const trialEnd = timeOf(subscription.trial_end);
  if (trialEnd === MALFORMED) return malformedReason(type, "trial_end");
  const cancelAtPeriodEnd = subscription.cancel_at_period_end ?? false;
  if (typeof cancelAtPeriodEnd !== "boolean") return malformedReason(type, "cancel_at_period_end");
  return {
    status,
    priceId,
    currentPeriodEnd: itemPeriodEnd ?? (legacyPeriodEnd === MALFORMED ? null : legacyPeriodEnd),
    cancelAtPeriodEnd,
    created: created ?? new Date(0),
    trialEnd,
  };
}

/** The 2025 shape (`parent.subscription_details.subscription`), else the older top-level `subscription`. */
export function invoiceSubscriptionId(invoice: Stripe.Invoice): string | null {
  const object = recordOf(invoice);
  const subscription = object === null ? null : invoiceSubscription(object);
  return stripeId(SUBSCRIPTION_ID, idOf(subscription));
}

/** The invoice's subscription as given (validated by `command`), or null when it names none. */
function invoiceSubscription(invoice: Json): unknown {
  const current = recordOf(recordOf(invoice.parent)?.subscription_details)?.subscription;
  if (current !== null && current !== undefined) return current;
  const legacy = invoice.subscription;
  return legacy === undefined ? null : legacy;
}

/** The event's `data.object`, or null when it is not an object (then nothing on it can be read). */
function dataObject(event: Stripe.Event): Json | null {
  return recordOf(recordOf(recordOf(event)?.data)?.object);
}

const MALFORMED = Symbol("malformed");

/** A Stripe time (Unix seconds): null when absent, MALFORMED when present but not one a document can hold. */
function timeOf(value: unknown): Date | null | typeof MALFORMED {
  if (value === null || value === undefined) return null;
  return typeof value === "number" && Number.isFinite(value) && value >= 0 && value <= MAX_TIMESTAMP_SECONDS ? new Date(value * 1000) : MALFORMED;
}

/** The uid our checkout wrote into the metadata (`firebaseUid`, as on the Stripe Customer), or a plain `uid`. */
function metadataClaim(metadata: unknown): string | null {
  const fields = recordOf(metadata);
  return fields === null ? null : claimOf(fields[CUSTOMER_UID_METADATA_KEY]) ?? claimOf(fields.uid);
}

/*
 * A claim names no document: it is only compared with the uid the customer maps to. So one that is not
 * a document id stays a claim, and ends as customer_mismatch (rejected, admin alert), not as no claim.
 */
const claimOf = nonEmpty;

function stripeId(pattern: RegExp, value: unknown): string | null {
  return isDocumentId(value) && pattern.test(value) ? value : null;
}

/** A value for a reason: JSON (which cannot throw on parsed JSON), "missing" for undefined, cut short. */
function shown(value: unknown): string {
  const text = value === undefined ? "missing" : JSON.stringify(value);
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}

function malformed(type: string, field: string): SubscriptionTranslation {
  return ignored(malformedReason(type, field));
}

function ignored(reason: string): SubscriptionTranslation {
  return { kind: "ignored", reason };
}
