/**
 * Wiring only: each export is a deployed function; the work happens in the modules it calls.
 */
import { setGlobalOptions } from "firebase-functions/v2";
import { onDocumentCreated } from "firebase-functions/v2/firestore";
import { onRequest } from "firebase-functions/v2/https";
import { STRIPE_WEBHOOK_SECRET } from "./config";
import { deliverNotification } from "./notifications/deliver";
import { reserveStockForOrder } from "./reservation";
import { runtime } from "./runtime";

setGlobalOptions({ region: "us-central1" });

export const stripeWebhook = onRequest({ secrets: [STRIPE_WEBHOOK_SECRET], invoker: "public" }, (req, res) =>
  runtime().webhook(req, res),
);

export const reserveStockOnOrderCreated = onDocumentCreated({ document: "orders/{orderId}", retry: false }, async (event) => {
  await reserveStockForOrder(runtime().reservation, event.params.orderId);
});

export const deliverQueuedNotification = onDocumentCreated({ document: "notifications/{notificationId}", retry: false }, async (event) => {
  await deliverNotification(runtime().delivery, event.params.notificationId);
});
