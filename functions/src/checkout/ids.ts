import { createHash } from "node:crypto";

/**
 * Deterministic names for the idempotency layers. Each is a function of what identifies the purchase,
 * never of time or randomness, so any retry — by the client, by this function, after a crash — names
 * the same order and sends Stripe the same key.
 */

function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/**
 * The order a (user, idempotency key) pair names. Hashed so that a key can never name another user's
 * order, and the id reveals neither. JSON keeps the pair unambiguous whatever the uid holds.
 */
export function checkoutOrderId(uid: string, idempotencyKey: string): string {
  return `co_${sha256Hex(JSON.stringify(["checkout", uid, idempotencyKey]))}`;
}

/**
 * Stripe idempotency keys (at most 255 characters). Only creates carry one: canceling a PaymentIntent
 * or expiring a Session is idempotent by itself, and a key there would replay a stored 5xx forever.
 */
export const stripeKeys = {
  customer: (uid: string) => `customer-${sha256Hex(JSON.stringify(["customer", uid]))}`,
  paymentIntent: (orderId: string) => `checkout-pi-${orderId}`,
  checkoutSession: (orderId: string) => `checkout-cs-${orderId}`,
};
