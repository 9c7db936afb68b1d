import type Stripe from "stripe";
import { ApiError, invalidRequest, noSuch, unexpectedState } from "./errors";
import { newId } from "./ids";
import * as build from "./objects";
import {
  knownKeysOnly,
  metadataParam,
  objectList,
  oneOf,
  optBool,
  optInt,
  optObject,
  optString,
  optStringList,
  reqInt,
  reqString,
  type Params,
} from "./params";
import type { SessionExtras, Store, Table } from "./store";
import { makeEvent, type EventRequest, type StandInEvent } from "./webhooks";

/**
 * The Stripe API routes the backend calls, with Stripe's state rules. A handler either throws an
 * ApiError (invalid request: nothing changed, nothing saved for the idempotency key) or returns
 * the answer and the events it caused, which the server delivers once it has answered.
 */

export interface Context {
  store: Store;
  /** Seconds since the epoch. */
  now: () => number;
  baseUrl: string;
  request: EventRequest;
}

export interface Result {
  status: number;
  body: object;
  events: StandInEvent[];
}

type Handler = (ctx: Context, params: Params, pathParams: string[]) => Result;

interface Route {
  method: "GET" | "POST";
  pattern: RegExp;
  handler: Handler;
}

const ok = (body: object, events: StandInEvent[] = []): Result => ({ status: 200, body, events });

function listParams(params: Params): { limit: number; startingAfter: string | null } {
  const limit = optInt(params, "limit") ?? 10;
  if (limit < 1 || limit > 100) throw invalidRequest("Invalid limit: must be between 1 and 100", { param: "limit" });
  return { limit, startingAfter: optString(params, "starting_after") };
}

function list<T extends { id: string }>(table: Table<T>, url: string, params: Params, filter: (row: T) => boolean): Result {
  const { limit, startingAfter } = listParams(params);
  const page = table.list(filter, limit, startingAfter);
  const body: Stripe.ApiList<T> = { object: "list", data: page.data, has_more: page.hasMore, url };
  return ok(body);
}

function mustGet<T extends { id: string }>(table: Table<T>, kind: string, id: string, param = "id"): T {
  const row = table.get(id);
  if (row === undefined) throw noSuch(kind, id, param);
  return row;
}

function currencyParam(params: Params, key: string, name = key): string {
  const currency = reqString(params, key, name).toLowerCase();
  if (!/^[a-z]{3}$/.test(currency)) throw invalidRequest(`Invalid currency: ${currency}`, { code: "parameter_invalid_string", param: name });
  return currency;
}

function customerParam(ctx: Context, params: Params): string | null {
  const id = optString(params, "customer");
  if (id !== null) mustGet(ctx.store.customers, "customer", id, "customer");
  return id;
}

function idOf(value: string | { id: string } | null): string | null {
  return typeof value === "string" || value === null ? value : value.id;
}

// ---------------------------------------------------------------------------------------------
// Customers
// ---------------------------------------------------------------------------------------------

const CUSTOMER_PARAMS = ["email", "name", "description", "phone", "metadata"] as const;

const createCustomer: Handler = (ctx, params) => {
  knownKeysOnly(params, CUSTOMER_PARAMS);
  const customer = build.customer({
    id: newId.customer(),
    created: ctx.now(),
    email: optString(params, "email"),
    name: optString(params, "name"),
    description: optString(params, "description"),
    phone: optString(params, "phone"),
    metadata: metadataParam(params) ?? {},
  });
  return ok(ctx.store.customers.put(customer));
};

const updateCustomer: Handler = (ctx, params, [id]) => {
  knownKeysOnly(params, CUSTOMER_PARAMS);
  const current = mustGet(ctx.store.customers, "customer", id as string);
  const has = (key: string) => key in params;
  const updated: Stripe.Customer = {
    ...current,
    email: has("email") ? optString(params, "email") : current.email,
    name: has("name") ? optString(params, "name") : (current.name ?? null),
    description: has("description") ? optString(params, "description") : current.description,
    phone: has("phone") ? optString(params, "phone") : (current.phone ?? null),
    metadata: mergeMetadata(current.metadata, params),
  };
  return ok(ctx.store.customers.put(updated));
};

