import { expect } from "chai";
import { FieldValue, type DocumentReference } from "firebase-admin/firestore";
import { DEFAULT_GROUP_COMMIT, GroupCommit, type GroupCommitOptions } from "../../src/concurrency/groupCommit";
import { productRef } from "../../src/collections/products";
import { db, seedProduct, uniqueId } from "../helpers/emulator";
import { countingCommits } from "../helpers/inProcess";

/**
 * Group commit against the real emulator: transactions started together share one Firestore
 * transaction, and each member's outcome is the one it would have had alone.
 */

const OPTIONS: GroupCommitOptions = { ...DEFAULT_GROUP_COMMIT, maxMembers: 50, maxInFlight: 1, readRoundMs: 25 };

/** `n` input documents holding 0..n-1, and where each member writes its output. */
async function fixture(n: number): Promise<{ input: (i: number) => DocumentReference; output: (i: number) => DocumentReference }> {
  const run = db().collection("groupCommit").doc(uniqueId("run"));
  const input = (i: number) => run.collection("in").doc(String(i));
  const output = (i: number) => run.collection("out").doc(String(i));
  const batch = db().batch();
  for (let i = 0; i < n; i++) batch.set(input(i), { value: i });
  await batch.commit();
  return { input, output };
}

async function outputs(output: (i: number) => DocumentReference, n: number): Promise<Array<number | null>> {
  const snapshots = await db().getAll(...Array.from({ length: n }, (_, i) => output(i)));
  return snapshots.map((s) => (s.exists ? Number(s.get("value")) : null));
}

/** Settles every promise; what each one resolved with, or the error it rejected with. */
async function outcomes<T>(promises: Array<Promise<T>>): Promise<Array<T | Error>> {
  return Promise.all(promises.map((p) => p.catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))))));
}

