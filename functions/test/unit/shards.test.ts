import { expect } from "chai";
import { distributeStockDelta } from "../../src/inventory/shards";
import { FieldValue, type DocumentReference } from "firebase-admin/firestore";
import { countsToRewrite, type CountsToRewrite } from "../../src/collections/products";
import type { TransactionLike } from "../../src/concurrency/optimistic";
import { startShard, writeStockChanges, type StockPlan } from "../../src/inventory/stock";

describe("distributeStockDelta (operator edits spread over stock shards)", () => {
  const levels = (...pairs: [number, number][]) => pairs.map(([stock, reserved]) => ({ stock, reserved }));

  it("adds evenly, the remainder to the first shards", () => {
    expect(distributeStockDelta(levels([10, 0], [10, 0], [10, 0]), 7)).to.deep.equal([3, 2, 2]);
  });

  it("splits a new product's stock exactly", () => {
    const split = distributeStockDelta(levels([0, 0], [0, 0], [0, 0], [0, 0]), 501);
    expect(split.reduce((a, b) => a + b, 0)).to.equal(501);
    expect(Math.max(...split) - Math.min(...split)).to.be.at.most(1);
  });

  it("removes from the shards with the most available units first, never below what is reserved", () => {
    expect(distributeStockDelta(levels([10, 8], [10, 0], [10, 5]), -12)).to.deep.equal([0, -10, -2]);
  });

  it("removes only what is available when asked for more", () => {
    const deltas = distributeStockDelta(levels([5, 5], [4, 1]), -100);
    expect(deltas).to.deep.equal([0, -3]);
  });

  it("changes nothing for a zero delta or no shards", () => {
    expect(distributeStockDelta(levels([1, 0]), 0)).to.deep.equal([0]);
    expect(distributeStockDelta([], 5)).to.deep.equal([]);
  });
});

describe("startShard", () => {
  it("spreads order ids over every shard and is stable per order", () => {
    const seen = new Set<number>();
    for (let i = 0; i < 400; i++) seen.add(startShard(`order-${i}`, "hot", 8));
    expect([...seen].sort()).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(startShard("order-1", "hot", 8)).to.equal(startShard("order-1", "hot", 8));
  });
});

describe("writeStockChanges (a change never lost for want of a shard)", () => {
  const ref = {} as DocumentReference;
  const tx = {} as TransactionLike;
  const plan = (units: number[]): StockPlan => ({ levels: new Map(), shards: {}, targets: new Map([["hot", units.map((u) => ({ ref, units: u, kind: "shard" as const }))]]) });

  it("refuses a change planned on no shard, and one larger than the shards it is split over hold", () => {
    expect(() => writeStockChanges(tx, plan([]), [{ sku: "hot", stock: -1, reserved: -1 }])).to.throw(/No stock shard planned/);
    expect(() => writeStockChanges(tx, plan([1, 1]), [{ sku: "hot", stock: 0, reserved: -3 }])).to.throw(/more than its shards hold/);
  });
});

describe("writeStockChanges on counts an operator typed as text or fractions (products.ts, countsToRewrite)", () => {
  const ref = {} as DocumentReference;
  /** A transaction that records the updates it is given. */
  function recorder(): { tx: TransactionLike; updates: Array<{ data: Record<string, unknown>; precondition: unknown }> } {
    const updates: Array<{ data: Record<string, unknown>; precondition: unknown }> = [];
    const tx = { update: (_ref: unknown, data: Record<string, unknown>, precondition?: unknown) => updates.push({ data, precondition }) } as unknown as TransactionLike;
    return { tx, updates };
  }
  const productPlan = (rewrite?: CountsToRewrite): StockPlan => ({
    levels: new Map(),
    shards: {},
    targets: new Map([["plain", [{ ref, units: 0, kind: "product" as const, versionFree: false, ...(rewrite ? { rewrite } : {}) }]]]),
  });

  it("reads as counts the stored values an increment would replace, and leaves alone integers and missing fields", () => {
    expect(countsToRewrite({ stock: "10", reserved: 2 })).to.deep.equal({ stock: 10 });
    expect(countsToRewrite({ stock: 10.5, reserved: "3" })).to.deep.equal({ stock: 10, reserved: 3 });
    expect(countsToRewrite({ stock: "lots" })).to.deep.equal({ stock: 0 });
    expect(countsToRewrite({ stock: 10, reserved: 0 })).to.deep.equal({});
    expect(countsToRewrite({ stock: -1, reserved: null })).to.deep.equal({});
    expect(countsToRewrite({})).to.deep.equal({});
  });

  it("writes a rewritten count as its value, the others as increments, and carries the value across two changes", () => {
    const { tx, updates } = recorder();
    writeStockChanges(tx, productPlan({ stock: 10 }), [
      { sku: "plain", stock: -2, reserved: -2 },
      { sku: "plain", stock: -1, reserved: 0 },
    ]);
    expect(updates.map((u) => u.data.stock)).to.deep.equal([8, 7]);
    expect(updates[0].data.reserved).to.deep.equal(FieldValue.increment(-2));
    expect(updates.map((u) => u.precondition)).to.deep.equal([undefined, undefined]);
  });

  it("writes increments when nothing is to be rewritten", () => {
    const { tx, updates } = recorder();
    writeStockChanges(tx, productPlan(), [{ sku: "plain", stock: -2, reserved: -2 }]);
    expect(updates[0].data.stock).to.deep.equal(FieldValue.increment(-2));
  });
});
