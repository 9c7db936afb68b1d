import { createHash } from "node:crypto";
import type { Firestore } from "firebase-admin/firestore";
import type { CallableRequest } from "firebase-functions/v2/https";
import type Stripe from "stripe";
import { auditLog, type AuditEntry } from "../collections/auditLog";
import { CUSTOMER_UID_METADATA_KEY, customerRef } from "../collections/customers";
import { isPriceId, planRef } from "../collections/plans";
import { subscriptionCheckoutRef, type SubscriptionCheckout } from "../collections/subscriptionCheckouts";
import type { CheckoutDeps } from "../checkout/createCheckout";
import { CheckoutError, invalidInput, signedInCallable } from "../checkout/errors";
import { parseIdempotencyKey, parseReturnUrl } from "../checkout/input";
import { takeCheckoutSlot } from "../checkout/rateLimit";
import { ensureStripeCustomer } from "../checkout/stripeCustomer";
import { readUser } from "./apply";
import { entitlementOf } from "./machine";

/**
 * `createSubscriptionCheckout` and `createBillingPortalSession` (SPEC 8). Same deps, idempotency,
 * rate limit and error mapping as `createCheckout`: the checkout module's pieces, reused.
 */

export type SubscriptionCallableDeps = CheckoutDeps;

type Request = Pick<CallableRequest<unknown>, "auth" | "data">;

export interface SubscriptionCheckoutAnswer {
  checkoutSessionId: string;
  url: string | null;
  priceId: string;
}

