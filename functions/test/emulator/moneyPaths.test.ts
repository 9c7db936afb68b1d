import { expect } from "chai";
import { Timestamp } from "firebase-admin/firestore";
import { aggregateShards, configureStockShards } from "../../src/inventory/shards";
import { DEFAULT_DELIVERY_OPTIONS, deliverNotification } from "../../src/notifications/deliver";
import { logProvider } from "../../src/notifications/providers";
import { DEFAULT_ABANDON_POLICY, releaseAbandonedReservations, reserveStockForOrder } from "../../src/reservation";
import {
  countWhere,
  createOrder,
  db,
  deliver,
  eventually,
  notificationsWhere,
  orderData,
  pastWindow,
  productData,
  seedProduct,
  withTriggersPaused,
  uniqueId,
  waitForOrderStatus,
  type Delivery,
  type OrderSeed,
} from "../helpers/emulator";
import { invoke, reservationDeps, webhookDeps } from "../helpers/inProcess";
import { charge, checkoutSession, dispute, event, paymentIntent, stripeId, type StripeEventEnvelope } from "../helpers/stripeFixtures";

/**
 * Issue 10: every money path through HTTP on the emulators (the Firestore writes are what can fail), and
 * the five sequences Stripe really sends that were answered 5xx, rejected or refused. Each test owns its
 * products, orders, events and PaymentIntents, and ends by checking SPEC section 6 on its own ids.
 */

type Sender = (envelope: StripeEventEnvelope) => Promise<Delivery>;

/** Statuses a payment takes an order from when it finalizes it (a won dispute returns to `finalized` too). */
const UNPAID = ["pending", "reserved", "out_of_stock", "canceled"];

interface ShardLevel {
  shard: number;
  stock: number;
  reserved: number;
}

/** What one test created and delivered, so it can check SPEC section 6 on exactly those ids. */
class Ledger {
  readonly orders = new Set<string>();
  readonly skus = new Set<string>();
  private readonly answers = new Map<string, number[]>();

  async product(stock: number, shards = 1): Promise<string> {
    const sku = uniqueId("sku");
    this.skus.add(sku);
    await seedProduct(sku, stock);
    if (shards > 1) await configureStockShards(db(), sku, shards);
    return sku;
  }

  async order(seed: Omit<OrderSeed, "id">): Promise<string> {
    const id = uniqueId("order");
    this.orders.add(id);
    await createOrder({ id, ...seed });
    return id;
  }

  /** A product with `stock` units and an order for `qty` of them, reserved by the trigger. */
  async reserved(stock: number, qty: number, amount = 2500): Promise<{ sku: string; orderId: string; amount: number }> {
    const sku = await this.product(stock);
    const orderId = await this.order({ items: [{ sku, qty }], amount });
    await waitForOrderStatus(orderId, "reserved");
    return { sku, orderId, amount };
  }

  async send(envelope: StripeEventEnvelope, via: Sender = deliver): Promise<Delivery> {
    const response = await via(envelope);
    this.answers.set(envelope.id, [...(this.answers.get(envelope.id) ?? []), response.status]);
    return response;
  }

  /** The FIRST delivery of `envelope` is answered 200 with this status and result. */
  async expectResult(envelope: StripeEventEnvelope, result: string, status = "processed", via: Sender = deliver): Promise<Delivery> {
    expect(this.answers.has(envelope.id), `${envelope.id} was delivered before`).to.equal(false);
    const response = await this.send(envelope, via);
    expect(response.status, `${envelope.type} ${JSON.stringify(response.body)}`).to.equal(200);
    expect(response.body, `${envelope.type} ${JSON.stringify(response.body)}`).to.include({ status, result });
    return response;
  }

