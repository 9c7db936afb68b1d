import { expect } from "chai";
import { HttpsError } from "firebase-functions/v2/https";
import Stripe from "stripe";
import { decideUnpaidCancellation } from "../../src/checkout/cancelUnpaid";
import { CheckoutError, toHttpsError } from "../../src/checkout/errors";
import { checkoutOrderId, stripeKeys } from "../../src/checkout/ids";
import { MAX_CHECKOUT_LINES, parseAllowedOrigins, parseCheckoutInput } from "../../src/checkout/input";
import { MAX_AMOUNT, priceOrder } from "../../src/checkout/pricing";
import { decideRateLimit } from "../../src/checkout/rateLimit";
import type { Order } from "../../src/collections/orders";
import { productFromData, type Product } from "../../src/collections/products";
import { emulatorEndpoint } from "../../src/stripe/client";

/** The pure parts of checkout (SPEC 7): the input edge, pricing, ids, the rate limit, the cancel decision, error mapping. */

const ORIGINS = ["http://localhost:5173", "https://shop.example.com"];
const KEY = "key-0123456789";

function kindOf(fn: () => unknown): { kind: string; reason: string } {
  try {
    fn();
  } catch (error) {
    if (error instanceof CheckoutError) return { kind: error.kind, reason: error.details.reason };
    throw error;
  }
  throw new Error("expected a CheckoutError");
}

describe("checkout input", () => {
  const valid = { items: [{ sku: "tshirt", qty: 2 }], idempotencyKey: KEY };

  it("accepts a payment_intent checkout and defaults ui", () => {
    expect(parseCheckoutInput(valid, ORIGINS)).to.deep.equal({ items: [{ sku: "tshirt", qty: 2 }], idempotencyKey: KEY, ui: "payment_intent" });
  });

  it("accepts a checkout_session with allowed return URLs", () => {
    const input = parseCheckoutInput(
      { ...valid, ui: "checkout_session", successUrl: "https://shop.example.com/done?s={CHECKOUT_SESSION_ID}", cancelUrl: "http://localhost:5173/cart" },
      ORIGINS,
    );
    expect(input).to.include({ ui: "checkout_session", cancelUrl: "http://localhost:5173/cart" });
  });

  const refused: Array<[string, unknown, string]> = [
    ["not an object", "tshirt", "bad_request"],
    ["an amount from the client", { ...valid, amount: 1 }, "unknown_field"],
    ["no items", { ...valid, items: [] }, "no_lines"],
    ["items not a list", { ...valid, items: { sku: "tshirt", qty: 1 } }, "no_lines"],
    ["too many lines", { ...valid, items: Array.from({ length: MAX_CHECKOUT_LINES + 1 }, () => ({ sku: "tshirt", qty: 1 })) }, "too_many_lines"],
    ["qty 0", { ...valid, items: [{ sku: "tshirt", qty: 0 }] }, "bad_qty"],
    ["qty -1", { ...valid, items: [{ sku: "tshirt", qty: -1 }] }, "bad_qty"],
    ["qty 1.5", { ...valid, items: [{ sku: "tshirt", qty: 1.5 }] }, "bad_qty"],
    ["qty as a string", { ...valid, items: [{ sku: "tshirt", qty: "2" }] }, "bad_qty"],
    ["qty huge", { ...valid, items: [{ sku: "tshirt", qty: 1e9 }] }, "bad_qty"],
    ["a price on a line", { ...valid, items: [{ sku: "tshirt", qty: 1, price: 1 }] }, "unknown_field"],
    ["a sku with a slash", { ...valid, items: [{ sku: "a/b", qty: 1 }] }, "bad_sku"],
    ["a sku ..", { ...valid, items: [{ sku: "..", qty: 1 }] }, "bad_sku"],
    ["an empty sku", { ...valid, items: [{ sku: "", qty: 1 }] }, "bad_sku"],
    ["a short key", { ...valid, idempotencyKey: "short" }, "bad_idempotency_key"],
    ["a key with spaces", { ...valid, idempotencyKey: "key with spaces" }, "bad_idempotency_key"],
    ["a key of 256 chars", { ...valid, idempotencyKey: "k".repeat(256) }, "bad_idempotency_key"],
    ["no key", { items: valid.items }, "bad_idempotency_key"],
    ["an unknown ui", { ...valid, ui: "hosted" }, "bad_ui"],
    ["URLs with payment_intent", { ...valid, successUrl: "http://localhost:5173/ok" }, "unexpected_url"],
    ["a session without URLs", { ...valid, ui: "checkout_session" }, "bad_url"],
    ["a foreign success origin", { ...valid, ui: "checkout_session", successUrl: "https://evil.example/ok", cancelUrl: "http://localhost:5173/c" }, "origin_not_allowed"],
    ["a look-alike origin", { ...valid, ui: "checkout_session", successUrl: "https://shop.example.com.evil.example/ok", cancelUrl: "http://localhost:5173/c" }, "origin_not_allowed"],
    ["a relative URL", { ...valid, ui: "checkout_session", successUrl: "/ok", cancelUrl: "http://localhost:5173/c" }, "bad_url"],
    ["a javascript: URL", { ...valid, ui: "checkout_session", successUrl: "javascript:alert(1)", cancelUrl: "http://localhost:5173/c" }, "origin_not_allowed"],
  ];
  for (const [label, data, reason] of refused) {
    it(`refuses ${label} (${reason})`, () => {
      expect(kindOf(() => parseCheckoutInput(data, ORIGINS))).to.deep.equal({ kind: "invalid_input", reason });
    });
  }

  it("parses CHECKOUT_ALLOWED_ORIGINS and refuses an entry that is not an origin", () => {
    expect(parseAllowedOrigins(" http://localhost:5173, https://shop.example.com/ ,")).to.deep.equal(ORIGINS);
    expect(parseAllowedOrigins("")).to.deep.equal([]);
    expect(() => parseAllowedOrigins("https://shop.example.com/path")).to.throw(TypeError);
  });
});