/** Stripe merges metadata on update; an empty value deletes the key. */
function mergeMetadata(current: Stripe.Metadata, params: Params): Stripe.Metadata {
  const raw = optObject(params, "metadata");
  if (raw === null) return "metadata" in params ? {} : current;
  const merged: Stripe.Metadata = { ...current, ...metadataParam(params) };
  for (const [key, value] of Object.entries(raw)) if (value === "") delete merged[key];
  return merged;
}

// ---------------------------------------------------------------------------------------------
// PaymentIntents
// ---------------------------------------------------------------------------------------------

/** Stripe's minimum charge amounts for the currencies a test is likely to use (minor units). */
const MINIMUM_AMOUNT: Readonly<Record<string, number>> = { usd: 50, eur: 50, gbp: 30, chf: 50, cad: 50, aud: 50 };

function amountParam(params: Params, currency: string): number {
  const amount = reqInt(params, "amount");
  if (amount < 1) throw invalidRequest("This value must be greater than or equal to 1.", { code: "parameter_invalid_integer", param: "amount" });
  const minimum = MINIMUM_AMOUNT[currency];
  if (minimum !== undefined && amount < minimum) {
    throw invalidRequest(`Amount must be at least ${(minimum / 100).toFixed(2)} ${currency}`, { code: "amount_too_small", param: "amount" });
  }
  return amount;
}

const PI_CREATE_PARAMS = [
  "amount",
  "currency",
  "customer",
  "metadata",
  "description",
  "receipt_email",
  "automatic_payment_methods",
  "payment_method_types",
  "payment_method",
  "confirm",
  "return_url",
] as const;

const createPaymentIntent: Handler = (ctx, params) => {
  knownKeysOnly(params, PI_CREATE_PARAMS);
  const currency = currencyParam(params, "currency");
  const amount = amountParam(params, currency);
  const customer = customerParam(ctx, params);
  const automatic = optObject(params, "automatic_payment_methods");
  if (automatic !== null) knownKeysOnly(automatic, ["enabled", "allow_redirects"], "automatic_payment_methods");
  const automaticEnabled = automatic === null ? null : optBool(automatic, "enabled", "automatic_payment_methods[enabled]");
  const redirectsParam = automatic === null ? null : optString(automatic, "allow_redirects", "automatic_payment_methods[allow_redirects]");
  const allowRedirects = redirectsParam === null ? "always" : oneOf(redirectsParam, ["always", "never"] as const, "automatic_payment_methods[allow_redirects]");
  const types = optStringList(params, "payment_method_types");
  if (automaticEnabled === true && types.length > 0) {
    throw invalidRequest("You may only specify one of these parameters: automatic_payment_methods, payment_method_types.", {
      param: "automatic_payment_methods",
    });
  }
  const paymentMethodParam = optString(params, "payment_method");
  const confirmNow = optBool(params, "confirm") === true;
  const returnUrl = optString(params, "return_url");
  if (returnUrl !== null && !confirmNow) {
    throw invalidRequest("return_url can only be passed when confirm=true.", { param: "return_url" });
  }
  if (paymentMethodParam !== null) testCard(ctx, paymentMethodParam);
  if (confirmNow && paymentMethodParam === null) throw missingPaymentMethod();
  const pi = build.paymentIntent({
    id: newId.paymentIntent(),
    created: ctx.now(),
    amount,
    currency,
    customer,
    description: optString(params, "description"),
    receiptEmail: optString(params, "receipt_email"),
    metadata: metadataParam(params) ?? {},
    // Since API version 2023-08-16 automatic payment methods are on unless types are named.
    automaticPaymentMethods: types.length === 0 && automaticEnabled !== false ? { allowRedirects } : null,
    paymentMethodTypes: types.length > 0 ? types : ["card"],
  });
  // Only an explicit request for automatic payment methods is known to include redirect-based
  // ones; without it Stripe uses the account's Dashboard settings, which the stand-in models as cards only.
  const needsReturnUrl = automaticEnabled === true && allowRedirects === "always";
  if (confirmNow && needsReturnUrl) assertReturnUrl(returnUrl);
  if (needsReturnUrl) ctx.store.redirectCapable.add(pi.id);
  const attached = paymentMethodParam === null ? null : attachTestCard(ctx, paymentMethodParam);
  const stored = ctx.store.paymentIntents.put(
    attached === null ? pi : { ...pi, payment_method: attached, status: "requires_confirmation" },
  );
  return confirmNow ? confirm(ctx, stored, null, returnUrl) : ok(stored);
};

