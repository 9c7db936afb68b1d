import { expect } from "chai";
import {
  countWhere,
  createOrder,
  db,
  deliver,
  eventually,
  orderData,
  productData,
  seedProduct,
  uniqueId,
  waitForOrderStatus,
} from "../helpers/emulator";
import { charge, checkoutSession, dispute, event, paymentIntent, stripeId } from "../helpers/stripeFixtures";

/** The payment lifecycle of SPEC sections 3 and 4, one Stripe-shaped sequence per test. */

interface Fixture {
  orderId: string;
  skus: string[];
  initialStock: Map<string, number>;
  amount: number;
  piId: string;
}

const fixtures: Fixture[] = [];

async function setUp(opts: { lines?: { stock: number; qty: number }[]; amount?: number; waitFor?: string } = {}): Promise<Fixture> {
  const lines = opts.lines ?? [{ stock: 10, qty: 2 }];
  const orderId = uniqueId("order");
  const skus: string[] = [];
  const initialStock = new Map<string, number>();
  for (const line of lines) {
    const sku = uniqueId("sku");
    skus.push(sku);
    initialStock.set(sku, line.stock);
    await seedProduct(sku, line.stock);
  }
  const amount = opts.amount ?? 2500;
  await createOrder({ id: orderId, items: lines.map((l, i) => ({ sku: skus[i], qty: l.qty })), amount });
  await waitForOrderStatus(orderId, opts.waitFor ?? "reserved");
  const fixture = { orderId, skus, initialStock, amount, piId: stripeId("pi") };
  fixtures.push(fixture);
  return fixture;
}

const piEvent = (type: string, f: Fixture, extra: Parameters<typeof paymentIntent>[0] extends infer P ? Partial<P> : never = {}) =>
  event(type, paymentIntent({ id: f.piId, amount: f.amount, orderId: f.orderId, ...extra }));

const chargeEvent = (type: string, f: Fixture, amountRefunded = 0) =>
  event(type, charge({ amount: f.amount, paymentIntentId: f.piId, amountRefunded }));

async function expectApplied(envelope: ReturnType<typeof event>, result: string, status = "processed"): Promise<void> {
  const response = await deliver(envelope);
  expect(response.status, JSON.stringify(response.body)).to.equal(200);
  expect(response.body).to.include({ status, result });
}

async function stock(sku: string) {
  return productData(sku);
}

async function notificationsOf(orderId: string, kind: string) {
  return (await db().collection("notifications").where("orderId", "==", orderId).where("kind", "==", kind).get()).docs;
}

/** SPEC section 6, checked for every order a test touched. */
async function checkInvariants(f: Fixture): Promise<void> {
  const order = await orderData(f.orderId);
  const history = (order.statusHistory as { from: string; to: string }[] | undefined) ?? [];
  // A won dispute returns to `finalized`; a finalization is the payment taking an unpaid order there.
  const unpaid = ["pending", "reserved", "out_of_stock", "canceled"];
  const finalizations = history.filter((h) => h.to === "finalized" && unpaid.includes(h.from)).length;
  expect(finalizations, "finalizations").to.be.at.most(1);
  const finalized = finalizations === 1;
  const restocked = order.status === "refunded" && finalized;
  const holds = order.status === "reserved";
  const items = order.items as { sku: string; qty: number }[];
  for (const sku of f.skus) {
    const qty = items.filter((i) => i.sku === sku).reduce((s, i) => s + i.qty, 0);
    const level = await stock(sku);
    expect(level.stock, `${sku} stock`).to.be.at.least(0);
    expect(level.reserved, `${sku} reserved`).to.be.at.least(0);
    const sold = finalized && !restocked ? qty : 0;
    expect(level.stock + sold, `${sku} stock + sold`).to.equal(f.initialStock.get(sku));
    expect(level.reserved, `${sku} reserved`).to.equal(holds ? qty : 0);
  }
  const confirmed = await notificationsOf(f.orderId, "order_confirmed");
  expect(confirmed.length, "order_confirmed notifications").to.equal(finalized ? 1 : 0);
  const events = await db().collection("webhookEvents").where("orderId", "==", f.orderId).get();
  for (const e of events.docs) {
    if (e.get("status") === "ignored") continue;
    expect(await countWhere("auditLog", "eventId", e.id), `audit entries of ${e.id}`).to.equal(1);
  }
}

