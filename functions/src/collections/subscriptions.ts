import type { CollectionReference, DocumentReference, Firestore, FirestoreDataConverter, QueryDocumentSnapshot } from "firebase-admin/firestore";
import { CUSTOMER_SUBSCRIPTIONS, CUSTOMERS } from "./customers";
import { toCount, toDate } from "./firestoreValues";

/** Stripe's subscription statuses, as stored. */
export const SUBSCRIPTION_STATUSES = ["incomplete", "incomplete_expired", "trialing", "active", "past_due", "canceled", "unpaid", "paused"] as const;
export type SubscriptionStatus = (typeof SUBSCRIPTION_STATUSES)[number];

/** Statuses a subscription never leaves. */
export const TERMINAL_STATUSES: readonly SubscriptionStatus[] = ["canceled", "incomplete_expired"];

export function isSubscriptionStatus(value: unknown): value is SubscriptionStatus {
  return typeof value === "string" && (SUBSCRIPTION_STATUSES as readonly string[]).includes(value);
}

export function isTerminal(status: SubscriptionStatus | null): boolean {
  return status !== null && TERMINAL_STATUSES.includes(status);
}

/** What this backend remembers of one invoice of the subscription: enough for "once per invoice". */
export interface InvoiceRecord {
  /** Event time of the invoice's first `invoice.payment_failed`: grace runs from here. */
  firstFailedAt: Date | null;
  failures: number;
  /** Event time of its `invoice.paid`: a failure delivered after it is stale. */
  paidAt: Date | null;
}

/**
 * `customers/{uid}/subscriptions/{subscriptionId}`: backend-only. `status` and `priceId` are null on a
 * subscription linked to the user by an event that carried no subscription object yet (a Checkout Session
 * or an invoice that arrived first); such a subscription is never the user's current one.
 */
export interface Subscription {
  id: string;
  status: SubscriptionStatus | null;
  priceId: string | null;
  /** The role of `plans/{priceId}` when the price was last applied (the entitlement reads the plan again). */
  role: string | null;
  currentPeriodEnd: Date | null;
  cancelAtPeriodEnd: boolean;
  graceUntil: Date | null;
  /** Watermark: `created` of the newest event whose state was applied; older events are stale. */
  lastEventCreated: Date | null;
  updatedAt: Date;
  /** Stripe's `created` of the subscription: "newest" when choosing the user's current subscription. */
  stripeCreated: Date | null;
  checkoutSessionId: string | null;
  /** Set once, when the subscription first granted its role: the one activation. */
  activatedAt: Date | null;
  /** Per invoice id, only invoices that failed or were paid; the most recent few are kept. */
  invoices: Record<string, InvoiceRecord>;
}

function optionalDate(value: unknown): Date | null {
  return value === undefined || value === null ? null : toDate(value);
}

function optionalString(value: unknown): string | null {
  return typeof value === "string" && value.length > 0 ? value : null;
}

function toInvoices(value: unknown): Record<string, InvoiceRecord> {
  if (typeof value !== "object" || value === null) return {};
  const out: Record<string, InvoiceRecord> = {};
  for (const [id, raw] of Object.entries(value as Record<string, unknown>)) {
    const r = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
    out[id] = { firstFailedAt: optionalDate(r.firstFailedAt), failures: toCount(r.failures), paidAt: optionalDate(r.paidAt) };
  }
  return out;
}

export function subscriptionFromData(id: string, data: Record<string, unknown>): Subscription {
  return {
    id,
    status: isSubscriptionStatus(data.status) ? data.status : null,
    priceId: optionalString(data.priceId),
    role: optionalString(data.role),
    currentPeriodEnd: optionalDate(data.currentPeriodEnd),
    cancelAtPeriodEnd: data.cancelAtPeriodEnd === true,
    graceUntil: optionalDate(data.graceUntil),
    lastEventCreated: optionalDate(data.lastEventCreated),
    updatedAt: optionalDate(data.updatedAt) ?? new Date(0),
    stripeCreated: optionalDate(data.stripeCreated),
    checkoutSessionId: optionalString(data.checkoutSessionId),
    activatedAt: optionalDate(data.activatedAt),
    invoices: toInvoices(data.invoices),
  };
}

/** Every field is written (nulls included): the document is always the whole decided state. */
export const subscriptionConverter: FirestoreDataConverter<Subscription> = {
  toFirestore(subscription) {
    const { id: _id, ...data } = subscription as Subscription;
    return data;
  },
  fromFirestore(snapshot: QueryDocumentSnapshot): Subscription {
    return subscriptionFromData(snapshot.id, snapshot.data());
  },
};

export function subscriptionsOf(db: Firestore, uid: string): CollectionReference<Subscription> {
  return db.collection(CUSTOMERS).doc(uid).collection(CUSTOMER_SUBSCRIPTIONS).withConverter(subscriptionConverter);
}

export function subscriptionRef(db: Firestore, uid: string, subscriptionId: string): DocumentReference<Subscription> {
  return subscriptionsOf(db, uid).doc(subscriptionId);
}
