import { expect } from "chai";
import { stockShardRef } from "../../src/collections/products";
import { FieldValue, Timestamp } from "firebase-admin/firestore";
import { aggregateShards, configureStockShards, reconcileProduct } from "../../src/inventory/shards";
import { createOrder, db, deliver, eventually, orderData, productData, seedProduct, withTriggersPaused, uniqueId, waitForOrderStatus } from "../helpers/emulator";
import { charge, event, paymentIntent, stripeId } from "../helpers/stripeFixtures";

/** Issue 5: a hot product split into stock shards behaves like one product, and stays editable in the console. */

async function shardSums(sku: string): Promise<{ stock: number; reserved: number; shards: number }> {
  const snapshot = await db().collection("products").doc(sku).collection("stockShards").get();
  return snapshot.docs.reduce(
    (sum, d) => ({ stock: sum.stock + Number(d.get("stock")), reserved: sum.reserved + Number(d.get("reserved")), shards: sum.shards + 1 }),
    { stock: 0, reserved: 0, shards: 0 },
  );
}

/** The product document converges to the shards' sums (aggregation trigger). */
async function converged(sku: string, expected: { stock: number; reserved: number }): Promise<void> {
  await eventually(`products/${sku} to show ${JSON.stringify(expected)}`, async () => {
    const [product, sums] = await Promise.all([productData(sku), shardSums(sku)]);
    return product.stock === expected.stock && product.reserved === expected.reserved && sums.stock === expected.stock && sums.reserved === expected.reserved;
  });
}

