import type { Firestore } from "firebase-admin/firestore";
import type { CallableRequest } from "firebase-functions/v2/https";
import type Stripe from "stripe";
import { auditLog, type AuditEntry } from "../collections/auditLog";
import { ORDERS, orderRef, quantitiesBySku, type Order, type OrderLine } from "../collections/orders";
import { productFromData, productRef, type Product } from "../collections/products";
import { CheckoutError, signedInCallable, type ErrorLog } from "./errors";
import { checkoutOrderId, stripeKeys } from "./ids";
import { parseCheckoutInput, type CheckoutInput } from "./input";
import { priceOrder } from "./pricing";
import { takeCheckoutSlot } from "./rateLimit";
import { ensureStripeCustomer } from "./stripeCustomer";

/**
 * `createCheckout` (SPEC 7): the client names SKUs and quantities, the server prices them, creates
 * the order once and the Stripe payment once, and answers how to pay it.
 *
 * Steps, each safe to repeat:
 *  1. validate the input; derive the order id from (uid, idempotencyKey);
 *  2. order exists → it must be the same request (else failed-precondition), go to 4;
 *  3. price from the products, then ONE transaction: rate limit + create the order `pending`
 *     (the reservation trigger takes it from there, whatever the stock);
 *  4. the user's Stripe customer (created once), the PaymentIntent or Session (created with a Stripe
 *     idempotency key from the order id, from the order's own figures), its id stored on the order,
 *     the answer. A crash or a Stripe outage anywhere in 4 is completed by the next call with the key.
 */

export interface CheckoutConfig {
  rateLimitPerMinute: number;
  allowedOrigins: readonly string[];
}

export interface CheckoutDeps {
  db: Firestore;
  /** Built on first use: the secret key is only read at run time. */
  stripe: () => Stripe;
  now: () => Date;
  config: () => CheckoutConfig;
  log: ErrorLog;
}

interface AnswerBase {
  orderId: string;
  amount: number;
  currency: string;
}
export type CheckoutAnswer =
  | (AnswerBase & { paymentIntentId: string; clientSecret: string })
  | (AnswerBase & { checkoutSessionId: string; url: string | null });

/** The callable: Firebase Auth required; every error leaves through the one mapping in errors.ts. */
export async function createCheckoutCallable(deps: CheckoutDeps, request: Pick<CallableRequest<unknown>, "auth" | "data">): Promise<CheckoutAnswer> {
  return signedInCallable(request, deps.log, "checkout", (uid) => createCheckout(deps, uid, request.data));
}

export async function createCheckout(deps: CheckoutDeps, uid: string, data: unknown): Promise<CheckoutAnswer> {
  const config = deps.config();
  const input = parseCheckoutInput(data, config.allowedOrigins);
  const orderId = checkoutOrderId(uid, input.idempotencyKey);
  const existing = (await orderRef(deps.db, orderId).get()).data();
  if (existing !== undefined) assertSameRequest(existing, uid, input);
  const order = existing ?? (await createPendingOrder(deps, config, uid, orderId, input));
  return completePayment(deps, order);
}

async function readProducts(db: Firestore, items: readonly OrderLine[]): Promise<Map<string, Product | undefined>> {
  const skus = [...quantitiesBySku(items).keys()];
  const snapshots = await db.getAll(...skus.map((sku) => productRef(db, sku)));
  return new Map(snapshots.map((s) => {
    const data = s.data();
    return [s.id, data === undefined ? undefined : productFromData(s.id, data)];
  }));
}

async function createPendingOrder(deps: CheckoutDeps, config: CheckoutConfig, uid: string, orderId: string, input: CheckoutInput): Promise<Order> {
  const { db } = deps;
  // Read outside the transaction: prices are operator-owned and rarely change, and reading a hot
  // product inside it would contend with every reservation of that product.
  const priced = priceOrder(input.items, await readProducts(db, input.items));
  const ref = orderRef(db, orderId);
  return db.runTransaction(async (tx) => {
    // A concurrent first call with the same key may have created it since.
    const raced = (await tx.get(ref)).data();
    if (raced !== undefined) {
      assertSameRequest(raced, uid, input);
      return raced;
    }
    const now = deps.now();
    await takeCheckoutSlot(tx, db, uid, now, config.rateLimitPerMinute);
    const order: Order = {
      id: orderId,
      userId: uid,
      items: input.items,
      amount: priced.amount,
      currency: priced.currency,
      status: "pending",
      createdAt: now,
      checkout: {
        idempotencyKey: input.idempotencyKey,
        ui: input.ui,
        lines: priced.lines,
        ...(input.successUrl !== undefined ? { successUrl: input.successUrl } : {}),
        ...(input.cancelUrl !== undefined ? { cancelUrl: input.cancelUrl } : {}),
      },
    };
    tx.create(ref, order);
    const audit: AuditEntry = {
      eventId: null,
      eventType: null,
      orderId,
      action: "create_checkout",
      result: "pending",
      reason: `${input.ui} for ${priced.amount} ${priced.currency}`,
      before: null,
      after: "pending",
      at: now,
    };
    tx.set(auditLog(db).doc(), audit);
    return order;
  });
}

