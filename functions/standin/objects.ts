import type Stripe from "stripe";
import { newId } from "./ids";

/**
 * Builders of the objects the stand-in serves, typed with the pinned `stripe` package's types so
 * that every field the API version renders is present (null where Stripe renders null for a
 * plain test-mode card payment). Pure: ids and times come in from the caller.
 */

export interface CustomerInput {
  id: string;
  created: number;
  email: string | null;
  name: string | null;
  description: string | null;
  phone: string | null;
  metadata: Stripe.Metadata;
}

export function customer(c: CustomerInput): Stripe.Customer {
  return {
    id: c.id,
    object: "customer",
    address: null,
    balance: 0,
    created: c.created,
    currency: null,
    default_source: null,
    delinquent: false,
    description: c.description,
    discount: null,
    email: c.email,
    invoice_prefix: c.id.slice(4, 12).toUpperCase(),
    invoice_settings: { custom_fields: null, default_payment_method: null, footer: null, rendering_options: null },
    livemode: false,
    metadata: c.metadata,
    name: c.name,
    next_invoice_sequence: 1,
    phone: c.phone,
    preferred_locales: [],
    shipping: null,
    tax_exempt: "none",
    test_clock: null,
  };
}

export interface PaymentIntentInput {
  id: string;
  created: number;
  amount: number;
  currency: string;
  customer: string | null;
  description: string | null;
  receiptEmail: string | null;
  metadata: Stripe.Metadata;
  /** Null: payment methods named by `paymentMethodTypes` only. */
  automaticPaymentMethods: { allowRedirects: "always" | "never" } | null;
  paymentMethodTypes: string[];
}

export function paymentIntent(p: PaymentIntentInput): Stripe.PaymentIntent {
  return {
    id: p.id,
    object: "payment_intent",
    allowed_payment_method_types: null,
    amount: p.amount,
    amount_capturable: 0,
    amount_details: { tip: {} },
    amount_received: 0,
    application: null,
    application_fee_amount: null,
    automatic_payment_methods:
      p.automaticPaymentMethods === null ? null : { allow_redirects: p.automaticPaymentMethods.allowRedirects, enabled: true },
    canceled_at: null,
    cancellation_reason: null,
    capture_method: "automatic_async",
    client_secret: newId.clientSecret(p.id),
    confirmation_method: "automatic",
    created: p.created,
    currency: p.currency,
    customer: p.customer,
    customer_account: null,
    description: p.description,
    excluded_payment_method_types: null,
    last_payment_error: null,
    latest_charge: null,
    livemode: false,
    managed_payments: null,
    metadata: p.metadata,
    next_action: null,
    on_behalf_of: null,
    payment_method: null,
    payment_method_configuration_details: null,
    payment_method_options: { card: { installments: null, mandate_options: null, network: null, request_three_d_secure: "automatic" } },
    payment_method_types: p.paymentMethodTypes,
    payment_record: null,
    processing: null,
    receipt_email: p.receiptEmail,
    review: null,
    setup_future_usage: null,
    shipping: null,
    source: null,
    statement_descriptor: null,
    statement_descriptor_suffix: null,
    status: "requires_payment_method",
    transfer_data: null,
    transfer_group: null,
  };
}

/** A test card and how its charge ends, as Stripe's test PaymentMethods (`pm_card_visa`, …) behave. */
export interface TestCard {
  brand: "visa" | "mastercard";
  last4: string;
  funding: "credit";
  decline: { code: Stripe.PaymentIntent.LastPaymentError.Code; declineCode: string; message: string } | null;
}

