import { expect } from "chai";
import { FieldValue, type Firestore } from "firebase-admin/firestore";
import { configureStockShards } from "../../src/inventory/shards";
import { DEFAULT_RESERVATION_BATCH, PROBE_SHARDS, ReservationBatches, shuffled } from "../../src/inventory/reservationBatch";
import { countWhere, createOrder, db, orderData, uniqueId, withTriggersPaused } from "../helpers/emulator";
import { beforeCommits, beforeFirstCommit, countingCommits, invoke, refusingUpdatesOf, unavailableOnce, webhookDeps } from "../helpers/inProcess";
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

/** `real`, counting its `getAll` calls and the most in flight at once. */
function countedReads(real: Firestore): { db: Firestore; calls: () => number; most: () => number } {
  let calls = 0;
  let now = 0;
  let most = 0;
  const counted = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === "getAll") {
        return async (...args: Parameters<Firestore["getAll"]>) => {
          calls += 1;
          most = Math.max(most, ++now);
          try {
            return await target.getAll(...args);
          } finally {
            now -= 1;
          }
        };
      }
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { db: counted, calls: () => calls, most: () => most };
}

/** Audit entries per order, in the order given. */
async function auditsOf(ids: readonly string[]): Promise<number[]> {
  return Promise.all(ids.map((id) => countWhere("auditLog", "orderId", id)));
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
      expect([batches.stats.conflicts, batches.stats.commits]).to.deep.equal([1, 1]);
      expect((await orderData(ids[0])).status).to.equal("finalized");
      const levels = [...(await shardLevels(sku)).values()];
      expect(levels.reduce((sum, l) => ({ stock: sum.stock + l.stock, reserved: sum.reserved + l.reserved }), { stock: 0, reserved: 0 })).to.deep.equal({ stock: 3, reserved: 2 });
      expect(await auditsOf(ids)).to.deep.equal([1, 1, 1]);
    });
  });

  it("decides again at once when checkout stores PaymentIntent ids inside its transaction: one read of its guards, one more commit", async () => {
    await withTriggersPaused(async () => {
      const { ids } = await flashSale(10, 2, 5);
      const written = [ids[1], ids[3]];
      const storePaymentIntents = () => Promise.all(written.map((id) => db().collection("orders").doc(id).update({ paymentIntentId: stripeId("pi") })));
      const reads = countedReads(beforeFirstCommit(db(), storePaymentIntents));
      const batches = new ReservationBatches(reads.db, () => new Date());
      expect(await Promise.all(ids.map((id) => batches.reserve(id)))).to.deep.equal(Array(5).fill("reserved"));
      expect([batches.stats.conflicts, batches.stats.redecided, batches.stats.splits, batches.stats.commits, batches.stats.batches]).to.deep.equal([1, 1, 0, 1, 1]);
      // The run's orders, products and one shard; then only the read of what the commit was guarded on.
      expect(reads.calls()).to.equal(4);
      for (const id of written) expect((await orderData(id)).paymentIntentId, "checkout's write kept").to.be.a("string");
      expect(await auditsOf(ids)).to.deep.equal([1, 1, 1, 1, 1]);
    });
  });

  it("decides again after each lost race, then runs the halves one after the other, first arrivals first", async () => {
    await withTriggersPaused(async () => {
      const { sku, ids } = await flashSale(2, 2, 4);
      // Another writer moves shard 0 before each of the first five commits (one unit back each time): the
      // batch decides again four times, then its halves run on fresh reads and commit.
      const restock = () => db().collection("products").doc(sku).collection("stockShards").doc("0").update({ stock: FieldValue.increment(1) });
      const batches = new ReservationBatches(beforeCommits(db(), 5, restock), () => new Date());
      expect(await Promise.all(ids.map((id) => batches.reserve(id)))).to.deep.equal(["reserved", "reserved", "reserved", "reserved"]);
      expect([batches.stats.conflicts, batches.stats.redecided, batches.stats.splits, batches.stats.commits]).to.deep.equal([5, 4, 1, 2]);
      expect(await auditsOf(ids)).to.deep.equal([1, 1, 1, 1]);
      const levels = [...(await shardLevels(sku)).values()];
      expect(levels.reduce((sum, l) => ({ stock: sum.stock + l.stock, reserved: sum.reserved + l.reserved }), { stock: 0, reserved: 0 })).to.deep.equal({ stock: 7, reserved: 4 });
      for (const level of levels) expect(level.reserved).to.be.within(0, level.stock);
    });
  });

  it("fails a batch as a whole while Firestore is unavailable; the triggers' retries then reserve each order once", async () => {
    await withTriggersPaused(async () => {
      const { ids } = await flashSale(4, 2, 3);
      const batches = new ReservationBatches(unavailableOnce(db()), () => new Date());
      const failed = await Promise.allSettled(ids.map((id) => batches.reserve(id)));
      expect(failed.map((r) => (r.status === "rejected" ? (r.reason as { code?: unknown }).code : r.value))).to.deep.equal([14, 14, 14]);
      expect(await Promise.all(ids.map((id) => batches.reserve(id)))).to.deep.equal(["reserved", "reserved", "reserved"]);
      expect(await auditsOf(ids)).to.deep.equal([1, 1, 1]);
    });
  });

  it("lets an order whose write Firestore refuses fail alone: its neighbours are reserved, the first arrivals first", async () => {
    await withTriggersPaused(async () => {
      const { ids } = await flashSale(3, 3, 5);
      const poison = ids[1];
      const batches = new ReservationBatches(refusingUpdatesOf(db(), `orders/${poison}`), () => new Date());
      const settled = await Promise.allSettled(ids.map((id) => batches.reserve(id)));
      expect(settled.map((r) => (r.status === "rejected" ? `failed ${(r.reason as { code?: unknown }).code}` : r.value))).to.deep.equal([
        "reserved",
        "failed 3",
        "reserved",
        "reserved",
        "out_of_stock",
      ]);
      expect(batches.stats.splits).to.be.at.least(1);
      expect((await orderData(poison)).status).to.equal("pending");
      expect(await auditsOf(ids)).to.deep.equal([1, 0, 1, 1, 1]);
    });
  });

  it("splits a batch whose orders would write more than one commit carries, before committing anything", async () => {
    await withTriggersPaused(async () => {
      const { ids } = await flashSale(20, 2, 8);
      const counted = countingCommits(db());
      // Each reservation writes its order and an audit entry, and the batch the shard it draws on: 8 orders write 17.
      const batches = new ReservationBatches(counted.db, () => new Date(), { ...DEFAULT_RESERVATION_BATCH, maxWrites: 16 });
      expect(await Promise.all(ids.map((id) => batches.reserve(id)))).to.deep.equal(Array(8).fill("reserved"));
      expect([batches.stats.splits, counted.count(), counted.conflicts()]).to.deep.equal([1, 2, 0]);
      // At the limit, one commit.
      const more = await flashSale(20, 2, 8);
      const exact = new ReservationBatches(db(), () => new Date(), { ...DEFAULT_RESERVATION_BATCH, maxWrites: 17 });
      expect(await Promise.all(more.ids.map((id) => exact.reserve(id)))).to.deep.equal(Array(8).fill("reserved"));
      expect([exact.stats.splits, exact.stats.commits]).to.deep.equal([0, 1]);
    });
  });

  it("with batching off (maxOrders 1, the bench's knob) runs each order as its own transaction, with the same outcomes", async () => {
    await withTriggersPaused(async () => {
      const { sku, ids } = await flashSale(4, 2, 6);
      const counted = countingCommits(db());
      const reads = countedReads(counted.db);
      const batches = new ReservationBatches(reads.db, () => new Date(), { ...DEFAULT_RESERVATION_BATCH, maxOrders: 1 });
      const outcomes = await Promise.all(ids.map((id) => batches.reserve(id)));
      expect(reads.most(), "orders read at once").to.be.at.least(2);
      expect([outcomes.filter((o) => o === "reserved").length, outcomes.filter((o) => o === "out_of_stock").length]).to.deep.equal([4, 2]);
      expect(counted.count() - counted.conflicts(), "commits that landed").to.equal(6);
      for (const level of (await shardLevels(sku)).values()) expect(level).to.deep.equal({ stock: 2, reserved: 2 });
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

  it("after its preferred shard was drained elsewhere, reads a few more shards instead of all of them; a refusal still reads every shard", async () => {
    await withTriggersPaused(async () => {
      const { sku, ids } = await flashSale(20, 10, 3);
      // A fixed draw, so the test knows this instance's order of preference.
      const random = () => 0;
      const order = shuffled(10, random);
      const batches = new ReservationBatches(db(), () => new Date(), { ...DEFAULT_RESERVATION_BATCH, random });
      const shard = (n: number) => db().collection("products").doc(sku).collection("stockShards").doc(String(n));
      const drain = (shards: number[]) => Promise.all(shards.map((n) => shard(n).update({ reserved: 2 })));

      expect(await batches.reserve(ids[0])).to.equal("reserved");
      expect(((await orderData(ids[0])).stockShards as Record<string, number>)[sku]).to.equal(order[0]);
      expect([batches.stats.shardsRead, batches.stats.probes, batches.stats.fullReads]).to.deep.equal([1, 0, 0]);

      // Other instances take the rest of its first shard and all of its second, unseen by this one.
      await drain([order[0], order[1]]);
      expect(await batches.reserve(ids[1])).to.equal("reserved");
      expect(((await orderData(ids[1])).stockShards as Record<string, number>)[sku]).to.equal(order[2]);
      // Its preferred shard (1), then the next PROBE_SHARDS: not all ten.
      expect([batches.stats.shardsRead, batches.stats.probes, batches.stats.fullReads]).to.deep.equal([1 + 1 + PROBE_SHARDS, 1, 0]);

      await drain(order);
      expect(await batches.reserve(ids[2])).to.equal("out_of_stock");
      expect(batches.stats.fullReads, "a refusal rests on a read of every shard").to.equal(1);
      expect(batches.stats.shardsRead).to.equal(1 + 1 + PROBE_SHARDS + 10);
    });
  });

  it("reserves one hot product from two instances whose batches overlap: each unit once, each shard's reserved what its orders hold", async () => {
    await withTriggersPaused(async () => {
      // 5 shards of 4: each instance's 15 orders need at least four of them, so the two batches share shards.
      const { sku, ids } = await flashSale(20, 5, 30);
      const b = new ReservationBatches(db(), () => new Date());
      const bIds = ids.filter((_, i) => i % 2 === 1);
      let bOutcomes: string[] = [];
      // B reserves all of its orders between A's reads and A's commit.
      const a = new ReservationBatches(beforeFirstCommit(db(), async () => (bOutcomes = await Promise.all(bIds.map((id) => b.reserve(id))))), () => new Date());
      const aOutcomes = await Promise.all(ids.filter((_, i) => i % 2 === 0).map((id) => a.reserve(id)));
      expect(a.stats.conflicts, "A's first commit lost to B's").to.equal(1);
      expect(bOutcomes.filter((o) => o === "reserved")).to.have.length(15);
      expect(aOutcomes.filter((o) => o === "reserved")).to.have.length(5);
      expect([...aOutcomes, ...bOutcomes].filter((o) => o === "out_of_stock")).to.have.length(10);
      const held = new Map<string, number>();
      for (const id of ids) {
        const holding = (await orderData(id)).stockShards as Record<string, number> | undefined;
        if (holding !== undefined) held.set(String(holding[sku]), (held.get(String(holding[sku])) ?? 0) + 1);
      }
      for (const [shard, level] of await shardLevels(sku)) expect([shard, level.stock, level.reserved]).to.deep.equal([shard, 4, held.get(shard) ?? 0]);
    });
  });
});
