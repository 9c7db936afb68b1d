import { expect } from "chai";
import type { CollectionReference, Query } from "firebase-admin/firestore";
import { eachPaged, UNLIMITED, type SweepBudget } from "../../src/sweeps";
import { db, uniqueId } from "../helpers/emulator";

/**
 * The sweeps' cursor paging against the emulator: where a run stops (the end of its query, its page cap,
 * its budget) and what it says about it.
 */

/**
 * Documents `item-1`, `item-2`, ... in a collection of their own, with `at` 1..n (or the values given),
 * and the query a sweep would run on them: ordered by `at`.
 */
async function items(n: number, values: number[] = Array.from({ length: n }, (_, i) => i + 1)): Promise<{ collection: CollectionReference; query: Query }> {
  const collection = db().collection("pagingTest").doc(uniqueId("run")).collection("items");
  const batch = db().batch();
  values.forEach((at, i) => batch.set(collection.doc(`item-${i + 1}`), { at }));
  await batch.commit();
  return { collection, query: collection.orderBy("at") };
}

/** Visits with `eachPaged`; what it returned and the `at` of each item visited, in order. */
async function visit(query: Query, paging: { pageSize: number; maxPages: number; budget?: SweepBudget }, onVisit?: (id: string) => Promise<void>) {
  const visited: number[] = [];
  const complete = await eachPaged(query, { budget: UNLIMITED, ...paging }, async (doc) => {
    visited.push(Number(doc.get("at")));
    await onVisit?.(doc.id);
  });
  return { complete, visited };
}

/** Spent once `visits` items were started: the check before each item, and at a page's end. */
function spentAfter(visits: () => number, limit: number): SweepBudget {
  return { spent: () => visits() >= limit };
}

describe("sweeps: paging", () => {
  it("visits every item in order, page after page, and says it reached the end", async () => {
    const { query } = await items(7);

    expect(await visit(query, { pageSize: 2, maxPages: 10 })).to.deep.equal({ complete: true, visited: [1, 2, 3, 4, 5, 6, 7] });
  });

  it("reaches the end when the last page is full: the empty page after it ends the run", async () => {
    const { query } = await items(6);

    expect(await visit(query, { pageSize: 2, maxPages: 10 })).to.deep.equal({ complete: true, visited: [1, 2, 3, 4, 5, 6] });
  });

  it("stops at its page cap and says it may not have reached the end", async () => {
    const { query } = await items(7);

    expect(await visit(query, { pageSize: 2, maxPages: 2 })).to.deep.equal({ complete: false, visited: [1, 2, 3, 4] });
  });

  it("stops at a page cap that the query's last full page reaches: it cannot know it was the last", async () => {
    const { query } = await items(4);

    expect(await visit(query, { pageSize: 2, maxPages: 2 })).to.deep.equal({ complete: false, visited: [1, 2, 3, 4] });
  });

  it("starts no item once its budget is spent: at the start, or inside a page", async () => {
    const { query } = await items(7);
    for (const limit of [0, 3]) {
      let visits = 0;
      const run = await visit(query, { pageSize: 2, maxPages: 10, budget: spentAfter(() => visits, limit) }, async () => void visits++);
      expect(run, `budget of ${limit} items`).to.deep.equal({ complete: false, visited: [1, 2, 3].slice(0, limit) });
    }
  });

  it("does not read past a full page once its budget is spent there, and says it may not have reached the end", async () => {
    // Four items in pages of two, the budget spent with the fourth: only the page end's check can tell
    // that the query might go on (a next page would have been empty).
    const { query } = await items(4);
    let visits = 0;

    const run = await visit(query, { pageSize: 2, maxPages: 10, budget: spentAfter(() => visits, 4) }, async () => void visits++);

    expect(run).to.deep.equal({ complete: false, visited: [1, 2, 3, 4] });
  });

  it("pages past items whose ordered field ties across a page boundary (the cursor is the field and the id)", async () => {
    const { query } = await items(5, [1, 1, 1, 2, 2]);

    expect(await visit(query, { pageSize: 2, maxPages: 10 })).to.deep.equal({ complete: true, visited: [1, 1, 1, 2, 2] });
  });

  it("skips nothing when the items it handles leave the query", async () => {
    const { collection, query } = await items(7);

    const run = await visit(query, { pageSize: 2, maxPages: 10 }, async (id) => {
      await collection.doc(id).delete();
    });

    expect(run).to.deep.equal({ complete: true, visited: [1, 2, 3, 4, 5, 6, 7] });
    expect((await query.get()).size).to.equal(0);
  });
});