export const TEST_CARDS: Readonly<Record<string, TestCard>> = {
  pm_card_visa: { brand: "visa", last4: "4242", funding: "credit", decline: null },
  pm_card_mastercard: { brand: "mastercard", last4: "4444", funding: "credit", decline: null },
  pm_card_chargeDeclined: {
    brand: "visa",
    last4: "0002",
    funding: "credit",
    decline: { code: "card_declined", declineCode: "generic_decline", message: "Your card was declined." },
  },
  pm_card_visa_chargeDeclined: {
    brand: "visa",
    last4: "0002",
    funding: "credit",
    decline: { code: "card_declined", declineCode: "generic_decline", message: "Your card was declined." },
  },
  pm_card_chargeDeclinedInsufficientFunds: {
    brand: "visa",
    last4: "9995",
    funding: "credit",
    decline: { code: "card_declined", declineCode: "insufficient_funds", message: "Your card has insufficient funds." },
  },
};

export interface ChargeInput {
  id: string;
  created: number;
  paymentIntent: Stripe.PaymentIntent;
  paymentMethodId: string;
  card: TestCard;
}

export function charge(c: ChargeInput): Stripe.Charge {
  const pi = c.paymentIntent;
  const declined = c.card.decline;
  const customerId = typeof pi.customer === "string" ? pi.customer : (pi.customer?.id ?? null);
  return {
    id: c.id,
    object: "charge",
    amount: pi.amount,
    amount_captured: declined ? 0 : pi.amount,
    amount_refunded: 0,
    application: null,
    application_fee: null,
    application_fee_amount: null,
    balance_transaction: declined ? null : newId.balanceTransaction(),
    billing_details: {
      address: { city: null, country: null, line1: null, line2: null, postal_code: null, state: null },
      email: null,
      name: null,
      phone: null,
      tax_id: null,
    },
    calculated_statement_descriptor: "STRIPE-ORDERS",
    captured: !declined,
    created: c.created,
    currency: pi.currency,
    customer: customerId,
    description: pi.description,
    disputed: false,
    failure_balance_transaction: null,
    failure_code: declined ? declined.code : null,
    failure_message: declined ? declined.message : null,
    fraud_details: {},
    livemode: false,
    // Stripe copies the PaymentIntent's metadata onto its charges.
    metadata: { ...pi.metadata },
    on_behalf_of: null,
    outcome: declined
      ? {
          advice_code: "try_again_later",
          network_advice_code: null,
          network_decline_code: null,
          network_status: "declined_by_network",
          reason: declined.declineCode,
          risk_level: "normal",
          risk_score: 10,
          seller_message: "The bank did not return any further details with this decline.",
          type: "issuer_declined",
        }
      : {
          advice_code: null,
          network_advice_code: null,
          network_decline_code: null,
          network_status: "approved_by_network",
          reason: null,
          risk_level: "normal",
          risk_score: 10,
          seller_message: "Payment complete.",
          type: "authorized",
        },
    paid: !declined,
    payment_intent: pi.id,
    payment_method: c.paymentMethodId,
    payment_method_details: null,
    receipt_email: pi.receipt_email,
    receipt_number: null,
    receipt_url: null,
    refunded: false,
    refunds: { object: "list", data: [], has_more: false, url: `/v1/charges/${c.id}/refunds` },
    review: null,
    shipping: null,
    source: null,
    source_transfer: null,
    statement_descriptor: null,
    statement_descriptor_suffix: null,
    status: declined ? "failed" : "succeeded",
    transfer_data: null,
    transfer_group: null,
  };
}

export interface CheckoutSessionInput {
  id: string;
  created: number;
  expiresAt: number;
  url: string;
  mode: Stripe.Checkout.Session.Mode;
  customer: string | null;
  customerEmail: string | null;
  clientReferenceId: string | null;
  metadata: Stripe.Metadata;
  amountTotal: number | null;
  currency: string | null;
  successUrl: string | null;
  cancelUrl: string | null;
}

