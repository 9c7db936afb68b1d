import type { SubscriptionStatus } from "../collections/subscriptions";

/**
 * The project's own vocabulary for subscription events. Stripe objects are translated into these at
 * the edge (subscriptions/translate.ts); nothing below that edge sees a Stripe type. Every id here has
 * been validated: it may name a document.
 */

/** The state a subscription object carries (the `customer.subscription.*` events). */
export interface SubscriptionState {
  status: SubscriptionStatus;
  /** `items.data[0].price.id`. */
  priceId: string;
  currentPeriodEnd: Date | null;
  cancelAtPeriodEnd: boolean;
  /** The subscription's own `created`: newest wins when choosing the user's current subscription. */
  created: Date;
  trialEnd: Date | null;
}

interface Common {
  /** The Stripe customer: the only thing that decides which user this is. */
  customerId: string;
  subscriptionId: string;
  /** A uid the event claims (`client_reference_id`, `metadata.uid`): checked, never trusted. */
  uidClaim: string | null;
}

export type SubscriptionChange = "created" | "updated" | "paused" | "resumed";

export type SubscriptionCommand =
  /** `checkout.session.completed` in subscription mode: links the subscription, names no price. */
  | (Common & { kind: "checkout_completed"; checkoutSessionId: string })
  | (Common & { kind: "subscription_changed"; change: SubscriptionChange; state: SubscriptionState })
  | (Common & { kind: "subscription_deleted"; state: SubscriptionState })
  | (Common & { kind: "trial_will_end"; state: SubscriptionState })
  | (Common & { kind: "invoice_paid"; invoiceId: string; billingReason: string | null })
  | (Common & { kind: "invoice_payment_failed"; invoiceId: string; billingReason: string | null })
  | (Common & { kind: "invoice_action_required"; invoiceId: string; billingReason: string | null });

export type SubscriptionCommandKind = SubscriptionCommand["kind"];

export const SUBSCRIPTION_COMMAND_KINDS: readonly SubscriptionCommandKind[] = [
  "checkout_completed",
  "subscription_changed",
  "subscription_deleted",
  "trial_will_end",
  "invoice_paid",
  "invoice_payment_failed",
  "invoice_action_required",
];

/** A subscription event's meaning, or why it concerns no subscription of this backend. */
export type SubscriptionTranslation = { kind: "command"; command: SubscriptionCommand } | { kind: "ignored"; reason: string };
