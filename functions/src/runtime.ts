import { getApps, initializeApp } from "firebase-admin/app";
import { getFirestore, type Firestore } from "firebase-admin/firestore";
import { logger } from "firebase-functions";
import { MAX_DELIVERY_ATTEMPTS, RESTOCK_ON_REFUND, STRIPE_WEBHOOK_SECRET, WEBHOOK_EVENT_TTL_DAYS } from "./config";
import { logProvider } from "./notifications/providers";
import type { DeliveryDeps } from "./notifications/deliver";
import type { ReservationDeps } from "./reservation";
import { parseWebhookSecrets } from "./stripe/signature";
import { createWebhookHandler, type WebhookDeps, type WebhookRequest, type WebhookResponse } from "./webhook/handler";

/** Production dependencies, built on first use (never at import time, so deploy analysis stays side-effect free). */
export interface Runtime {
  db: Firestore;
  webhook: (req: WebhookRequest, res: WebhookResponse) => Promise<void>;
  reservation: ReservationDeps;
  delivery: DeliveryDeps;
}

let cached: Runtime | null = null;

export function runtime(): Runtime {
  if (cached !== null) return cached;
  const app = getApps()[0] ?? initializeApp();
  const db = getFirestore(app);
  const now = () => new Date();
  const webhookDeps: WebhookDeps = {
    db,
    now,
    options: { restockOnRefund: RESTOCK_ON_REFUND.value(), webhookEventTtlDays: WEBHOOK_EVENT_TTL_DAYS.value() },
    failure: { maxDeliveryAttempts: MAX_DELIVERY_ATTEMPTS.value() },
    webhookSecrets: () => parseWebhookSecrets(STRIPE_WEBHOOK_SECRET.value()),
    logDelivery: (entry) => {
      const log = entry.http_status >= 500 ? logger.error : entry.http_status >= 400 ? logger.warn : logger.info;
      log("stripe webhook delivery", entry);
    },
  };
  cached = {
    db,
    webhook: createWebhookHandler(webhookDeps),
    reservation: { db, now },
    delivery: { db, now, provider: logProvider((message, fields) => logger.info(message, fields)) },
  };
  return cached;
}