describe("checkout pricing", () => {
  const product = (sku: string, data: Record<string, unknown>): Product =>
    productFromData(sku, { name: `Product ${sku}`, stock: 5, reserved: 0, ...data });
  const catalog = new Map<string, Product | undefined>([
    ["tshirt", product("tshirt", { price: 2000, currency: "usd" })],
    ["mug", product("mug", { price: 1250, currency: "USD" })],
    ["euro", product("euro", { price: 900, currency: "eur" })],
    ["retired", product("retired", { price: 100, currency: "usd", active: false })],
    ["unpriced", product("unpriced", { currency: "usd" })],
    ["fractional", product("fractional", { price: 12.5, currency: "usd" })],
    ["ghost", undefined],
  ]);

  it("sums price × qty from the products, in their currency", () => {
    const priced = priceOrder([{ sku: "tshirt", qty: 2 }, { sku: "mug", qty: 1 }, { sku: "tshirt", qty: 1 }], catalog);
    expect(priced.amount).to.equal(3 * 2000 + 1250);
    expect(priced.currency).to.equal("usd");
    expect(priced.lines).to.deep.equal([
      { sku: "tshirt", qty: 2, unitAmount: 2000, name: "Product tshirt" },
      { sku: "mug", qty: 1, unitAmount: 1250, name: "Product mug" },
      { sku: "tshirt", qty: 1, unitAmount: 2000, name: "Product tshirt" },
    ]);
  });

  it("treats an absent `active` as active", () => {
    expect(product("x", { price: 1, currency: "usd" }).active).to.equal(true);
  });

  const refused: Array<[string, string, string]> = [
    ["an unknown SKU", "ghost", "unknown_sku"],
    ["a SKU not in the catalog at all", "nowhere", "unknown_sku"],
    ["an inactive SKU", "retired", "inactive_sku"],
    ["a SKU without a price", "unpriced", "unpriced_sku"],
    ["a SKU with a fractional price", "fractional", "unpriced_sku"],
  ];
  for (const [label, sku, reason] of refused) {
    it(`refuses ${label}`, () => {
      expect(kindOf(() => priceOrder([{ sku: "tshirt", qty: 1 }, { sku, qty: 1 }], catalog))).to.deep.equal({ kind: "invalid_input", reason });
    });
  }

  it("refuses mixed currencies", () => {
    expect(kindOf(() => priceOrder([{ sku: "tshirt", qty: 1 }, { sku: "euro", qty: 1 }], catalog)).reason).to.equal("mixed_currency");
  });

  it("refuses a total above Stripe's largest amount", () => {
    const big = new Map([["big", product("big", { price: MAX_AMOUNT, currency: "usd" })]]);
    expect(priceOrder([{ sku: "big", qty: 1 }], big).amount).to.equal(MAX_AMOUNT);
    expect(kindOf(() => priceOrder([{ sku: "big", qty: 2 }], big)).reason).to.equal("amount_too_large");
  });
});