/** Same key → same request: the same lines (per SKU) and the same ui and return URLs. */
function assertSameRequest(order: Order, uid: string, input: CheckoutInput): void {
  const same =
    order.userId === uid &&
    order.checkout !== undefined &&
    sameQuantities(order.items, input.items) &&
    order.checkout.ui === input.ui &&
    order.checkout.successUrl === input.successUrl &&
    order.checkout.cancelUrl === input.cancelUrl;
  if (!same) {
    throw new CheckoutError("key_reused", "This idempotencyKey was already used for another checkout: use a new key for a new purchase.", {
      reason: "key_reused",
      orderId: order.id,
    });
  }
}

function sameQuantities(a: readonly OrderLine[], b: readonly OrderLine[]): boolean {
  const qa = quantitiesBySku(a);
  const qb = quantitiesBySku(b);
  return qa.size === qb.size && [...qa].every(([sku, qty]) => qb.get(sku) === qty);
}

function checkoutOf(order: Order) {
  if (order.checkout === undefined) throw new Error(`orders/${order.id} has no checkout fields`);
  return order.checkout;
}

async function completePayment(deps: CheckoutDeps, order: Order): Promise<CheckoutAnswer> {
  const base: AnswerBase = { orderId: order.id, amount: order.amount, currency: order.currency };
  const checkout = checkoutOf(order);
  const stripe = deps.stripe();
  const metadata = { orderId: order.id, userId: order.userId };

  if (checkout.ui === "payment_intent") {
    if (order.paymentIntentId !== undefined) return piAnswer(base, await stripe.paymentIntents.retrieve(order.paymentIntentId));
    const customer = await ensureStripeCustomer(deps.db, stripe, order.userId, deps.now);
    // Every parameter comes from the stored order: a retry sends the same request, so Stripe's
    // idempotency key returns the first PaymentIntent instead of making a second one.
    const created = await stripe.paymentIntents.create(
      { amount: order.amount, currency: order.currency, customer, metadata, description: `Order ${order.id}` },
      { idempotencyKey: stripeKeys.paymentIntent(order.id) },
    );
    const stored = await storeStripeId(deps, order.id, "paymentIntentId", created.id);
    if (stored === created.id) return piAnswer(base, created);
    return piAnswer(base, await answerWithStored(deps, stripe, order.id, created.id, stored));
  }

  if (order.checkoutSessionId !== undefined) return sessionAnswer(base, await stripe.checkout.sessions.retrieve(order.checkoutSessionId));
  const customer = await ensureStripeCustomer(deps.db, stripe, order.userId, deps.now);
  const created = await stripe.checkout.sessions.create(
    {
      mode: "payment",
      customer,
      client_reference_id: order.id,
      metadata,
      payment_intent_data: { metadata },
      line_items: checkout.lines.map((line) => ({
        quantity: line.qty,
        price_data: { currency: order.currency, unit_amount: line.unitAmount, product_data: { name: line.name, metadata: { sku: line.sku } } },
      })),
      success_url: checkout.successUrl,
      cancel_url: checkout.cancelUrl,
    },
    { idempotencyKey: stripeKeys.checkoutSession(order.id) },
  );
  const stored = await storeStripeId(deps, order.id, "checkoutSessionId", created.id);
  if (stored === created.id) return sessionAnswer(base, created);
  return sessionAnswer(base, await stripe.checkout.sessions.retrieve(stored));
}

/**
 * Another PaymentIntent is already stored (Stripe forgets idempotency keys after 24 hours, so a retry
 * a day later creates a new one): the stored one stays the order's payment, the new one is canceled
 * so that no second payment can be taken.
 */
async function answerWithStored(deps: CheckoutDeps, stripe: Stripe, orderId: string, createdId: string, storedId: string): Promise<Stripe.PaymentIntent> {
  deps.log("A second PaymentIntent was created for an order that already stores one; canceling it", { orderId, createdId, storedId });
  await stripe.paymentIntents.cancel(createdId, { cancellation_reason: "duplicate" });
  return stripe.paymentIntents.retrieve(storedId);
}

/** Stores the Stripe object's id on the order unless one is already there; returns the stored id. */
async function storeStripeId(deps: CheckoutDeps, orderId: string, field: "paymentIntentId" | "checkoutSessionId", id: string): Promise<string> {
  const ref = deps.db.collection(ORDERS).doc(orderId);
  return deps.db.runTransaction(async (tx) => {
    const current: unknown = (await tx.get(ref)).get(field);
    if (typeof current === "string" && current.length > 0) return current;
    tx.update(ref, { [field]: id, updatedAt: deps.now() });
    return id;
  });
}

function piAnswer(base: AnswerBase, pi: Stripe.PaymentIntent): CheckoutAnswer {
  if (pi.client_secret === null) throw new Error(`PaymentIntent ${pi.id} came back without a client_secret`);
  return { ...base, paymentIntentId: pi.id, clientSecret: pi.client_secret };
}

function sessionAnswer(base: AnswerBase, session: Stripe.Checkout.Session): CheckoutAnswer {
  return { ...base, checkoutSessionId: session.id, url: session.url };
}
