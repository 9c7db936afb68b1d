import { expect } from "chai";
import { CheckoutError } from "../../src/checkout/errors";
import { parseSubscriptionCheckoutInput, subscriptionCheckoutId } from "../../src/subscriptions/callables";

/** The edge of `createSubscriptionCheckout`: what the client sent, checked before it names a document. */

const ORIGINS = ["https://app.example.com"];
const valid = { priceId: "price_123", idempotencyKey: "key-12345678", successUrl: "https://app.example.com/ok", cancelUrl: "https://app.example.com/no" };

function reasonOf(data: unknown): string {
  try {
    parseSubscriptionCheckoutInput(data, ORIGINS);
  } catch (error) {
    if (error instanceof CheckoutError) return `${error.kind}:${error.details.reason}`;
    throw error;
  }
  return "accepted";
}

describe("createSubscriptionCheckout input", () => {
  it("accepts {priceId, idempotencyKey, successUrl, cancelUrl}", () => {
    expect(parseSubscriptionCheckoutInput(valid, ORIGINS)).to.deep.equal(valid);
  });

  for (const [label, data, reason] of [
    ["not an object", "price_123", "invalid_input:bad_request"],
    ["an unknown field (no client-defined amount or role)", { ...valid, role: "admin" }, "invalid_input:unknown_field"],
    ["a price id that could name another path", { ...valid, priceId: "price/../../customers" }, "invalid_input:bad_price"],
    ["no price", { ...valid, priceId: undefined }, "invalid_input:bad_price"],
    ["a short idempotency key", { ...valid, idempotencyKey: "short" }, "invalid_input:bad_idempotency_key"],
    ["a success URL on another origin", { ...valid, successUrl: "https://evil.example/ok" }, "invalid_input:origin_not_allowed"],
    ["a missing cancel URL", { ...valid, cancelUrl: undefined }, "invalid_input:bad_url"],
  ] as const) {
    it(`refuses ${label}`, () => {
      expect(reasonOf(data)).to.equal(reason);
    });
  }

  it("derives one record id per (uid, key), never shared between users", () => {
    expect(subscriptionCheckoutId("alice", "key-12345678")).to.equal(subscriptionCheckoutId("alice", "key-12345678"));
    expect(subscriptionCheckoutId("alice", "key-12345678")).to.not.equal(subscriptionCheckoutId("bob", "key-12345678"));
    expect(subscriptionCheckoutId("alice", "key-12345678")).to.match(/^sc_[0-9a-f]{64}$/);
  });
});