describe("the payment lifecycle on the emulators", () => {
  afterEach(async () => {
    while (fixtures.length > 0) await checkInvariants(fixtures.pop() as Fixture);
  });

  it("finalizes once when three success events for one payment arrive together", async () => {
    const f = await setUp();
    const session = checkoutSession({ amount: f.amount, orderId: f.orderId, paymentIntentId: f.piId });
    const events = [
      piEvent("payment_intent.succeeded", f),
      event("checkout.session.completed", session),
      event("charge.succeeded", charge({ amount: f.amount, paymentIntentId: f.piId, orderId: f.orderId })),
    ];
    const responses = await Promise.all(events.map((e) => deliver(e)));
    expect(responses.map((r) => r.status)).to.deep.equal([200, 200, 200]);
    expect(responses.map((r) => r.body.result).sort()).to.deep.equal(["already_finalized", "already_finalized", "finalized"]);
    expect(await stock(f.skus[0])).to.deep.equal({ stock: 8, reserved: 0 });
    const order = await orderData(f.orderId);
    expect(order).to.include({ status: "finalized", paymentIntentId: f.piId });
  });

  it("keeps the reservation on a failed payment and finalizes on the retry that succeeds", async () => {
    const f = await setUp();
    const failed = piEvent("payment_intent.payment_failed", f, {
      status: "requires_payment_method",
      lastError: { code: "card_declined", decline_code: "insufficient_funds", message: "Your card has insufficient funds." },
    });
    await expectApplied(failed, "payment_failure_recorded");
    const afterFailure = await orderData(f.orderId);
    expect(afterFailure.status).to.equal("reserved");
    expect(afterFailure.lastPaymentFailure).to.include({ code: "insufficient_funds", eventId: failed.id });
    expect(await stock(f.skus[0])).to.deep.equal({ stock: 10, reserved: 2 });
    expect(await notificationsOf(f.orderId, "payment_failed")).to.have.length(1);

    await expectApplied(piEvent("payment_intent.succeeded", f), "finalized");
    expect(await stock(f.skus[0])).to.deep.equal({ stock: 8, reserved: 0 });
  });

  it("records an unpaid Checkout completion and finalizes on the async success", async () => {
    const f = await setUp();
    const sessionId = stripeId("cs");
    const unpaid = checkoutSession({ id: sessionId, amount: f.amount, orderId: f.orderId, paymentIntentId: f.piId, paymentStatus: "unpaid" });
    await expectApplied(event("checkout.session.completed", unpaid), "awaiting_payment_recorded");
    expect(await orderData(f.orderId)).to.include({ status: "reserved", checkoutSessionId: sessionId, paymentIntentId: f.piId });

    const paid = checkoutSession({ id: sessionId, amount: f.amount, orderId: f.orderId, paymentIntentId: f.piId, paymentStatus: "paid" });
    await expectApplied(event("checkout.session.async_payment_succeeded", paid), "finalized");
    expect(await stock(f.skus[0])).to.deep.equal({ stock: 8, reserved: 0 });
  });

  it("defers a refund that arrives before its payment, then applies it on redelivery", async () => {
    const f = await setUp();
    await createPaymentLink(f);
    const refund = chargeEvent("charge.refunded", f, f.amount);
    const early = await deliver(refund);
    expect(early.status).to.equal(409);
    expect((early.body.error as { code: string }).code).to.equal("deferred");
    expect((await db().collection("webhookEvents").doc(refund.id).get()).exists).to.equal(false);
    const letter = (await db().collection("deadLetters").doc(refund.id).get()).data();
    expect(letter).to.include({ attempts: 1, status: "retrying", retryable: true, type: "charge.refunded" });
    expect(JSON.parse(letter?.payload as string).id).to.equal(refund.id);

    await expectApplied(piEvent("payment_intent.succeeded", f), "finalized");
    await expectApplied(refund, "refunded");
    expect(await orderData(f.orderId)).to.include({ status: "refunded", refundedAmount: f.amount });
    expect(await stock(f.skus[0])).to.deep.equal({ stock: 10, reserved: 0 });
    expect((await db().collection("deadLetters").doc(refund.id).get()).get("status")).to.equal("replayed");
  });

  it("applies two distinct events for one refund once (cumulative amount_refunded)", async () => {
    const f = await setUp();
    await expectApplied(piEvent("payment_intent.succeeded", f), "finalized");
    await expectApplied(chargeEvent("charge.refunded", f, f.amount), "refunded");
    await expectApplied(chargeEvent("charge.refunded", f, f.amount), "refund_already_applied");
    expect(await stock(f.skus[0])).to.deep.equal({ stock: 10, reserved: 0 });
    expect(await notificationsOf(f.orderId, "refund_issued")).to.have.length(1);
  });

  it("records a partial refund, then completes it with the full one", async () => {
    const f = await setUp();
    await expectApplied(piEvent("payment_intent.succeeded", f), "finalized");
    await expectApplied(chargeEvent("charge.refunded", f, 1000), "partially_refunded");
    expect(await orderData(f.orderId)).to.include({ status: "partially_refunded", refundedAmount: 1000 });
    expect(await stock(f.skus[0])).to.deep.equal({ stock: 8, reserved: 0 });
    await expectApplied(chargeEvent("charge.refunded", f, f.amount), "refunded");
    expect(await orderData(f.orderId)).to.include({ status: "refunded", refundedAmount: f.amount });
    expect(await stock(f.skus[0])).to.deep.equal({ stock: 10, reserved: 0 });
    // An older partial refund event delivered last must not roll the order back.
    await expectApplied(chargeEvent("charge.refunded", f, 1000), "refund_already_applied");
    expect((await orderData(f.orderId)).status).to.equal("refunded");
  });

  it("moves a finalized order to disputed and back when the dispute is won", async () => {
    const f = await setUp();
    await expectApplied(piEvent("payment_intent.succeeded", f), "finalized");
    const disputeId = stripeId("dp");
    await expectApplied(event("charge.dispute.created", dispute({ id: disputeId, amount: f.amount, paymentIntentId: f.piId })), "disputed");
    expect(await orderData(f.orderId)).to.include({ status: "disputed" });
    expect(await notificationsOf(f.orderId, "admin_alert")).to.have.length(1);
    await expectApplied(event("charge.dispute.closed", dispute({ id: disputeId, amount: f.amount, paymentIntentId: f.piId, status: "won" })), "dispute_won");
    const order = await orderData(f.orderId);
    expect(order.status).to.equal("finalized");
    expect(order.dispute).to.include({ id: disputeId, status: "won" });
  });

  it("sends a payment for an out-of-stock order to needs_review without selling stock it does not have", async () => {
    const f = await setUp({ lines: [{ stock: 1, qty: 2 }], waitFor: "out_of_stock" });
    await expectApplied(piEvent("payment_intent.succeeded", f), "needs_review");
    const order = await orderData(f.orderId);
    expect(order.status).to.equal("needs_review");
    expect(order.reviewReason).to.match(/insufficient stock/);
    expect(await stock(f.skus[0])).to.deep.equal({ stock: 1, reserved: 0 });
    expect(await notificationsOf(f.orderId, "admin_alert")).to.have.length(1);
  });

  for (const [name, claim, result] of [
    ["amount", { amount: 1 }, "amount_mismatch"],
    ["currency", { currency: "eur" }, "currency_mismatch"],
    ["PaymentIntent", { id: "pi_test_someone_elses" }, "payment_intent_mismatch"],
  ] as const) {
    it(`rejects a success event whose ${name} does not match the order, leaving it untouched`, async () => {
      const f = await setUp();
      await createPaymentLink(f);
      const before = await orderData(f.orderId);
      const forged = piEvent("payment_intent.succeeded", f, claim);
      await expectApplied(forged, result, "rejected");
      expect(await orderData(f.orderId)).to.deep.equal(before);
      expect(await stock(f.skus[0])).to.deep.equal({ stock: 10, reserved: 2 });
      expect((await db().collection("webhookEvents").doc(forged.id).get()).get("status")).to.equal("rejected");
      const audit = await db().collection("auditLog").where("eventId", "==", forged.id).get();
      expect(audit.docs.map((d) => d.get("result"))).to.deep.equal([result]);
      expect((await db().collection("notifications").doc(`admin_alert:${forged.id}`).get()).get("kind")).to.equal("admin_alert");
    });
  }

  it("finalizes every line of a multi-item order in one transaction", async () => {
    const f = await setUp({ lines: [{ stock: 5, qty: 1 }, { stock: 7, qty: 3 }, { stock: 9, qty: 2 }], amount: 9900 });
    expect(await stock(f.skus[1])).to.deep.equal({ stock: 7, reserved: 3 });
    await expectApplied(piEvent("payment_intent.succeeded", f), "finalized");
    expect(await stock(f.skus[0])).to.deep.equal({ stock: 4, reserved: 0 });
    expect(await stock(f.skus[1])).to.deep.equal({ stock: 4, reserved: 0 });
    expect(await stock(f.skus[2])).to.deep.equal({ stock: 7, reserved: 0 });
  });

  it("releases the reservation when the PaymentIntent is canceled, and ignores a late failure", async () => {
    const f = await setUp();
    await expectApplied(piEvent("payment_intent.canceled", f, { status: "canceled", cancellationReason: "abandoned" }), "canceled");
    expect(await stock(f.skus[0])).to.deep.equal({ stock: 10, reserved: 0 });
    expect((await orderData(f.orderId)).status).to.equal("canceled");
    await expectApplied(piEvent("payment_intent.payment_failed", f, { status: "requires_payment_method" }), "refused_transition");
  });

  it("releases the reservation when the Checkout Session expires", async () => {
    const f = await setUp();
    const expired = checkoutSession({ amount: f.amount, orderId: f.orderId, paymentIntentId: null, paymentStatus: "unpaid", status: "expired" });
    await expectApplied(event("checkout.session.expired", expired), "canceled");
    expect(await stock(f.skus[0])).to.deep.equal({ stock: 10, reserved: 0 });
  });

  it("never cancels an order because another payment attempt was canceled", async () => {
    const f = await setUp();
    await createPaymentLink(f);
    await expectApplied(
      event("payment_intent.canceled", paymentIntent({ amount: f.amount, orderId: f.orderId, status: "canceled" })),
      "other_payment_attempt",
    );
    expect((await orderData(f.orderId)).status).to.equal("reserved");
  });

  it("defers an event for an unknown order, then parks it as a dead letter so Stripe stops retrying", async () => {
    const missing = uniqueId("missing-order");
    const paid = event("payment_intent.succeeded", paymentIntent({ amount: 500, orderId: missing }));
    const statuses: number[] = [];
    for (let attempt = 0; attempt < 4; attempt++) statuses.push((await deliver(paid)).status);
    expect(statuses).to.deep.equal([409, 409, 409, 409]);
    const parked = await deliver(paid);
    expect(parked.status).to.equal(200);
    expect(parked.body).to.include({ status: "rejected", result: "dead_lettered" });
    const letter = (await db().collection("deadLetters").doc(paid.id).get()).data();
    expect(letter).to.include({ attempts: 5, status: "dead", retryable: false });
    expect((await db().collection("webhookEvents").doc(paid.id).get()).get("result")).to.equal("dead_lettered");
    // The dead letter is the record; the replay that applies the event writes its one audit entry.
    expect(await countWhere("auditLog", "eventId", paid.id)).to.equal(0);
    expect((await db().collection("notifications").doc(`dead_letter:${paid.id}`).get()).get("kind")).to.equal("admin_alert");
    expect((await deliver(paid)).body.status).to.equal("duplicate");
    // A parked event's letter waits for its replay: a later copy does not resolve it.
    expect((await db().collection("deadLetters").doc(paid.id).get()).data()).to.include({ attempts: 5, status: "dead", retryable: false });
  });
});

/** The backend stores the PaymentIntent id when it creates the payment, as a real checkout flow does. */
async function createPaymentLink(f: Fixture): Promise<void> {
  await db().collection("orders").doc(f.orderId).update({ paymentIntentId: f.piId });
  await eventually("paymentIntentId stored", async () => (await orderData(f.orderId)).paymentIntentId === f.piId);
}
