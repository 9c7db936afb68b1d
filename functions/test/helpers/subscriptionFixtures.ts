import { event, stripeId, type StripeEventEnvelope } from "./stripeFixtures";

/**
 * Stripe Billing objects with the real shape of the pinned API version (periods on subscription items,
 * an invoice's subscription under `parent.subscription_details`), trimmed of fields this backend never
 * reads, plus the older shapes Stripe still sends to endpoints pinned to an earlier version.
 */

const nowSeconds = () => Math.floor(Date.now() / 1000);
const MONTH = 30 * 86_400;

export interface SubscriptionOptions {
  id?: string;
  customer: string;
  priceId: string;
  status?: string;
  /** The subscription's own `created` (seconds). */
  created?: number;
  cancelAtPeriodEnd?: boolean;
  currentPeriodEnd?: number;
  trialEnd?: number | null;
  uid?: string | null;
  /** Pre-2025 shape: the period on the subscription instead of its items. */
  legacyPeriod?: boolean;
}

export function subscription(o: SubscriptionOptions): Record<string, unknown> {
  const id = o.id ?? stripeId("sub");
  const created = o.created ?? nowSeconds();
  const periodEnd = o.currentPeriodEnd ?? created + MONTH;
  const status = o.status ?? "active";
  const item: Record<string, unknown> = {
    id: stripeId("si"),
    object: "subscription_item",
    created,
    discounts: [],
    metadata: {},
    price: {
      id: o.priceId,
      object: "price",
      active: true,
      billing_scheme: "per_unit",
      created: created - 86_400,
      currency: "usd",
      livemode: false,
      lookup_key: null,
      metadata: {},
      nickname: null,
      product: "prod_test_plan",
      recurring: { interval: "month", interval_count: 1, meter: null, trial_period_days: null, usage_type: "licensed" },
      tax_behavior: "unspecified",
      type: "recurring",
      unit_amount: 1200,
      unit_amount_decimal: "1200",
    },
    quantity: 1,
    subscription: id,
    tax_rates: [],
    ...(o.legacyPeriod ? {} : { current_period_start: periodEnd - MONTH, current_period_end: periodEnd }),
  };
  return {
    id,
    object: "subscription",
    application: null,
    automatic_tax: { enabled: false, liability: null, disabled_reason: null },
    billing_cycle_anchor: created,
    billing_mode: { type: "flexible" },
    cancel_at: o.cancelAtPeriodEnd ? periodEnd : null,
    cancel_at_period_end: o.cancelAtPeriodEnd ?? false,
    canceled_at: status === "canceled" ? nowSeconds() : null,
    cancellation_details: { comment: null, feedback: null, reason: status === "canceled" ? "cancellation_requested" : null },
    collection_method: "charge_automatically",
    created,
    currency: "usd",
    customer: o.customer,
    days_until_due: null,
    default_payment_method: "pm_card_visa",
    description: null,
    discounts: [],
    ended_at: status === "canceled" ? nowSeconds() : null,
    items: { object: "list", data: [item], has_more: false, url: `/v1/subscription_items?subscription=${id}` },
    latest_invoice: null,
    livemode: false,
    metadata: o.uid ? { uid: o.uid } : {},
    pause_collection: null,
    pending_setup_intent: null,
    pending_update: null,
    schedule: null,
    start_date: created,
    status,
    test_clock: null,
    trial_end: o.trialEnd ?? null,
    trial_start: o.trialEnd ? created : null,
    ...(o.legacyPeriod ? { current_period_start: periodEnd - MONTH, current_period_end: periodEnd } : {}),
  };
}

export interface InvoiceOptions {
  id?: string;
  customer: string;
  subscriptionId: string;
  billingReason?: string;
  paid?: boolean;
  attemptCount?: number;
  amount?: number;
  uid?: string | null;
  /** An endpoint pinned to an API version before 2025-03-31: `invoice.subscription` at the top. */
  legacyShape?: boolean;
}

