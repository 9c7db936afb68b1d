import type Stripe from "stripe";
import { CUSTOMER_UID_METADATA_KEY } from "../collections/customers";
import { isPriceId } from "../collections/plans";
import { isSubscriptionStatus } from "../collections/subscriptions";
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

export function translateSubscriptionEvent(event: Stripe.Event): SubscriptionTranslation | null {
  switch (event.type) {
    case "checkout.session.completed": {
      const session = event.data.object;
      // Payment-mode sessions are orders; setup-mode ones concern neither.
      if (session.mode !== "subscription") return null;
      if (!SESSION_ID.test(session.id)) return ignored(`checkout session id ${JSON.stringify(session.id)} is not a Checkout Session id`);
      return command(idOf(session.customer), idOf(session.subscription), claimOf(session.client_reference_id) ?? metadataClaim(session.metadata), (common) => ({
        ...common,
        kind: "checkout_completed",
        checkoutSessionId: session.id,
      }));
    }
    case "customer.subscription.created":
    case "customer.subscription.updated":
    case "customer.subscription.paused":
    case "customer.subscription.resumed":
    case "customer.subscription.deleted":
    case "customer.subscription.trial_will_end": {
      const subscription = event.data.object;
      const state = stateOf(subscription);
      if (typeof state === "string") return ignored(state);
      const change = CHANGES[event.type];
      return command(idOf(subscription.customer), subscription.id, metadataClaim(subscription.metadata), (common): SubscriptionCommand => {
        if (event.type === "customer.subscription.deleted") return { ...common, kind: "subscription_deleted", state };
        if (event.type === "customer.subscription.trial_will_end") return { ...common, kind: "trial_will_end", state };
        return { ...common, kind: "subscription_changed", change: change ?? "updated", state };
      });
    }
    case "invoice.paid":
    case "invoice.payment_failed":
    case "invoice.payment_action_required": {
      const invoice = event.data.object;
      const subscriptionId = invoiceSubscriptionId(invoice);
      if (subscriptionId === null) return ignored("invoice belongs to no subscription");
      if (typeof invoice.id !== "string" || !INVOICE_ID.test(invoice.id)) return ignored(`invoice id ${JSON.stringify(invoice.id)} is not an invoice id`);
      const invoiceId = invoice.id;
      const kind = event.type === "invoice.paid" ? "invoice_paid" : event.type === "invoice.payment_failed" ? "invoice_payment_failed" : "invoice_action_required";
      const claim = metadataClaim(invoice.parent?.subscription_details?.metadata);
      return command(idOf(invoice.customer), subscriptionId, claim, (common) => ({ ...common, kind, invoiceId, billingReason: invoice.billing_reason ?? null }));
    }
    default:
      return null;
  }
}

function command(
  customerId: string | null,
  subscriptionId: string | null,
  uidClaim: string | null,
  build: (common: { customerId: string; subscriptionId: string; uidClaim: string | null }) => SubscriptionCommand,
): SubscriptionTranslation {
  if (customerId === null) return ignored("no customer on the object: it cannot belong to a user");
  if (!CUSTOMER_ID.test(customerId)) return ignored(`customer ${JSON.stringify(customerId)} is not a Stripe customer id`);
  if (subscriptionId === null) return ignored("no subscription on the object");
  if (!SUBSCRIPTION_ID.test(subscriptionId)) return ignored(`subscription ${JSON.stringify(subscriptionId)} is not a Stripe subscription id`);
  return { kind: "command", command: build({ customerId, subscriptionId, uidClaim }) };
}

/** The state of a subscription object, or why it cannot be used. */
function stateOf(subscription: Stripe.Subscription): SubscriptionState | string {
  if (!isSubscriptionStatus(subscription.status)) return `unknown subscription status ${JSON.stringify(subscription.status)}`;
  const item = subscription.items?.data?.[0];
  const priceId = item?.price?.id;
  if (!isPriceId(priceId)) return `subscription item price ${JSON.stringify(priceId ?? null)} is not a usable price id`;
  // Since API 2025-03-31 the period lives on the items; older versions put it on the subscription.
  const legacy = subscription as unknown as { current_period_end?: unknown };
  const periodEnd = seconds(item?.current_period_end) ?? seconds(legacy.current_period_end);
  return {
    status: subscription.status,
    priceId,
    currentPeriodEnd: periodEnd,
    cancelAtPeriodEnd: subscription.cancel_at_period_end === true,
    created: seconds(subscription.created) ?? new Date(0),
    trialEnd: seconds(subscription.trial_end),
  };
}

/** The 2025 shape (`parent.subscription_details.subscription`), else the older top-level `subscription`. */
export function invoiceSubscriptionId(invoice: Stripe.Invoice): string | null {
  const legacy = invoice as unknown as { subscription?: string | { id: string } | null };
  return idOf(invoice.parent?.subscription_details?.subscription) ?? idOf(legacy.subscription);
}

function seconds(value: unknown): Date | null {
  return typeof value === "number" && Number.isFinite(value) ? new Date(value * 1000) : null;
}

/** The uid our checkout wrote into the metadata (`firebaseUid`, as on the Stripe Customer), or a plain `uid`. */
function metadataClaim(metadata: Stripe.Metadata | null | undefined): string | null {
  return claimOf(metadata?.[CUSTOMER_UID_METADATA_KEY]) ?? claimOf(metadata?.uid);
}

function claimOf(value: string | null | undefined): string | null {
  return typeof value === "string" && value.trim().length > 0 ? value.trim() : null;
}

function idOf(value: string | { id: string } | null | undefined): string | null {
  if (typeof value === "string") return claimOf(value);
  return value && typeof value.id === "string" ? claimOf(value.id) : null;
}

function ignored(reason: string): SubscriptionTranslation {
  return { kind: "ignored", reason };
}