describe("checkout ids", () => {
  it("derives one order id per (uid, key), different across users and keys", () => {
    const id = checkoutOrderId("alice", KEY);
    expect(id).to.match(/^co_[0-9a-f]{64}$/);
    expect(checkoutOrderId("alice", KEY)).to.equal(id);
    expect(checkoutOrderId("bob", KEY)).to.not.equal(id);
    expect(checkoutOrderId("alice", `${KEY}x`)).to.not.equal(id);
    // The pair is unambiguous: moving characters between uid and key names another order.
    expect(checkoutOrderId("alice-", "key")).to.not.equal(checkoutOrderId("alice", "-key"));
  });

  it("keeps Stripe idempotency keys within Stripe's 255 characters", () => {
    const orderId = checkoutOrderId("u".repeat(128), "k".repeat(255));
    for (const key of [stripeKeys.customer("u".repeat(128)), stripeKeys.paymentIntent(orderId), stripeKeys.checkoutSession(orderId)]) {
      expect(key.length).to.be.at.most(255);
    }
    expect(stripeKeys.paymentIntent(orderId)).to.not.equal(stripeKeys.checkoutSession(orderId));
  });
});

describe("checkout rate limit (sliding 60 s window)", () => {
  const t0 = new Date("2026-03-01T12:00:00.000Z");
  const at = (ms: number) => new Date(t0.getTime() + ms);

  it("allows up to the limit in a window, then refuses", () => {
    let recent: Date[] = [];
    for (let i = 0; i < 5; i++) {
      const d = decideRateLimit(recent, at(i * 1000), 5);
      if (!d.allowed) throw new Error(`checkout ${i + 1} refused`);
      recent = d.checkouts;
    }
    const sixth = decideRateLimit(recent, at(5000), 5);
    expect(sixth).to.deep.equal({ allowed: false, retryAfterMs: 55_000 });
  });

  it("slides: a slot frees exactly when the oldest leaves the window", () => {
    const recent = [0, 10_000, 20_000, 30_000, 40_000].map(at);
    expect(decideRateLimit(recent, at(59_999), 5).allowed).to.equal(false);
    const d = decideRateLimit(recent, at(60_000), 5);
    expect(d.allowed).to.equal(true);
    if (d.allowed) expect(d.checkouts.map((t) => t.getTime() - t0.getTime())).to.deep.equal([10_000, 20_000, 30_000, 40_000, 60_000]);
  });

  it("is not a fixed window: five at the end of one minute block the start of the next", () => {
    const recent = [55_000, 56_000, 57_000, 58_000, 59_000].map(at);
    expect(decideRateLimit(recent, at(61_000), 5)).to.deep.equal({ allowed: false, retryAfterMs: 54_000 });
  });

  it("counts a checkout stamped slightly ahead by another instance's clock", () => {
    const recent = [0, 1, 2, 3, 4].map((s) => at(s * 1000 + 200));
    expect(decideRateLimit(recent, at(4000), 5).allowed).to.equal(false);
  });

  it("refuses everything with a limit below 1", () => {
    expect(decideRateLimit([], t0, 0)).to.deep.equal({ allowed: false, retryAfterMs: 60_000 });
  });
});

describe("decideUnpaidCancellation", () => {
  const order = (o: Partial<Order>): Order => ({ id: "co_1", userId: "u", items: [{ sku: "a", qty: 1 }], amount: 100, currency: "usd", status: "pending", createdAt: new Date(0), ...o });

  it("cancels the PaymentIntent of an order that just went out_of_stock", () => {
    expect(decideUnpaidCancellation(order({ paymentIntentId: "pi_1" }), order({ status: "out_of_stock", paymentIntentId: "pi_1" }))).to.deep.equal({
      kind: "cancel_payment_intent",
      paymentIntentId: "pi_1",
    });
  });

  it("cancels when the PaymentIntent is stored after the order went out_of_stock", () => {
    expect(decideUnpaidCancellation(order({ status: "out_of_stock" }), order({ status: "out_of_stock", paymentIntentId: "pi_1" })).kind).to.equal("cancel_payment_intent");
  });

  it("cancels as abandoned when the sweep canceled the order", () => {
    const after = order({ status: "canceled", paymentIntentId: "pi_1", statusHistory: [{ from: "reserved", to: "canceled", at: new Date(1), eventId: null, reason: "sweep" }] });
    expect(decideUnpaidCancellation(order({ status: "reserved", paymentIntentId: "pi_1" }), after)).to.deep.equal({
      kind: "cancel_payment_intent",
      paymentIntentId: "pi_1",
      cancellationReason: "abandoned",
    });
  });

  it("expires the Session rather than its PaymentIntent", () => {
    const after = order({ status: "out_of_stock", checkoutSessionId: "cs_1", paymentIntentId: "pi_1" });
    expect(decideUnpaidCancellation(order({ checkoutSessionId: "cs_1", paymentIntentId: "pi_1" }), after)).to.deep.equal({ kind: "expire_checkout_session", checkoutSessionId: "cs_1" });
  });

  it("does nothing when Stripe canceled it (payment_intent.canceled)", () => {
    const after = order({ status: "canceled", paymentIntentId: "pi_1", statusHistory: [{ from: "reserved", to: "canceled", at: new Date(1), eventId: "evt_1", reason: "canceled" }] });
    expect(decideUnpaidCancellation(order({ status: "reserved", paymentIntentId: "pi_1" }), after).kind).to.equal("none");
  });

  it("does nothing for open, paid, payment-less, unchanged or deleted orders", () => {
    for (const status of ["pending", "reserved", "finalized", "needs_review", "refunded"] as const) {
      expect(decideUnpaidCancellation(order({}), order({ status, paymentIntentId: "pi_1" })).kind, status).to.equal("none");
    }
    expect(decideUnpaidCancellation(order({}), order({ status: "out_of_stock" })).kind).to.equal("none");
    const closed = order({ status: "out_of_stock", paymentIntentId: "pi_1" });
    expect(decideUnpaidCancellation(closed, { ...closed, updatedAt: new Date(5) }).kind).to.equal("none");
    expect(decideUnpaidCancellation(closed, null).kind).to.equal("none");
  });
});

