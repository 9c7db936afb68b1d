import type { DocumentReference, Firestore, FirestoreDataConverter, QueryDocumentSnapshot } from "firebase-admin/firestore";
import { toCount, withoutUndefined } from "./firestoreValues";
import { ORDERS, orderConverter, orderFromData, type Order, type OrderLine } from "./orders";

/**
 * The checkout's own fields on `orders/{orderId}`, kept in one `checkout` map beside the fields of
 * orders.ts (which the webhook owns and which never change after creation). Written once, when
 * `createCheckout` creates the order; nothing updates them.
 */

export const CHECKOUT_UIS = ["payment_intent", "checkout_session"] as const;
export type CheckoutUi = (typeof CHECKOUT_UIS)[number];

/** A line as it was priced when the order was created: a retry sends Stripe exactly these figures again. */
export interface PricedLine extends OrderLine {
  /** Integer minor units, from `products/{sku}.price` at creation. */
  unitAmount: number;
  name: string;
}

export interface CheckoutFields {
  idempotencyKey: string;
  ui: CheckoutUi;
  lines: PricedLine[];
  successUrl?: string;
  cancelUrl?: string;
}

export interface CheckoutOrder extends Order {
  /** Absent on orders that did not come from `createCheckout` (seeded, or created before it existed). */
  checkout?: CheckoutFields;
}

function toPricedLines(value: unknown): PricedLine[] {
  if (!Array.isArray(value)) return [];
  return value.map((line: unknown) => {
    const l = (typeof line === "object" && line !== null ? line : {}) as Record<string, unknown>;
    return { sku: String(l.sku ?? ""), qty: toCount(l.qty), unitAmount: toCount(l.unitAmount), name: String(l.name ?? l.sku ?? "") };
  });
}

function toCheckout(value: unknown): CheckoutFields | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const c = value as Record<string, unknown>;
  const ui = (CHECKOUT_UIS as readonly unknown[]).includes(c.ui) ? (c.ui as CheckoutUi) : "payment_intent";
  return withoutUndefined({
    idempotencyKey: String(c.idempotencyKey ?? ""),
    ui,
    lines: toPricedLines(c.lines),
    successUrl: typeof c.successUrl === "string" ? c.successUrl : undefined,
    cancelUrl: typeof c.cancelUrl === "string" ? c.cancelUrl : undefined,
  }) as CheckoutFields;
}

export function checkoutOrderFromData(id: string, data: Record<string, unknown>): CheckoutOrder {
  const checkout = toCheckout(data.checkout);
  return { ...orderFromData(id, data), ...(checkout ? { checkout } : {}) };
}

export const checkoutOrderConverter: FirestoreDataConverter<CheckoutOrder> = {
  toFirestore(order) {
    const { checkout, ...rest } = order as CheckoutOrder;
    return { ...orderConverter.toFirestore(rest), ...(checkout ? { checkout: withoutUndefined(checkout) } : {}) };
  },
  fromFirestore(snapshot: QueryDocumentSnapshot): CheckoutOrder {
    return checkoutOrderFromData(snapshot.id, snapshot.data());
  },
};

export function checkoutOrderRef(db: Firestore, orderId: string): DocumentReference<CheckoutOrder> {
  return db.collection(ORDERS).doc(orderId).withConverter(checkoutOrderConverter);
}
