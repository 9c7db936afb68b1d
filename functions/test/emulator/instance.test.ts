import { expect } from "chai";
import { DEFAULT_GROUP_COMMIT } from "../../src/concurrency/groupCommit";
import { LocalLocks, lockKeys } from "../../src/concurrency/localLocks";
import { stockShardRef } from "../../src/collections/products";
import { configureStockShards } from "../../src/inventory/shards";
import { startShard } from "../../src/inventory/stock";
import { reserveStockForOrder } from "../../src/reservation";
import { countWhere, createOrder, db, eventually, orderData, productData, reservedOrder, seedProduct, withTriggersPaused, uniqueId, waitForOrderStatus } from "../helpers/emulator";
import { beforeFirstCommit, beforeRead, countingCommits, invoke, recordingReads, reservationDeps, unavailableOnce, webhookDeps } from "../helpers/inProcess";
import { charge, event, paymentIntent, stripeId } from "../helpers/stripeFixtures";

/**
 * Issue 5: many concurrent requests in ONE function instance (they share its LocalLocks), against the
 * real Firestore emulator. Outcomes must be exactly those of the same requests one at a time.
 */

async function shards(sku: string): Promise<{ stock: number; reserved: number }[]> {
  const snapshot = await db().collection("products").doc(sku).collection("stockShards").get();
  return snapshot.docs.map((d) => ({ stock: Number(d.get("stock")), reserved: Number(d.get("reserved")) }));
}

const total = (levels: { stock: number; reserved: number }[]) =>
  levels.reduce((sum, l) => ({ stock: sum.stock + l.stock, reserved: sum.reserved + l.reserved }), { stock: 0, reserved: 0 });

async function statusesOf(ids: string[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const id of ids) {
    const status = String((await orderData(id)).status);
    counts[status] = (counts[status] ?? 0) + 1;
  }
  return counts;
}

