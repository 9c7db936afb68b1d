import { expect } from "chai";
import { configureStockShards } from "../../src/inventory/shards";
import { ReservationBatches } from "../../src/inventory/reservationBatch";
import { createOrder, db, orderData, uniqueId, withTriggersPaused } from "../helpers/emulator";
import { beforeFirstCommit, countingCommits, invoke, unavailableOnce, webhookDeps } from "../helpers/inProcess";
import { event, paymentIntent, stripeId } from "../helpers/stripeFixtures";

/**
 * The reservation trigger's batches (inventory/reservationBatch.ts) against the Firestore emulator: the
 * new orders of one instance reserved together in one optimistic transaction. The deployed trigger is
 * paused in each test, so the batches here are the only ones reserving these orders.
 */

async function shardLevels(sku: string): Promise<Map<string, { stock: number; reserved: number }>> {
  const snapshot = await db().collection("products").doc(sku).collection("stockShards").get();
  return new Map(snapshot.docs.map((d) => [d.id, { stock: Number(d.get("stock")), reserved: Number(d.get("reserved")) }]));
}

/** A product of `stock` units split into `shards` shards, and `count` pending orders of `qty` each. */
async function flashSale(stock: number, shards: number, count: number, qty = 1): Promise<{ sku: string; ids: string[] }> {
  const sku = uniqueId("flash");
  await db().collection("products").doc(sku).set({ name: sku, stock, reserved: 0 });
  await configureStockShards(db(), sku, shards);
  const ids = Array.from({ length: count }, () => uniqueId("order"));
  await Promise.all(ids.map((id) => createOrder({ id, items: [{ sku, qty }], amount: 500 * qty })));
  return { sku, ids };
}

describe("reservation batches (one instance's new orders, one transaction)", () => {
  it("reserves a burst in one commit, first arrivals first, never past the stock, each shard holding what its orders say", async () => {
    await withTriggersPaused(async () => {
      const { sku, ids } = await flashSale(8, 4, 12);
      const counted = countingCommits(db());
      const batches = new ReservationBatches(counted.db, () => new Date());
      const missing = uniqueId("order");
      const outcomes = await Promise.all([...ids, missing].map((id) => batches.reserve(id)));
      expect(outcomes).to.deep.equal([...Array(8).fill("reserved"), ...Array(4).fill("out_of_stock"), "missing"]);
      expect([counted.count(), batches.stats.batches]).to.deep.equal([1, 1]);
      const held = new Map<string, number>();
      for (const id of ids.slice(0, 8)) {
        const shard = String(((await orderData(id)).stockShards as Record<string, unknown>)[sku]);
        held.set(shard, (held.get(shard) ?? 0) + 1);
      }
      const levels = await shardLevels(sku);
      for (const [shard, level] of levels) expect([shard, level.reserved], "reserved = orders holding the shard").to.deep.equal([shard, held.get(shard) ?? 0]);
      expect([...levels.values()].reduce((sum, l) => sum + l.reserved, 0)).to.equal(8);
      for (const id of ids.slice(8)) expect((await orderData(id)).stockShards).to.equal(undefined);
    });
  });

  it("runs again when a payment commits inside its transaction: the paid order is left alone, the others reserved", async () => {
    await withTriggersPaused(async () => {
      const { sku, ids } = await flashSale(4, 2, 3);
      const piId = stripeId("pi");
      const pay = () => invoke(webhookDeps(db()), event("payment_intent.succeeded", paymentIntent({ id: piId, amount: 500, orderId: ids[0] })));
      const batches = new ReservationBatches(beforeFirstCommit(db(), pay), () => new Date());
      const outcomes = await Promise.all(ids.map((id) => batches.reserve(id)));
      expect(outcomes).to.deep.equal(["skipped", "reserved", "reserved"]);
      expect(batches.stats.conflicts).to.equal(1);
      expect((await orderData(ids[0])).status).to.equal("finalized");
      const levels = [...(await shardLevels(sku)).values()];
      expect(levels.reduce((sum, l) => ({ stock: sum.stock + l.stock, reserved: sum.reserved + l.reserved }), { stock: 0, reserved: 0 })).to.deep.equal({ stock: 3, reserved: 2 });
    });
  });

  it("does not let a failed batch fail its orders: each is tried again alone", async () => {
    await withTriggersPaused(async () => {
      const { ids } = await flashSale(4, 2, 3);
      const batches = new ReservationBatches(unavailableOnce(db()), () => new Date());
      const outcomes = await Promise.all(ids.map((id) => batches.reserve(id)));
      expect(outcomes).to.deep.equal(["reserved", "reserved", "reserved"]);
      expect([batches.stats.failedBatches, batches.stats.commits]).to.deep.equal([1, 3]);
    });
  });

  it("splits a line no shard holds over several, and its payment consumes each share", async () => {
    await withTriggersPaused(async () => {
      const { sku, ids } = await flashSale(6, 3, 1, 5);
      const batches = new ReservationBatches(db(), () => new Date());
      expect(await batches.reserve(ids[0])).to.equal("reserved");
      const holding = ((await orderData(ids[0])).stockShards as Record<string, Record<string, number>>)[sku];
      expect(Object.values(holding).reduce((a, b) => a + b, 0)).to.equal(5);
      expect(Object.keys(holding)).to.have.length(3);
      const paid = await invoke(webhookDeps(db()), event("payment_intent.succeeded", paymentIntent({ amount: 2500, orderId: ids[0] })));
      expect([paid.status, paid.body.result]).to.deep.equal([200, "finalized"]);
      const levels = [...(await shardLevels(sku)).values()];
      expect(levels.map((l) => l.reserved)).to.deep.equal([0, 0, 0]);
      expect(levels.reduce((sum, l) => sum + l.stock, 0)).to.equal(1);
    });
  });

  it("reserves one hot product from two instances at once: each unit once, every shard within its stock", async () => {
    await withTriggersPaused(async () => {
      const { sku, ids } = await flashSale(20, 5, 30);
      const [a, b] = [new ReservationBatches(db(), () => new Date()), new ReservationBatches(db(), () => new Date())];
      const outcomes = await Promise.all(ids.map((id, i) => (i % 2 === 0 ? a : b).reserve(id)));
      expect(outcomes.filter((o) => o === "reserved")).to.have.length(20);
      expect(outcomes.filter((o) => o === "out_of_stock")).to.have.length(10);
      for (const level of (await shardLevels(sku)).values()) expect(level).to.deep.equal({ stock: 4, reserved: 4 });
    });
  });
});