function missingPaymentMethod(): ApiError {
  return invalidRequest(
    "You cannot confirm this PaymentIntent because it's missing a payment method. Update the PaymentIntent with a payment method and then confirm it again.",
    { code: "payment_intent_unexpected_state" },
  );
}

/**
 * Stripe refuses a server-side confirm of a PaymentIntent that may use redirect-based payment
 * methods unless it says where to come back to, even for a card.
 */
function assertReturnUrl(returnUrl: string | null): void {
  if (returnUrl === null) {
    throw invalidRequest(
      "A `return_url` must be specified because this Payment Intent is configured to automatically accept the payment " +
        "methods enabled in the Dashboard, some of which may require a full page redirect to succeed. If you do not want to " +
        "accept redirect-based payment methods, set `automatic_payment_methods[enabled]` to `true` and " +
        "`automatic_payment_methods[allow_redirects]` to `never` when creating Setup Intents and Payment Intents.",
      { param: "return_url" },
    );
  }
}

function testCard(ctx: Context, paymentMethod: string): build.TestCard {
  const card = build.TEST_CARDS[ctx.store.paymentMethods.get(paymentMethod) ?? paymentMethod];
  if (card === undefined) {
    throw invalidRequest(
      `No such PaymentMethod: '${paymentMethod}' (the local Stripe stand-in knows ${Object.keys(build.TEST_CARDS).join(", ")})`,
      { code: "resource_missing", param: "payment_method" },
    );
  }
  return card;
}

/** Like Stripe, a test PaymentMethod (`pm_card_visa`) used on a PaymentIntent becomes a new `pm_…` of that card. */
function attachTestCard(ctx: Context, paymentMethod: string): string {
  testCard(ctx, paymentMethod);
  if (ctx.store.paymentMethods.has(paymentMethod)) return paymentMethod;
  const id = newId.paymentMethod();
  ctx.store.paymentMethods.set(id, paymentMethod);
  return id;
}

const CONFIRMABLE: readonly Stripe.PaymentIntent.Status[] = ["requires_payment_method", "requires_confirmation"];

/** Confirms with a test card: the charge succeeds, or fails as the card says (HTTP 402, as Stripe answers). */
function confirm(ctx: Context, pi: Stripe.PaymentIntent, paymentMethodParam: string | null, returnUrl: string | null): Result {
  if (!CONFIRMABLE.includes(pi.status)) {
    throw unexpectedState(`You cannot confirm this PaymentIntent because it has a status of ${pi.status}.`);
  }
  const named = paymentMethodParam ?? (typeof pi.payment_method === "string" ? pi.payment_method : null);
  if (named === null) throw missingPaymentMethod();
  testCard(ctx, named);
  if (ctx.store.redirectCapable.has(pi.id)) assertReturnUrl(returnUrl);
  const paymentMethodId = attachTestCard(ctx, named);
  const card = testCard(ctx, paymentMethodId);
  const created = ctx.now();
  const charge = ctx.store.charges.put(build.charge({ id: newId.charge(), created, paymentIntent: pi, paymentMethodId, card }));
  const decline = card.decline;
  if (decline === null) {
    const succeeded = ctx.store.paymentIntents.put({
      ...pi,
      status: "succeeded",
      amount_received: pi.amount,
      latest_charge: charge.id,
      payment_method: paymentMethodId,
      last_payment_error: null,
    });
    return ok(succeeded, [
      makeEvent("charge.succeeded", charge, created, ctx.request),
      makeEvent("payment_intent.succeeded", succeeded, created, ctx.request),
    ]);
  }
  const lastError: Stripe.PaymentIntent.LastPaymentError = {
    type: "card_error",
    charge: charge.id,
    code: decline.code,
    decline_code: decline.declineCode,
    doc_url: "https://stripe.com/docs/error-codes/card-declined",
    message: decline.message,
  };
  const failed = ctx.store.paymentIntents.put({
    ...pi,
    status: "requires_payment_method",
    latest_charge: charge.id,
    payment_method: null,
    last_payment_error: lastError,
  });
  const { type, code, decline_code, doc_url, message } = lastError;
  return {
    status: 402,
    body: {
      error: { type, code, decline_code, doc_url, message, charge: charge.id, payment_intent: failed, request_log_url: null },
    },
    events: [
      makeEvent("charge.failed", charge, created, ctx.request),
      makeEvent("payment_intent.payment_failed", failed, created, ctx.request),
    ],
  };
}

