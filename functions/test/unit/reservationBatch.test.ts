import { expect } from "chai";
import type { DocumentReference } from "firebase-admin/firestore";
import type { Order, OrderLine } from "../../src/collections/orders";
import type { Firestore } from "firebase-admin/firestore";
import { DEFAULT_RESERVATION_BATCH, planReservations, nextShards, preferredShards, ReservationBatches, shuffled, take, type StockSlot } from "../../src/inventory/reservationBatch";
import { prng } from "../helpers/prng";

/** inventory/reservationBatch.ts, its pure parts: a batch decided in arrival order, units taken from few shards. */

const NOW = new Date("2026-03-01T12:00:00.000Z");
const ref = {} as DocumentReference;

function order(id: string, items: OrderLine[]): Order {
  return { id, userId: "user_1", items, amount: 1000, currency: "usd", status: "pending", createdAt: NOW };
}

const shard = (n: number, available: number): StockSlot => ({ ref, kind: "shard", shard: n, available, taken: 0 });
const product = (available: number): StockSlot => ({ ref, kind: "product", shard: 0, available, taken: 0 });

describe("planReservations (one batch of new orders)", () => {
  it("serves the orders in the order given: the first buyers get the last units, the next are refused", () => {
    const slots = new Map([["hot", [shard(3, 2), shard(1, 1)]]]);
    const orders = ["a", "b", "c", "d"].map((id) => ({ order: order(id, [{ sku: "hot", qty: 1 }]), now: NOW }));
    const planned = planReservations(orders, slots);
    expect(planned.map((p) => (p.decision.kind === "apply" ? p.decision.result : "skip"))).to.deep.equal(["reserved", "reserved", "reserved", "out_of_stock"]);
    expect(planned.map((p) => p.holdings)).to.deep.equal([{ hot: 3 }, { hot: 3 }, { hot: 1 }, {}]);
    expect((slots.get("hot") as StockSlot[]).map((s) => s.taken)).to.deep.equal([2, 1]);
  });

  it("reserves all lines of an order or none: a refused order leaves its other line's units to the next buyer", () => {
    const slots = new Map([
      ["a", [product(1)]],
      ["b", [product(0)]],
    ]);
    const planned = planReservations(
      [
        { order: order("both", [{ sku: "a", qty: 1 }, { sku: "b", qty: 1 }]), now: NOW },
        { order: order("onlyA", [{ sku: "a", qty: 1 }]), now: NOW },
      ],
      slots,
    );
    expect(planned.map((p) => (p.decision.kind === "apply" ? p.decision.result : "skip"))).to.deep.equal(["out_of_stock", "reserved"]);
    // A plain product's document holds the units: no shard is recorded.
    expect(planned[1].holdings).to.deep.equal({});
    expect((slots.get("a") as StockSlot[])[0].taken).to.equal(1);
  });

  it("refuses a line whose product has no slot (unknown product)", () => {
    const planned = planReservations([{ order: order("x", [{ sku: "gone", qty: 1 }]), now: NOW }], new Map());
    expect(planned[0].decision.kind === "apply" && planned[0].decision.result).to.equal("out_of_stock");
  });
});

describe("take (units from a SKU's slots)", () => {
  it("takes a line from the first slot that holds it all", () => {
    const slots = [shard(0, 1), shard(5, 3), shard(2, 9)];
    expect(take(slots, 3)).to.equal(5);
    expect(slots.map((s) => s.taken)).to.deep.equal([0, 3, 0]);
  });

  it("splits a line no slot holds over the fewest slots, most units first", () => {
    const slots = [shard(0, 1), shard(5, 2), shard(2, 2)];
    expect(take(slots, 4)).to.deep.equal({ "2": 2, "5": 2 });
    expect(slots.map((s) => s.taken)).to.deep.equal([0, 2, 2]);
  });

  it("answers null for a plain product and refuses to take more than the slots hold", () => {
    expect(take([product(4)], 2)).to.equal(null);
    expect(() => take([shard(0, 1)], 2)).to.throw(/2 units asked/);
  });
});

describe("preferredShards (which shards a batch reads first)", () => {
  it("follows the instance's order, skips shards seen empty, and stops once what was seen covers the demand", () => {
    const view = { order: [4, 0, 3, 1, 2], available: new Map([[4, 0], [0, 2], [3, 5]]) };
    expect(preferredShards(view, 6)).to.deep.equal([0, 3]);
    expect(preferredShards(view, 2)).to.deep.equal([0]);
  });

  it("counts a shard not seen yet as holding the whole demand, and reads none when every shard was seen empty", () => {
    expect(preferredShards({ order: [2, 0, 1], available: new Map() }, 7)).to.deep.equal([2]);
    expect(preferredShards({ order: [1, 0], available: new Map([[0, 0], [1, 0]]) }, 1)).to.deep.equal([]);
  });
});

describe("nextShards (what a batch reads after its preferred shards were short)", () => {
  it("follows the instance's order past the shards already read, skips shards seen empty, and stops at the count", () => {
    const view = { order: [4, 0, 3, 1, 2, 6, 5], available: new Map([[4, 0], [0, 0], [3, 5], [6, 0]]) };
    // 0 was read (and found empty, as its view now says), 4 and 6 were seen empty earlier.
    expect(nextShards(view, [0], 2)).to.deep.equal([3, 1]);
    expect(nextShards(view, [0], 4)).to.deep.equal([3, 1, 2, 5]);
    expect(nextShards(view, [0, 3, 1, 2, 5], 4)).to.deep.equal([]);
  });
});

describe("shuffled (an instance's order of preference)", () => {
  it("is a permutation of every shard, and differs between draws", () => {
    const random = prng(7);
    const a = shuffled(50, random);
    const b = shuffled(50, random);
    expect([...a].sort((x, y) => x - y)).to.deep.equal(Array.from({ length: 50 }, (_, i) => i));
    expect(a).to.not.deep.equal(b);
  });
});

describe("ReservationBatches options", () => {
  it("refuses a batch size or write budget that could never make progress", () => {
    const db = {} as Firestore;
    const now = () => NOW;
    for (const maxOrders of [0, -1, 1.5, Number.NaN]) expect(() => new ReservationBatches(db, now, { ...DEFAULT_RESERVATION_BATCH, maxOrders })).to.throw(RangeError);
    expect(() => new ReservationBatches(db, now, { ...DEFAULT_RESERVATION_BATCH, maxWrites: 5 })).to.throw(RangeError);
    expect(new ReservationBatches(db, now).stats.batches).to.equal(0);
  });
});