interface SubscriptionCheckoutInput {
  priceId: string;
  idempotencyKey: string;
  successUrl: string;
  cancelUrl: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function onlyKeys(data: Record<string, unknown>, allowed: readonly string[], shape: string): void {
  const extra = Object.keys(data).filter((k) => !allowed.includes(k));
  if (extra.length > 0) throw invalidInput("unknown_field", `Unknown fields ${extra.join(", ")}: send ${shape}.`);
}

export function parseSubscriptionCheckoutInput(data: unknown, allowedOrigins: readonly string[]): SubscriptionCheckoutInput {
  const shape = "{priceId, idempotencyKey, successUrl, cancelUrl}";
  if (!isRecord(data)) throw invalidInput("bad_request", `Send ${shape}.`);
  onlyKeys(data, ["priceId", "idempotencyKey", "successUrl", "cancelUrl"], shape);
  if (!isPriceId(data.priceId)) throw invalidInput("bad_price", "priceId must be the id of a Stripe price (price_…).", { field: "priceId" });
  return {
    priceId: data.priceId,
    idempotencyKey: parseIdempotencyKey(data.idempotencyKey),
    successUrl: parseReturnUrl(data.successUrl, "successUrl", allowedOrigins),
    cancelUrl: parseReturnUrl(data.cancelUrl, "cancelUrl", allowedOrigins),
  };
}

/** The record a (uid, idempotencyKey) pair names; hashed, as the checkout's order ids are. */
export function subscriptionCheckoutId(uid: string, idempotencyKey: string): string {
  return `sc_${createHash("sha256").update(JSON.stringify(["subscription_checkout", uid, idempotencyKey]), "utf8").digest("hex")}`;
}

export async function createSubscriptionCheckoutCallable(deps: SubscriptionCallableDeps, request: Request): Promise<SubscriptionCheckoutAnswer> {
  return signedInCallable(request, deps.log, "a subscription", (uid) => createSubscriptionCheckout(deps, uid, request.data));
}

/**
 * Steps, each safe to repeat: validate; the record of (uid, key) exists → same request or
 * failed-precondition; else an active plan, no current subscription granting a role, the rate limit
 * and the record in ONE transaction; then the Session (Stripe idempotency key from the record), its id
 * stored, the answer.
 */
export async function createSubscriptionCheckout(deps: SubscriptionCallableDeps, uid: string, data: unknown): Promise<SubscriptionCheckoutAnswer> {
  const config = deps.config();
  const input = parseSubscriptionCheckoutInput(data, config.allowedOrigins);
  const ref = subscriptionCheckoutRef(deps.db, uid, subscriptionCheckoutId(uid, input.idempotencyKey));
  const existing = (await ref.get()).data();
  if (existing !== undefined) assertSameRequest(existing, input);
  const record = existing ?? (await createRecord(deps, config.rateLimitPerMinute, uid, ref.id, input));
  return completeSession(deps, record);
}

async function createRecord(deps: SubscriptionCallableDeps, rateLimitPerMinute: number, uid: string, id: string, input: SubscriptionCheckoutInput): Promise<SubscriptionCheckout> {
  const { db } = deps;
  const plan = (await planRef(db, input.priceId).get()).data();
  if (!plan || !plan.active) throw invalidInput("unknown_plan", `${input.priceId} is not a plan for sale (plans/${input.priceId} missing or inactive).`, { field: "priceId" });
  const ref = subscriptionCheckoutRef(db, uid, id);
  return db.runTransaction(async (tx) => {
    const raced = (await tx.get(ref)).data();
    if (raced !== undefined) {
      assertSameRequest(raced, input);
      return raced;
    }
    const now = deps.now();
    const { subscriptions, plans } = await readUser(tx, db, uid, null);
    const entitlement = entitlementOf(subscriptions.values(), plans, now);
    if (entitlement.role !== null) {
      throw new CheckoutError("not_allowed_now", `You already have a subscription (${entitlement.subscriptionId}) granting ${entitlement.role}: change it in the billing portal.`, {
        reason: "already_subscribed",
        subscriptionId: entitlement.subscriptionId,
      });
    }
    await takeCheckoutSlot(tx, db, uid, now, rateLimitPerMinute);
    const record: SubscriptionCheckout = { id, uid, ...input, createdAt: now, checkoutSessionId: null };
    tx.create(ref, record);
    const audit: AuditEntry = {
      eventId: null,
      eventType: null,
      orderId: null,
      action: "create_subscription_checkout",
      result: "created",
      reason: `uid ${uid}, plan ${input.priceId} (${plan.role})`,
      before: null,
      after: null,
      at: now,
    };
    tx.set(auditLog(db).doc(), audit);
    return record;
  });
}

function assertSameRequest(record: SubscriptionCheckout, input: SubscriptionCheckoutInput): void {
  if (record.priceId !== input.priceId || record.successUrl !== input.successUrl || record.cancelUrl !== input.cancelUrl) {
    throw new CheckoutError("key_reused", "This idempotencyKey was already used for another subscription checkout: use a new key.", { reason: "key_reused" });
  }
}

async function completeSession(deps: SubscriptionCallableDeps, record: SubscriptionCheckout): Promise<SubscriptionCheckoutAnswer> {
  const stripe = deps.stripe();
  if (record.checkoutSessionId !== null) return answer(record, await stripe.checkout.sessions.retrieve(record.checkoutSessionId));
  const customer = await ensureStripeCustomer(deps.db, stripe, record.uid, deps.now);
  const metadata = { [CUSTOMER_UID_METADATA_KEY]: record.uid };
  // Every parameter comes from the stored record: a retry sends the same request and gets the same Session.
  const created = await stripe.checkout.sessions.create(
    {
      mode: "subscription",
      customer,
      client_reference_id: record.uid,
      line_items: [{ price: record.priceId, quantity: 1 }],
      metadata,
      subscription_data: { metadata },
      success_url: record.successUrl,
      cancel_url: record.cancelUrl,
    },
    { idempotencyKey: `subscription-cs-${record.id}` },
  );
  const stored = await storeSessionId(deps.db, record, created.id);
  return answer(record, stored === created.id ? created : await stripe.checkout.sessions.retrieve(stored));
}

async function storeSessionId(db: Firestore, record: SubscriptionCheckout, sessionId: string): Promise<string> {
  const ref = subscriptionCheckoutRef(db, record.uid, record.id);
  return db.runTransaction(async (tx) => {
    const current = (await tx.get(ref)).data();
    if (current?.checkoutSessionId) return current.checkoutSessionId;
    tx.update(ref, { checkoutSessionId: sessionId });
    return sessionId;
  });
}

function answer(record: SubscriptionCheckout, session: Stripe.Checkout.Session): SubscriptionCheckoutAnswer {
  return { checkoutSessionId: session.id, url: session.url, priceId: record.priceId };
}

export async function createBillingPortalSessionCallable(deps: SubscriptionCallableDeps, request: Request): Promise<{ url: string }> {
  return signedInCallable(request, deps.log, "the billing portal", (uid) => createBillingPortalSession(deps, uid, request.data));
}

export async function createBillingPortalSession(deps: SubscriptionCallableDeps, uid: string, data: unknown): Promise<{ url: string }> {
  if (!isRecord(data)) throw invalidInput("bad_request", "Send {returnUrl}.");
  onlyKeys(data, ["returnUrl"], "{returnUrl}");
  const returnUrl = parseReturnUrl(data.returnUrl, "returnUrl", deps.config().allowedOrigins);
  const stripeCustomerId = (await customerRef(deps.db, uid).get()).data()?.stripeCustomerId;
  if (stripeCustomerId === undefined) {
    throw new CheckoutError("not_allowed_now", "No Stripe customer for this user yet: subscribe first.", { reason: "no_customer" });
  }
  const session = await deps.stripe().billingPortal.sessions.create({ customer: stripeCustomerId, return_url: returnUrl });
  return { url: session.url };
}