export function invoice(o: InvoiceOptions): Record<string, unknown> {
  const id = o.id ?? stripeId("in");
  const amount = o.amount ?? 1200;
  const paid = o.paid ?? true;
  const created = nowSeconds();
  const base: Record<string, unknown> = {
    id,
    object: "invoice",
    account_country: "US",
    amount_due: amount,
    amount_paid: paid ? amount : 0,
    amount_remaining: paid ? 0 : amount,
    attempt_count: o.attemptCount ?? 1,
    attempted: true,
    auto_advance: !paid,
    billing_reason: o.billingReason ?? "subscription_cycle",
    collection_method: "charge_automatically",
    created,
    currency: "usd",
    customer: o.customer,
    customer_email: "subscriber@example.com",
    hosted_invoice_url: null,
    lines: {
      object: "list",
      data: [
        {
          id: stripeId("il"),
          object: "line_item",
          amount,
          currency: "usd",
          description: "1 × Plan (at $12.00 / month)",
          invoice: id,
          livemode: false,
          metadata: {},
          period: { start: created, end: created + MONTH },
          quantity: 1,
          ...(o.legacyShape
            ? { subscription: o.subscriptionId, type: "subscription" }
            : {
                parent: {
                  type: "subscription_item_details",
                  invoice_item_details: null,
                  subscription_item_details: { invoice_item: null, proration: false, proration_details: { credited_items: null }, subscription: o.subscriptionId, subscription_item: stripeId("si") },
                },
              }),
        },
      ],
      has_more: false,
      url: `/v1/invoices/${id}/lines`,
    },
    livemode: false,
    metadata: {},
    next_payment_attempt: paid ? null : created + 86_400,
    number: null,
    period_end: created,
    period_start: created - MONTH,
    status: paid ? "paid" : "open",
    status_transitions: { finalized_at: created, marked_uncollectible_at: null, paid_at: paid ? created : null, voided_at: null },
    subtotal: amount,
    total: amount,
  };
  if (o.legacyShape) return { ...base, subscription: o.subscriptionId, subscription_details: { metadata: o.uid ? { uid: o.uid } : {} } };
  return {
    ...base,
    parent: {
      type: "subscription_details",
      quote_details: null,
      subscription_details: { metadata: o.uid ? { uid: o.uid } : {}, subscription: o.subscriptionId },
    },
  };
}

export interface SubscriptionSessionOptions {
  id?: string;
  customer: string;
  subscriptionId: string | null;
  clientReferenceId?: string | null;
  paymentStatus?: "paid" | "unpaid" | "no_payment_required";
}

export function subscriptionCheckoutSession(o: SubscriptionSessionOptions): Record<string, unknown> {
  const created = nowSeconds();
  return {
    id: o.id ?? stripeId("cs"),
    object: "checkout.session",
    amount_subtotal: 1200,
    amount_total: 1200,
    cancel_url: "https://app.example/cancel",
    client_reference_id: o.clientReferenceId ?? null,
    created,
    currency: "usd",
    customer: o.customer,
    customer_details: { email: "subscriber@example.com", name: null, phone: null, tax_exempt: "none", tax_ids: [] },
    expires_at: created + 86_400,
    invoice: stripeId("in"),
    livemode: false,
    metadata: {},
    mode: "subscription",
    payment_intent: null,
    payment_status: o.paymentStatus ?? "paid",
    status: "complete",
    subscription: o.subscriptionId,
    success_url: "https://app.example/success",
    url: null,
  };
}

/** An event at an explicit second: Stripe's `created` is the watermark these tests move. */
export function eventAt(type: string, object: Record<string, unknown>, created: number, id?: string): StripeEventEnvelope {
  return event(type, object, { created, ...(id ? { id } : {}) });
}

/** The three events of one first payment, as Stripe sends them for a Checkout in subscription mode. */
export function firstPayment(o: { customer: string; priceId: string; uid: string; subscriptionId?: string; created?: number; status?: string }): {
  subscriptionId: string;
  invoiceId: string;
  events: { checkout: StripeEventEnvelope; created: StripeEventEnvelope; paid: StripeEventEnvelope };
} {
  const subscriptionId = o.subscriptionId ?? stripeId("sub");
  const created = o.created ?? nowSeconds();
  const invoiceId = stripeId("in");
  const sub = subscription({ id: subscriptionId, customer: o.customer, priceId: o.priceId, created, uid: o.uid, status: o.status ?? "active" });
  return {
    subscriptionId,
    invoiceId,
    events: {
      checkout: eventAt("checkout.session.completed", subscriptionCheckoutSession({ customer: o.customer, subscriptionId, clientReferenceId: o.uid }), created),
      created: eventAt("customer.subscription.created", sub, created),
      paid: eventAt("invoice.paid", invoice({ id: invoiceId, customer: o.customer, subscriptionId, billingReason: "subscription_create" }), created),
    },
  };
}