export function checkoutSession(s: CheckoutSessionInput): Stripe.Checkout.Session {
  return {
    id: s.id,
    object: "checkout.session",
    adaptive_pricing: { enabled: false },
    after_expiration: null,
    allow_promotion_codes: null,
    allowed_payment_method_types: null,
    amount_subtotal: s.amountTotal,
    amount_total: s.amountTotal,
    automatic_tax: { enabled: false, liability: null, provider: null, status: null },
    billing_address_collection: null,
    cancel_url: s.cancelUrl,
    client_reference_id: s.clientReferenceId,
    client_secret: null,
    collected_information: null,
    consent: null,
    consent_collection: null,
    created: s.created,
    currency: s.currency,
    currency_conversion: null,
    custom_fields: [],
    custom_text: { after_submit: null, shipping_address: null, submit: null, terms_of_service_acceptance: null },
    customer: s.customer,
    customer_account: null,
    customer_creation: s.customer === null && s.mode === "payment" ? "if_required" : null,
    customer_details: null,
    customer_email: s.customerEmail,
    discounts: [],
    expires_at: s.expiresAt,
    integration_identifier: null,
    invoice: null,
    invoice_creation: null,
    livemode: false,
    locale: null,
    managed_payments: null,
    metadata: s.metadata,
    mode: s.mode,
    origin_context: null,
    payment_intent: null,
    payment_link: null,
    payment_method_collection: s.mode === "subscription" ? "always" : null,
    payment_method_configuration_details: null,
    payment_method_options: { card: { request_three_d_secure: "automatic" } },
    payment_method_types: ["card"],
    payment_status: "unpaid",
    permissions: null,
    phone_number_collection: { enabled: false },
    recovered_from: null,
    saved_payment_method_options: null,
    setup_intent: null,
    shipping_address_collection: null,
    shipping_cost: null,
    shipping_options: [],
    status: "open",
    submit_type: null,
    subscription: null,
    success_url: s.successUrl,
    total_details: s.amountTotal === null ? null : { amount_discount: 0, amount_shipping: 0, amount_tax: 0 },
    ui_mode: "hosted",
    url: s.url,
    wallet_options: null,
  };
}

/** What a Checkout shopper typed on the page, as Stripe reports it once the Session completes. */
export function customerDetails(email: string | null): Stripe.Checkout.Session.CustomerDetails {
  return {
    address: { city: null, country: "US", line1: null, line2: null, postal_code: "42424", state: null },
    business_name: null,
    email,
    individual_name: null,
    name: "Stand-in Shopper",
    phone: null,
    tax_exempt: "none",
    tax_ids: [],
  };
}

export interface RecurringPriceInput {
  id: string;
  created: number;
  currency: string;
  /** Null when the stand-in was never told the amount (a price created on Stripe's Dashboard). */
  unitAmount: number | null;
  product: string;
  interval: Stripe.Price.Recurring.Interval;
  intervalCount: number;
}

export function recurringPrice(p: RecurringPriceInput): Stripe.Price {
  return {
    id: p.id,
    object: "price",
    active: true,
    billing_scheme: "per_unit",
    created: p.created,
    currency: p.currency,
    custom_unit_amount: null,
    livemode: false,
    lookup_key: null,
    metadata: {},
    nickname: null,
    product: p.product,
    recurring: { interval: p.interval, interval_count: p.intervalCount, meter: null, trial_period_days: null, usage_type: "licensed" },
    tax_behavior: "unspecified",
    tiers_mode: null,
    transform_quantity: null,
    type: "recurring",
    unit_amount: p.unitAmount,
    unit_amount_decimal: null,
  };
}

/** The legacy Plan that Stripe still renders beside every recurring price on a subscription item. */
export function planOf(price: Stripe.Price): Stripe.Plan {
  return {
    id: price.id,
    object: "plan",
    active: price.active,
    amount: price.unit_amount,
    amount_decimal: null,
    billing_scheme: price.billing_scheme,
    created: price.created,
    currency: price.currency,
    interval: price.recurring?.interval ?? "month",
    interval_count: price.recurring?.interval_count ?? 1,
    livemode: false,
    metadata: {},
    meter: null,
    nickname: null,
    product: typeof price.product === "string" ? price.product : price.product.id,
    tiers_mode: null,
    transform_usage: null,
    trial_period_days: null,
    usage_type: "licensed",
  };
}