const updatePaymentIntent: Handler = (ctx, params, [id]) => {
  knownKeysOnly(params, ["metadata", "description", "receipt_email", "amount"]);
  const pi = mustGet(ctx.store.paymentIntents, "payment_intent", id as string);
  if (pi.status === "succeeded" || pi.status === "canceled") {
    throw unexpectedState(`You cannot update this PaymentIntent because it has a status of ${pi.status}.`);
  }
  const has = (key: string) => key in params;
  const updated: Stripe.PaymentIntent = {
    ...pi,
    amount: has("amount") ? amountParam(params, pi.currency) : pi.amount,
    description: has("description") ? optString(params, "description") : pi.description,
    receipt_email: has("receipt_email") ? optString(params, "receipt_email") : pi.receipt_email,
    metadata: mergeMetadata(pi.metadata, params),
  };
  return ok(ctx.store.paymentIntents.put(updated));
};

const confirmPaymentIntent: Handler = (ctx, params, [id]) => {
  knownKeysOnly(params, ["payment_method", "return_url"]);
  const pi = mustGet(ctx.store.paymentIntents, "payment_intent", id as string);
  return confirm(ctx, pi, optString(params, "payment_method"), optString(params, "return_url"));
};

const CANCELABLE: readonly Stripe.PaymentIntent.Status[] = [
  "requires_payment_method",
  "requires_capture",
  "requires_confirmation",
  "requires_action",
  "processing",
];
const CANCELLATION_REASONS = ["duplicate", "fraudulent", "requested_by_customer", "abandoned"] as const;

const cancelPaymentIntent: Handler = (ctx, params, [id]) => {
  knownKeysOnly(params, ["cancellation_reason"]);
  const pi = mustGet(ctx.store.paymentIntents, "payment_intent", id as string);
  const reasonParam = optString(params, "cancellation_reason");
  const reason = reasonParam === null ? null : oneOf(reasonParam, CANCELLATION_REASONS, "cancellation_reason");
  if (!CANCELABLE.includes(pi.status)) {
    throw unexpectedState(
      `You cannot cancel this PaymentIntent because it has a status of ${pi.status}. Only a PaymentIntent with one of the ` +
        `following statuses may be canceled: ${CANCELABLE.join(", ")}.`,
    );
  }
  const created = ctx.now();
  const canceled = ctx.store.paymentIntents.put({ ...pi, status: "canceled", canceled_at: created, cancellation_reason: reason });
  return ok(canceled, [makeEvent("payment_intent.canceled", canceled, created, ctx.request)]);
};

// ---------------------------------------------------------------------------------------------
// Checkout Sessions
// ---------------------------------------------------------------------------------------------

const SESSION_PARAMS = [
  "mode",
  "line_items",
  "customer",
  "customer_email",
  "client_reference_id",
  "metadata",
  "success_url",
  "cancel_url",
  "payment_intent_data",
  "subscription_data",
  "expires_at",
  "payment_method_types",
  "ui_mode",
] as const;

const SESSION_LIFETIME_SECONDS = 24 * 3600;

interface PricedLine {
  price: Stripe.Price;
  quantity: number;
}

function lineItems(ctx: Context, params: Params, mode: "payment" | "subscription"): PricedLine[] {
  const lines = objectList(params, "line_items");
  if (lines.length === 0) throw invalidRequest(`line_items is required in ${mode} mode.`, { code: "parameter_missing", param: "line_items" });
  return lines.map((line, i) => {
    const name = `line_items[${i}]`;
    knownKeysOnly(line, ["price", "price_data", "quantity"], name);
    const quantity = reqInt(line, "quantity", `${name}[quantity]`);
    if (quantity < 1) throw invalidRequest(`Invalid ${name}[quantity]: must be at least 1`, { param: `${name}[quantity]` });
    const priceId = optString(line, "price", `${name}[price]`);
    const priceData = optObject(line, "price_data", `${name}[price_data]`);
    if ((priceId === null) === (priceData === null)) {
      throw invalidRequest(`You must specify exactly one of ${name}[price] or ${name}[price_data].`, { param: `${name}[price]` });
    }
    if (priceId !== null) return { price: knownOrSubscriptionPrice(ctx, priceId, mode, `${name}[price]`), quantity };
    return { price: inlinePrice(ctx, priceData as Params, mode, `${name}[price_data]`), quantity };
  });
}

