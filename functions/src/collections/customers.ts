import type { DocumentReference, Firestore, FirestoreDataConverter, QueryDocumentSnapshot } from "firebase-admin/firestore";
import { toOptionalDate, withoutUndefined } from "./firestoreValues";

export const CUSTOMERS = "customers";
/** `customers/{uid}/subscriptions/{subscriptionId}`: owned by the subscriptions module. */
export const CUSTOMER_SUBSCRIPTIONS = "subscriptions";
/** The metadata key on the Stripe Customer that names the Firebase uid it was created for. */
export const CUSTOMER_UID_METADATA_KEY = "firebaseUid";

/** What the user's current subscription grants; every field null when there is none. */
export interface Entitlement {
  role: string | null;
  subscriptionId: string | null;
  /** Stripe's subscription status. */
  status: string | null;
  graceUntil: Date | null;
}

/**
 * `customers/{uid}`: backend-only, read by its user. `stripeCustomerId` is the one mapping from a Stripe
 * customer to a user: written once by checkout (or an operator / a migration), never changed after.
 */
export interface Customer {
  uid: string;
  stripeCustomerId?: string;
  entitlement?: Entitlement;
  createdAt?: Date;
  updatedAt?: Date;
}

function optionalString(value: unknown): string | undefined {
  return typeof value === "string" && value.length > 0 ? value : undefined;
}

function nullableString(value: unknown): string | null {
  return typeof value === "string" && value.length > 0 ? value : null;
}

function toEntitlement(value: unknown): Entitlement | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const e = value as Record<string, unknown>;
  return {
    role: nullableString(e.role),
    subscriptionId: nullableString(e.subscriptionId),
    status: nullableString(e.status),
    graceUntil: toOptionalDate(e.graceUntil) ?? null,
  };
}

export function customerFromData(uid: string, data: Record<string, unknown>): Customer {
  return withoutUndefined({
    uid,
    stripeCustomerId: optionalString(data.stripeCustomerId),
    entitlement: toEntitlement(data.entitlement),
    createdAt: toOptionalDate(data.createdAt),
    updatedAt: toOptionalDate(data.updatedAt),
  }) as Customer;
}

export const customerConverter: FirestoreDataConverter<Customer> = {
  toFirestore(customer) {
    const { uid: _uid, ...data } = customer as Customer;
    return withoutUndefined(data);
  },
  fromFirestore(snapshot: QueryDocumentSnapshot): Customer {
    return customerFromData(snapshot.id, snapshot.data());
  },
};

export function customerRef(db: Firestore, uid: string): DocumentReference<Customer> {
  return db.collection(CUSTOMERS).doc(uid).withConverter(customerConverter);
}