describe("group commit", () => {
  it("runs 20 transactions started together as one Firestore transaction with one round of reads", async () => {
    const { input, output } = await fixture(20);
    const counted = countingCommits(db());
    const group = new GroupCommit(counted.db, OPTIONS);

    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        group.run(async (tx) => {
          const value = Number((await tx.get(input(i))).get("value"));
          tx.create(output(i), { value: value * 2 });
          return value * 2;
        }),
      ),
    );

    expect(results).to.deep.equal(Array.from({ length: 20 }, (_, i) => i * 2));
    expect(await outputs(output, 20)).to.deep.equal(results);
    expect(counted.count()).to.equal(1);
    expect(group.stats).to.include({ groups: 1, members: 20, rounds: 1, failedGroups: 0, alone: 0 });
  });

  it("fails alone a member whose write Firestore refuses (an undefined field): the ten healthy ones commit in their first group", async () => {
    const { input, output } = await fixture(11);
    const counted = countingCommits(db());
    const group = new GroupCommit(counted.db, OPTIONS);

    const settled = await outcomes(
      Array.from({ length: 11 }, (_, i) =>
        group.run(async (tx) => {
          await tx.get(input(i));
          // The shape of the dispute-refund bug: a nested undefined that only the commit would have refused.
          tx.set(output(i), i === 5 ? { value: i, dispute: { closedAt: undefined } } : { value: i });
          return i;
        }),
      ),
    );

    expect(settled.filter((s) => s instanceof Error)).to.have.length(1);
    expect(settled[5]).to.be.instanceOf(Error);
    expect(await outputs(output, 11)).to.deep.equal([0, 1, 2, 3, 4, null, 6, 7, 8, 9, 10]);
    expect(counted.count()).to.equal(1);
    expect(group.stats).to.include({ groups: 1, members: 11, failedGroups: 0, alone: 0 });
  });

  it("drops the writes of a member that throws and commits the others", async () => {
    const { input, output } = await fixture(6);
    const group = new GroupCommit(db(), OPTIONS);

    const settled = await outcomes(
      Array.from({ length: 6 }, (_, i) =>
        group.run(async (tx) => {
          await tx.get(input(i));
          tx.create(output(i), { value: i });
          if (i === 3) throw new Error("member 3 cannot apply");
          return i;
        }),
      ),
    );

    expect(settled.map((s) => (s instanceof Error ? s.message : s))).to.deep.equal([0, 1, 2, "member 3 cannot apply", 4, 5]);
    expect(await outputs(output, 6)).to.deep.equal([0, 1, 2, null, 4, 5]);
    expect(group.stats).to.include({ groups: 1, failedGroups: 0 });
  });

  it("fails alone a member whose query fails (a missing index, say): the others commit in their first group", async () => {
    const { input, output } = await fixture(6);
    const counted = countingCommits(db());
    const group = new GroupCommit(counted.db, OPTIONS);
    const refused = Object.assign(new Error("9 FAILED_PRECONDITION: The query requires an index."), { code: 9 });
    const real = db().collection("groupCommit").where("value", "==", 3);
    // The real query, except that the server refuses it.
    const unindexed = Object.assign(Object.create(real) as typeof real, { get: () => Promise.reject(refused) });

    const settled = await outcomes(
      Array.from({ length: 6 }, (_, i) =>
        group.run(async (tx) => {
          const value = Number((await tx.get(input(i))).get("value"));
          if (i === 3) await tx.get(unindexed);
          tx.create(output(i), { value });
          return value;
        }),
      ),
    );

    expect(settled.map((s) => (s instanceof Error ? s.message : s))).to.deep.equal([0, 1, 2, refused.message, 4, 5]);
    expect(await outputs(output, 6)).to.deep.equal([0, 1, 2, null, 4, 5]);
    expect(counted.count()).to.equal(1);
    expect(group.stats).to.include({ groups: 1, members: 6, failedGroups: 0, alone: 0 });
  });

  it("after a conflict, commits the others together again and runs again only the member whose create found its document", async () => {
    const { input, output } = await fixture(8);
    await output(5).set({ value: -1 });
    const counted = countingCommits(db());
    const failures: Array<{ members: number; code: unknown }> = [];
    const group = new GroupCommit(counted.db, { ...OPTIONS, onGroupFailure: ({ members, code }) => failures.push({ members, code }) });

    const settled = await outcomes(
      Array.from({ length: 8 }, (_, i) =>
        group.run(async (tx) => {
          await tx.get(input(i));
          tx.create(output(i), { value: i });
          return i;
        }),
      ),
    );

    // ALREADY_EXISTS (gRPC 6) for the one create that finds its document, and only for it.
    const codes = settled.map((s) => (s instanceof Error ? `error ${(s as Error & { code?: number }).code}` : s));
    expect(codes).to.deep.equal([0, 1, 2, 3, 4, "error 6", 6, 7]);
    expect(await outputs(output, 8)).to.deep.equal([0, 1, 2, 3, 4, -1, 6, 7]);
    // The shared commit, the same group less member 5, member 5's attempt in the next slot, then its
    // two runs alone (a create that finds its document is retried once).
    expect(counted.count()).to.equal(5);
    expect(group.stats).to.include({ retriedGroups: 1, pruned: 1, lostAgain: 0, requeued: 1, alone: 2, loneArrivals: 1, missedTwice: 1, failedGroups: 0 });
    expect(failures).to.deep.equal([]);
  });

  /**
   * Six members that each read input i and write it plus one; before each of member 2's first runs,
   * another instance writes input 2 (the next of `interference`). Returns what each member last read
   * and the inputs' values afterwards.
   */
  // Six members increment their own documents; member 2's first runs each write its input from outside
  // the group (another instance) after reading it, once per value in `interference`.
  async function incrementsWithInterference(group: GroupCommit, input: (i: number) => DocumentReference, interference: number[]): Promise<{ seen: number[]; values: unknown[] }> {
    const seen = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        group.run(async (tx) => {
          const value = Number((await tx.get(input(i))).get("value"));
          const next = i === 2 ? interference.shift() : undefined;
          if (next !== undefined) await input(2).update({ value: next });
          tx.update(input(i), { value: value + 1 });
          return value;
        }),
      ),
    );
    const values = (await db().getAll(...Array.from({ length: 6 }, (_, i) => input(i)))).map((s) => s.get("value"));
    return { seen, values };
  }

  it("after another instance's write, the member it was about decides again on the conflict's read and commits in the group's second commit", async () => {
    const { input } = await fixture(6);
    const counted = countingCommits(db());
    const group = new GroupCommit(counted.db, OPTIONS);

    const { seen, values } = await incrementsWithInterference(group, input, [100]);

    // Member 2 saw 2 first, then 100 on the conflict's read; the others kept their first decision.
    expect(seen).to.deep.equal([0, 1, 100, 3, 4, 5]);
    expect(values).to.deep.equal([1, 2, 101, 4, 5, 6]);
    // The shared commit that lost, and the second commit of all six; one shared read round only: the
    // rerun was served the conflict's read.
    expect(counted.count()).to.equal(2);
    expect(group.stats).to.include({ groups: 1, rounds: 1, retriedGroups: 1, pruned: 1, lostAgain: 0, requeued: 0, alone: 0, failedGroups: 0 });
  });

  it("runs every member again in the next group when the commit after a conflict loses a second race", async () => {
    const { input } = await fixture(6);
    const counted = countingCommits(db());
    const failures: number[] = [];
    const group = new GroupCommit(counted.db, { ...OPTIONS, onGroupFailure: ({ members }) => failures.push(members) });

    // Member 2's first two runs (the group's, then its re-decision) each move input 2 after reading it, so
    // both of the first group's commits lose.
    const { seen, values } = await incrementsWithInterference(group, input, [100, 200]);

    expect(seen).to.deep.equal([0, 1, 200, 3, 4, 5]);
    expect(values).to.deep.equal([1, 2, 201, 4, 5, 6]);
    // Two lost commits of the first group, then the next group's one commit of all six.
    expect(counted.count()).to.equal(3);
    expect(group.stats).to.include({ groups: 2, rounds: 2, pruned: 1, retriedGroups: 1, lostAgain: 1, failedGroups: 1, requeued: 6, alone: 0, loneArrivals: 0, missedTwice: 0 });
    expect(failures).to.deep.equal([6]);
  });

  it("never loses an increment when two instances' groups write one document at once", async () => {
    const { input } = await fixture(1);
    // Two instances: two group commits on one database, each with its own burst.
    const instances = [new GroupCommit(db(), OPTIONS), new GroupCommit(db(), OPTIONS)];
    const increment = (group: GroupCommit) =>
      group.run(async (tx) => {
        const value = Number((await tx.get(input(0))).get("value"));
        tx.update(input(0), { value: value + 1 });
        return value;
      });

    const seen = await Promise.all(instances.flatMap((group) => Array.from({ length: 5 }, () => increment(group))));

    // Every increment saw a different value: each committed on the version it read.
    expect([...seen].sort((a, b) => a - b)).to.deep.equal(Array.from({ length: 10 }, (_, i) => i));
    expect((await input(0).get()).get("value")).to.equal(10);
  });

  it("leaves a member out of the commit when it would write what another member read, and runs it alone after", async () => {
    const { input } = await fixture(1);
    const group = new GroupCommit(db(), OPTIONS);
    const increment = () =>
      group.run(async (tx) => {
        const value = Number((await tx.get(input(0))).get("value"));
        tx.update(input(0), { value: value + 1 });
        return value;
      });

    // Both read 0 in the shared snapshot; committing both would lose an increment.
    const seen = await Promise.all([increment(), increment()]);

    expect(seen).to.deep.equal([0, 1]);
    expect((await input(0).get()).get("value")).to.equal(2);
    expect(group.stats).to.include({ groups: 1, overlaps: 1, requeued: 1, alone: 1, loneArrivals: 1, missedTwice: 0, failedGroups: 0 });
  });

  it("commits together members whose updates of one document depend only on its existence, and leaves out one that depends on its version", async () => {
    const { input, output } = await fixture(1);
    const counted = countingCommits(db());
    const group = new GroupCommit(counted.db, OPTIONS);
    // Read, then an increment that is right whatever the other did: a held reservation's shape.
    const add = (n: number) =>
      group.run(async (tx) => {
        await tx.get(input(0));
        tx.update(input(0), { value: FieldValue.increment(n) }, { exists: true });
        return n;
      });
    const copy = () =>
      group.run(async (tx) => {
        const value = Number((await tx.get(input(0))).get("value"));
        tx.create(output(0), { value });
        return value;
      });

    // The two increments commute; the copy depends on what they write, so it runs after them.
    const results = await Promise.all([add(1), add(2), copy()]);

    expect(results).to.deep.equal([1, 2, 3]);
    expect((await input(0).get()).get("value")).to.equal(3);
    expect(await outputs(output, 1)).to.deep.equal([3]);
    expect(counted.count()).to.equal(2);
    expect(group.stats).to.include({ groups: 1, overlaps: 1, requeued: 1, failedGroups: 0 });
  });

  it("refuses a read after a write, as a real transaction does", async () => {
    const { input, output } = await fixture(1);
    const group = new GroupCommit(db(), OPTIONS);

    const settled = await outcomes([
      group.run(async (tx) => {
        tx.create(output(0), { value: 1 });
        return (await tx.get(input(0))).get("value") as number;
      }),
      group.run(async (tx) => (await tx.get(input(0))).get("value") as number),
    ]);

    expect(settled.map((s) => (s instanceof Error ? s.message : s))).to.deep.equal(["Firestore transactions require all reads to be executed before all writes.", 0]);
    expect((await output(0).get()).exists).to.equal(false);
  });

  it("runs members alone when together they would exceed a commit's write limit", async () => {
    const { output } = await fixture(0);
    const group = new GroupCommit(db(), OPTIONS);
    const base = output(0).parent;

    const results = await Promise.all(
      [0, 1].map((m) =>
        group.run(async (tx) => {
          await tx.get(output(m));
          for (let i = 0; i < 300; i++) tx.create(base.doc(`${m}-${i}`), { value: i });
          return m;
        }),
      ),
    );

    expect(results).to.deep.equal([0, 1]);
    expect((await base.count().get()).data().count).to.equal(600);
    expect(group.stats).to.include({ groups: 1, failedGroups: 0, requeued: 1, alone: 1 });
  });

  it("sends a round without a member busy elsewhere once readRoundMs has passed", async () => {
    const { input, output } = await fixture(2);
    const group = new GroupCommit(db(), OPTIONS);
    // The busy member stays busy until the quick member's read has come back: a round that waited for
    // every member to read would never go out, and the deadline below would say so.
    let quickRead!: () => void;
    const readBack = new Promise<void>((resolve) => (quickRead = resolve));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("the quick member's read never went out while another member was busy")), 20_000);
    });

    try {
      await Promise.race([
        deadline,
        Promise.all([
          group.run(async (tx) => {
            await tx.get(input(0));
            quickRead();
            tx.create(output(0), { value: 0 });
          }),
          group.run(async (tx) => {
            // Busy with something that is not a read of this transaction (a lock-free read, say).
            await readBack;
            // One turn of the event loop: the quick member, whose read has come back, finishes first.
            await new Promise((resolve) => setImmediate(resolve));
            await tx.get(input(1));
            tx.create(output(1), { value: 1 });
          }),
        ]),
      ]);
    } finally {
      clearTimeout(timer);
    }

    expect(await outputs(output, 2)).to.deep.equal([0, 1]);
    expect(group.stats).to.include({ groups: 1, rounds: 2, timedRounds: 1 });
  });

  it("gives each member a snapshot made with its own reference's converter when two read one document", async () => {
    const sku = uniqueId("sku");
    await seedProduct(sku, 7);
    const group = new GroupCommit(db(), OPTIONS);

    const [typed, raw] = await Promise.all([
      group.run(async (tx) => (await tx.get(productRef(db(), sku))).data()),
      group.run(async (tx) => (await tx.get(db().collection("products").doc(sku))).data()),
    ]);

    expect(typed).to.include({ sku, stock: 7, reserved: 0, shards: 1 });
    expect(raw).to.include({ stock: 7 }).and.not.have.property("sku");
    expect(group.stats).to.include({ groups: 1, rounds: 1 });
  });
});