describe("stock shards for a hot product", () => {
  it("reserves, finalizes, refunds and releases through shards, and the product shows their sums", async () => {
    const sku = uniqueId("hot");
    await seedProduct(sku, 40);
    await configureStockShards(db(), sku, 4);
    expect(await shardSums(sku)).to.deep.equal({ stock: 40, reserved: 0, shards: 4 });

    const orders = Array.from({ length: 6 }, () => ({ id: uniqueId("order"), piId: stripeId("pi") }));
    await Promise.all(orders.map((o) => createOrder({ id: o.id, items: [{ sku, qty: 2 }], amount: 1000 })));
    await Promise.all(orders.map((o) => waitForOrderStatus(o.id, "reserved")));
    for (const o of orders) expect(Object.keys((await orderData(o.id)).stockShards as object)).to.deep.equal([sku]);
    await converged(sku, { stock: 40, reserved: 12 });

    const [paid, refunded, abandoned] = [orders.slice(0, 4), orders[4], orders[5]];
    const results = await Promise.all(
      [...paid, refunded].map((o) => deliver(event("payment_intent.succeeded", paymentIntent({ id: o.piId, amount: 1000, orderId: o.id })))),
    );
    expect(results.map((r) => r.body.result)).to.deep.equal(["finalized", "finalized", "finalized", "finalized", "finalized"]);
    await db().collection("orders").doc(refunded.id).update({ paymentIntentId: refunded.piId });
    const refund = await deliver(event("charge.refunded", charge({ amount: 1000, paymentIntentId: refunded.piId, amountRefunded: 1000 })));
    expect(refund.body.result).to.equal("refunded");
    const cancel = await deliver(event("payment_intent.canceled", paymentIntent({ amount: 1000, orderId: abandoned.id, status: "canceled" })));
    expect(cancel.body.result).to.equal("canceled");

    // 4 orders × 2 sold; the refunded order's units came back to its shard; the canceled one released its hold.
    await converged(sku, { stock: 32, reserved: 0 });
  });

  it("spreads an operator's edit of the product's stock over the shards", async () => {
    const sku = uniqueId("hot");
    await seedProduct(sku, 10);
    await configureStockShards(db(), sku, 3);
    await db().collection("products").doc(sku).update({ stock: 25 });
    await converged(sku, { stock: 25, reserved: 0 });
    await db().collection("products").doc(sku).update({ stock: 4 });
    await converged(sku, { stock: 4, reserved: 0 });
  });

  it("refuses to shard a product while units are reserved", async () => {
    const sku = uniqueId("hot");
    await seedProduct(sku, 10, 3);
    let message = "";
    try {
      await configureStockShards(db(), sku, 4);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).to.match(/3 units reserved/);
    expect(await shardSums(sku)).to.deep.equal({ stock: 0, reserved: 0, shards: 0 });
  });

  it("aggregates a hot product at most once an interval: a run that comes too soon waits, then stops if a later aggregation covered its write", async () => {
    const sku = uniqueId("hot");
    const shard = (n: number) => stockShardRef(db(), sku, n);
    await withTriggersPaused(async () => {
      await seedProduct(sku, 12);
      await configureStockShards(db(), sku, 3);
      expect(await aggregateShards(db(), sku)).to.equal("aggregated");
      const write = await shard(0).update({ reserved: FieldValue.increment(2) });
      const waits: number[] = [];
      // While this run waits, another run (of a later shard write) aggregates a snapshot that covers its write.
      const sleep = async (ms: number) => {
        waits.push(ms);
        expect(await aggregateShards(db(), sku)).to.equal("aggregated");
      };
      expect(await aggregateShards(db(), sku, { changedAt: write.writeTime, minIntervalMs: 1000, sleep })).to.equal("superseded");
      expect(waits).to.have.length(1);
      expect(waits[0]).to.be.within(1, 1000);
      expect(await productData(sku)).to.deep.equal({ stock: 12, reserved: 2 });
      // A run whose write an aggregation already covers does not wait at all.
      expect(await aggregateShards(db(), sku, { changedAt: write.writeTime, minIntervalMs: 1000, sleep })).to.equal("superseded");
      expect(waits).to.have.length(1);
    });
  });

  it("aggregates from a lock-free snapshot, never over a newer one, and applies an operator's edit through the reconcile", async () => {
    const sku = uniqueId("hot");
    const product = db().collection("products").doc(sku);
    const shard = (n: number) => stockShardRef(db(), sku, n);
    await withTriggersPaused(async () => {
      await seedProduct(sku, 12);
      await configureStockShards(db(), sku, 3);
      await shard(0).update({ reserved: FieldValue.increment(2) });
      expect(await aggregateShards(db(), sku)).to.equal("aggregated");
      expect(await productData(sku)).to.deep.equal({ stock: 12, reserved: 2 });
      expect(await aggregateShards(db(), sku)).to.equal("unchanged");

      // Equal figures are not settled while a shard was written after the last aggregation's snapshot:
      // an older aggregation could still commit. The run stamps them as seen.
      await shard(2).update({ reserved: FieldValue.increment(1) });
      await product.update({ reserved: 3 });
      expect(await aggregateShards(db(), sku)).to.equal("aggregated");
      expect(await aggregateShards(db(), sku)).to.equal("unchanged");

      // A run whose snapshot is older than the one already written changes nothing.
      await product.update({ aggregatedAt: Timestamp.fromMillis(Date.now() + 3_600_000) });
      await shard(1).update({ reserved: FieldValue.increment(1) });
      expect(await aggregateShards(db(), sku)).to.equal("superseded");
      expect(await productData(sku)).to.deep.equal({ stock: 12, reserved: 3 });
      await product.update({ aggregatedAt: FieldValue.delete() });

      // The operator's new figure is not overwritten by the sums: the run spreads it over the shards.
      await product.update({ stock: 20 });
      expect(await aggregateShards(db(), sku)).to.equal("reconciled:operator_edit_applied");
      expect(await shardSums(sku)).to.deep.equal({ stock: 20, reserved: 4, shards: 3 });
      expect(await productData(sku)).to.deep.equal({ stock: 20, reserved: 4 });
      // The reconcile's shard writes come after its read time: the next run stamps them as seen.
      expect(await aggregateShards(db(), sku)).to.equal("aggregated");
      expect(await aggregateShards(db(), sku)).to.equal("unchanged");
      expect(await reconcileProduct(db(), sku)).to.equal("unchanged");
      expect(await productData(sku)).to.deep.equal({ stock: 20, reserved: 4 });
    });
  });

  it("writes back a sharded product's stock typed as text or a fraction, so the edit trigger does not run again and again", async () => {
    const sku = uniqueId("hot");
    const product = db().collection("products").doc(sku);
    await withTriggersPaused(async () => {
      await seedProduct(sku, 12);
      await configureStockShards(db(), sku, 3);
      for (const typed of ["12", 12.4]) {
        await product.update({ stock: typed });
        // The trigger's condition is on the stored values: "12" or 12.4 is not stockSynced's 12.
        expect((await product.get()).get("stock")).to.not.equal((await product.get()).get("stockSynced"));
        expect(await reconcileProduct(db(), sku)).to.equal("aggregated");
        const after = await product.get();
        expect(after.get("stock")).to.equal(12);
        expect(after.get("stockSynced")).to.equal(12);
        expect(await shardSums(sku)).to.deep.equal({ stock: 12, reserved: 0, shards: 3 });
      }
      // The same for stockSynced, which only this backend writes, typed over in the console.
      await product.update({ stockSynced: "12" });
      expect(await reconcileProduct(db(), sku)).to.equal("aggregated");
      expect((await product.get()).get("stockSynced")).to.equal(12);
      expect(await reconcileProduct(db(), sku)).to.equal("unchanged");
      // A typed edit is still an edit: "15" is three more units, spread over the shards, stored as 15.
      await product.update({ stock: "15" });
      expect(await reconcileProduct(db(), sku)).to.equal("operator_edit_applied");
      expect((await product.get()).get("stock")).to.equal(15);
      expect(await shardSums(sku)).to.deep.equal({ stock: 15, reserved: 0, shards: 3 });
      expect(await reconcileProduct(db(), sku)).to.equal("unchanged");
    });
  });

  it("pays an order whose plain SKU is named like an Object property (constructor) beside a sharded one", async () => {
    const hot = uniqueId("hot");
    // Not unique: the one product this name can be. Seeding overwrites an earlier run's.
    const plain = "constructor";
    await seedProduct(hot, 10);
    await configureStockShards(db(), hot, 2);
    await seedProduct(plain, 5);
    const orderId = uniqueId("order");
    await createOrder({ id: orderId, items: [{ sku: hot, qty: 1 }, { sku: plain, qty: 2 }], amount: 900 });
    await waitForOrderStatus(orderId, "reserved");
    expect(Object.keys((await orderData(orderId)).stockShards as object)).to.deep.equal([hot]);
    expect(await productData(plain)).to.deep.equal({ stock: 5, reserved: 2 });

    const paid = await deliver(event("payment_intent.succeeded", paymentIntent({ amount: 900, orderId })));
    expect(paid.status).to.equal(200);
    expect(paid.body).to.include({ status: "processed", result: "finalized" });
    expect(await productData(plain)).to.deep.equal({ stock: 3, reserved: 0 });
    await converged(hot, { stock: 9, reserved: 0 });
  });
});