/**
 * A price id the stand-in has not seen: in subscription mode it is accepted with an unknown amount
 * (the price lives on Stripe's Dashboard, only its id matters to the backend); in payment mode the
 * amount is what the payment is about, so an unknown price is refused as Stripe would.
 */
function knownOrSubscriptionPrice(ctx: Context, id: string, mode: "payment" | "subscription", name: string): Stripe.Price {
  const known = ctx.store.prices.get(id);
  if (known !== undefined) return known;
  if (mode === "payment" || !id.startsWith("price_")) {
    throw invalidRequest(`No such price: '${id}' (the local Stripe stand-in knows only prices given inline as price_data in payment mode)`, {
      code: "resource_missing",
      param: name,
    });
  }
  return ctx.store.prices.put(
    build.recurringPrice({ id, created: ctx.now(), currency: "usd", unitAmount: null, product: newId.product(), interval: "month", intervalCount: 1 }),
  );
}

const INTERVALS = ["day", "week", "month", "year"] as const;

function inlinePrice(ctx: Context, data: Params, mode: "payment" | "subscription", name: string): Stripe.Price {
  knownKeysOnly(data, ["currency", "unit_amount", "product_data", "product", "recurring"], name);
  const currency = currencyParam(data, "currency", `${name}[currency]`);
  const unitAmount = reqInt(data, "unit_amount", `${name}[unit_amount]`);
  if (unitAmount < 0) throw invalidRequest(`Invalid ${name}[unit_amount]: must be at least 0`, { param: `${name}[unit_amount]` });
  const productData = optObject(data, "product_data", `${name}[product_data]`);
  if (productData !== null) {
    knownKeysOnly(productData, ["name", "description", "metadata", "images"], `${name}[product_data]`);
    reqString(productData, "name", `${name}[product_data][name]`);
  }
  const product = optString(data, "product", `${name}[product]`) ?? (productData !== null ? newId.product() : null);
  if (product === null) throw invalidRequest(`You must specify either ${name}[product] or ${name}[product_data].`, { param: `${name}[product]` });
  const recurring = optObject(data, "recurring", `${name}[recurring]`);
  if (mode === "subscription" && recurring === null) {
    throw invalidRequest(`${name}[recurring] is required in subscription mode.`, { code: "parameter_missing", param: `${name}[recurring]` });
  }
  if (mode === "payment" && recurring !== null) {
    throw invalidRequest(`You specified payment mode but passed a recurring price in ${name}.`, { param: `${name}[recurring]` });
  }
  const interval = recurring === null ? "month" : oneOf(reqString(recurring, "interval", `${name}[recurring][interval]`), INTERVALS, `${name}[recurring][interval]`);
  const intervalCount = recurring === null ? 1 : (optInt(recurring, "interval_count", `${name}[recurring][interval_count]`) ?? 1);
  const price = build.recurringPrice({ id: newId.price(), created: ctx.now(), currency, unitAmount, product, interval, intervalCount });
  // An inline price is created once for the Session, as on Stripe, and is not reusable by id.
  return recurring === null ? { ...price, recurring: null, type: "one_time" } : price;
}