  /** SPEC section 6 on this test's ids. */
  async check(): Promise<void> {
    for (const [eventId, statuses] of this.answers) {
      const record = (await db().collection("webhookEvents").doc(eventId).get()).data();
      const acknowledged = statuses.some((s) => s >= 200 && s < 300);
      expect(record !== undefined, `webhookEvents/${eventId} exists (answers ${statuses.join(", ")})`).to.equal(acknowledged);
      // Ignored events and parked ones (the replay writes it) have no audit entry; every other one has one.
      const audited = record !== undefined && record.status !== "ignored" && record.result !== "dead_lettered";
      expect(await countWhere("auditLog", "eventId", eventId), `audit entries of ${eventId}`).to.equal(audited ? 1 : 0);
    }
    for (const sku of this.skus) {
      const product = await db().collection("products").doc(sku).get();
      if (product.exists) {
        expect(Number(product.get("stock")), `${sku} stock`).to.be.at.least(0);
        expect(Number(product.get("reserved")), `${sku} reserved`).to.be.at.least(0);
      }
      for (const level of await shardLevels(sku)) {
        expect(level.stock, `${sku} shard ${level.shard} stock`).to.be.at.least(0);
        expect(level.reserved, `${sku} shard ${level.shard} reserved`).to.be.at.least(0);
      }
    }
    for (const orderId of this.orders) {
      const order = (await db().collection("orders").doc(orderId).get()).data();
      if (order === undefined) continue;
      const history = (order.statusHistory as { from: string; to: string }[] | undefined) ?? [];
      const finalizations = history.filter((h) => h.to === "finalized" && UNPAID.includes(h.from)).length;
      expect(finalizations, `finalizations of ${orderId}`).to.be.at.most(1);
      const confirmed = await notificationsWhere("orderId", orderId, "order_confirmed");
      expect(confirmed.length, `order_confirmed notifications of ${orderId}`).to.equal(finalizations);
      if (finalizations === 1) {
        const sent = await eventually(`order_confirmed of ${orderId} to be sent`, async () => {
          const [n] = await notificationsWhere("orderId", orderId, "order_confirmed");
          return n?.status === "sent" ? n : undefined;
        });
        expect(sent.attempts, `delivery attempts of order_confirmed of ${orderId}`).to.equal(1);
      }
    }
  }
}

/** Runs `body` with a fresh ledger, then checks the invariants on what it touched. */
function money(name: string, body: (t: Ledger) => Promise<void>): Mocha.Test {
  return it(name, async () => {
    const t = new Ledger();
    await body(t);
    await t.check();
  });
}

const succeeded = (orderId: string, amount: number, piId = stripeId("pi")) =>
  event("payment_intent.succeeded", paymentIntent({ id: piId, amount, orderId }));

const refunded = (piId: string, amount: number, amountRefunded: number) =>
  event("charge.refunded", charge({ amount, paymentIntentId: piId, amountRefunded }));

async function shardLevels(sku: string): Promise<ShardLevel[]> {
  const snapshot = await db().collection("products").doc(sku).collection("stockShards").get();
  return snapshot.docs
    .map((d) => ({ shard: Number(d.id), stock: Number(d.get("stock")), reserved: Number(d.get("reserved")) }))
    .sort((a, b) => a.shard - b.shard);
}

const sums = (levels: ShardLevel[]) => levels.reduce((s, l) => ({ stock: s.stock + l.stock, reserved: s.reserved + l.reserved }), { stock: 0, reserved: 0 });

/**
 * The shard numbers an order's record for one SKU names, whatever its shape: one shard, a list of
 * them, or shard → units.
 */
function shardsNamed(entry: unknown): number[] {
  if (typeof entry === "number") return [entry];
  if (Array.isArray(entry)) return entry.flatMap(shardsNamed);
  if (typeof entry === "object" && entry !== null) {
    const o = entry as Record<string, unknown>;
    return "shard" in o ? [Number(o.shard)] : Object.keys(o).map(Number);
  }
  return [];
}

/** The order once the reservation trigger has decided it (a trigger that throws leaves it pending). */
async function leftPending(orderId: string): Promise<Record<string, unknown>> {
  return eventually(`the reservation trigger to decide orders/${orderId}`, async () => {
    const data = await orderData(orderId);
    return data.status !== "pending" ? data : undefined;
  }, 20_000);
}

/** A product's counts as stored, types included (productData reads them as numbers). */
async function storedCounts(sku: string): Promise<{ stock: unknown; reserved: unknown }> {
  const data = (await db().collection("products").doc(sku).get()).data();
  return { stock: data?.stock, reserved: data?.reserved };
}

async function adminAlerts(eventId: string): Promise<number> {
  return (await notificationsWhere("eventId", eventId, "admin_alert")).length;
}

