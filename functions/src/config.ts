import { defineBoolean, defineInt, defineSecret, defineString } from "firebase-functions/params";

/**
 * Deployment parameters. Secrets live in Secret Manager (functions/.secret.local in the emulator);
 * the others in functions/.env. All are read with `.value()` at run time only.
 */
export const STRIPE_WEBHOOK_SECRET = defineSecret("STRIPE_WEBHOOK_SECRET");

/** Outbound calls to the Stripe API (checkout, canceling unpaid payments). Bound only by the functions that call Stripe. */
export const STRIPE_SECRET_KEY = defineSecret("STRIPE_SECRET_KEY");

export const CHECKOUT_RATE_LIMIT_PER_MINUTE = defineInt("CHECKOUT_RATE_LIMIT_PER_MINUTE", {
  default: 5,
  description: "New checkouts (payments and subscriptions together) one user may start in any 60 seconds.",
});

export const CHECKOUT_ALLOWED_ORIGINS = defineString("CHECKOUT_ALLOWED_ORIGINS", {
  default: "",
  description: "Comma-separated origins (https://shop.example.com) a Checkout Session may send the shopper back to.",
});

export const RESTOCK_ON_REFUND = defineBoolean("RESTOCK_ON_REFUND", {
  default: true,
  description: "Put the units of a fully refunded order back in stock.",
});

export const WEBHOOK_EVENT_TTL_DAYS = defineInt("WEBHOOK_EVENT_TTL_DAYS", {
  default: 30,
  description: "Days a webhookEvents record is kept (its expireAt TTL field). Keep it above Stripe's 3-day retry window.",
});

export const MAX_DELIVERY_ATTEMPTS = defineInt("MAX_DELIVERY_ATTEMPTS", {
  default: 5,
  description: "Failed deliveries of one event before its dead letter is marked dead (deferred events are then parked).",
});

export const NOTIFICATION_MAX_ATTEMPTS = defineInt("NOTIFICATION_MAX_ATTEMPTS", {
  default: 5,
  description: "Delivery attempts before a notification is dead and an admin alert is queued.",
});

export const RESERVATION_HOLD_MINUTES = defineInt("RESERVATION_HOLD_MINUTES", {
  default: 30,
  description: "Minutes a reservation without a Checkout Session is held before the sweep releases it.",
});

export const GRACE_PERIOD_HOURS = defineInt("GRACE_PERIOD_HOURS", {
  default: 24,
  description: "Hours a subscriber keeps their role after an invoice's first failed payment (once per invoice).",
});