const createCheckoutSession: Handler = (ctx, params) => {
  knownKeysOnly(params, SESSION_PARAMS);
  const mode = oneOf(reqString(params, "mode"), ["payment", "subscription"] as const, "mode");
  const uiMode = optString(params, "ui_mode");
  if (uiMode !== null && uiMode !== "hosted") {
    throw invalidRequest(`ui_mode ${uiMode} is not implemented by the local Stripe stand-in (only hosted)`, { code: "parameter_unknown", param: "ui_mode" });
  }
  const customer = customerParam(ctx, params);
  const customerEmail = optString(params, "customer_email");
  if (customer !== null && customerEmail !== null) {
    throw invalidRequest("You may only specify one of these parameters: customer, customer_email.", { param: "customer_email" });
  }
  const clientReferenceId = optString(params, "client_reference_id");
  if (clientReferenceId !== null && clientReferenceId.length > 200) {
    throw invalidRequest("client_reference_id must be at most 200 characters.", { param: "client_reference_id" });
  }
  const lines = lineItems(ctx, params, mode);
  const currencies = new Set(lines.map((l) => l.price.currency));
  if (currencies.size > 1) throw invalidRequest("All prices on a Checkout Session must have the same currency.", { param: "line_items" });
  const amounts = lines.map((l) => (l.price.unit_amount === null ? null : l.price.unit_amount * l.quantity));
  const amountTotal = amounts.includes(null) ? null : amounts.reduce<number>((sum, a) => sum + (a ?? 0), 0);

  const piData = optObject(params, "payment_intent_data");
  const subData = optObject(params, "subscription_data");
  if (piData !== null && mode !== "payment") throw invalidRequest("payment_intent_data can only be used in payment mode.", { param: "payment_intent_data" });
  if (subData !== null && mode !== "subscription") throw invalidRequest("subscription_data can only be used in subscription mode.", { param: "subscription_data" });
  if (piData !== null) knownKeysOnly(piData, ["metadata", "description", "receipt_email"], "payment_intent_data");
  if (subData !== null) knownKeysOnly(subData, ["metadata"], "subscription_data");

  const created = ctx.now();
  const expiresAt = optInt(params, "expires_at") ?? created + SESSION_LIFETIME_SECONDS;
  if (expiresAt < created + 30 * 60 || expiresAt > created + SESSION_LIFETIME_SECONDS) {
    throw invalidRequest("The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.", { param: "expires_at" });
  }
  const id = newId.checkoutSession();
  const session = build.checkoutSession({
    id,
    created,
    expiresAt,
    url: `${ctx.baseUrl}/__standin/pay/${id}`,
    mode,
    customer,
    customerEmail,
    clientReferenceId,
    metadata: metadataParam(params) ?? {},
    amountTotal,
    currency: [...currencies][0] ?? null,
    successUrl: optString(params, "success_url"),
    cancelUrl: optString(params, "cancel_url"),
  });
  const extras: SessionExtras = {
    lineItems: lines,
    paymentIntentData: {
      metadata: piData === null ? {} : (metadataParam(piData, "metadata", "payment_intent_data[metadata]") ?? {}),
      description: piData === null ? null : optString(piData, "description", "payment_intent_data[description]"),
      receiptEmail: piData === null ? null : optString(piData, "receipt_email", "payment_intent_data[receipt_email]"),
    },
    subscriptionMetadata: subData === null ? {} : (metadataParam(subData, "metadata", "subscription_data[metadata]") ?? {}),
  };
  ctx.store.sessionExtras.set(id, extras);
  return ok(ctx.store.checkoutSessions.put(session));
};

const expireCheckoutSession: Handler = (ctx, params, [id]) => {
  knownKeysOnly(params, []);
  const session = mustGet(ctx.store.checkoutSessions, "checkout.session", id as string, "session");
  if (session.status !== "open") {
    throw invalidRequest(`Only Checkout Sessions with a status in ["open"] can be expired. This session has a status of ${session.status}.`);
  }
  const created = ctx.now();
  const expired = ctx.store.checkoutSessions.put({ ...session, status: "expired", url: null });
  return ok(expired, [makeEvent("checkout.session.expired", expired, created, ctx.request)]);
};

/**
 * What a shopper does on Stripe's Checkout page (a control route, not Stripe's API): pays with a
 * test card. Payment mode creates and confirms the Session's PaymentIntent; subscription mode
 * creates the customer if needed, the active subscription and its paid first invoice.
 */
export function completeCheckoutSession(ctx: Context, id: string, paymentMethod: string): Result {
  const session = mustGet(ctx.store.checkoutSessions, "checkout.session", id, "session");
  const extras = ctx.store.sessionExtras.get(id);
  if (session.status !== "open" || extras === undefined) {
    throw invalidRequest(`This Checkout Session is no longer open (status ${session.status}).`, { param: "session" });
  }
  const card = testCard(ctx, paymentMethod);
  return session.mode === "payment" ? completePayment(ctx, session, extras, paymentMethod) : completeSubscription(ctx, session, extras, card);
}