async function eventRecord(eventId: string): Promise<Record<string, unknown>> {
  const data = (await db().collection("webhookEvents").doc(eventId).get()).data();
  if (data === undefined) throw new Error(`webhookEvents/${eventId} does not exist`);
  return data;
}

async function auditOf(eventId: string): Promise<Record<string, unknown>[]> {
  return (await db().collection("auditLog").where("eventId", "==", eventId).get()).docs.map((d) => d.data());
}

/** Delivers, with the trigger's own handler, an order_confirmed queued while triggers were paused. */
async function deliverConfirmation(orderId: string): Promise<void> {
  const [queued] = await notificationsWhere("orderId", orderId, "order_confirmed");
  expect(queued, `order_confirmed of ${orderId}`).to.not.equal(undefined);
  const provider = logProvider(() => undefined);
  expect(await deliverNotification({ db: db(), now: () => new Date(), provider, options: DEFAULT_DELIVERY_OPTIONS }, String(queued.id))).to.equal("sent");
}

/** With the reservation trigger paused: an order is created and paid before anything reserves it. */
async function paidWhilePending(t: Ledger, sku: string, qty: number, amount: number, piId: string): Promise<string> {
  let orderId = "";
  await withTriggersPaused(async () => {
    orderId = await t.order({ items: [{ sku, qty }], amount });
    await t.expectResult(succeeded(orderId, amount, piId), "finalized");
  });
  // The trigger's late run (the handler the deployed trigger calls) leaves the paid order as it is.
  expect(await reserveStockForOrder(reservationDeps(db()), orderId)).to.equal("skipped");
  await deliverConfirmation(orderId);
  return orderId;
}

