/**
 * Wiring only: each export is a deployed function; the work happens in the modules it calls.
 */
import { logger } from "firebase-functions";
import { setGlobalOptions } from "firebase-functions/v2";
import { onDocumentCreated, onDocumentUpdated, onDocumentWritten } from "firebase-functions/v2/firestore";
import { onCall, onRequest } from "firebase-functions/v2/https";
import { onSchedule } from "firebase-functions/v2/scheduler";
import { listDeadLettersCallable, replayWebhookEventCallable, webhookEventStatusCallable } from "./admin/callables";
import { cancelUnpaidPayment } from "./checkout/cancelUnpaid";
import { createCheckoutCallable } from "./checkout/createCheckout";
import { STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET } from "./config";
import { deliverNotification, redriveNotifications } from "./notifications/deliver";
import { aggregateShards, reconcileProduct } from "./inventory/shards";
import { releaseAbandonedReservations, reserveStockForOrder } from "./reservation";
import { createBillingPortalSessionCallable, createSubscriptionCheckoutCallable } from "./subscriptions/callables";
import { roleChanged, syncRoleClaim } from "./subscriptions/claims";
import { revokeExpiredGrace } from "./subscriptions/grace";
import { budgetOf, runSweep, SWEEP_BUDGET_MS, SWEEP_TIMEOUT_SECONDS } from "./sweeps";
import { runtime } from "./runtime";

setGlobalOptions({ region: "us-central1" });

export const stripeWebhook = onRequest({ secrets: [STRIPE_WEBHOOK_SECRET], invoker: "public" }, (req, res) =>
  runtime().webhook(req, res),
);

// Retried: a failed run would leave the order `pending` for good; a repeated run skips an order that is
// no longer `pending`.
export const reserveStockOnOrderCreated = onDocumentCreated({ document: "orders/{orderId}", retry: true }, async (event) => {
  await reserveStockForOrder(runtime().reservation, event.params.orderId);
});

// The shop's only way to create an order: the server prices it and creates the Stripe payment once.
export const createCheckout = onCall({ secrets: [STRIPE_SECRET_KEY] }, (request) => createCheckoutCallable(runtime().checkout, request));

// Out of stock or canceled → its unpaid PaymentIntent / Session is closed at Stripe. Retried: a lost run
// would leave a payable PaymentIntent for an order that cannot be fulfilled; a repeated run is a no-op.
export const cancelUnpaidPaymentOnOrderClosed = onDocumentUpdated({ document: "orders/{orderId}", retry: true, secrets: [STRIPE_SECRET_KEY] }, async (event) => {
  await cancelUnpaidPayment(runtime().cancelUnpaid, event.params.orderId, event.data?.before.data(), event.data?.after.data());
});

// Retries on: a crash before the claim is redelivered; after the claim, the re-drive below takes over.
export const deliverQueuedNotification = onDocumentCreated({ document: "notifications/{notificationId}", retry: true }, async (event) => {
  await deliverNotification(runtime().delivery, event.params.notificationId);
});

// The sweeps stop starting items well before their timeout, so a run normally writes its line (sweeps.ts).
export const redriveFailedNotifications = onSchedule({ schedule: "every 5 minutes", timeoutSeconds: SWEEP_TIMEOUT_SECONDS }, async () => {
  await runSweep(logger, "notification re-drive", () => redriveNotifications(runtime().delivery, { budget: budgetOf(SWEEP_BUDGET_MS) }));
});

export const releaseAbandonedReservationsSweep = onSchedule({ schedule: "every 5 minutes", timeoutSeconds: SWEEP_TIMEOUT_SECONDS }, async () => {
  const { reservation, abandonPolicy } = runtime();
  await runSweep(logger, "abandoned reservation sweep", () => releaseAbandonedReservations(reservation, abandonPolicy, { budget: budgetOf(SWEEP_BUDGET_MS) }));
});

// Sharded (hot) products: the product document is the sum of its shards; an operator edit is spread over them.
// Retried: a run lost to contention on the product document could be the last of a burst, and a
// repeated or late run changes nothing (an older snapshot never overwrites a newer one).
export const aggregateStockShards = onDocumentWritten({ document: "products/{sku}/stockShards/{shard}", retry: true }, async (event) => {
  const changedAt = event.data?.after.updateTime ?? event.data?.before.updateTime;
  const { reservation, aggregateMinIntervalMs } = runtime();
  await aggregateShards(reservation.db, event.params.sku, { minIntervalMs: aggregateMinIntervalMs, ...(changedAt ? { changedAt } : {}) });
});

// Retried: a lost run would leave the edit out of the shards until the next sale (the shard trigger
// makes it up then); a repeated run finds the edit applied and changes nothing.
export const syncOperatorStockEdit = onDocumentUpdated({ document: "products/{sku}", retry: true }, async (event) => {
  const after = event.data?.after;
  if (after && Number(after.get("shards") ?? 1) > 1 && after.get("stock") !== after.get("stockSynced")) {
    await reconcileProduct(runtime().reservation.db, event.params.sku);
  }
});

export const webhookEventStatus = onCall((request) => webhookEventStatusCallable(runtime().webhookDeps, request));

export const replayWebhookEvent = onCall((request) => replayWebhookEventCallable(runtime().webhookDeps, request));

export const listDeadLetters = onCall((request) => listDeadLettersCallable(runtime().webhookDeps, request));

// Subscriptions (SPEC 8): a Checkout Session in subscription mode for the caller, and the billing portal.
export const createSubscriptionCheckout = onCall({ secrets: [STRIPE_SECRET_KEY] }, (request) => createSubscriptionCheckoutCallable(runtime().checkout, request));

export const createBillingPortalSession = onCall({ secrets: [STRIPE_SECRET_KEY] }, (request) => createBillingPortalSessionCallable(runtime().checkout, request));

// The stripeRole claim follows customers/{uid}.entitlement after each commit (Auth is not transactional).
// Retried: a lost run would leave a wrong claim; a repeated or late run reads the document as it is now.
export const syncStripeRoleClaim = onDocumentWritten({ document: "customers/{uid}", retry: true }, async (event) => {
  if (roleChanged(event.data?.before.data(), event.data?.after.data())) await syncRoleClaim(runtime().claims, event.params.uid);
});

// Revokes the role of subscribers whose grace passed unpaid; a repeated run finds nothing to do.
export const revokeExpiredGraceSweep = onSchedule({ schedule: "every 10 minutes", timeoutSeconds: SWEEP_TIMEOUT_SECONDS }, async () => {
  const { grace } = runtime();
  await runSweep(logger, "grace revocation", () => revokeExpiredGrace(grace, grace.now(), { budget: budgetOf(SWEEP_BUDGET_MS) }));
});
