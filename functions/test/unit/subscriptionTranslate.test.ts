import { expect } from "chai";
import { translateSubscriptionEvent } from "../../src/subscriptions/translate";
import type { SubscriptionCommand, SubscriptionTranslation } from "../../src/subscriptions/commands";
import { asStripeEvent, checkoutSession, event, paymentIntent } from "../helpers/stripeFixtures";
import { invoice, subscription, subscriptionCheckoutSession } from "../helpers/subscriptionFixtures";

/** The edge of SPEC 8: Stripe subscription events of the pinned API version (and older shapes) → commands. */

const CUSTOMER = "cus_test_alice";
const SUB = "sub_test_1";
const PRICE = "price_basic";

function translate(type: string, object: Record<string, unknown>, created = 1_760_000_000): SubscriptionTranslation | null {
  return translateSubscriptionEvent(asStripeEvent(event(type, object, { created })));
}

function commandOf(t: SubscriptionTranslation | null): SubscriptionCommand {
  if (t === null || t.kind !== "command") throw new Error(`expected a command, got ${JSON.stringify(t)}`);
  return t.command;
}

describe("translateSubscriptionEvent: subscriptions", () => {
  for (const [type, kind, change] of [
    ["customer.subscription.created", "subscription_changed", "created"],
    ["customer.subscription.updated", "subscription_changed", "updated"],
    ["customer.subscription.paused", "subscription_changed", "paused"],
    ["customer.subscription.resumed", "subscription_changed", "resumed"],
    ["customer.subscription.deleted", "subscription_deleted", undefined],
    ["customer.subscription.trial_will_end", "trial_will_end", undefined],
  ] as const) {
    it(`${type} → ${kind}${change ? ` (${change})` : ""} with the object's state`, () => {
      const periodEnd = 1_762_000_000;
      const object = subscription({ id: SUB, customer: CUSTOMER, priceId: PRICE, status: "active", created: 1_759_000_000, currentPeriodEnd: periodEnd, cancelAtPeriodEnd: true, uid: "alice" });
      const command = commandOf(translate(type, object));
      expect(command).to.deep.include({ kind, customerId: CUSTOMER, subscriptionId: SUB, uidClaim: "alice" });
      if (change) expect(command).to.include({ change });
      if (!("state" in command)) throw new Error("no state");
      expect(command.state).to.deep.equal({
        status: "active",
        priceId: PRICE,
        currentPeriodEnd: new Date(periodEnd * 1000),
        cancelAtPeriodEnd: true,
        created: new Date(1_759_000_000 * 1000),
        trialEnd: null,
      });
    });
  }

  it("reads the period from the items (2025 shape), else from the subscription (older versions)", () => {
    const legacy = subscription({ id: SUB, customer: CUSTOMER, priceId: PRICE, currentPeriodEnd: 1_765_000_000, legacyPeriod: true });
    expect((legacy.items as { data: Record<string, unknown>[] }).data[0]).to.not.have.property("current_period_end");
    const command = commandOf(translate("customer.subscription.updated", legacy));
    expect(command.kind === "subscription_changed" && command.state.currentPeriodEnd?.getTime()).to.equal(1_765_000_000 * 1000);
  });

  it("an expanded customer object is read by its id", () => {
    const object = { ...subscription({ id: SUB, customer: CUSTOMER, priceId: PRICE }), customer: { id: CUSTOMER, object: "customer" } };
    expect(commandOf(translate("customer.subscription.updated", object)).customerId).to.equal(CUSTOMER);
  });

  for (const status of ["incomplete", "incomplete_expired", "trialing", "past_due", "canceled", "unpaid", "paused"]) {
    it(`keeps Stripe's status ${status}`, () => {
      const command = commandOf(translate("customer.subscription.updated", subscription({ id: SUB, customer: CUSTOMER, priceId: PRICE, status })));
      expect(command.kind === "subscription_changed" && command.state.status).to.equal(status);
    });
  }

  it("ignores an unknown status, an id that is not a subscription's, a price that cannot name a document, a missing customer", () => {
    const base = subscription({ id: SUB, customer: CUSTOMER, priceId: PRICE });
    expect(translate("customer.subscription.updated", { ...base, status: "someday" })).to.deep.include({ kind: "ignored" });
    expect(translate("customer.subscription.updated", { ...base, id: "sub_../../orders/x" })).to.deep.include({ kind: "ignored" });
    expect(translate("customer.subscription.updated", subscription({ id: SUB, customer: CUSTOMER, priceId: "a/b" }))).to.deep.include({ kind: "ignored" });
    expect(translate("customer.subscription.updated", { ...base, customer: "not-a-customer" })).to.deep.include({ kind: "ignored" });
    expect(translate("customer.subscription.updated", { ...base, customer: null })).to.deep.include({ kind: "ignored" });
  });
});