describe("one instance under concurrent load", () => {
  it("answers 40 concurrent copies of one event with one transaction: one processed, 39 duplicates", async () => {
    const { sku, orderId } = await reservedOrder(10, 3, 900);
    const paid = event("payment_intent.succeeded", paymentIntent({ amount: 900, orderId }));

    const counted = countingCommits(db());
    const deps = webhookDeps(counted.db);
    const answers = await Promise.all(Array.from({ length: 40 }, () => invoke(deps, paid)));
    expect(counted.count()).to.equal(1);

    expect(answers.map((a) => a.status)).to.deep.equal(Array(40).fill(200));
    const statuses = answers.map((a) => String(a.body.status));
    expect(statuses.filter((s) => s === "processed")).to.have.length(1);
    expect(statuses.filter((s) => s === "duplicate")).to.have.length(39);
    expect((await orderData(orderId)).status).to.equal("finalized");
    expect((await db().collection("products").doc(sku).get()).data()).to.include({ stock: 7, reserved: 0 });
    expect(await countWhere("auditLog", "eventId", paid.id)).to.equal(1);
    expect(await countWhere("notifications", "eventId", paid.id)).to.equal(1);
    expect(deps.locks.heldCount).to.equal(0);
  });

  it("gives concurrent copies the first copy's failure and counts one attempt; a redelivery then applies", async () => {
    const { orderId } = await reservedOrder(10, 2, 400);
    const paid = event("payment_intent.succeeded", paymentIntent({ amount: 400, orderId }));

    const failing = webhookDeps(unavailableOnce(db()));
    const answers = await Promise.all(Array.from({ length: 10 }, () => invoke(failing, paid)));
    expect(answers.map((a) => a.status)).to.deep.equal(Array(10).fill(500));
    expect((await db().collection("deadLetters").doc(paid.id).get()).data()).to.include({ attempts: 1, status: "retrying" });
    expect((await db().collection("webhookEvents").doc(paid.id).get()).exists).to.equal(false);

    const retry = await invoke(failing, paid);
    expect(retry.body).to.include({ status: "processed", result: "finalized" });
    expect((await db().collection("deadLetters").doc(paid.id).get()).get("status")).to.equal("replayed");
  });

  it("pays 30 orders over 3 products in one burst in far fewer transactions than deliveries, each exactly once", async () => {
    const skus = [uniqueId("sku"), uniqueId("sku"), uniqueId("sku")];
    await Promise.all(skus.map((sku) => seedProduct(sku, 20)));
    const orders = Array.from({ length: 30 }, (_, i) => ({ id: uniqueId("order"), sku: skus[i % 3], qty: 1 + (i % 2) }));
    await Promise.all(orders.map((o) => createOrder({ id: o.id, items: [{ sku: o.sku, qty: o.qty }], amount: 300 * o.qty })));
    await Promise.all(orders.map((o) => waitForOrderStatus(o.id, "reserved")));

    const counted = countingCommits(db());
    const deps = webhookDeps(counted.db);
    const events = orders.map((o) => event("payment_intent.succeeded", paymentIntent({ amount: 300 * o.qty, orderId: o.id })));
    const answers = await Promise.all(events.map((e) => invoke(deps, e)));

    expect(answers.map((a) => `${a.status} ${String(a.body.result)}`)).to.deep.equal(Array(30).fill("200 finalized"));
    expect(await statusesOf(orders.map((o) => o.id))).to.deep.equal({ finalized: 30 });
    for (const sku of skus) {
      const sold = orders.filter((o) => o.sku === sku).reduce((sum, o) => sum + o.qty, 0);
      expect(await productData(sku)).to.include({ stock: 20 - sold, reserved: 0 });
    }
    for (const e of events) expect(await countWhere("auditLog", "eventId", e.id)).to.equal(1);
    // Consuming held reservations commutes: deliveries for one product share a commit too.
    expect(counted.count()).to.be.at.most(3);
    expect(deps.locks.heldCount).to.equal(0);
  });

  it("applies a PaymentIntent's success and its charge's, arriving together, once and without a lock stall", async () => {
    // The charge names no order: it is found by PaymentIntent inside the transaction, after the order
    // was read, so it can only take local locks it finds free (a wait there would deadlock with the
    // other event, which holds the product and waits for Firestore to let it write the order).
    const sku = uniqueId("sku");
    const orderId = uniqueId("order");
    const piId = stripeId("pi");
    await seedProduct(sku, 5);
    await createOrder({ id: orderId, items: [{ sku, qty: 1 }], amount: 700, paymentIntentId: piId });
    await waitForOrderStatus(orderId, "reserved");
    const counted = countingCommits(db());
    const deps = webhookDeps(counted.db);
    const answers = await Promise.all([
      invoke(deps, event("payment_intent.succeeded", paymentIntent({ id: piId, amount: 700, orderId }))),
      invoke(deps, event("charge.succeeded", charge({ amount: 700, paymentIntentId: piId }))),
    ]);
    expect(answers.map((a) => a.status)).to.deep.equal([200, 200]);
    expect(answers.map((a) => String(a.body.result)).sort()).to.deep.equal(["already_finalized", "finalized"]);
    expect((await db().collection("products").doc(sku).get()).data()).to.include({ stock: 4, reserved: 0 });
    // The local keys queue the two in this instance: neither commit loses a race and reruns.
    expect(deps.locks.transactions(counted.db).stats.failedGroups, "shared commits that failed").to.equal(0);
    expect(counted.conflicts(), "commits that lost a race").to.equal(0);
    expect(deps.locks.heldCount).to.equal(0);
  });

  it("decides a payment's second event on one read, without the product: the first read it makes is all it needs", async () => {
    const { sku, orderId, amount } = await reservedOrder(5, 1);
    const piId = stripeId("pi");
    await db().collection("orders").doc(orderId).update({ paymentIntentId: piId });
    const first = recordingReads(db());
    const paid = await invoke(webhookDeps(first.db), event("payment_intent.succeeded", paymentIntent({ id: piId, amount, orderId })));
    expect(paid.body).to.include({ result: "finalized" });
    // The payment that moves stock reads the product (with its order again) after its first read.
    expect(first.calls.flat().filter((path) => path === `products/${sku}`)).to.have.length(1);

    const second = recordingReads(db());
    const answer = await invoke(webhookDeps(second.db), event("charge.succeeded", charge({ amount, paymentIntentId: piId, orderId })));
    expect(answer.status).to.equal(200);
    expect(answer.body).to.include({ result: "already_finalized" });
    expect(second.calls, "document reads by call").to.have.length(1);
    expect(second.calls[0].some((path) => path.startsWith("products/"))).to.equal(false);
    expect(await productData(sku)).to.include({ stock: 4, reserved: 0 });
  });

  it("applies two payments' PaymentIntent and charge events arriving crosswise in small groups, each order once", async () => {
    // Groups of two, in arrival order: [pi(A), charge(B)], then [pi(B), charge(A)]. A charge names no
    // order: it is looked up without a lock and its key taken before the transaction, so no group holds
    // a read lock on an order another group writes. (Production Firestore would make such groups wait
    // on each other until one is aborted; the emulator's query reads do not show it, so this test pins
    // the outcomes.)
    const sku = uniqueId("sku");
    await seedProduct(sku, 5);
    const payments = [0, 1].map(() => ({ orderId: uniqueId("order"), piId: stripeId("pi") }));
    await Promise.all(payments.map((p) => createOrder({ id: p.orderId, items: [{ sku, qty: 1 }], amount: 700, paymentIntentId: p.piId })));
    await Promise.all(payments.map((p) => waitForOrderStatus(p.orderId, "reserved")));
    const counted = countingCommits(db());
    const deps = { ...webhookDeps(counted.db), locks: new LocalLocks({ ...DEFAULT_GROUP_COMMIT, maxMembers: 2, maxInFlight: 2, readRoundMs: 25 }) };
    const [a, b] = payments;
    const piEvent = (p: typeof a) => event("payment_intent.succeeded", paymentIntent({ id: p.piId, amount: 700, orderId: p.orderId }));
    const chargeEvent = (p: typeof a) => event("charge.succeeded", charge({ amount: 700, paymentIntentId: p.piId }));

    const first = [invoke(deps, piEvent(a)), invoke(deps, chargeEvent(b))];
    // One turn of the event loop: the first pair has formed a group and started before the second arrives.
    await new Promise((resolve) => setImmediate(resolve));
    const answers = await Promise.all([...first, invoke(deps, piEvent(b)), invoke(deps, chargeEvent(a))]);

    expect(answers.map((x) => x.status)).to.deep.equal([200, 200, 200, 200]);
    expect(await statusesOf(payments.map((p) => p.orderId))).to.deep.equal({ finalized: 2 });
    expect(await productData(sku)).to.include({ stock: 3, reserved: 0 });
    // Keys taken before each body keep the groups apart: no commit lost a race, no group failed.
    expect(deps.locks.transactions(counted.db).stats.failedGroups, "shared commits that failed").to.equal(0);
    expect(counted.conflicts(), "commits that lost a race").to.equal(0);
    expect(deps.locks.heldCount).to.equal(0);
  });

  it("sells a sharded product's stock exactly once to more buyers than it has, reserving and paying concurrently", async () => {
    const sku = uniqueId("flash");
    await seedProduct(sku, 16);
    await configureStockShards(db(), sku, 4);
    const orders = Array.from({ length: 24 }, () => ({ id: uniqueId("order"), piId: stripeId("pi") }));
    // The deployed trigger reserves these too (another instance): both race, and must agree.
    await Promise.all(orders.map((o) => createOrder({ id: o.id, items: [{ sku, qty: 1 }], amount: 500 })));
    const reservation = reservationDeps(db());
    await Promise.all(orders.map((o) => reserveStockForOrder(reservation, o.id)));
    const ids = orders.map((o) => o.id);
    await eventually("every order to be reserved or out of stock", async () => {
      const counts = await statusesOf(ids);
      return (counts.reserved ?? 0) + (counts.out_of_stock ?? 0) === 24;
    });
    expect(await statusesOf(ids)).to.deep.equal({ reserved: 16, out_of_stock: 8 });
    for (const level of await shards(sku)) expect(level.reserved).to.be.within(0, level.stock);

    const deps = webhookDeps(db());
    const answers = await Promise.all(
      orders.map((o) => invoke(deps, event("payment_intent.succeeded", paymentIntent({ id: o.piId, amount: 500, orderId: o.id })))),
    );
    expect(answers.map((a) => a.status)).to.deep.equal(Array(24).fill(200));
    // Every unit sold once; the buyers who found no stock are paid orders an operator must refund.
    expect(await statusesOf(ids)).to.deep.equal({ finalized: 16, needs_review: 8 });
    const levels = await shards(sku);
    expect(total(levels)).to.deep.equal({ stock: 0, reserved: 0 });
    for (const level of levels) expect(level.stock).to.be.at.least(0);
  });

  /** An order id whose line of `sku` probes its `n` shards from `shard` (a payment that came before its reservation). */
  const idStartingAt = (sku: string, n: number, shard: number) => {
    for (;;) {
      const id = uniqueId("order");
      if (startShard(id, sku, n) === shard) return id;
    }
  };

  /** LocalLocks that count how often a request waits for `key`. */
  function countingWaitsFor(key: string): { locks: LocalLocks; waits: () => number } {
    let waits = 0;
    const locks = new (class extends LocalLocks {
      override lock(wanted: string): Promise<void> {
        if (wanted === key) waits += 1;
        return super.lock(wanted);
      }
    })();
    return { locks, waits: () => waits };
  }

  it("gives two payments that share one shard snapshot each shard's own figures, whatever shard each starts from", async () => {
    const sku = uniqueId("flash");
    await withTriggersPaused(async () => {
      await seedProduct(sku, 6);
      await configureStockShards(db(), sku, 3);
      // Only shard 0 has units: 2 of them.
      const shardRef = (n: number) => stockShardRef(db(), sku, n);
      await Promise.all([shardRef(0).update({ stock: 2 }), shardRef(1).update({ stock: 0 }), shardRef(2).update({ stock: 0 })]);
      // Two pending orders paid before their reservation: A probes from shard 0, B from shard 2, so they
      // read the shared snapshot in different orders.
      const [a, b] = [idStartingAt(sku, 3, 0), idStartingAt(sku, 3, 2)];
      await Promise.all([a, b].map((id) => createOrder({ id, items: [{ sku, qty: 1 }], amount: 500 })));
      // Another request of the instance holds shard 0, so both go to the snapshot and then wait for it.
      const { locks, waits } = countingWaitsFor(lockKeys.shard(sku, 0));
      const holder = locks.scope();
      expect(holder.tryAcquire(lockKeys.shard(sku, 0))).to.equal(true);
      const deps = { ...webhookDeps(db()), locks };
      const answers = Promise.all([a, b].map((orderId) => invoke(deps, event("payment_intent.succeeded", paymentIntent({ amount: 500, orderId })))));
      // Both wait for shard 0 (a request that misread the snapshot would send its paid order to review instead).
      await eventually("both payments to wait for shard 0, or one to be answered", async () => waits() >= 2 || (await statusesOf([a, b])).needs_review);
      holder.releaseAll();
      expect((await answers).map((x) => x.body.result)).to.deep.equal(["finalized", "finalized"]);
      expect((await shardRef(0).get()).data()).to.include({ stock: 0, reserved: 0 });
    });
  });

  /** Two orders holding a unit each of a product with 2 in stock; the operator then edits the product; both are paid at once. */
  async function payTwoHeldAfterEdit(edit: { stock: number | string; reserved?: number }): Promise<{ sku: string; orders: string[]; results: string[] }> {
    const sku = uniqueId("sku");
    await seedProduct(sku, 2);
    const orders = [uniqueId("order"), uniqueId("order")];
    await Promise.all(orders.map((id) => createOrder({ id, items: [{ sku, qty: 1 }], amount: 500 })));
    await Promise.all(orders.map((id) => waitForOrderStatus(id, "reserved")));
    await db().collection("products").doc(sku).update(edit);
    const deps = webhookDeps(db());
    const answers = await Promise.all(orders.map((orderId) => invoke(deps, event("payment_intent.succeeded", paymentIntent({ amount: 500, orderId })))));
    return { sku, orders, results: answers.map((a) => String(a.body.result)).sort() };
  }

  it("pays at once two reservations an operator's cut no longer covers: one sale, one review, stock never below zero", async () => {
    // The operator writes off a unit in the console: 1 in stock, 2 reserved.
    const { sku, orders, results } = await payTwoHeldAfterEdit({ stock: 1 });

    expect(results).to.deep.equal(["finalized", "needs_review"]);
    expect(await productData(sku)).to.include({ stock: 0, reserved: 0 });
    expect(await statusesOf(orders)).to.deep.equal({ finalized: 1, needs_review: 1 });
  });

  it("pays at once two reservations of a product whose stock an operator typed as text: both sold, stock written back as the number 0", async () => {
    // A count to rewrite is written as a value, so the payments are guarded by the version and take
    // turns: as two unguarded writes in one batch, each would write 2 less its own unit.
    const { sku, orders, results } = await payTwoHeldAfterEdit({ stock: "2" });

    expect(results).to.deep.equal(["finalized", "finalized"]);
    const stored = (await db().collection("products").doc(sku).get()).data();
    expect({ stock: stored?.stock, reserved: stored?.reserved }).to.deep.equal({ stock: 0, reserved: 0 });
    expect(await statusesOf(orders)).to.deep.equal({ finalized: 2 });
  });

  it("sends a lone payment to review when its product is deleted between the read and the commit", async () => {
    const { sku, orderId, amount } = await reservedOrder(3, 1, 500);
    const deps = webhookDeps(beforeFirstCommit(db(), () => db().collection("products").doc(sku).delete()));

    const answer = await invoke(deps, event("payment_intent.succeeded", paymentIntent({ amount, orderId })));

    expect(`${answer.status} ${String(answer.body.result)}`).to.equal("200 needs_review");
    expect((await db().collection("products").doc(sku).get()).exists, "the deleted product was recreated").to.equal(false);
    expect(await countWhere("deadLetters", "orderId", orderId)).to.equal(0);
  });

  it("sends a payment to review when its product is deleted between the read and the commit; its group's other payment commits", async () => {
    const gone = uniqueId("sku");
    const kept = uniqueId("sku");
    await Promise.all([seedProduct(gone, 3), seedProduct(kept, 3)]);
    const [lost, sold] = [uniqueId("order"), uniqueId("order")];
    await createOrder({ id: lost, items: [{ sku: gone, qty: 1 }], amount: 500 });
    await createOrder({ id: sold, items: [{ sku: kept, qty: 1 }], amount: 500 });
    await Promise.all([lost, sold].map((id) => waitForOrderStatus(id, "reserved")));
    // The operator deletes the product after the payments have read it, before they commit.
    const counted = countingCommits(beforeFirstCommit(db(), () => db().collection("products").doc(gone).delete()));
    const deps = webhookDeps(counted.db);

    const answers = await Promise.all([lost, sold].map((orderId) => invoke(deps, event("payment_intent.succeeded", paymentIntent({ amount: 500, orderId })))));

    expect(answers.map((a) => `${a.status} ${String(a.body.result)}`)).to.deep.equal(["200 needs_review", "200 finalized"]);
    expect((await db().collection("products").doc(gone).get()).exists, "the deleted product was recreated").to.equal(false);
    expect(await productData(kept)).to.include({ stock: 2, reserved: 0 });
    expect(await countWhere("deadLetters", "orderId", lost)).to.equal(0);
    const stats = deps.locks.transactions(counted.db).stats;
    expect(stats.failedGroups, "shared commits that failed").to.equal(0);
    // The group's conflict read found the deleted product, and only that payment decided again.
    expect(stats).to.include({ retriedGroups: 1, pruned: 1 });
  });

  it("pays at once two reservations whose product an operator 'corrected' to 1 reserved: one sale, one review, nothing below zero", async () => {
    // Two orders hold a unit each, yet the operator sets 1 in stock and 1 reserved.
    const { sku, orders, results } = await payTwoHeldAfterEdit({ stock: 1, reserved: 1 });

    expect(results).to.deep.equal(["finalized", "needs_review"]);
    expect(await productData(sku)).to.include({ stock: 0, reserved: 0 });
    expect(await statusesOf(orders)).to.deep.equal({ finalized: 1, needs_review: 1 });
  });

  it("answers a payment whose held shard is gone without failing the other payment of its group", async () => {
    const hot = uniqueId("hot");
    const plain = uniqueId("sku");
    await Promise.all([seedProduct(hot, 4), seedProduct(plain, 4)]);
    await configureStockShards(db(), hot, 2);
    const [orphan, sold] = [uniqueId("order"), uniqueId("order")];
    await createOrder({ id: orphan, items: [{ sku: hot, qty: 1 }], amount: 500 });
    await createOrder({ id: sold, items: [{ sku: plain, qty: 1 }], amount: 500 });
    await Promise.all([orphan, sold].map((id) => waitForOrderStatus(id, "reserved")));
    // The shards disappear (a recursive delete in the console) while the payments are being decided.
    const dropShards = async () => {
      const shardDocs = await db().collection("products").doc(hot).collection("stockShards").get();
      await Promise.all(shardDocs.docs.map((d) => d.ref.delete()));
    };
    const deps = webhookDeps(beforeFirstCommit(db(), dropShards));

    const answers = await Promise.all([orphan, sold].map((orderId) => invoke(deps, event("payment_intent.succeeded", paymentIntent({ amount: 500, orderId })))));

    expect(answers[1].status).to.equal(200);
    expect(answers[1].body.result).to.equal("finalized");
    // No run can write a shard that is gone: a transient failure, redelivered by Stripe, never a sale.
    expect(answers[0].status).to.equal(500);
    expect((await orderData(orphan)).status).to.equal("reserved");
    expect(deps.locks.transactions(deps.db).stats.failedGroups, "shared commits that failed").to.equal(0);
  });

  it("consumes reservations on shards without reading them, and an operator cutting stock never takes a shard below zero", async () => {
    const sku = uniqueId("hot");
    await seedProduct(sku, 8);
    await configureStockShards(db(), sku, 4);
    const orders = [uniqueId("order"), uniqueId("order")];
    await Promise.all(orders.map((id) => createOrder({ id, items: [{ sku, qty: 2 }], amount: 600 })));
    await Promise.all(orders.map((id) => waitForOrderStatus(id, "reserved")));

    // The operator sets stock to 0 in the console: only the 4 unreserved units can go.
    await db().collection("products").doc(sku).update({ stock: 0 });
    await eventually("the edit to reach the shards", async () => total(await shards(sku)).stock === 4);
    expect(total(await shards(sku))).to.deep.equal({ stock: 4, reserved: 4 });

    const deps = webhookDeps(db());
    const answers = await Promise.all(orders.map((orderId) => invoke(deps, event("payment_intent.succeeded", paymentIntent({ amount: 600, orderId })))));
    expect(answers.map((a) => a.body.result)).to.deep.equal(["finalized", "finalized"]);
    const levels = await shards(sku);
    expect(total(levels)).to.deep.equal({ stock: 0, reserved: 0 });
    for (const level of levels) expect(level).to.deep.equal({ stock: 0, reserved: 0 });
  });
});