export interface SubscriptionLine {
  price: Stripe.Price;
  quantity: number;
}

export interface SubscriptionInput {
  id: string;
  created: number;
  customer: string;
  currency: string;
  metadata: Stripe.Metadata;
  lines: SubscriptionLine[];
  periodEnd: number;
  latestInvoice: string;
  defaultPaymentMethod: string;
}

export function subscription(s: SubscriptionInput): Stripe.Subscription {
  const items: Stripe.SubscriptionItem[] = s.lines.map((line) => ({
    id: newId.subscriptionItem(),
    object: "subscription_item",
    billing_thresholds: null,
    created: s.created,
    // Since API version 2025-03-31 the billing period lives on each item, not on the subscription.
    current_period_end: s.periodEnd,
    current_period_start: s.created,
    current_trial: null,
    discounts: [],
    metadata: {},
    plan: planOf(line.price),
    price: line.price,
    quantity: line.quantity,
    subscription: s.id,
    tax_rates: [],
  }));
  return {
    id: s.id,
    object: "subscription",
    application: null,
    application_fee_percent: null,
    automatic_tax: { disabled_reason: null, enabled: false, liability: null },
    billing_cycle_anchor: s.created,
    billing_cycle_anchor_config: null,
    billing_mode: { flexible: null, type: "classic" },
    billing_schedules: [],
    billing_thresholds: null,
    cancel_at: null,
    cancel_at_period_end: false,
    canceled_at: null,
    cancellation_details: { comment: null, feedback: null, feedback_option: null, reason: null },
    collection_method: "charge_automatically",
    created: s.created,
    currency: s.currency,
    customer: s.customer,
    customer_account: null,
    days_until_due: null,
    default_payment_method: s.defaultPaymentMethod,
    default_source: null,
    default_tax_rates: [],
    description: null,
    discounts: [],
    ended_at: null,
    invoice_settings: { account_tax_ids: null, custom_fields: null, description: null, footer: null, issuer: { type: "self" } },
    items: { object: "list", data: items, has_more: false, url: `/v1/subscription_items?subscription=${s.id}` },
    latest_invoice: s.latestInvoice,
    livemode: false,
    managed_payments: null,
    metadata: s.metadata,
    next_pending_invoice_item_invoice: null,
    on_behalf_of: null,
    pause_collection: null,
    payment_settings: { payment_method_options: null, payment_method_types: null, save_default_payment_method: "off" },
    pending_invoice_item_interval: null,
    pending_setup_intent: null,
    pending_update: null,
    schedule: null,
    start_date: s.created,
    status: "active",
    test_clock: null,
    transfer_data: null,
    trial_end: null,
    trial_settings: { end_behavior: { billing_cycle_anchor: null, missing_payment_method: "create_invoice" } },
    trial_start: null,
  };
}

export interface FirstInvoiceInput {
  id: string;
  created: number;
  subscription: Stripe.Subscription;
  customer: Stripe.Customer;
}

