import { expect } from "chai";
import { ORDER_STATUSES, type Order } from "../../src/collections/orders";
import type { Command, OrderRef, Translation } from "../../src/domain/commands";
import { decide } from "../../src/domain/orderMachine";
import { HANDLED_EVENT_TYPES, eventMeta, translateEvent } from "../../src/stripe/translate";
import { asStripeEvent, charge, checkoutSession, dispute, event, paymentIntent } from "../helpers/stripeFixtures";

/** stripe/translate.ts: verified Stripe event → the project's command and order reference (SPEC §4). */

type Translated = Extract<Translation, { kind: "command" }>;
type Ignored = Extract<Translation, { kind: "ignored" }>;

function translate(type: string, object: Record<string, unknown>): Translation {
  return translateEvent(asStripeEvent(event(type, object, { id: "evt_t" })));
}

function asCommand(t: Translation): Translated {
  if (t.kind !== "command") throw new Error(`expected a command, got ignored: ${t.reason}`);
  return t;
}

function asIgnored(t: Translation): Ignored {
  if (t.kind !== "ignored") throw new Error(`expected ignored, got ${t.command.kind}`);
  return t;
}

const byOrder = (orderId: string): OrderRef => ({ by: "orderId", orderId });
const byPaymentIntent = (paymentIntentId: string): OrderRef => ({ by: "paymentIntent", paymentIntentId });

describe("translateEvent: payment intents", () => {
  it("payment_intent.succeeded → payment_succeeded for metadata.orderId, currency lowercased", () => {
    const t = asCommand(translate("payment_intent.succeeded", paymentIntent({ id: "pi_1", amount: 2500, currency: "EUR", orderId: "ord_1" })));
    expect(t.ref).to.deep.equal(byOrder("ord_1"));
    expect(t.command).to.deep.equal({ kind: "payment_succeeded", amount: 2500, currency: "eur", paymentIntentId: "pi_1", checkoutSessionId: null });
  });

  it("payment_intent.succeeded uses amount_received (the money actually received)", () => {
    const pi = { ...paymentIntent({ id: "pi_1", amount: 2500, orderId: "ord_1" }), amount_received: 2400 };
    const t = asCommand(translate("payment_intent.succeeded", pi));
    expect(t.command).to.include({ kind: "payment_succeeded", amount: 2400 });
  });

  it("payment_intent.payment_failed → payment_failed with the decline code and message", () => {
    const pi = paymentIntent({
      id: "pi_1",
      amount: 2500,
      orderId: "ord_1",
      status: "requires_payment_method",
      lastError: { code: "card_declined", decline_code: "insufficient_funds", message: "Your card has insufficient funds." },
    });
    const t = asCommand(translate("payment_intent.payment_failed", pi));
    expect(t.ref).to.deep.equal(byOrder("ord_1"));
    expect(t.command).to.deep.equal({
      kind: "payment_failed",
      code: "insufficient_funds",
      message: "Your card has insufficient funds.",
      paymentIntentId: "pi_1",
      checkoutSessionId: null,
    });
  });

  it("payment_intent.payment_failed without a decline code falls back to the error code; without an error, null", () => {
    const withCode = paymentIntent({ id: "pi_1", amount: 1, orderId: "ord_1", status: "requires_payment_method", lastError: { code: "expired_card", message: "Expired." } });
    expect(asCommand(translate("payment_intent.payment_failed", withCode)).command).to.include({ code: "expired_card", message: "Expired." });
    const without = paymentIntent({ id: "pi_1", amount: 1, orderId: "ord_1", status: "requires_payment_method" });
    expect(asCommand(translate("payment_intent.payment_failed", without)).command).to.include({ code: null, message: null });
  });

  it("payment_intent.canceled → payment_canceled with the cancellation reason", () => {
    const pi = paymentIntent({ id: "pi_1", amount: 2500, orderId: "ord_1", status: "canceled", cancellationReason: "abandoned" });
    const t = asCommand(translate("payment_intent.canceled", pi));
    expect(t.ref).to.deep.equal(byOrder("ord_1"));
    expect(t.command).to.deep.equal({ kind: "payment_canceled", reason: "abandoned", paymentIntentId: "pi_1", checkoutSessionId: null });
  });

  it("a PaymentIntent without metadata.orderId is not a payment of this shop → ignored", () => {
    for (const type of ["payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled"]) {
      const t = asIgnored(translate(type, paymentIntent({ amount: 2500, orderId: null })));
      expect(t.orderId, type).to.equal(null);
      expect(t.reason, type).to.include("no order reference");
    }
  });

  it("an empty or blank metadata.orderId → ignored", () => {
    expect(translate("payment_intent.succeeded", paymentIntent({ amount: 1, orderId: "" })).kind).to.equal("ignored");
    expect(translate("payment_intent.succeeded", paymentIntent({ amount: 1, orderId: "   " })).kind).to.equal("ignored");
  });

  it("an orderId with surrounding spaces is trimmed", () => {
    expect(asCommand(translate("payment_intent.succeeded", paymentIntent({ amount: 1, orderId: " ord_7 " }))).ref).to.deep.equal(byOrder("ord_7"));
  });

  for (const bad of ["orders/other", "a/b", ".", "..", "__reserved__"]) {
    it(`an orderId that is not a usable document id (${JSON.stringify(bad)}) → ignored`, () => {
      const t = asIgnored(translate("payment_intent.succeeded", paymentIntent({ amount: 2500, orderId: bad })));
      expect(t.orderId).to.equal(null);
      expect(t.reason).to.include("not a valid order id");
    });
  }
});

