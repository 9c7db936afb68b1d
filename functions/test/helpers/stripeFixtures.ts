import { randomBytes } from "node:crypto";
import Stripe from "stripe";

/**
 * Builders of Stripe objects with the real shape (fields as Stripe's API sends them, trimmed of
 * the ones this backend never reads), wrapped in real event envelopes and signed with Stripe's
 * own test helper.
 */

export const API_VERSION = "2026-10-28.endive";

export function stripeId(prefix: string): string {
  return `${prefix}_test_${randomBytes(9).toString("hex")}`;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

export interface PaymentIntentOptions {
  id?: string;
  amount: number;
  currency?: string;
  orderId?: string | null;
  status?: string;
  lastError?: { code: string; decline_code?: string; message: string } | null;
  cancellationReason?: string | null;
}

export function paymentIntent(o: PaymentIntentOptions): Record<string, unknown> {
  const status = o.status ?? "succeeded";
  return {
    id: o.id ?? stripeId("pi"),
    object: "payment_intent",
    amount: o.amount,
    amount_capturable: 0,
    amount_received: status === "succeeded" ? o.amount : 0,
    capture_method: "automatic",
    canceled_at: status === "canceled" ? nowSeconds() : null,
    cancellation_reason: o.cancellationReason ?? null,
    client_secret: "pi_secret_redacted",
    confirmation_method: "automatic",
    created: nowSeconds(),
    currency: o.currency ?? "usd",
    customer: null,
    description: null,
    last_payment_error: o.lastError ? { type: "card_error", ...o.lastError } : null,
    latest_charge: null,
    livemode: false,
    metadata: o.orderId === null ? {} : { orderId: o.orderId ?? "" },
    payment_method: "pm_card_visa",
    payment_method_types: ["card"],
    status,
  };
}

export interface ChargeOptions {
  id?: string;
  amount: number;
  currency?: string;
  paymentIntentId: string | null;
  amountRefunded?: number;
  captured?: boolean;
  orderId?: string;
}

export function charge(o: ChargeOptions): Record<string, unknown> {
  const captured = o.captured ?? true;
  const refunded = o.amountRefunded ?? 0;
  return {
    id: o.id ?? stripeId("ch"),
    object: "charge",
    amount: o.amount,
    amount_captured: captured ? o.amount : 0,
    amount_refunded: refunded,
    balance_transaction: stripeId("txn"),
    billing_details: { address: null, email: null, name: null, phone: null },
    captured,
    created: nowSeconds(),
    currency: o.currency ?? "usd",
    customer: null,
    disputed: false,
    livemode: false,
    metadata: o.orderId ? { orderId: o.orderId } : {},
    outcome: { network_status: "approved_by_network", risk_level: "normal", seller_message: "Payment complete.", type: "authorized" },
    paid: true,
    payment_intent: o.paymentIntentId,
    payment_method: "pm_card_visa",
    refunded: refunded >= o.amount,
    status: "succeeded",
  };
}

export interface CheckoutSessionOptions {
  id?: string;
  amount: number;
  currency?: string;
  orderId: string | null;
  paymentIntentId?: string | null;
  paymentStatus?: "paid" | "unpaid" | "no_payment_required";
  status?: "complete" | "expired" | "open";
}

export function checkoutSession(o: CheckoutSessionOptions): Record<string, unknown> {
  return {
    id: o.id ?? stripeId("cs"),
    object: "checkout.session",
    amount_subtotal: o.amount,
    amount_total: o.amount,
    cancel_url: "https://shop.example/cancel",
    client_reference_id: o.orderId,
    created: nowSeconds(),
    currency: o.currency ?? "usd",
    customer: null,
    customer_details: { email: "buyer@example.com", name: null, phone: null, tax_exempt: "none", tax_ids: [] },
    expires_at: nowSeconds() + 3600,
    livemode: false,
    metadata: {},
    mode: "payment",
    payment_intent: o.paymentIntentId === undefined ? stripeId("pi") : o.paymentIntentId,
    payment_status: o.paymentStatus ?? "paid",
    status: o.status ?? "complete",
    success_url: "https://shop.example/success",
    url: null,
  };
}

export interface DisputeOptions {
  id?: string;
  amount: number;
  currency?: string;
  paymentIntentId: string;
  status?: string;
}

export function dispute(o: DisputeOptions): Record<string, unknown> {
  return {
    id: o.id ?? stripeId("dp"),
    object: "dispute",
    amount: o.amount,
    balance_transactions: [],
    charge: stripeId("ch"),
    created: nowSeconds(),
    currency: o.currency ?? "usd",
    evidence_details: { due_by: nowSeconds() + 7 * 86400, has_evidence: false, past_due: false, submission_count: 0 },
    is_charge_refundable: false,
    livemode: false,
    metadata: {},
    payment_intent: o.paymentIntentId,
    reason: "fraudulent",
    status: o.status ?? "needs_response",
  };
}

export interface StripeEventEnvelope {
  id: string;
  object: "event";
  api_version: string;
  created: number;
  data: { object: Record<string, unknown> };
  livemode: boolean;
  pending_webhooks: number;
  request: { id: string | null; idempotency_key: string | null };
  type: string;
}

export function event(type: string, object: Record<string, unknown>, o: { id?: string; created?: number } = {}): StripeEventEnvelope {
  return {
    id: o.id ?? stripeId("evt"),
    object: "event",
    api_version: API_VERSION,
    created: o.created ?? nowSeconds(),
    data: { object },
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
  };
}

/** A `Stripe-Signature` header made by Stripe's own helper, exactly as Stripe would send it. */
export function signatureHeader(payload: string, secret: string, timestamp?: number): string {
  return Stripe.webhooks.generateTestHeaderString({ payload, secret, ...(timestamp === undefined ? {} : { timestamp }) });
}

/** Typed view of a fixture event, for tests of pure code that takes a Stripe.Event. */
export function asStripeEvent(envelope: StripeEventEnvelope): Stripe.Event {
  return JSON.parse(JSON.stringify(envelope)) as Stripe.Event;
}