describe("translateSubscriptionEvent: invoices, both shapes", () => {
  for (const [type, kind] of [
    ["invoice.paid", "invoice_paid"],
    ["invoice.payment_failed", "invoice_payment_failed"],
    ["invoice.payment_action_required", "invoice_action_required"],
  ] as const) {
    for (const legacyShape of [false, true]) {
      it(`${type} (${legacyShape ? "older API: invoice.subscription" : "2025: invoice.parent.subscription_details.subscription"}) → ${kind}`, () => {
        const object = invoice({ id: "in_test_1", customer: CUSTOMER, subscriptionId: SUB, billingReason: "subscription_create", paid: type === "invoice.paid", legacyShape });
        if (legacyShape) expect(object).to.not.have.property("parent");
        else expect(object).to.not.have.property("subscription");
        expect(commandOf(translate(type, object))).to.deep.equal({ kind, customerId: CUSTOMER, subscriptionId: SUB, uidClaim: null, invoiceId: "in_test_1", billingReason: "subscription_create" });
      });
    }
  }

  it("the invoice's subscription metadata uid is a claim", () => {
    const object = invoice({ customer: CUSTOMER, subscriptionId: SUB, uid: "alice" });
    expect(commandOf(translate("invoice.paid", object)).uidClaim).to.equal("alice");
  });

  it("an invoice of no subscription (a one-off invoice) is ignored", () => {
    const object = { ...invoice({ customer: CUSTOMER, subscriptionId: SUB }), parent: null };
    expect(translate("invoice.paid", object)).to.deep.equal({ kind: "ignored", reason: "invoice belongs to no subscription" });
  });

  it("an expanded subscription under parent.subscription_details is read by its id", () => {
    const object = invoice({ customer: CUSTOMER, subscriptionId: SUB });
    (object.parent as { subscription_details: { subscription: unknown } }).subscription_details.subscription = { id: SUB, object: "subscription" };
    expect(commandOf(translate("invoice.payment_failed", object)).subscriptionId).to.equal(SUB);
  });
});

describe("translateSubscriptionEvent: Checkout Sessions and everything else", () => {
  it("checkout.session.completed in subscription mode links the session's subscription and customer; client_reference_id is a claim", () => {
    const object = subscriptionCheckoutSession({ id: "cs_test_1", customer: CUSTOMER, subscriptionId: SUB, clientReferenceId: "alice" });
    expect(commandOf(translate("checkout.session.completed", object))).to.deep.equal({
      kind: "checkout_completed",
      customerId: CUSTOMER,
      subscriptionId: SUB,
      uidClaim: "alice",
      checkoutSessionId: "cs_test_1",
    });
  });

  it("a session in subscription mode without a subscription or a customer is ignored", () => {
    expect(translate("checkout.session.completed", subscriptionCheckoutSession({ customer: CUSTOMER, subscriptionId: null }))).to.deep.include({ kind: "ignored" });
    expect(translate("checkout.session.completed", { ...subscriptionCheckoutSession({ customer: CUSTOMER, subscriptionId: SUB }), customer: null })).to.deep.include({ kind: "ignored" });
  });

  it("payment-mode sessions and every other event type are not subscription events (null: the order translator takes them)", () => {
    expect(translate("checkout.session.completed", checkoutSession({ amount: 1000, orderId: "order-1" }))).to.equal(null);
    expect(translate("checkout.session.completed", { ...checkoutSession({ amount: 1000, orderId: null }), mode: "setup" })).to.equal(null);
    expect(translate("payment_intent.succeeded", paymentIntent({ amount: 1000, orderId: "order-1" }))).to.equal(null);
    expect(translate("invoice.created", invoice({ customer: CUSTOMER, subscriptionId: SUB }))).to.equal(null);
    expect(translate("customer.subscription.pending_update_applied", subscription({ customer: CUSTOMER, priceId: PRICE }))).to.equal(null);
  });
});