describe("translateEvent: Checkout Sessions", () => {
  it("checkout.session.completed (paid) → payment_succeeded for client_reference_id, with both payment ids", () => {
    const s = checkoutSession({ id: "cs_1", amount: 4200, currency: "USD", orderId: "ord_2", paymentIntentId: "pi_2", paymentStatus: "paid" });
    const t = asCommand(translate("checkout.session.completed", s));
    expect(t.ref).to.deep.equal(byOrder("ord_2"));
    expect(t.command).to.deep.equal({ kind: "payment_succeeded", amount: 4200, currency: "usd", paymentIntentId: "pi_2", checkoutSessionId: "cs_1" });
  });

  it("falls back to metadata.orderId when client_reference_id is absent", () => {
    const s = { ...checkoutSession({ id: "cs_1", amount: 4200, orderId: null }), metadata: { orderId: "ord_meta" } };
    expect(asCommand(translate("checkout.session.completed", s)).ref).to.deep.equal(byOrder("ord_meta"));
  });

  it("client_reference_id wins over metadata.orderId", () => {
    const s = { ...checkoutSession({ id: "cs_1", amount: 4200, orderId: "ord_ref" }), metadata: { orderId: "ord_meta" } };
    expect(asCommand(translate("checkout.session.completed", s)).ref).to.deep.equal(byOrder("ord_ref"));
  });

  it("checkout.session.completed unpaid (delayed method) → checkout_awaiting_payment", () => {
    const s = checkoutSession({ id: "cs_1", amount: 4200, orderId: "ord_2", paymentIntentId: "pi_2", paymentStatus: "unpaid" });
    const t = asCommand(translate("checkout.session.completed", s));
    expect(t.ref).to.deep.equal(byOrder("ord_2"));
    expect(t.command).to.deep.equal({ kind: "checkout_awaiting_payment", amount: 4200, currency: "usd", paymentIntentId: "pi_2", checkoutSessionId: "cs_1" });
  });

  it("checkout.session.async_payment_succeeded → payment_succeeded", () => {
    const s = checkoutSession({ id: "cs_1", amount: 4200, orderId: "ord_2", paymentIntentId: "pi_2", paymentStatus: "paid" });
    const t = asCommand(translate("checkout.session.async_payment_succeeded", s));
    expect(t.command).to.deep.equal({ kind: "payment_succeeded", amount: 4200, currency: "usd", paymentIntentId: "pi_2", checkoutSessionId: "cs_1" });
  });

  it("checkout.session.async_payment_failed → payment_failed", () => {
    const s = checkoutSession({ id: "cs_1", amount: 4200, orderId: "ord_2", paymentIntentId: "pi_2", paymentStatus: "unpaid" });
    const t = asCommand(translate("checkout.session.async_payment_failed", s));
    expect(t.ref).to.deep.equal(byOrder("ord_2"));
    expect(t.command).to.include({ kind: "payment_failed", code: "async_payment_failed", paymentIntentId: "pi_2", checkoutSessionId: "cs_1" });
  });

  it("checkout.session.expired → payment_canceled (no PaymentIntent yet)", () => {
    const s = checkoutSession({ id: "cs_1", amount: 4200, orderId: "ord_2", paymentIntentId: null, paymentStatus: "unpaid", status: "expired" });
    const t = asCommand(translate("checkout.session.expired", s));
    expect(t.ref).to.deep.equal(byOrder("ord_2"));
    expect(t.command).to.deep.equal({ kind: "payment_canceled", reason: "checkout_session_expired", paymentIntentId: null, checkoutSessionId: "cs_1" });
  });

  it("a Checkout Session that is not in payment mode → ignored (keeps the order id for the record)", () => {
    const s = { ...checkoutSession({ id: "cs_1", amount: 4200, orderId: "ord_2" }), mode: "subscription" };
    const t = asIgnored(translate("checkout.session.completed", s));
    expect(t.orderId).to.equal("ord_2");
    expect(t.reason).to.include("subscription");
  });

  it("a Checkout Session without any order reference → ignored", () => {
    const t = asIgnored(translate("checkout.session.completed", checkoutSession({ amount: 4200, orderId: null })));
    expect(t.orderId).to.equal(null);
  });
});

