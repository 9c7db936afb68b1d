import type { DocumentReference, Firestore, FirestoreDataConverter, QueryDocumentSnapshot } from "firebase-admin/firestore";
import { CUSTOMERS } from "./customers";
import { toDate } from "./firestoreValues";

export const SUBSCRIPTION_CHECKOUTS = "subscriptionCheckouts";

/**
 * `customers/{uid}/subscriptionCheckouts/{id}`: backend-only (rules deny it). One per (uid,
 * idempotencyKey) of `createSubscriptionCheckout`: the same call again answers the same Session, the
 * same key with another request is refused, and only a new one counts against the rate limit.
 */
export interface SubscriptionCheckout {
  id: string;
  uid: string;
  idempotencyKey: string;
  priceId: string;
  successUrl: string;
  cancelUrl: string;
  createdAt: Date;
  /** Stored once the Session exists; a retry before that creates it with the same Stripe idempotency key. */
  checkoutSessionId: string | null;
}

export function subscriptionCheckoutFromData(id: string, data: Record<string, unknown>): SubscriptionCheckout {
  const text = (v: unknown) => (typeof v === "string" ? v : "");
  return {
    id,
    uid: text(data.uid),
    idempotencyKey: text(data.idempotencyKey),
    priceId: text(data.priceId),
    successUrl: text(data.successUrl),
    cancelUrl: text(data.cancelUrl),
    createdAt: toDate(data.createdAt),
    checkoutSessionId: typeof data.checkoutSessionId === "string" && data.checkoutSessionId.length > 0 ? data.checkoutSessionId : null,
  };
}

export const subscriptionCheckoutConverter: FirestoreDataConverter<SubscriptionCheckout> = {
  toFirestore(checkout) {
    const { id: _id, ...data } = checkout as SubscriptionCheckout;
    return data;
  },
  fromFirestore(snapshot: QueryDocumentSnapshot): SubscriptionCheckout {
    return subscriptionCheckoutFromData(snapshot.id, snapshot.data());
  },
};

export function subscriptionCheckoutRef(db: Firestore, uid: string, id: string): DocumentReference<SubscriptionCheckout> {
  return db.collection(CUSTOMERS).doc(uid).collection(SUBSCRIPTION_CHECKOUTS).doc(id).withConverter(subscriptionCheckoutConverter);
}
