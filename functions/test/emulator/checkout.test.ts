import { expect } from "chai";
import { FieldValue } from "firebase-admin/firestore";
import { doc, getDoc, setDoc } from "firebase/firestore";
import Stripe from "stripe";
import { db, eventually, orderData, productData, waitForOrderStatus } from "../helpers/emulator";
import {
  closeShoppers,
  completeCheckoutSession,
  expectCallableError,
  injectStripeFault,
  newIdempotencyKey,
  notificationsOf,
  ordersOf,
  paymentIntentsOf,
  pricedProduct,
  recordedCheckouts,
  shopper,
  signedInUid,
  standinStripe,
  stripeCustomerOf,
  type Shopper,
} from "../helpers/checkout";

/**
 * createCheckout (SPEC 7, issue 11) through the Firebase client SDK as a signed-in shopper, against
 * the Functions, Firestore and Auth emulators and the local Stripe stand-in; payments confirmed on
 * the stand-in reach the real `stripeWebhook`. Every test has its own user and products.
 */

interface PiAnswer {
  orderId: string;
  amount: number;
  currency: string;
  paymentIntentId: string;
  clientSecret: string;
}

function asPiAnswer(answer: Record<string, unknown>): PiAnswer {
  expect(answer).to.have.all.keys("orderId", "amount", "currency", "paymentIntentId", "clientSecret");
  expect(answer.paymentIntentId).to.be.a("string").and.match(/^pi_/);
  expect(answer.clientSecret).to.be.a("string").and.not.equal("");
  return answer as unknown as PiAnswer;
}

async function buy(s: Shopper, items: { sku: string; qty: number }[], idempotencyKey = newIdempotencyKey()): Promise<PiAnswer> {
  return asPiAnswer(await s.checkout({ items, idempotencyKey }));
}

/** Nothing at all was written for this user: no order, no rate-limit slot, no Stripe customer. */
async function expectNothingWritten(uid: string): Promise<void> {
  expect(await ordersOf(uid), "orders").to.have.length(0);
  expect(await recordedCheckouts(uid), "rate-limit slots").to.equal(0);
  expect(await stripeCustomerOf(uid), "Stripe customer").to.equal(undefined);
}