describe("translateEvent: charges, refunds, disputes", () => {
  it("charge.succeeded with metadata.orderId → payment_succeeded for that order", () => {
    const c = charge({ amount: 1500, currency: "GBP", paymentIntentId: "pi_3", orderId: "ord_3" });
    const t = asCommand(translate("charge.succeeded", c));
    expect(t.ref).to.deep.equal(byOrder("ord_3"));
    expect(t.command).to.deep.equal({ kind: "payment_succeeded", amount: 1500, currency: "gbp", paymentIntentId: "pi_3", checkoutSessionId: null });
  });

  it("charge.succeeded without metadata → the order found by payment_intent", () => {
    const t = asCommand(translate("charge.succeeded", charge({ amount: 1500, paymentIntentId: "pi_3" })));
    expect(t.ref).to.deep.equal(byPaymentIntent("pi_3"));
    expect(t.command).to.include({ kind: "payment_succeeded", paymentIntentId: "pi_3" });
  });

  it("charge.succeeded with an expanded payment_intent object → looked up by its id", () => {
    const c = { ...charge({ amount: 1500, paymentIntentId: null }), payment_intent: paymentIntent({ id: "pi_exp", amount: 1500 }) };
    expect(asCommand(translate("charge.succeeded", c)).ref).to.deep.equal(byPaymentIntent("pi_exp"));
  });

  it("charge.succeeded authorized but not captured → ignored", () => {
    const t = asIgnored(translate("charge.succeeded", charge({ amount: 1500, paymentIntentId: "pi_3", captured: false, orderId: "ord_3" })));
    expect(t.reason).to.include("not captured");
    expect(t.orderId).to.equal("ord_3");
  });

  it("an ignored event keeps only an order id that can name a document: webhookEventStatus reads the order by it", () => {
    for (const bad of ["ord/1", "..", "__x__"]) {
      const uncaptured = asIgnored(translate("charge.succeeded", charge({ amount: 1500, paymentIntentId: "pi_3", captured: false, orderId: bad })));
      expect(uncaptured.orderId, bad).to.equal(null);
      const subscription = asIgnored(translate("checkout.session.completed", { ...checkoutSession({ id: "cs_1", amount: 4200, orderId: bad }), mode: "subscription" }));
      expect(subscription.orderId, bad).to.equal(null);
    }
  });

  it("charge.succeeded not paid → ignored", () => {
    const c = { ...charge({ amount: 1500, paymentIntentId: "pi_3" }), paid: false };
    expect(translate("charge.succeeded", c).kind).to.equal("ignored");
  });

  it("a charge with neither metadata.orderId nor payment_intent → ignored", () => {
    const t = asIgnored(translate("charge.succeeded", charge({ amount: 1500, paymentIntentId: null })));
    expect(t.orderId).to.equal(null);
  });

  it("charge.refunded → refund_updated with the charge's cumulative amount_refunded, order by payment_intent", () => {
    const c = charge({ amount: 1500, currency: "USD", paymentIntentId: "pi_4", amountRefunded: 700 });
    const t = asCommand(translate("charge.refunded", c));
    expect(t.ref).to.deep.equal(byPaymentIntent("pi_4"));
    const expected: Command = { kind: "refund_updated", chargeAmount: 1500, amountRefunded: 700, currency: "usd", paymentIntentId: "pi_4", checkoutSessionId: null };
    expect(t.command).to.deep.equal(expected);
  });

  it("charge.refunded with metadata.orderId → that order", () => {
    const c = charge({ amount: 1500, paymentIntentId: "pi_4", amountRefunded: 1500, orderId: "ord_4" });
    expect(asCommand(translate("charge.refunded", c)).ref).to.deep.equal(byOrder("ord_4"));
  });

  it("charge.dispute.created → dispute_opened, order by payment_intent", () => {
    const d = dispute({ id: "dp_1", amount: 1500, currency: "EUR", paymentIntentId: "pi_5" });
    const t = asCommand(translate("charge.dispute.created", d));
    expect(t.ref).to.deep.equal(byPaymentIntent("pi_5"));
    expect(t.command).to.deep.equal({
      kind: "dispute_opened",
      disputeId: "dp_1",
      amount: 1500,
      currency: "eur",
      disputeStatus: "needs_response",
      paymentIntentId: "pi_5",
      checkoutSessionId: null,
    });
  });

  it("charge.dispute.closed → dispute_closed with the final status", () => {
    const d = dispute({ id: "dp_1", amount: 1500, paymentIntentId: "pi_5", status: "lost" });
    const t = asCommand(translate("charge.dispute.closed", d));
    expect(t.ref).to.deep.equal(byPaymentIntent("pi_5"));
    expect(t.command).to.include({ kind: "dispute_closed", disputeId: "dp_1", disputeStatus: "lost", currency: "usd" });
  });
});

