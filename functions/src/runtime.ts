import { getApps, initializeApp } from "firebase-admin/app";
import { getFirestore, type Firestore } from "firebase-admin/firestore";
import { logger } from "firebase-functions";
import {
  CHECKOUT_ALLOWED_ORIGINS,
  CHECKOUT_RATE_LIMIT_PER_MINUTE,
  GRACE_PERIOD_HOURS,
  MAX_DELIVERY_ATTEMPTS,
  NOTIFICATION_MAX_ATTEMPTS,
  RESERVATION_HOLD_MINUTES,
  RESTOCK_ON_REFUND,
  STRIPE_SECRET_KEY,
  STRIPE_WEBHOOK_SECRET,
  WEBHOOK_EVENT_TTL_DAYS,
} from "./config";
import type Stripe from "stripe";
import type { CancelDeps } from "./checkout/cancelUnpaid";
import type { CheckoutDeps } from "./checkout/createCheckout";
import { parseAllowedOrigins } from "./checkout/input";
import { createStripeClient } from "./stripe/client";
import type { AbandonPolicy } from "./domain/reservation";
import { DEFAULT_DELIVERY_OPTIONS, type DeliveryDeps } from "./notifications/deliver";
import { logProvider, type NotificationProvider } from "./notifications/providers";
import { smtpProviderFromEnv } from "./notifications/smtpProvider";
import { getAuth } from "firebase-admin/auth";
import type { App } from "firebase-admin/app";
import { DEFAULT_GROUP_COMMIT } from "./concurrency/groupCommit";
import { AGGREGATE_MIN_INTERVAL_MS } from "./inventory/shards";
import { LocalLocks } from "./concurrency/localLocks";
import { ReservationBatches } from "./inventory/reservationBatch";
import { DEFAULT_ABANDON_POLICY, type ReservationDeps } from "./reservation";
import { parseWebhookSecrets } from "./stripe/signature";
import type { ClaimsDeps } from "./subscriptions/claims";
import type { GraceDeps } from "./subscriptions/grace";
import { createWebhookHandler, type WebhookDeps, type WebhookRequest, type WebhookResponse } from "./webhook/handler";

/** Production dependencies, built on first use (never at import time, so deploy analysis stays side-effect free). */
export interface Runtime {
  webhookDeps: WebhookDeps;
  webhook: (req: WebhookRequest, res: WebhookResponse) => Promise<void>;
  reservation: ReservationDeps;
  abandonPolicy: AbandonPolicy;
  delivery: DeliveryDeps;
  checkout: CheckoutDeps;
  cancelUnpaid: CancelDeps;
  /**
   * How far apart a hot product's aggregations are (see aggregateShards). Not in the emulator: its
   * Functions runtime starts one worker process per concurrent trigger run, so runs that wait out the
   * interval would each hold a process, and a sale's shard writes would starve every other trigger.
   */
  aggregateMinIntervalMs: number;
  claims: ClaimsDeps;
  grace: GraceDeps;
}

let cached: Runtime | undefined;

export function runtime(): Runtime {
  cached ??= build();
  return cached;
}

function build(): Runtime {
  const app = getApps()[0] ?? initializeApp();
  const db: Firestore = getFirestore(app);
  const now = () => new Date();
  // One per instance, shared by the webhook and the triggers it runs beside.
  const locks = new LocalLocks({
    ...DEFAULT_GROUP_COMMIT,
    onGroupFailure: (failure) => logger.warn("shared commit failed; its members ran again", { ...failure }),
  });
  const webhookDeps: WebhookDeps = {
    db,
    now,
    locks,
    options: { restockOnRefund: RESTOCK_ON_REFUND.value(), webhookEventTtlDays: WEBHOOK_EVENT_TTL_DAYS.value() },
    failure: { maxDeliveryAttempts: MAX_DELIVERY_ATTEMPTS.value() },
    subscriptionOptions: { gracePeriodHours: GRACE_PERIOD_HOURS.value() },
    webhookSecrets: () => parseWebhookSecrets(STRIPE_WEBHOOK_SECRET.value()),
    logDelivery: (entry) => {
      const log = entry.http_status >= 500 ? logger.error : entry.http_status >= 400 ? logger.warn : logger.info;
      log("stripe webhook delivery", entry);
    },
  };
  // Only the functions that bind STRIPE_SECRET_KEY ever call this; the others never read the secret.
  let stripeClient: Stripe | undefined;
  const stripe = () => (stripeClient ??= createStripeClient(STRIPE_SECRET_KEY.value()));
  const warn = (message: string, fields: Record<string, unknown>) => logger.warn(message, fields);
  return {
    aggregateMinIntervalMs: process.env.FUNCTIONS_EMULATOR === "true" ? 0 : AGGREGATE_MIN_INTERVAL_MS,
    checkout: {
      db,
      stripe,
      now,
      config: () => ({ rateLimitPerMinute: CHECKOUT_RATE_LIMIT_PER_MINUTE.value(), allowedOrigins: parseAllowedOrigins(CHECKOUT_ALLOWED_ORIGINS.value()) }),
      log: warn,
    },
    cancelUnpaid: { db, stripe, now, log: warn },
    claims: { db, auth: getAuth(app) },
    grace: { db, now },
    webhookDeps,
    webhook: createWebhookHandler(webhookDeps),
    reservation: { db, now, locks, batches: new ReservationBatches(db, now) },
    abandonPolicy: { ...DEFAULT_ABANDON_POLICY, holdMs: RESERVATION_HOLD_MINUTES.value() * 60_000 },
    delivery: {
      db,
      now,
      provider: notificationProvider(app),
      options: { ...DEFAULT_DELIVERY_OPTIONS, maxAttempts: NOTIFICATION_MAX_ATTEMPTS.value() },
    },
  };
}

/** SMTP when SMTP_HOST is configured (functions/.env), else the log provider (the emulator's default). */
function notificationProvider(app: App): NotificationProvider {
  const recipientFor = async (n: { userId: string | null }): Promise<string | null> => {
    if (!n.userId) return null;
    try {
      return (await getAuth(app).getUser(n.userId)).email ?? null;
    } catch (error) {
      if ((error as { code?: unknown }).code === "auth/user-not-found") return null;
      throw error;
    }
  };
  return smtpProviderFromEnv(process.env, recipientFor) ?? logProvider((message, fields) => logger.info(message, fields));
}