describe("createCheckout (callable, client SDK, Stripe stand-in)", function () {
  this.timeout(90_000);

  after(closeShoppers);

  it("prices the order from the products, creates it pending and one PaymentIntent for the user's customer", async () => {
    const s = await shopper();
    const uid = signedInUid(s);
    const tshirt = await pricedProduct({ price: 2000 });
    const mug = await pricedProduct({ price: 1250 });

    const answer = await buy(s, [{ sku: tshirt, qty: 2 }, { sku: mug, qty: 1 }]);

    expect(answer.amount).to.equal(2 * 2000 + 1250);
    expect(answer.currency).to.equal("usd");
    const order = await orderData(answer.orderId);
    expect(order).to.include({ userId: uid, amount: 5250, currency: "usd", paymentIntentId: answer.paymentIntentId });
    expect(order.items).to.deep.equal([{ sku: tshirt, qty: 2 }, { sku: mug, qty: 1 }]);
    expect(["pending", "reserved"]).to.include(order.status);

    const customer = await stripeCustomerOf(uid);
    expect(customer).to.match(/^cus_/);
    const pi = await standinStripe().paymentIntents.retrieve(answer.paymentIntentId);
    expect(pi).to.include({ amount: 5250, currency: "usd", customer, client_secret: answer.clientSecret });
    expect(pi.metadata.orderId).to.equal(answer.orderId);

    // The owner reads their order through the client SDK (rules), and it ends up reserved.
    const mine = await getDoc(doc(s.firestore, "orders", answer.orderId));
    expect(mine.get("amount")).to.equal(5250);
    await waitForOrderStatus(answer.orderId, "reserved");
  });

  it("answers the same key twice with one order and one PaymentIntent, counted once", async () => {
    const s = await shopper();
    const uid = signedInUid(s);
    const sku = await pricedProduct({ price: 700 });
    const key = newIdempotencyKey();

    const first = await buy(s, [{ sku, qty: 3 }], key);
    const second = await buy(s, [{ sku, qty: 3 }], key);

    expect(second).to.deep.equal(first);
    expect(await ordersOf(uid)).to.have.length(1);
    expect(await paymentIntentsOf((await stripeCustomerOf(uid)) as string)).to.have.length(1);
    expect(await recordedCheckouts(uid)).to.equal(1);
  });

  it("completes with the same PaymentIntent when Stripe answered but the order update was lost", async () => {
    const s = await shopper();
    const uid = signedInUid(s);
    const sku = await pricedProduct();
    const key = newIdempotencyKey();
    const first = await buy(s, [{ sku, qty: 1 }], key);
    // As if the function had died between Stripe's answer and storing the id.
    await db().collection("orders").doc(first.orderId).update({ paymentIntentId: FieldValue.delete() });

    const again = await buy(s, [{ sku, qty: 1 }], key);

    expect(again.paymentIntentId).to.equal(first.paymentIntentId);
    expect((await orderData(first.orderId)).paymentIntentId).to.equal(first.paymentIntentId);
    expect(await paymentIntentsOf((await stripeCustomerOf(uid)) as string)).to.have.length(1);
  });

  it("refuses the same key with other items (failed-precondition) and changes nothing", async () => {
    const s = await shopper();
    const uid = signedInUid(s);
    const sku = await pricedProduct();
    const key = newIdempotencyKey();
    const first = await buy(s, [{ sku, qty: 1 }], key);

    const details = await expectCallableError(s.checkout({ items: [{ sku, qty: 2 }], idempotencyKey: key }), "failed-precondition");

    expect(details).to.include({ reason: "key_reused", orderId: first.orderId });
    expect(await ordersOf(uid)).to.have.length(1);
    expect((await orderData(first.orderId)).items).to.deep.equal([{ sku, qty: 1 }]);
    expect(await paymentIntentsOf((await stripeCustomerOf(uid)) as string)).to.have.length(1);
  });

  const invalid: Array<[string, (skus: { usd: string; eur: string; inactive: string }) => unknown[], string]> = [
    ["an unknown SKU", () => [{ sku: "no-such-product-anywhere", qty: 1 }], "unknown_sku"],
    ["an inactive SKU", ({ inactive }) => [{ sku: inactive, qty: 1 }], "inactive_sku"],
    ["qty 0", ({ usd }) => [{ sku: usd, qty: 0 }], "bad_qty"],
    ["qty -1", ({ usd }) => [{ sku: usd, qty: -1 }], "bad_qty"],
    ["qty 1.5", ({ usd }) => [{ sku: usd, qty: 1.5 }], "bad_qty"],
    ["mixed currencies", ({ usd, eur }) => [{ sku: usd, qty: 1 }, { sku: eur, qty: 1 }], "mixed_currency"],
    ["no lines", () => [], "no_lines"],
    ["too many lines (21)", ({ usd }) => Array.from({ length: 21 }, () => ({ sku: usd, qty: 1 })), "too_many_lines"],
  ];
  for (const [label, items, reason] of invalid) {
    it(`refuses ${label} with invalid-argument and writes nothing`, async () => {
      const s = await shopper();
      const skus = { usd: await pricedProduct(), eur: await pricedProduct({ currency: "eur" }), inactive: await pricedProduct({ active: false }) };

      const details = await expectCallableError(s.checkout({ items: items(skus), idempotencyKey: newIdempotencyKey() }), "invalid-argument");

      expect(details.reason).to.equal(reason);
      await expectNothingWritten(signedInUid(s));
    });
  }

  it("refuses an amount sent by the client (the server computes it)", async () => {
    const s = await shopper();
    const sku = await pricedProduct({ price: 5500 });
    const details = await expectCallableError(s.checkout({ items: [{ sku, qty: 3 }], amount: 1, idempotencyKey: newIdempotencyKey() }), "invalid-argument");
    expect(details.reason).to.equal("unknown_field");
    await expectNothingWritten(signedInUid(s));
  });

  it("refuses a signed-out caller with unauthenticated and writes nothing", async () => {
    const s = await shopper({ signedIn: false });
    const sku = await pricedProduct();
    const key = newIdempotencyKey();

    await expectCallableError(s.checkout({ items: [{ sku, qty: 1 }], idempotencyKey: key }), "unauthenticated");

    const byKey = await db().collection("orders").where("checkout.idempotencyKey", "==", key).count().get();
    expect(byKey.data().count).to.equal(0);
    expect((await productData(sku)).reserved).to.equal(0);
  });

  it("refuses the 6th new checkout in a minute with resource-exhausted; a repeated key still answers", async () => {
    const s = await shopper();
    const uid = signedInUid(s);
    const sku = await pricedProduct({ stock: 100 });
    const keys = Array.from({ length: 6 }, newIdempotencyKey);
    const answers: PiAnswer[] = [];
    for (const key of keys.slice(0, 5)) answers.push(await buy(s, [{ sku, qty: 1 }], key));

    const details = await expectCallableError(s.checkout({ items: [{ sku, qty: 1 }], idempotencyKey: keys[5] }), "resource-exhausted");

    expect(details.reason).to.equal("rate_limited");
    expect(details.retryAfterSeconds).to.be.a("number").within(1, 60);
    expect(await ordersOf(uid)).to.have.length(5);
    expect(await buy(s, [{ sku, qty: 1 }], keys[0])).to.deep.equal(answers[0]);
    // One Stripe customer for the user, created once: all five PaymentIntents are its.
    expect(await paymentIntentsOf((await stripeCustomerOf(uid)) as string)).to.have.length(5);
    expect(await recordedCheckouts(uid)).to.equal(5);
  });

  it("answers unavailable when Stripe answers 500, and the retry with the same key completes with one PaymentIntent", async () => {
    const s = await shopper();
    const uid = signedInUid(s);
    const sku = await pricedProduct({ price: 1500 });
    const key = newIdempotencyKey();
    await injectStripeFault({ method: "POST", path: "/v1/payment_intents", status: 500, times: 1 });

    const details = await expectCallableError(s.checkout({ items: [{ sku, qty: 2 }], idempotencyKey: key }), "unavailable");

    expect(details.reason).to.equal("stripe_unavailable");
    const [pending] = await ordersOf(uid);
    expect(pending.get("amount")).to.equal(3000);
    expect(pending.get("paymentIntentId")).to.equal(undefined);
    const customer = (await stripeCustomerOf(uid)) as string;
    expect(await paymentIntentsOf(customer)).to.have.length(0);

    const answer = await buy(s, [{ sku, qty: 2 }], key);

    expect(answer.orderId).to.equal(pending.id);
    expect(await ordersOf(uid)).to.have.length(1);
    const intents = await paymentIntentsOf(customer);
    expect(intents.map((pi) => pi.id)).to.deep.equal([answer.paymentIntentId]);
    expect((await orderData(answer.orderId)).paymentIntentId).to.equal(answer.paymentIntentId);
    expect(await recordedCheckouts(uid)).to.equal(1);
  });

  it("denies a client write to orders (rules); only the callable creates orders", async () => {
    const s = await shopper();
    const uid = signedInUid(s);
    const sku = await pricedProduct({ price: 5500 });
    const orderId = `client-${newIdempotencyKey()}`;

    let denied: unknown = null;
    try {
      await setDoc(doc(s.firestore, "orders", orderId), {
        userId: uid,
        items: [{ sku, qty: 3 }],
        amount: 1,
        currency: "usd",
        status: "pending",
        createdAt: new Date(),
      });
    } catch (error) {
      denied = error;
    }

    expect((denied as { code?: unknown } | null)?.code, String(denied)).to.equal("permission-denied");
    expect((await db().collection("orders").doc(orderId).get()).exists).to.equal(false);
  });

  it("pm_card_visa on the stand-in → the order is finalized through the webhook, stock consumed, order_confirmed sent", async () => {
    const s = await shopper();
    const sku = await pricedProduct({ price: 2000, stock: 10 });
    const answer = await buy(s, [{ sku, qty: 2 }]);
    await waitForOrderStatus(answer.orderId, "reserved");

    const confirmed = await standinStripe().paymentIntents.confirm(answer.paymentIntentId, { payment_method: "pm_card_visa" });

    expect(confirmed.status).to.equal("succeeded");
    const order = await waitForOrderStatus(answer.orderId, "finalized");
    expect(order.paymentIntentId).to.equal(answer.paymentIntentId);
    expect(await productData(sku)).to.deep.equal({ stock: 8, reserved: 0 });
    await eventually("order_confirmed to be sent", async () => {
      const sent = await notificationsOf(answer.orderId, "order_confirmed");
      return sent.length === 1 && sent[0].get("status") === "sent";
    });
    const events = await db().collection("webhookEvents").where("orderId", "==", answer.orderId).get();
    expect(events.docs.map((d) => d.get("type"))).to.include("payment_intent.succeeded");
  });

  it("pm_card_chargeDeclined → the reservation is kept and payment_failed is queued", async () => {
    const s = await shopper();
    const sku = await pricedProduct({ stock: 5 });
    const answer = await buy(s, [{ sku, qty: 2 }]);
    await waitForOrderStatus(answer.orderId, "reserved");

    let declined: unknown = null;
    try {
      await standinStripe().paymentIntents.confirm(answer.paymentIntentId, { payment_method: "pm_card_chargeDeclined" });
    } catch (error) {
      declined = error;
    }

    // Stripe answers a declined confirmation with a card_error (402).
    expect(declined).to.be.instanceOf(Stripe.errors.StripeCardError);
    expect((await standinStripe().paymentIntents.retrieve(answer.paymentIntentId)).status).to.equal("requires_payment_method");
    await eventually("payment_failed to be queued", async () => (await notificationsOf(answer.orderId, "payment_failed")).length === 1);
    const order = await orderData(answer.orderId);
    expect(order.status).to.equal("reserved");
    expect(await productData(sku)).to.deep.equal({ stock: 5, reserved: 2 });
  });

  it("an order that goes out_of_stock has its PaymentIntent canceled on the stand-in", async () => {
    const s = await shopper();
    const sku = await pricedProduct({ stock: 0 });

    const answer = await buy(s, [{ sku, qty: 1 }]);

    await waitForOrderStatus(answer.orderId, "out_of_stock");
    await eventually("the PaymentIntent to be canceled", async () => {
      const pi = await standinStripe().paymentIntents.retrieve(answer.paymentIntentId);
      return pi.status === "canceled";
    });
    // Recorded once the cancel call has answered.
    const audit = await eventually("the cancellation's audit entry", async () => {
      const docs = (await db().collection("auditLog").where("orderId", "==", answer.orderId).where("action", "==", "cancel_payment_intent").get()).docs;
      return docs.length > 0 ? docs : null;
    });
    expect(audit.map((d) => d.get("result"))).to.deep.equal(["canceled"]);
    expect(await productData(sku)).to.deep.equal({ stock: 0, reserved: 0 });
  });

  it("ui checkout_session → a Session for the order's lines; paying it finalizes the order", async () => {
    const s = await shopper();
    const uid = signedInUid(s);
    const sku = await pricedProduct({ price: 1200, stock: 4 });
    const request = {
      items: [{ sku, qty: 3 }],
      idempotencyKey: newIdempotencyKey(),
      ui: "checkout_session",
      successUrl: "http://localhost:5173/thanks?session={CHECKOUT_SESSION_ID}",
      cancelUrl: "http://localhost:5173/cart",
    };

    const answer = await s.checkout(request);

    expect(answer).to.have.all.keys("orderId", "amount", "currency", "checkoutSessionId", "url");
    expect(answer).to.include({ amount: 3600, currency: "usd" });
    expect(await s.checkout(request)).to.deep.equal(answer);
    const session = await standinStripe().checkout.sessions.retrieve(answer.checkoutSessionId as string);
    expect(session).to.include({ mode: "payment", amount_total: 3600, currency: "usd", client_reference_id: answer.orderId, customer: await stripeCustomerOf(uid) });
    expect(session.metadata?.orderId).to.equal(answer.orderId);
    await waitForOrderStatus(answer.orderId as string, "reserved");

    await completeCheckoutSession(session.id);

    await waitForOrderStatus(answer.orderId as string, "finalized");
    expect(await productData(sku)).to.deep.equal({ stock: 1, reserved: 0 });
  });

  it("refuses a Checkout Session returning to an origin that is not allowed, writing nothing", async () => {
    const s = await shopper();
    const sku = await pricedProduct();
    const details = await expectCallableError(
      s.checkout({ items: [{ sku, qty: 1 }], idempotencyKey: newIdempotencyKey(), ui: "checkout_session", successUrl: "https://evil.example/ok", cancelUrl: "http://localhost:5173/cart" }),
      "invalid-argument",
    );
    expect(details.reason).to.equal("origin_not_allowed");
    await expectNothingWritten(signedInUid(s));
  });
});
