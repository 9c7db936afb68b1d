import { expect } from "chai";
import type { Query } from "firebase-admin/firestore";
import { eachPaged, UNLIMITED, type SweepBudget } from "../../src/sweeps";
import { db, uniqueId } from "../helpers/emulator";

/**
 * The sweeps' cursor paging against the emulator: where a run stops (the end of its query, its page cap,
 * its budget) and what it says about it.
 */

/** `n` documents in a collection of their own, `at` 1..n; the query the sweeps would run on them, by `at`. */
async function items(n: number): Promise<Query> {
  const collection = db().collection("pagingTest").doc(uniqueId("run")).collection("items");
  const batch = db().batch();
  for (let at = 1; at <= n; at++) batch.set(collection.doc(`item-${at}`), { at });
  await batch.commit();
  return collection.orderBy("at");
}

/** Visits with `eachPaged`; what it returned and the `at` of each item visited, in order. */
async function visit(query: Query, paging: { pageSize: number; maxPages: number; budget?: SweepBudget }, onVisit?: (at: number) => Promise<void>) {
  const visited: number[] = [];
  const complete = await eachPaged(query, { budget: UNLIMITED, ...paging }, async (doc) => {
    const at = Number(doc.get("at"));
    visited.push(at);
    await onVisit?.(at);
  });
  return { complete, visited };
}

/** Spent once `visits` items were started: the check before each item, and at a page's end. */
function spentAfter(visits: () => number, limit: number): SweepBudget {
  return { spent: () => visits() >= limit };
}

describe("sweeps: paging", () => {
  it("visits every item in order, page after page, and says it reached the end", async () => {
    const query = await items(7);

    expect(await visit(query, { pageSize: 2, maxPages: 10 })).to.deep.equal({ complete: true, visited: [1, 2, 3, 4, 5, 6, 7] });
  });

  it("reaches the end when the last page is full: the empty page after it ends the run", async () => {
    const query = await items(6);

    expect(await visit(query, { pageSize: 2, maxPages: 10 })).to.deep.equal({ complete: true, visited: [1, 2, 3, 4, 5, 6] });
  });

  it("stops at its page cap and says it may not have reached the end", async () => {
    const query = await items(7);

    expect(await visit(query, { pageSize: 2, maxPages: 2 })).to.deep.equal({ complete: false, visited: [1, 2, 3, 4] });
  });

  it("stops at a page cap that the query's last full page reaches: it cannot know it was the last", async () => {
    const query = await items(4);

    expect(await visit(query, { pageSize: 2, maxPages: 2 })).to.deep.equal({ complete: false, visited: [1, 2, 3, 4] });
  });

  it("starts no item once its budget is spent, whether it runs out inside a page or at a page end", async () => {
    const query = await items(7);
    for (const limit of [3, 4]) {
      let visits = 0;
      const run = await visit(query, { pageSize: 2, maxPages: 10, budget: spentAfter(() => visits, limit) }, async () => void visits++);
      expect(run, `budget of ${limit} items`).to.deep.equal({ complete: false, visited: [1, 2, 3, 4].slice(0, limit) });
    }
  });

  it("skips nothing when the items it handles leave the query", async () => {
    const query = await items(7);
    const collection = query.firestore.collection((await query.limit(1).get()).docs[0].ref.parent.path);

    const run = await visit(query, { pageSize: 2, maxPages: 10 }, async (at) => {
      await collection.doc(`item-${at}`).delete();
    });

    expect(run).to.deep.equal({ complete: true, visited: [1, 2, 3, 4, 5, 6, 7] });
    expect((await query.get()).size).to.equal(0);
  });
});