describe("translateEvent: everything else", () => {
  for (const type of ["customer.created", "invoice.paid", "charge.captured", "payment_intent.created"]) {
    it(`unknown event type ${type} → ignored`, () => {
      const t = asIgnored(translate(type, paymentIntent({ amount: 1, orderId: "ord_1" })));
      expect(t.reason).to.equal(`unhandled event type ${type}`);
      expect(t.orderId).to.equal(null);
    });
  }

  it("every handled type translates its real-shaped object into a command", () => {
    const objects: Record<(typeof HANDLED_EVENT_TYPES)[number], Record<string, unknown>> = {
      "payment_intent.succeeded": paymentIntent({ amount: 1, orderId: "o" }),
      "payment_intent.payment_failed": paymentIntent({ amount: 1, orderId: "o", status: "requires_payment_method" }),
      "payment_intent.canceled": paymentIntent({ amount: 1, orderId: "o", status: "canceled" }),
      "checkout.session.completed": checkoutSession({ amount: 1, orderId: "o" }),
      "checkout.session.async_payment_succeeded": checkoutSession({ amount: 1, orderId: "o" }),
      "checkout.session.async_payment_failed": checkoutSession({ amount: 1, orderId: "o", paymentStatus: "unpaid" }),
      "checkout.session.expired": checkoutSession({ amount: 1, orderId: "o", status: "expired" }),
      "charge.succeeded": charge({ amount: 1, paymentIntentId: "pi_o" }),
      "charge.refunded": charge({ amount: 1, paymentIntentId: "pi_o", amountRefunded: 1 }),
      "charge.dispute.created": dispute({ amount: 1, paymentIntentId: "pi_o" }),
      "charge.dispute.closed": dispute({ amount: 1, paymentIntentId: "pi_o", status: "won" }),
    };
    const kinds = HANDLED_EVENT_TYPES.map((type) => asCommand(translate(type, objects[type])).command.kind);
    expect(kinds).to.deep.equal([
      "payment_succeeded",
      "payment_failed",
      "payment_canceled",
      "payment_succeeded",
      "payment_succeeded",
      "payment_failed",
      "payment_canceled",
      "payment_succeeded",
      "refund_updated",
      "dispute_opened",
      "dispute_closed",
    ]);
  });

  it("eventMeta: id, type, created (seconds → Date), livemode", () => {
    const e = asStripeEvent(event("payment_intent.succeeded", paymentIntent({ amount: 1 }), { id: "evt_m", created: 1_767_225_600 }));
    expect(eventMeta(e)).to.deep.equal({ id: "evt_m", type: "payment_intent.succeeded", created: new Date(1_767_225_600_000), livemode: false });
  });
});