/**
 * Issue 12: two instances (two LocalLocks, so no shared keys, coalescing or group) against one
 * database, as production runs many. Every delivery is answered 2xx at once (no lock waits, so well
 * within Stripe's first retry) and the outcomes are exact.
 */
describe("two instances against one database", () => {
  const twoInstances = () => [webhookDeps(db()), webhookDeps(db())];

  it("applies the twin events of 10 payments, each twin at another instance, one finalization each", async () => {
    const sku = uniqueId("sku");
    await seedProduct(sku, 20);
    const payments = Array.from({ length: 10 }, () => ({ orderId: uniqueId("order"), piId: stripeId("pi") }));
    await Promise.all(payments.map((p) => createOrder({ id: p.orderId, items: [{ sku, qty: 1 }], amount: 700, paymentIntentId: p.piId })));
    await Promise.all(payments.map((p) => waitForOrderStatus(p.orderId, "reserved")));
    const [a, b] = twoInstances();

    const answers = await Promise.all(
      payments.flatMap((p) => [
        invoke(a, event("payment_intent.succeeded", paymentIntent({ id: p.piId, amount: 700, orderId: p.orderId }))),
        invoke(b, event("charge.succeeded", charge({ amount: 700, paymentIntentId: p.piId }))),
      ]),
    );

    expect(answers.map((x) => x.status)).to.deep.equal(Array(20).fill(200));
    expect(answers.filter((x) => x.body.result === "finalized")).to.have.length(10);
    expect(await statusesOf(payments.map((p) => p.orderId))).to.deep.equal({ finalized: 10 });
    expect(await productData(sku)).to.include({ stock: 10, reserved: 0 });
    for (const p of payments) expect(await countWhere("notifications", "orderId", p.orderId)).to.equal(1);
  });

  it("pays two orders of one plain product at two instances, one committing inside the other's transaction, with no lost race", async () => {
    const sku = uniqueId("sku");
    await seedProduct(sku, 10);
    const [first, second] = [uniqueId("order"), uniqueId("order")];
    await Promise.all([first, second].map((id) => createOrder({ id, items: [{ sku, qty: 2 }], amount: 800 })));
    await Promise.all([first, second].map((id) => waitForOrderStatus(id, "reserved")));
    const b = webhookDeps(db());
    const inBetween: Array<Awaited<ReturnType<typeof invoke>>> = [];
    // The second instance's payment commits after the first one has read everything, before it commits.
    const counted = countingCommits(
      beforeFirstCommit(db(), async () => {
        inBetween.push(await invoke(b, event("payment_intent.succeeded", paymentIntent({ amount: 800, orderId: second }))));
      }),
    );
    const a = webhookDeps(counted.db);

    const answer = await invoke(a, event("payment_intent.succeeded", paymentIntent({ amount: 800, orderId: first })));

    expect([answer, ...inBetween].map((x) => x.body.result)).to.deep.equal(["finalized", "finalized"]);
    // Consuming a held reservation does not depend on the product's version: nothing to lose a race on.
    expect(counted.conflicts(), "commits of the first instance that lost a race").to.equal(0);
    expect(counted.count()).to.equal(1);
    expect(await productData(sku)).to.include({ stock: 6, reserved: 0 });
  });

  /** A reserved order of one unit of a plain product with 10 in stock, and its PaymentIntent's id. */
  async function reservedPayment(sku: string): Promise<{ orderId: string; piId: string }> {
    const payment = { orderId: uniqueId("order"), piId: stripeId("pi") };
    await createOrder({ id: payment.orderId, items: [{ sku, qty: 1 }], amount: 700, paymentIntentId: payment.piId });
    await waitForOrderStatus(payment.orderId, "reserved");
    return payment;
  }
  const succeeded = (p: { orderId: string; piId: string }) => event("payment_intent.succeeded", paymentIntent({ id: p.piId, amount: 700, orderId: p.orderId }));
  const charged = (p: { piId: string }) => event("charge.succeeded", charge({ amount: 700, paymentIntentId: p.piId }));

  // Either twin may be the one that reads first: the charge names its order by PaymentIntent, the other by id.
  for (const [first, second] of [
    ["payment_intent.succeeded", "charge.succeeded"],
    ["charge.succeeded", "payment_intent.succeeded"],
  ] as const) {
    it(`answers ${first} already_finalized, with no commit lost, when ${second} finalized its order at another instance between its two reads`, async () => {
      const sku = uniqueId("sku");
      await seedProduct(sku, 10);
      const payment = await reservedPayment(sku);
      const eventOf = (type: typeof first) => (type === "charge.succeeded" ? charged(payment) : succeeded(payment));
      const b = webhookDeps(db());
      const twin: Array<Awaited<ReturnType<typeof invoke>>> = [];
      // The twin finalizes the order at the other instance after this one's first read, before its stock read.
      const counted = countingCommits(beforeRead(db(), 2, async () => twin.push(await invoke(b, eventOf(second)))));
      const a = webhookDeps(counted.db);

      const answer = await invoke(a, eventOf(first));

      expect([answer, ...twin].map((x) => `${x.status} ${String(x.body.result)}`)).to.deep.equal(["200 already_finalized", "200 finalized"]);
      // Its stock read read the order again and saw the twin's finalization: it ran again before committing.
      expect(counted.conflicts(), "commits of the first instance that lost a race").to.equal(0);
      expect(counted.count()).to.equal(1);
      expect(await statusesOf([payment.orderId])).to.deep.equal({ finalized: 1 });
      expect(await productData(sku)).to.include({ stock: 9, reserved: 0 });
      expect(await countWhere("notifications", "orderId", payment.orderId)).to.equal(1);
      // Its reservation, the finalization and the already_finalized no-op.
      expect(await countWhere("auditLog", "orderId", payment.orderId)).to.equal(3);
    });
  }

  it("leaves out of its group's commit only the payment whose twin another instance finalized between its reads; no shared commit fails", async () => {
    const sku = uniqueId("sku");
    await seedProduct(sku, 10);
    const [raced, plain] = [await reservedPayment(sku), await reservedPayment(sku)];
    const b = webhookDeps(db());
    const twin: Array<Awaited<ReturnType<typeof invoke>>> = [];
    const counted = countingCommits(beforeRead(db(), 2, async () => twin.push(await invoke(b, charged(raced)))));
    const a = webhookDeps(counted.db);

    const answers = await Promise.all([invoke(a, succeeded(raced)), invoke(a, succeeded(plain))]);

    expect([...answers, ...twin].map((x) => `${x.status} ${String(x.body.result)}`)).to.deep.equal(["200 already_finalized", "200 finalized", "200 finalized"]);
    const stats = a.locks.transactions(counted.db).stats;
    // The plain payment committed in the group's one shared commit; the raced one ran again alone (a group
    // of one) and committed there. No shared commit failed or was decided again.
    expect(stats).to.include({ groups: 1, members: 2, failedGroups: 0, retriedGroups: 0, pruned: 0, requeued: 1, loneArrivals: 1, missedTwice: 0 });
    expect(counted.conflicts(), "commits of the first instance that lost a race").to.equal(0);
    expect(counted.count()).to.equal(2);
    expect(await statusesOf([raced.orderId, plain.orderId])).to.deep.equal({ finalized: 2 });
    expect(await productData(sku)).to.include({ stock: 8, reserved: 0 });
  });

  it("answers copies of one event split over two instances with one effect and the rest duplicates", async () => {
    const { sku, orderId } = await reservedOrder(10, 3, 900);
    const paid = event("payment_intent.succeeded", paymentIntent({ amount: 900, orderId }));
    const [a, b] = twoInstances();

    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => invoke(i % 2 === 0 ? a : b, paid)));

    expect(answers.map((x) => x.status)).to.deep.equal(Array(20).fill(200));
    expect(answers.filter((x) => x.body.status === "processed")).to.have.length(1);
    expect(answers.filter((x) => x.body.status === "duplicate")).to.have.length(19);
    expect(await productData(sku)).to.include({ stock: 7, reserved: 0 });
    expect(await countWhere("auditLog", "eventId", paid.id)).to.equal(1);
  });

  it("reserves and pays a sharded product from two instances at once without overselling", async () => {
    const sku = uniqueId("flash");
    await seedProduct(sku, 12);
    await configureStockShards(db(), sku, 3);
    // The deployed reservation trigger is paused: the two instances here are the only ones reserving.
    await withTriggersPaused(async () => {
      const orders = Array.from({ length: 18 }, () => ({ id: uniqueId("order"), piId: stripeId("pi") }));
      await Promise.all(orders.map((o) => createOrder({ id: o.id, items: [{ sku, qty: 1 }], amount: 500 })));
      const instances = [reservationDeps(db()), reservationDeps(db())];
      const reserved = await Promise.all(orders.map((o, i) => reserveStockForOrder(instances[i % 2], o.id)));
      expect(reserved.filter((r) => r === "reserved")).to.have.length(12);
      expect(reserved.filter((r) => r === "out_of_stock")).to.have.length(6);
      const [a, b] = twoInstances();
      const answers = await Promise.all(orders.map((o, i) => invoke(i % 2 === 0 ? a : b, event("payment_intent.succeeded", paymentIntent({ id: o.piId, amount: 500, orderId: o.id })))));
      expect(answers.map((x) => x.status)).to.deep.equal(Array(18).fill(200));
      expect(await statusesOf(orders.map((o) => o.id))).to.deep.equal({ finalized: 12, needs_review: 6 });
      const levels = await shards(sku);
      expect(total(levels)).to.deep.equal({ stock: 0, reserved: 0 });
      for (const level of levels) expect(level.stock).to.be.at.least(0);
    });
  });
});
