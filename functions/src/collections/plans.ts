import type { DocumentReference, Firestore, FirestoreDataConverter, QueryDocumentSnapshot } from "firebase-admin/firestore";

export const PLANS = "plans";

/**
 * `plans/{priceId}`: operator-owned. Which Stripe prices may be sold and the role each grants. The
 * role of a subscription always comes from here, never from the event.
 */
export interface Plan {
  priceId: string;
  /** The value the `stripeRole` custom claim takes while a subscription to this price grants access. */
  role: string;
  /** New checkouts only: existing subscribers keep the role of an inactive plan. Absent means true. */
  active: boolean;
}

/** Same rule as Stripe price ids (and legacy plan ids): it names a document, so no "/" and no dot-only ids. */
export function isPriceId(value: unknown): value is string {
  return typeof value === "string" && /^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$/.test(value);
}

/** A plan from its stored fields, or null when the document cannot grant anything (no usable role). */
export function planFromData(priceId: string, data: Record<string, unknown> | undefined): Plan | null {
  if (data === undefined) return null;
  const role = typeof data.role === "string" ? data.role.trim() : "";
  if (role.length === 0) return null;
  return { priceId, role, active: data.active !== false };
}

export const planConverter: FirestoreDataConverter<Plan | null> = {
  toFirestore(plan) {
    const { priceId: _priceId, ...data } = plan as Plan;
    return data;
  },
  fromFirestore(snapshot: QueryDocumentSnapshot): Plan | null {
    return planFromData(snapshot.id, snapshot.data());
  },
};

export function planRef(db: Firestore, priceId: string): DocumentReference<Plan | null> {
  return db.collection(PLANS).doc(priceId).withConverter(planConverter);
}