function completePayment(ctx: Context, session: Stripe.Checkout.Session, extras: SessionExtras, paymentMethod: string): Result {
  // The Session's PaymentIntent exists from the shopper's first attempt (it stays after a decline).
  const existing = session.payment_intent === null ? undefined : ctx.store.paymentIntents.get(idOf(session.payment_intent) ?? "");
  const pi =
    existing ??
    ctx.store.paymentIntents.put(
      build.paymentIntent({
        id: newId.paymentIntent(),
        created: ctx.now(),
        amount: session.amount_total ?? 0,
        currency: session.currency ?? "usd",
        customer: idOf(session.customer),
        description: extras.paymentIntentData.description,
        receiptEmail: extras.paymentIntentData.receiptEmail,
        metadata: { ...extras.paymentIntentData.metadata },
        automaticPaymentMethods: null,
        paymentMethodTypes: ["card"],
      }),
    );
  const linked = ctx.store.checkoutSessions.put({ ...session, payment_intent: pi.id });
  const paid = confirm(ctx, pi, paymentMethod, null);
  if (paid.status !== 200) return paid;
  const created = ctx.now();
  const completed = ctx.store.checkoutSessions.put({
    ...linked,
    status: "complete",
    payment_status: "paid",
    customer_details: build.customerDetails(linked.customer_email),
  });
  return ok(completed, [...paid.events, makeEvent("checkout.session.completed", completed, created, ctx.request)]);
}

function addInterval(seconds: number, interval: Stripe.Price.Recurring.Interval, count: number): number {
  const d = new Date(seconds * 1000);
  if (interval === "day") d.setUTCDate(d.getUTCDate() + count);
  else if (interval === "week") d.setUTCDate(d.getUTCDate() + 7 * count);
  else if (interval === "year") d.setUTCFullYear(d.getUTCFullYear() + count);
  else d.setUTCMonth(d.getUTCMonth() + count);
  return Math.floor(d.getTime() / 1000);
}

function completeSubscription(ctx: Context, session: Stripe.Checkout.Session, extras: SessionExtras, card: build.TestCard): Result {
  if (card.decline !== null) {
    // Checkout shows the decline on its page; no subscription exists until a payment succeeds.
    throw new ApiError(402, { type: "card_error", code: card.decline.code, decline_code: card.decline.declineCode, message: card.decline.message });
  }
  const created = ctx.now();
  const customerId = idOf(session.customer);
  const customer =
    customerId !== null
      ? mustGet(ctx.store.customers, "customer", customerId, "customer")
      : ctx.store.customers.put(
          build.customer({
            id: newId.customer(),
            created,
            email: session.customer_email ?? "shopper@example.com",
            name: "Stand-in Shopper",
            description: null,
            phone: null,
            metadata: {},
          }),
        );
  const first = extras.lineItems[0] as PricedLine;
  const recurring = first.price.recurring;
  const subId = newId.subscription();
  const invoiceId = newId.invoice();
  const sub = ctx.store.subscriptions.put(
    build.subscription({
      id: subId,
      created,
      customer: customer.id,
      currency: first.price.currency,
      metadata: { ...extras.subscriptionMetadata },
      lines: extras.lineItems,
      periodEnd: addInterval(created, recurring?.interval ?? "month", recurring?.interval_count ?? 1),
      latestInvoice: invoiceId,
      defaultPaymentMethod: newId.paymentMethod(),
    }),
  );
  const invoice = ctx.store.invoices.put(build.firstInvoice({ id: invoiceId, created, subscription: sub, customer }));
  const completed = ctx.store.checkoutSessions.put({
    ...session,
    customer: customer.id,
    customer_details: build.customerDetails(customer.email),
    invoice: invoice.id,
    payment_status: "paid",
    status: "complete",
    subscription: sub.id,
  });
  // Stripe sends these in no guaranteed order; this is the order `stripe listen` usually shows.
  return ok(completed, [
    makeEvent("customer.subscription.created", sub, created, ctx.request),
    makeEvent("invoice.paid", invoice, created, ctx.request),
    makeEvent("checkout.session.completed", completed, created, ctx.request),
  ]);
}

// ---------------------------------------------------------------------------------------------
// Billing portal
// ---------------------------------------------------------------------------------------------