/** The paid first invoice of a subscription (`billing_reason: subscription_create`), in the 2025 shape. */
export function firstInvoice(i: FirstInvoiceInput): Stripe.Invoice {
  const sub = i.subscription;
  const lines: Stripe.InvoiceLineItem[] = sub.items.data.map((item) => {
    const amount = (item.price.unit_amount ?? 0) * (item.quantity ?? 1);
    return {
      id: newId.invoiceLine(),
      object: "line_item",
      amount,
      currency: sub.currency,
      description: `${item.quantity ?? 1} × subscription (at ${item.price.unit_amount ?? 0} / ${item.price.recurring?.interval ?? "month"})`,
      discount_amounts: [],
      discountable: true,
      discounts: [],
      invoice: i.id,
      livemode: false,
      metadata: {},
      parent: {
        invoice_item_details: null,
        subscription_item_details: {
          invoice_item: null,
          proration: false,
          proration_details: { credited_items: null },
          subscription: sub.id,
          subscription_item: item.id,
        },
        type: "subscription_item_details",
      },
      period: { end: item.current_period_end, start: item.current_period_start },
      pretax_credit_amounts: [],
      pricing: {
        price_details: { price: item.price.id, product: typeof item.price.product === "string" ? item.price.product : item.price.product.id },
        type: "price_details",
        unit_amount_decimal: null,
      },
      quantity: item.quantity ?? 1,
      quantity_decimal: null,
      subscription: sub.id,
      subtotal: amount,
      taxes: [],
    };
  });
  const total = lines.reduce((sum, line) => sum + line.amount, 0);
  const periodStart = sub.items.data[0]?.current_period_start ?? i.created;
  return {
    id: i.id,
    object: "invoice",
    account_country: "US",
    account_name: "Stripe Orders (stand-in)",
    account_tax_ids: null,
    amount_due: total,
    amount_overpaid: 0,
    amount_paid: total,
    amount_remaining: 0,
    amount_shipping: 0,
    application: null,
    attempt_count: 1,
    attempted: true,
    auto_advance: false,
    automatic_tax: { disabled_reason: null, enabled: false, liability: null, provider: null, status: null },
    automatically_finalizes_at: null,
    billing_reason: "subscription_create",
    collection_method: "charge_automatically",
    created: i.created,
    currency: sub.currency,
    custom_fields: null,
    customer: i.customer.id,
    customer_account: null,
    customer_address: null,
    customer_email: i.customer.email,
    customer_name: i.customer.name ?? null,
    customer_phone: null,
    customer_shipping: null,
    customer_tax_exempt: "none",
    customer_tax_ids: [],
    default_payment_method: null,
    default_source: null,
    default_tax_rates: [],
    description: null,
    discounts: [],
    due_date: null,
    effective_at: i.created,
    ending_balance: 0,
    footer: null,
    from_invoice: null,
    hosted_invoice_url: null,
    invoice_pdf: null,
    issuer: { type: "self" },
    last_finalization_error: null,
    latest_revision: null,
    lines: { object: "list", data: lines, has_more: false, url: `/v1/invoices/${i.id}/lines` },
    livemode: false,
    metadata: {},
    next_payment_attempt: null,
    number: `${i.customer.invoice_prefix ?? "STANDIN"}-0001`,
    on_behalf_of: null,
    // Since API version 2025-03-31 an invoice names its subscription here, not at the top level.
    parent: {
      quote_details: null,
      subscription_details: { metadata: { ...sub.metadata }, subscription: sub.id },
      type: "subscription_details",
    },
    payment_settings: { default_mandate: null, payment_method_options: null, payment_method_types: null },
    period_end: periodStart,
    period_start: periodStart,
    post_payment_credit_notes_amount: 0,
    pre_payment_credit_notes_amount: 0,
    receipt_number: null,
    rendering: null,
    shipping_cost: null,
    shipping_details: null,
    starting_balance: 0,
    statement_descriptor: null,
    status: "paid",
    status_transitions: { finalized_at: i.created, marked_uncollectible_at: null, paid_at: i.created, voided_at: null },
    subtotal: total,
    subtotal_excluding_tax: total,
    test_clock: null,
    total,
    total_discount_amounts: [],
    total_excluding_tax: total,
    total_pretax_credit_amounts: [],
    total_taxes: [],
    webhooks_delivered_at: null,
  };
}

export interface PortalSessionInput {
  id: string;
  created: number;
  customer: string;
  returnUrl: string | null;
  url: string;
  configuration: string;
}

export function billingPortalSession(p: PortalSessionInput): Stripe.BillingPortal.Session {
  return {
    id: p.id,
    object: "billing_portal.session",
    configuration: p.configuration,
    created: p.created,
    customer: p.customer,
    customer_account: null,
    flow: null,
    livemode: false,
    locale: null,
    on_behalf_of: null,
    return_url: p.returnUrl,
    url: p.url,
  };
}