describe("translateEvent: objects of any shape (a signed event's object is still only JSON)", () => {
  it("a PaymentIntent without currency → payment_succeeded with a currency no order has, not a TypeError", () => {
    const pi: Record<string, unknown> = paymentIntent({ id: "pi_1", amount: 2500, orderId: "ord_1" });
    delete pi.currency;
    const t = asCommand(translate("payment_intent.succeeded", pi));
    expect(t.command).to.deep.equal({ kind: "payment_succeeded", amount: 2500, currency: "", paymentIntentId: "pi_1", checkoutSessionId: null });
  });

  for (const bad of [undefined, null, "2500", -2500, 25.5, { value: 2500 }]) {
    it(`a PaymentIntent whose amount is ${JSON.stringify(bad) ?? "missing"} → NaN, which equals no order's amount`, () => {
      const pi = { ...paymentIntent({ id: "pi_1", amount: 2500, orderId: "ord_1" }), amount: bad, amount_received: bad };
      const t = asCommand(translate("payment_intent.succeeded", pi));
      expect(t.command).to.include({ kind: "payment_succeeded", currency: "usd" });
      expect((t.command as Extract<Command, { kind: "payment_succeeded" }>).amount).to.be.NaN;
    });
  }

  it("charges, refunds, disputes and Checkout Sessions without currency or amount → values no order has", () => {
    const strip = (o: Record<string, unknown>, ...keys: string[]) => Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));
    const commands = [
      translate("charge.succeeded", strip(charge({ amount: 1500, paymentIntentId: "pi_2" }), "currency", "amount", "amount_captured")),
      translate("charge.refunded", strip(charge({ amount: 1500, paymentIntentId: "pi_2", amountRefunded: 100 }), "currency", "amount")),
      translate("charge.dispute.created", strip(dispute({ amount: 1500, paymentIntentId: "pi_2" }), "currency")),
      translate("charge.dispute.closed", { ...dispute({ amount: 1500, paymentIntentId: "pi_2", status: "lost" }), currency: 840 }),
      translate("checkout.session.completed", { ...checkoutSession({ amount: 1500, orderId: "ord_2" }), currency: null, amount_total: null }),
    ].map((t) => asCommand(t).command);
    expect(commands.map((c) => ("currency" in c ? c.currency : "n/a"))).to.deep.equal(["", "", "", "", ""]);
    expect(commands[0]).to.have.property("amount").that.is.NaN;
    expect(commands[1]).to.have.property("chargeAmount").that.is.NaN;
    expect(commands[4]).to.have.property("amount").that.is.NaN;
  });

  it("charge.refunded without a usable amount_refunded → ignored, naming the field (the guard does not check it)", () => {
    for (const bad of [undefined, "100", -1]) {
      const c = { ...charge({ amount: 1500, paymentIntentId: "pi_3", orderId: "ord_3" }), amount_refunded: bad };
      const t = asIgnored(translate("charge.refunded", c));
      expect(t.reason).to.equal("charge.refunded: the object's amount_refunded is missing or malformed");
      expect(t.orderId).to.equal("ord_3");
    }
  });

  it("a dispute without a usable id, status or amount → ignored, naming the field (the guard checks only its currency)", () => {
    const good = dispute({ id: "dp_1", amount: 1500, paymentIntentId: "pi_5" });
    const reasons = [{ id: null }, { id: 7 }, { status: undefined }, { status: ["lost"] }, { amount: "1500" }].map(
      (change) => asIgnored(translate("charge.dispute.closed", { ...good, ...change })).reason,
    );
    expect(reasons).to.deep.equal([
      "charge.dispute.closed: the object's id is missing or malformed",
      "charge.dispute.closed: the object's id is missing or malformed",
      "charge.dispute.closed: the object's status is missing or malformed",
      "charge.dispute.closed: the object's status is missing or malformed",
      "charge.dispute.closed: the object's amount is missing or malformed",
    ]);
  });

  it("a missing amount or currency is rejected by the order's identity guard in every status: order untouched, admin alerted", () => {
    // The order the event names, with the amount, currency and PaymentIntent a well-formed event would carry.
    const order = (status: Order["status"]): Order => ({
      id: "ord_9",
      userId: "user_9",
      items: [{ sku: "sku_9", qty: 1 }],
      amount: 1500,
      currency: "usd",
      status,
      createdAt: new Date(0),
      paymentIntentId: "pi_9",
      ...(status === "disputed" ? { dispute: { id: "dp_9", status: "needs_response", amount: 1500, priorStatus: "finalized" as const, openedAt: new Date(0) } } : {}),
    });
    const noCurrency = (o: Record<string, unknown>) => ({ ...o, currency: undefined });
    const events: [string, Record<string, unknown>, string][] = [
      ["payment_intent.succeeded", noCurrency(paymentIntent({ id: "pi_9", amount: 1500, orderId: "ord_9" })), "currency_mismatch"],
      ["payment_intent.succeeded", { ...paymentIntent({ id: "pi_9", amount: 1500, orderId: "ord_9" }), amount: null, amount_received: null }, "amount_mismatch"],
      ["charge.succeeded", noCurrency(charge({ amount: 1500, paymentIntentId: "pi_9" })), "currency_mismatch"],
      ["charge.refunded", { ...charge({ amount: 1500, paymentIntentId: "pi_9", amountRefunded: 1500 }), amount: "1500" }, "amount_mismatch"],
      ["charge.dispute.created", noCurrency(dispute({ id: "dp_9", amount: 1500, paymentIntentId: "pi_9" })), "currency_mismatch"],
      ["checkout.session.completed", { ...checkoutSession({ amount: 1500, orderId: "ord_9", paymentIntentId: "pi_9" }), amount_total: undefined }, "amount_mismatch"],
    ];
    for (const [type, object, reason] of events) {
      const { command } = asCommand(translate(type, object));
      for (const status of ORDER_STATUSES) {
        const meta = { id: "evt_t", type, created: new Date(0), livemode: false };
        const d = decide({ order: order(status), stock: new Map(), command, event: meta, now: new Date(0), options: { restockOnRefund: true } });
        const where = `${type} on a ${status} order`;
        if (d.kind !== "apply") throw new Error(`${where}: deferred (${d.reason})`);
        expect([d.status, d.result], where).to.deep.equal(["rejected", reason]);
        expect(d.orderPatch, where).to.equal(null);
        expect(d.stockChanges, where).to.deep.equal([]);
        expect(d.notifications.map((n) => n.kind), where).to.deep.equal(["admin_alert"]);
      }
    }
  });

  it("every handled type translates an object of any shape without throwing, into fields of the declared types", () => {
    const shapes: Record<string, unknown>[] = [
      {},
      { metadata: { orderId: "ord_x" } },
      { metadata: { orderId: "ord_x" }, mode: "payment", payment_status: "paid", paid: true, captured: true },
      {
        id: 5,
        object: [],
        amount: "10",
        amount_received: {},
        amount_captured: true,
        amount_refunded: null,
        amount_total: "10",
        currency: 840,
        metadata: "ord_x",
        client_reference_id: 7,
        payment_intent: { id: 3 },
        last_payment_error: "declined",
        cancellation_reason: 1,
        status: {},
        mode: "payment",
        payment_status: "paid",
        paid: "yes",
        captured: 1,
      },
      { id: null, metadata: { orderId: "ord_x" }, payment_intent: "pi_x", last_payment_error: { code: 1, decline_code: {}, message: [] }, mode: "payment", paid: true, captured: true, status: "won", amount: 1, amount_refunded: 1 },
    ];
    for (const type of HANDLED_EVENT_TYPES) {
      for (const shape of shapes) {
        const where = `${type} ${JSON.stringify(shape)}`;
        let t: Translation;
        try {
          t = translate(type, shape);
        } catch (error) {
          throw new Error(`${where} threw: ${String(error)}`);
        }
        if (t.kind === "ignored") {
          expect(t.reason, where).to.be.a("string");
          continue;
        }
        for (const [field, value] of Object.entries(t.command)) {
          expect(value === null || typeof value === "string" || typeof value === "number", `${where}: ${field} = ${String(value)}`).to.equal(true);
        }
      }
    }
  });
});