const createPortalSession: Handler = (ctx, params) => {
  knownKeysOnly(params, ["customer", "return_url", "configuration", "locale"]);
  const customer = reqString(params, "customer");
  mustGet(ctx.store.customers, "customer", customer, "customer");
  const id = newId.portalSession();
  const session = build.billingPortalSession({
    id,
    created: ctx.now(),
    customer,
    returnUrl: optString(params, "return_url"),
    url: `${ctx.baseUrl}/__standin/portal/${id}`,
    configuration: optString(params, "configuration") ?? ctx.store.portalConfiguration,
  });
  return ok(ctx.store.portalSessions.put(session));
};

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

const ID = "([^/]+)";
const route = (method: Route["method"], path: string, handler: Handler): Route => ({
  method,
  pattern: new RegExp(`^${path.replace(/:id/g, ID)}$`),
  handler,
});
const retrieve =
  <T extends { id: string }>(pick: (store: Store) => Table<T>, kind: string): Handler =>
  (ctx, params, [id]) => {
    knownKeysOnly(params, []);
    return ok(mustGet(pick(ctx.store), kind, id as string));
  };

export const ROUTES: readonly Route[] = [
  route("POST", "/v1/customers", createCustomer),
  route("GET", "/v1/customers", (ctx, params) => {
    knownKeysOnly(params, ["email", "limit", "starting_after"]);
    const email = optString(params, "email");
    return list(ctx.store.customers, "/v1/customers", params, (c) => email === null || c.email === email);
  }),
  route("GET", "/v1/customers/:id", retrieve((s) => s.customers, "customer")),
  route("POST", "/v1/customers/:id", updateCustomer),

  route("POST", "/v1/payment_intents", createPaymentIntent),
  route("GET", "/v1/payment_intents", (ctx, params) => {
    knownKeysOnly(params, ["customer", "limit", "starting_after"]);
    const customer = optString(params, "customer");
    return list(ctx.store.paymentIntents, "/v1/payment_intents", params, (pi) => customer === null || pi.customer === customer);
  }),
  route("GET", "/v1/payment_intents/:id", retrieve((s) => s.paymentIntents, "payment_intent")),
  route("POST", "/v1/payment_intents/:id", updatePaymentIntent),
  route("POST", "/v1/payment_intents/:id/confirm", confirmPaymentIntent),
  route("POST", "/v1/payment_intents/:id/cancel", cancelPaymentIntent),

  route("GET", "/v1/charges/:id", retrieve((s) => s.charges, "charge")),

  route("POST", "/v1/checkout/sessions", createCheckoutSession),
  route("GET", "/v1/checkout/sessions", (ctx, params) => {
    knownKeysOnly(params, ["customer", "payment_intent", "subscription", "status", "limit", "starting_after"]);
    const customer = optString(params, "customer");
    const paymentIntent = optString(params, "payment_intent");
    const subscription = optString(params, "subscription");
    const status = optString(params, "status");
    return list(
      ctx.store.checkoutSessions,
      "/v1/checkout/sessions",
      params,
      (s) =>
        (customer === null || idOf(s.customer) === customer) &&
        (paymentIntent === null || idOf(s.payment_intent) === paymentIntent) &&
        (subscription === null || idOf(s.subscription) === subscription) &&
        (status === null || s.status === status),
    );
  }),
  route("GET", "/v1/checkout/sessions/:id", retrieve((s) => s.checkoutSessions, "checkout.session")),
  route("POST", "/v1/checkout/sessions/:id/expire", expireCheckoutSession),

  route("GET", "/v1/subscriptions", (ctx, params) => {
    knownKeysOnly(params, ["customer", "limit", "starting_after"]);
    const customer = optString(params, "customer");
    return list(ctx.store.subscriptions, "/v1/subscriptions", params, (s) => customer === null || idOf(s.customer) === customer);
  }),
  route("GET", "/v1/subscriptions/:id", retrieve((s) => s.subscriptions, "subscription")),
  route("GET", "/v1/invoices/:id", retrieve((s) => s.invoices, "invoice")),

  route("POST", "/v1/billing_portal/sessions", createPortalSession),
];

export function findRoute(method: string, path: string): { handler: Handler; pathParams: string[] } | null {
  for (const r of ROUTES) {
    if (r.method !== method) continue;
    const m = r.pattern.exec(path);
    if (m !== null) return { handler: r.handler, pathParams: m.slice(1).map((s) => decodeURIComponent(s)) };
  }
  return null;
}
