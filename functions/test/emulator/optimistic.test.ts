import { expect } from "chai";
import { FieldValue, Timestamp, type DocumentReference, type Firestore } from "firebase-admin/firestore";
import { DEFAULT_GROUP_COMMIT, GroupCommit } from "../../src/concurrency/groupCommit";
import { directReader, OptimisticTransaction, runOptimistic, type TransactionBody } from "../../src/concurrency/optimistic";
import { db, uniqueId } from "../helpers/emulator";

/**
 * The optimistic transaction must behave like a Firestore transaction for the bodies we run: the same
 * bodies run in real `runTransaction`s one after another (the serial outcome every concurrent run must
 * be equivalent to), concurrently through `runOptimistic`, and concurrently grouped through a
 * GroupCommit, and their results and writes are compared.
 */

type Runner = (database: Firestore, bodies: Array<TransactionBody<unknown>>) => Promise<Array<unknown>>;

const settle = (promises: Array<Promise<unknown>>) => Promise.all(promises.map((p) => p.catch((e: unknown) => `error: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`)));

const RUNNERS: Record<string, Runner> = {
  // The reference: real Firestore transactions one after another, which is what serializable means
  // (run concurrently, the emulator settles each conflict with a lock timeout of seconds).
  "Firestore runTransaction, serially": async (database, bodies) => {
    const results: unknown[] = [];
    for (const body of bodies) results.push((await settle([database.runTransaction((tx) => body(tx))]))[0]);
    return results;
  },
  "runOptimistic alone": (database, bodies) => settle(bodies.map((body) => runOptimistic(database, body))),
  "grouped": (database, bodies) => {
    const group = new GroupCommit(database, { ...DEFAULT_GROUP_COMMIT, maxMembers: 50, maxInFlight: 1 });
    return settle(bodies.map((body) => group.run(body)));
  },
};

interface Scenario {
  name: string;
  seed: (root: DocumentReference) => Promise<void>;
  bodies: (root: DocumentReference) => Array<TransactionBody<unknown>>;
  /** What is stored afterwards, as plain data. */
  state: (root: DocumentReference) => Promise<unknown>;
}

const value = async (ref: DocumentReference) => ((await ref.get()).exists ? (await ref.get()).get("value") : null);

const SCENARIOS: Scenario[] = [
  {
    name: "concurrent read-then-increment of one document (no lost update)",
    seed: (root) => root.collection("c").doc("counter").set({ value: 0 }).then(() => undefined),
    bodies: (root) =>
      Array.from({ length: 6 }, () => async (tx) => {
        const ref = root.collection("c").doc("counter");
        const current = Number((await tx.get(ref)).get("value"));
        tx.update(ref, { value: current + 1 });
        return "ok";
      }),
    state: (root) => value(root.collection("c").doc("counter")),
  },
  {
    name: "create of one document by several: one wins, the rest fail ALREADY_EXISTS or see it",
    seed: async () => undefined,
    bodies: (root) =>
      Array.from({ length: 4 }, (_, i) => async (tx) => {
        const ref = root.collection("c").doc("once");
        if ((await tx.get(ref)).exists) return "seen";
        tx.create(ref, { value: i });
        return "created";
      }),
    state: async (root) => ((await root.collection("c").doc("once").get()).exists ? "exists" : "missing"),
  },
  {
    name: "a query, then a write to what it found",
    seed: async (root) => {
      await root.collection("q").doc("a").set({ tag: "x", value: 1 });
      await root.collection("q").doc("b").set({ tag: "y", value: 2 });
    },
    bodies: (root) => [
      async (tx) => {
        const found = await tx.get(root.collection("q").where("tag", "==", "x"));
        for (const doc of found.docs) tx.update(doc.ref, { value: Number(doc.get("value")) + 10 });
        return found.size;
      },
    ],
    state: async (root) => [await value(root.collection("q").doc("a")), await value(root.collection("q").doc("b"))],
  },
  {
    name: "held units consumed with { exists: true }: each body checks its own units, none is lost or doubled",
    seed: (root) => root.collection("c").doc("stock").set({ stock: 5, reserved: 5 }).then(() => undefined),
    bodies: (root) =>
      Array.from({ length: 5 }, () => async (tx) => {
        const ref = root.collection("c").doc("stock");
        const level = (await tx.get(ref)).data() ?? {};
        if (!(Number(level.stock) >= 1 && Number(level.reserved) >= 1)) return "short";
        tx.update(ref, { stock: FieldValue.increment(-1), reserved: FieldValue.increment(-1) }, { exists: true });
        return "sold";
      }),
    state: async (root) => (await root.collection("c").doc("stock").get()).data(),
  },
  {
    name: "a read after a write is refused and writes nothing",
    seed: async () => undefined,
    bodies: (root) => [
      async (tx) => {
        tx.set(root.collection("c").doc("w"), { value: 1 });
        return (await tx.get(root.collection("c").doc("r"))).exists;
      },
    ],
    state: (root) => value(root.collection("c").doc("w")),
  },
];

describe("optimistic transactions behave like Firestore transactions", () => {
  for (const scenario of SCENARIOS) {
    it(scenario.name, async () => {
      const outcomes: Record<string, { results: unknown; state: unknown }> = {};
      for (const [name, runner] of Object.entries(RUNNERS)) {
        const root = db().collection("optimistic").doc(uniqueId("run"));
        await scenario.seed(root);
        const results = await runner(db(), scenario.bodies(root));
        outcomes[name] = { results: normalize(results), state: await scenario.state(root) };
      }
      const [reference, ...others] = Object.entries(outcomes);
      for (const [name, outcome] of others) expect(outcome, `${name} vs ${reference[0]}`).to.deep.equal(reference[1]);
    });
  }
});

describe("optimistic transaction preconditions", () => {
  it("lets a caller replace the version guard only with { exists: true }", async () => {
    const ref = db().collection("optimistic").doc(uniqueId("pre"));
    await ref.set({ value: 1 });
    const tx = new OptimisticTransaction(directReader(db()), db().batch());
    await tx.get(ref);
    expect(() => tx.update(ref, { value: 2 }, { lastUpdateTime: Timestamp.now() })).to.throw(/only \{ exists: true \}/);
    expect(() => tx.update(ref, { value: 2 }, { exists: false })).to.throw(/only \{ exists: true \}/);
    tx.update(ref, { value: 2 }, { exists: true });
    // Written with its own precondition, the document is no longer a version guard of the commit.
    expect(tx.guards()).to.deep.equal([]);
    expect(tx.existenceGuards().map((r) => r.path)).to.deep.equal([ref.path]);
  });
});

/** Order-free, and errors by kind: which concurrent body wins a race is not part of the contract. */
function normalize(results: unknown[]): unknown[] {
  return results.map((r) => (typeof r === "string" && r.startsWith("error: ") ? (r.includes("ALREADY_EXISTS") ? "error: already exists" : r) : r)).sort();
}