describe("money paths through HTTP on the emulators (issue 10)", () => {
  describe("paths a unit test covered only", () => {
    money("reserved → needs_review when the operator cut stock below the reservation: the reservation is released, nothing sold", async (t) => {
      const { sku, orderId, amount } = await t.reserved(3, 2);
      await db().collection("products").doc(sku).update({ stock: 1 });
      const paid = succeeded(orderId, amount);
      await t.expectResult(paid, "needs_review");
      const order = await orderData(orderId);
      expect(order.status).to.equal("needs_review");
      expect(order.reviewReason).to.be.a("string").and.include(sku);
      expect(await productData(sku)).to.deep.equal({ stock: 1, reserved: 0 });
      expect(await adminAlerts(paid.id)).to.equal(1);
    });

    money("stock an operator typed as text: the payment of a reservation writes the number it read less the sale, not the increment alone", async (t) => {
      const { sku, orderId, amount } = await t.reserved(10, 2);
      // Typed in the console as a string: Firestore's increment would replace it with -2.
      await db().collection("products").doc(sku).update({ stock: "10" });
      await t.expectResult(succeeded(orderId, amount), "finalized");
      expect(await storedCounts(sku)).to.deep.equal({ stock: 8, reserved: 0 });
    });

    money("reserved an operator retyped as text: the next reservation adds to it, and both reservations are consumed from it", async (t) => {
      const { sku, orderId: first, amount } = await t.reserved(10, 3);
      await db().collection("products").doc(sku).update({ reserved: "3" });
      const second = await t.order({ items: [{ sku, qty: 2 }], amount: 1500 });
      await waitForOrderStatus(second, "reserved");
      expect(await storedCounts(sku)).to.deep.equal({ stock: 10, reserved: 5 });
      await t.expectResult(succeeded(first, amount), "finalized");
      await t.expectResult(succeeded(second, 1500), "finalized");
      expect(await storedCounts(sku)).to.deep.equal({ stock: 5, reserved: 0 });
    });

    money("reserved → needs_review when the operator deleted the product: nothing is recreated, an admin is alerted", async (t) => {
      const { sku, orderId, amount } = await t.reserved(3, 2);
      await db().collection("products").doc(sku).delete();
      const paid = succeeded(orderId, amount);
      await t.expectResult(paid, "needs_review");
      expect((await orderData(orderId)).reviewReason).to.be.a("string").and.include(sku);
      expect((await db().collection("products").doc(sku).get()).exists).to.equal(false);
      expect(await adminAlerts(paid.id)).to.equal(1);
    });

    money("canceled by the sweep, then paid once the stock is gone → needs_review; the order that took the stock keeps it", async (t) => {
      const sku = await t.product(2);
      const window = pastWindow();
      const late = await t.order({ items: [{ sku, qty: 2 }], amount: 1200, createdAt: window.start });
      await waitForOrderStatus(late, "reserved");
      // Swept with a clock 31 minutes after this test's own minute of 2001: no other test's order is a candidate.
      const report = await releaseAbandonedReservations(reservationDeps(db(), () => window.after(31 * 60_000)), DEFAULT_ABANDON_POLICY, { pageSize: 500 });
      expect(report.canceled).to.be.at.least(1);
      expect((await orderData(late)).status).to.equal("canceled");
      expect(await productData(sku)).to.deep.equal({ stock: 2, reserved: 0 });
      expect(await notificationsWhere("orderId", late, "order_canceled")).to.have.length(1);

      const next = await t.order({ items: [{ sku, qty: 2 }], amount: 1200 });
      await waitForOrderStatus(next, "reserved");
      const latePayment = succeeded(late, 1200);
      await t.expectResult(latePayment, "needs_review");
      expect((await orderData(late)).reviewReason).to.be.a("string").and.include(sku);
      expect(await productData(sku)).to.deep.equal({ stock: 2, reserved: 2 });
      expect(await adminAlerts(latePayment.id)).to.equal(1);

      await t.expectResult(succeeded(next, 1200), "finalized");
      expect(await productData(sku)).to.deep.equal({ stock: 0, reserved: 0 });
    });

    money("out_of_stock → finalized when the operator restocked before the payment", async (t) => {
      const sku = await t.product(1);
      const orderId = await t.order({ items: [{ sku, qty: 2 }], amount: 1800 });
      await waitForOrderStatus(orderId, "out_of_stock");
      await db().collection("products").doc(sku).update({ stock: 5 });
      await t.expectResult(succeeded(orderId, 1800), "finalized");
      expect((await orderData(orderId)).status).to.equal("finalized");
      expect(await productData(sku)).to.deep.equal({ stock: 3, reserved: 0 });
    });

    money("needs_review → refunded: the money is recorded and nothing is restocked (nothing was sold)", async (t) => {
      const sku = await t.product(1);
      const orderId = await t.order({ items: [{ sku, qty: 2 }], amount: 1800 });
      await waitForOrderStatus(orderId, "out_of_stock");
      const piId = stripeId("pi");
      await t.expectResult(succeeded(orderId, 1800, piId), "needs_review");
      await t.expectResult(refunded(piId, 1800, 1800), "refunded");
      expect(await orderData(orderId)).to.include({ status: "refunded", refundedAmount: 1800, paymentIntentId: piId });
      expect(await productData(sku)).to.deep.equal({ stock: 1, reserved: 0 });
    });

    money("a lost dispute keeps the order disputed and its units sold, and alerts an admin at opening and at loss", async (t) => {
      const { sku, orderId, amount } = await t.reserved(10, 2);
      const piId = stripeId("pi");
      await t.expectResult(succeeded(orderId, amount, piId), "finalized");
      const disputeId = stripeId("dp");
      const opened = event("charge.dispute.created", dispute({ id: disputeId, amount, paymentIntentId: piId }));
      await t.expectResult(opened, "disputed");
      const lost = event("charge.dispute.closed", dispute({ id: disputeId, amount, paymentIntentId: piId, status: "lost" }));
      await t.expectResult(lost, "dispute_lost");
      const order = await orderData(orderId);
      expect(order.status).to.equal("disputed");
      expect(order.dispute).to.include({ id: disputeId, status: "lost", priorStatus: "finalized" });
      expect((order.dispute as { closedAt?: unknown }).closedAt).to.be.instanceOf(Timestamp);
      expect(await productData(sku)).to.deep.equal({ stock: 8, reserved: 0 });
      expect([await adminAlerts(opened.id), await adminAlerts(lost.id)]).to.deep.equal([1, 1]);
    });

    for (const [outcome, result, status] of [
      ["won", "dispute_won", "finalized"],
      ["lost", "dispute_lost", "disputed"],
    ] as const) {
      money(`a dispute closed (${outcome}) before it was opened is recorded once; the late opening changes nothing`, async (t) => {
        const { sku, orderId, amount } = await t.reserved(10, 2);
        const piId = stripeId("pi");
        await t.expectResult(succeeded(orderId, amount, piId), "finalized");
        const disputeId = stripeId("dp");
        await t.expectResult(event("charge.dispute.closed", dispute({ id: disputeId, amount, paymentIntentId: piId, status: outcome })), result);
        const closed = await orderData(orderId);
        expect(closed.status).to.equal(status);
        expect(closed.dispute).to.include({ id: disputeId, status: outcome });
        expect((closed.dispute as { closedAt?: unknown }).closedAt).to.be.instanceOf(Timestamp);

        const opened = event("charge.dispute.created", dispute({ id: disputeId, amount, paymentIntentId: piId }));
        await t.expectResult(opened, "dispute_already_recorded");
        expect(await orderData(orderId)).to.deep.equal(closed);
        expect(await adminAlerts(opened.id)).to.equal(0);
        expect(await productData(sku)).to.deep.equal({ stock: 8, reserved: 0 });
      });
    }

    money("RESTOCK_ON_REFUND=false (in-process handler: the emulated function reads functions/.env): a full refund keeps the units sold", async (t) => {
      const deps = { ...webhookDeps(db()), options: { restockOnRefund: false, webhookEventTtlDays: 30 } };
      const inProcess: Sender = (envelope) => invoke(deps, envelope);
      const { sku, orderId, amount } = await t.reserved(10, 2);
      const piId = stripeId("pi");
      await t.expectResult(succeeded(orderId, amount, piId), "finalized", "processed", inProcess);
      await t.expectResult(refunded(piId, amount, amount), "refunded", "processed", inProcess);
      expect(await orderData(orderId)).to.include({ status: "refunded", refundedAmount: amount });
      expect(await productData(sku)).to.deep.equal({ stock: 8, reserved: 0 });
    });

    money("a second PaymentIntent succeeding on a finalized order: duplicate_payment, the order unchanged, an admin asked to refund it", async (t) => {
      const { sku, orderId, amount } = await t.reserved(10, 2);
      const first = stripeId("pi");
      await t.expectResult(succeeded(orderId, amount, first), "finalized");
      const before = await orderData(orderId);
      expect(before.paymentIntentId).to.equal(first);

      const second = succeeded(orderId, amount);
      const answer = await t.send(second);
      expect(answer.status, JSON.stringify(answer.body)).to.equal(200);
      expect(answer.body.result).to.equal("duplicate_payment");
      expect(await orderData(orderId)).to.deep.equal(before);
      expect(await productData(sku)).to.deep.equal({ stock: 8, reserved: 0 });
      expect((await eventRecord(second.id)).result).to.equal("duplicate_payment");
      expect(await adminAlerts(second.id)).to.equal(1);
    });

    money("a pending order paid on a sharded product, before the reservation trigger, finalizes from the shards", async (t) => {
      const sku = await t.product(20, 10);
      const orderId = await paidWhilePending(t, sku, 2, 1000, stripeId("pi"));
      expect((await orderData(orderId)).status).to.equal("finalized");
      expect(sums(await shardLevels(sku))).to.deep.equal({ stock: 18, reserved: 0 });
      await aggregateShards(db(), sku);
      expect(await productData(sku)).to.deep.equal({ stock: 18, reserved: 0 });
    });
  });

  describe("the five sequences of issue 10, each answered 2xx on its first delivery", () => {
    for (const [kind, amountRefunded, refundResult] of [
      ["partial", 1000, "partially_refunded"],
      ["full", 2500, "refunded"],
    ] as const) {
      money(`(1) a ${kind} refund while a dispute is open is recorded; the order stays disputed and the dispute's priorStatus follows`, async (t) => {
        const { sku, orderId, amount } = await t.reserved(10, 2, 2500);
        const piId = stripeId("pi");
        await t.expectResult(succeeded(orderId, amount, piId), "finalized");
        const disputeId = stripeId("dp");
        await t.expectResult(event("charge.dispute.created", dispute({ id: disputeId, amount, paymentIntentId: piId })), "disputed");

        const refund = refunded(piId, amount, amountRefunded);
        await t.expectResult(refund, refundResult);
        expect((await db().collection("deadLetters").doc(refund.id).get()).exists, "a failed attempt was recorded").to.equal(false);
        const order = await orderData(orderId);
        expect(order).to.include({ status: "disputed", refundedAmount: amountRefunded });
        expect(order.dispute).to.include({ id: disputeId, priorStatus: refundResult });
        // A full refund restocks as it would have from `finalized` (RESTOCK_ON_REFUND=true in functions/.env).
        expect(await productData(sku)).to.deep.equal(kind === "full" ? { stock: 10, reserved: 0 } : { stock: 8, reserved: 0 });

        // Won: back to the status the refund left it in.
        await t.expectResult(event("charge.dispute.closed", dispute({ id: disputeId, amount, paymentIntentId: piId, status: "won" })), "dispute_won");
        expect(await orderData(orderId)).to.include({ status: refundResult, refundedAmount: amountRefunded });
      });
    }

    money("(2) a full refund after the product document was deleted is recorded; the restock is skipped, audited, and no product is recreated", async (t) => {
      const { sku, orderId, amount } = await t.reserved(10, 2);
      const piId = stripeId("pi");
      await t.expectResult(succeeded(orderId, amount, piId), "finalized");
      // The shop discontinued the product.
      await db().collection("products").doc(sku).delete();

      const refund = refunded(piId, amount, amount);
      await t.expectResult(refund, "refunded");
      expect(await orderData(orderId)).to.include({ status: "refunded", refundedAmount: amount });
      expect((await db().collection("products").doc(sku).get()).exists, `products/${sku} recreated`).to.equal(false);
      const audit = await auditOf(refund.id);
      expect(audit).to.have.length(1);
      expect(audit[0]).to.include({ orderId, result: "refunded" });
      // The entry says that the restock was skipped, and for which product.
      const said = JSON.stringify(audit[0]);
      expect(said).to.include(sku);
      expect(said).to.match(/skip/i);
    });

    money("(3) after a Checkout async payment fails, a new Session paid for the same order finalizes it; then a third payment is duplicate_payment", async (t) => {
      const { sku, orderId, amount } = await t.reserved(10, 2);
      const [cs1, pi1, cs2, pi2] = [stripeId("cs"), stripeId("pi"), stripeId("cs"), stripeId("pi")];
      const firstSession = (paymentStatus: "unpaid" | "paid") => checkoutSession({ id: cs1, amount, orderId, paymentIntentId: pi1, paymentStatus });
      await t.expectResult(event("checkout.session.completed", firstSession("unpaid")), "awaiting_payment_recorded");
      await t.expectResult(event("checkout.session.async_payment_failed", firstSession("unpaid")), "payment_failure_recorded");
      expect(await orderData(orderId)).to.include({ status: "reserved", checkoutSessionId: cs1, paymentIntentId: pi1 });

      // The customer pays again through a new Session (client_reference_id names the same order).
      const retry = event("checkout.session.completed", checkoutSession({ id: cs2, amount, orderId, paymentIntentId: pi2, paymentStatus: "paid" }));
      await t.expectResult(retry, "finalized");
      expect((await eventRecord(retry.id)).status).to.equal("processed");
      expect(await orderData(orderId)).to.include({ status: "finalized", checkoutSessionId: cs2, paymentIntentId: pi2 });
      expect(await productData(sku)).to.deep.equal({ stock: 8, reserved: 0 });
      // Stripe also sends the new Session's PaymentIntent success.
      await t.expectResult(succeeded(orderId, amount, pi2), "already_finalized");

      const before = await orderData(orderId);
      const third = succeeded(orderId, amount);
      const answer = await t.send(third);
      expect(answer.status, JSON.stringify(answer.body)).to.equal(200);
      expect(answer.body.result).to.equal("duplicate_payment");
      expect(await orderData(orderId)).to.deep.equal(before);
      expect(await productData(sku)).to.deep.equal({ stock: 8, reserved: 0 });
      expect(await adminAlerts(third.id)).to.equal(1);
    });

    money("(4) 20 units over 10 shards of 2: an order of 3 is reserved across shards, recorded on the order, and its payment consumes exactly those", async (t) => {
      const sku = await t.product(20, 10);
      expect((await shardLevels(sku)).map((l) => l.stock)).to.deep.equal(Array(10).fill(2));
      const orderId = await t.order({ items: [{ sku, qty: 3 }], amount: 1500 });
      const order = await leftPending(orderId);
      expect(order.status, "status the reservation trigger gave the order").to.equal("reserved");
      const held = await shardLevels(sku);
      expect(sums(held)).to.deep.equal({ stock: 20, reserved: 3 });
      const holding = held.filter((l) => l.reserved > 0).map((l) => l.shard);
      expect(holding.length, "shards holding the order").to.be.at.least(2);
      const recorded = (order.stockShards as Record<string, unknown> | undefined)?.[sku];
      expect([...new Set(shardsNamed(recorded))].sort((a, b) => a - b), "shards recorded on the order").to.deep.equal(holding);

      await t.expectResult(succeeded(orderId, 1500), "finalized");
      const after = await shardLevels(sku);
      expect(after).to.deep.equal(held.map((l) => ({ shard: l.shard, stock: l.stock - l.reserved, reserved: 0 })));
      expect(sums(after)).to.deep.equal({ stock: 17, reserved: 0 });
      await eventually("the product to show the shards' sums", async () => {
        const product = await productData(sku);
        return product.stock === 17 && product.reserved === 0;
      });
    });

    money("(4) a pending order of 3 on 10 shards of 2, paid before the reservation, finalizes; its full refund restocks the same shards", async (t) => {
      const sku = await t.product(20, 10);
      const piId = stripeId("pi");
      const orderId = await paidWhilePending(t, sku, 3, 1500, piId);
      const after = await shardLevels(sku);
      expect(sums(after)).to.deep.equal({ stock: 17, reserved: 0 });
      const taken = after.filter((l) => l.stock < 2).map((l) => l.shard);
      const recorded = ((await orderData(orderId)).stockShards as Record<string, unknown> | undefined)?.[sku];
      expect([...new Set(shardsNamed(recorded))].sort((a, b) => a - b), "shards recorded on the order").to.deep.equal(taken);

      await t.expectResult(refunded(piId, 1500, 1500), "refunded");
      expect(await shardLevels(sku)).to.deep.equal(after.map((l) => ({ shard: l.shard, stock: 2, reserved: 0 })));
    });

    for (const [label, badSku] of [
      ["a/b", `${uniqueId("a")}/b`],
      ["an empty string", ""],
      ["a number", 900_000_000 + Math.floor(Math.random() * 99_999_999)],
    ] as const) {
      money(`(5) an order naming ${label} as its SKU is marked out_of_stock with a reason, and its payment is answered 2xx and alerts an admin`, async (t) => {
        const orderId = uniqueId("order");
        t.orders.add(orderId);
        // Written with the Admin SDK, as a buggy client or script could: no rule stands in the way.
        await db().collection("orders").doc(orderId).create({
          userId: uniqueId("user"),
          items: [{ sku: badSku, qty: 1 }],
          amount: 500,
          currency: "usd",
          status: "pending",
          createdAt: Timestamp.now(),
        });
        const order = await leftPending(orderId);
        expect(order.status, "status the reservation trigger gave the order").to.equal("out_of_stock");
        const history = order.statusHistory as { from: string; to: string; reason: unknown }[];
        const change = history.find((h) => h.to === "out_of_stock");
        expect(change, "status change to out_of_stock").to.include({ from: "pending" });
        expect(change?.reason).to.be.a("string").and.have.length.greaterThan(0);

        const paid = succeeded(orderId, 500);
        const answer = await t.send(paid);
        expect(answer.status, JSON.stringify(answer.body)).to.equal(200);
        const record = await eventRecord(paid.id);
        const after = await orderData(orderId);
        if (record.status === "rejected") expect(after.status, "a rejected payment leaves the order").to.equal("out_of_stock");
        else expect([record.status, after.status]).to.deep.equal(["processed", "needs_review"]);
        expect(await adminAlerts(paid.id)).to.equal(1);
        if (typeof badSku === "number") expect((await db().collection("products").doc(String(badSku)).get()).exists, "product created").to.equal(false);
        if (typeof badSku === "string" && badSku.includes("/")) {
          const [parent, child] = badSku.split("/");
          expect((await db().collection("products").doc(parent).get()).exists, "product created").to.equal(false);
          expect((await db().collection("products").doc(parent).collection(child).get()).size, "documents under the bad path").to.equal(0);
        }
      });
    }
  });
});