describe("checkout errors → callable codes (the one mapping)", () => {
  const quiet = () => undefined;
  const codeOf = (error: unknown) => toHttpsError(error, quiet).code;

  it("maps the checkout's own errors", () => {
    expect(codeOf(new CheckoutError("invalid_input", "x"))).to.equal("invalid-argument");
    expect(codeOf(new CheckoutError("not_signed_in", "x"))).to.equal("unauthenticated");
    expect(codeOf(new CheckoutError("key_reused", "x"))).to.equal("failed-precondition");
    expect(codeOf(new CheckoutError("rate_limited", "x"))).to.equal("resource-exhausted");
  });

  it("keeps the details a client branches on", () => {
    const error = toHttpsError(new CheckoutError("rate_limited", "wait", { reason: "rate_limited", retryAfterSeconds: 12 }), quiet);
    expect(error.details).to.deep.equal({ reason: "rate_limited", retryAfterSeconds: 12 });
  });

  it("maps Stripe unreachable, 5xx and 429 to unavailable, and our own bad requests to internal", () => {
    expect(codeOf(new Stripe.errors.StripeConnectionError({ message: "ECONNREFUSED" }))).to.equal("unavailable");
    expect(codeOf(new Stripe.errors.StripeAPIError({ message: "boom", statusCode: 500 }))).to.equal("unavailable");
    expect(codeOf(new Stripe.errors.StripeRateLimitError({ message: "slow down", statusCode: 429 }))).to.equal("unavailable");
    expect(codeOf(new Stripe.errors.StripeInvalidRequestError({ message: "bad", statusCode: 400 }))).to.equal("internal");
    expect(codeOf(new Stripe.errors.StripeAuthenticationError({ message: "key", statusCode: 401 }))).to.equal("internal");
    expect(codeOf(new Stripe.errors.StripeIdempotencyError({ message: "other params", statusCode: 400 }))).to.equal("internal");
  });

  it("maps Firestore UNAVAILABLE / ABORTED to unavailable, anything else to internal", () => {
    expect(codeOf(Object.assign(new Error("unavailable"), { code: 14 }))).to.equal("unavailable");
    expect(codeOf(Object.assign(new Error("aborted"), { code: 10 }))).to.equal("unavailable");
    expect(codeOf(new TypeError("bug"))).to.equal("internal");
    const passthrough = new HttpsError("not-found", "x");
    expect(toHttpsError(passthrough, quiet)).to.equal(passthrough);
  });

  it("never tells the client what an unexpected error was", () => {
    expect(toHttpsError(new Error("secret internals"), quiet).message).to.not.include("secret");
  });
});

describe("stripe client endpoint", () => {
  const env = { STRIPE_API_HOST: "127.0.0.1", STRIPE_API_PORT: "12111", STRIPE_API_PROTOCOL: "http" };

  it("points at the stand-in only inside the Functions emulator", () => {
    expect(emulatorEndpoint({ ...env, FUNCTIONS_EMULATOR: "true" })).to.deep.equal({ host: "127.0.0.1", port: 12111, protocol: "http" });
    expect(emulatorEndpoint(env)).to.deep.equal({});
    expect(emulatorEndpoint({ ...env, FUNCTIONS_EMULATOR: "false" })).to.deep.equal({});
  });

  it("uses Stripe's own host when no stand-in is configured", () => {
    expect(emulatorEndpoint({ FUNCTIONS_EMULATOR: "true" })).to.deep.equal({});
  });
});
