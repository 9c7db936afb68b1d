import type { Firestore } from "firebase-admin/firestore";
import type Stripe from "stripe";
import { CUSTOMER_UID_METADATA_KEY, customerRef } from "../collections/customers";
import { stripeKeys } from "./ids";

/**
 * The user's Stripe customer: `customers/{uid}.stripeCustomerId`, created once. Shared by every
 * checkout (payments and subscriptions).
 *
 * Two calls racing for a new user both send the same Stripe idempotency key (from the uid) with the
 * same parameters, so Stripe creates one customer; the transaction then stores it only if no id is
 * stored yet, and every caller uses the stored one.
 */
export async function ensureStripeCustomer(db: Firestore, stripe: Stripe, uid: string, now: () => Date): Promise<string> {
  const ref = customerRef(db, uid);
  const existing = (await ref.get()).data()?.stripeCustomerId;
  if (existing !== undefined) return existing;

  // Only fields that never change for a uid: a retry must send Stripe the very same request.
  const created = await stripe.customers.create(
    { metadata: { [CUSTOMER_UID_METADATA_KEY]: uid } },
    { idempotencyKey: stripeKeys.customer(uid) },
  );
  return db.runTransaction(async (tx) => {
    const current = (await tx.get(ref)).data();
    if (current?.stripeCustomerId !== undefined) return current.stripeCustomerId;
    const at = now();
    if (current === undefined) tx.create(ref, { uid, stripeCustomerId: created.id, createdAt: at, updatedAt: at });
    else tx.update(ref, { stripeCustomerId: created.id, updatedAt: at });
    return created.id;
  });
}
