import { expect } from "chai";
// The runtime's mechanism, recreated here as functions-framework does it for every request.
import * as domain from "node:domain";
import type { DocumentReference, Firestore } from "firebase-admin/firestore";
import { DEFAULT_GROUP_COMMIT, GroupCommit } from "../../src/concurrency/groupCommit";
import { LocalLocks } from "../../src/concurrency/localLocks";
import { DEFAULT_OPTIMISTIC, runOptimistic, type OptimisticOptions } from "../../src/concurrency/optimistic";
import { inPlace } from "../../src/concurrency/requestDomain";
import { db, uniqueId } from "../helpers/emulator";

/**
 * concurrency/requestDomain.ts through the transaction layer: every Firestore call it makes starts
 * outside the request's domain (so the client's own promises and ticks carry none), and the request's
 * code runs in its domain before and after each call.
 */

type Domain = domain.Domain;
const activeDomain = (): Domain | null => (process as NodeJS.Process & { domain?: Domain | null }).domain ?? null;

/** `real`, recording the domain active when each `getAll` and each batch's `commit` starts; `beforeFirstCommit` runs once, first. */
function recording(real: Firestore, beforeFirstCommit?: () => Promise<unknown>): { db: Firestore; calls: Array<{ call: string; domain: Domain | null }> } {
  const calls: Array<{ call: string; domain: Domain | null }> = [];
  let hook = beforeFirstCommit;
  const getAll: Firestore["getAll"] = (...args) => {
    calls.push({ call: "getAll", domain: activeDomain() });
    return real.getAll(...args);
  };
  const batch: Firestore["batch"] = () => {
    const inner = real.batch();
    const commit = inner.commit.bind(inner);
    inner.commit = () => {
      calls.push({ call: "commit", domain: activeDomain() });
      const pending = hook;
      hook = undefined;
      return pending === undefined ? commit() : pending().then(commit);
    };
    return inner;
  };
  const proxied = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === "getAll") return getAll;
      if (prop === "batch") return batch;
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { db: proxied, calls };
}

/** Runs `work` as functions-framework runs a request: inside a fresh domain, from a tick. */
function inRequest<T>(work: (request: Domain) => Promise<T>): Promise<T> {
  const request = domain.create();
  return new Promise<T>((resolve, reject) => {
    request.on("error", reject);
    request.run(() => process.nextTick(() => work(request).then(resolve, reject)));
  });
}

async function documents(n: number): Promise<DocumentReference[]> {
  const run = db().collection("requestDomain").doc(uniqueId("run"));
  const refs = Array.from({ length: n }, (_, i) => run.collection("in").doc(String(i)));
  const batch = db().batch();
  refs.forEach((ref, i) => batch.set(ref, { value: i }));
  await batch.commit();
  return refs;
}

/** A group of three members started together, the first commit losing a race to another writer of the first document. */
async function groupWithLostRace(optimistic: OptimisticOptions) {
  const refs = await documents(3);
  const { db: recorded, calls } = recording(db(), () => refs[0].update({ value: 100 }));
  const group = new GroupCommit(recorded, { ...DEFAULT_GROUP_COMMIT, optimistic });
  const seen = await inRequest(async (request) => {
    const inDomain: boolean[] = [];
    const values = await Promise.all(
      refs.map((ref) =>
        group.run(async (tx) => {
          const value = Number((await tx.get(ref)).get("value"));
          inDomain.push(activeDomain() === request);
          tx.update(ref, { value: value + 1 });
          return value + 1;
        }),
      ),
    );
    inDomain.push(activeDomain() === request);
    return { values, inDomain, request };
  });
  return { ...seen, calls, stats: group.stats, stored: (await db().getAll(...refs)).map((s) => s.get("value")) };
}

describe("where the transaction layer's Firestore calls start (requestDomain.ts)", () => {
  it("a group commit's read round, its commit, the read after a lost race and the second commit all start outside the request's domain", async () => {
    const run = await groupWithLostRace(DEFAULT_OPTIMISTIC);
    expect(run.values).to.deep.equal([101, 2, 3]);
    expect(run.stored).to.deep.equal([101, 2, 3]);
    expect(run.stats).to.include({ groups: 1, retriedGroups: 1, pruned: 1 });
    expect(run.calls.map((c) => c.call)).to.deep.equal(["getAll", "commit", "getAll", "commit"]);
    expect(run.calls.map((c) => c.domain)).to.deep.equal([null, null, null, null]);
    // The members' own code ran in the request's domain, before and after the calls.
    expect(run.inDomain.every(Boolean)).to.equal(true);
  });

  it("in place (startCall: inPlace, the bench's knob off), the same calls start in the request's domain", async () => {
    const run = await groupWithLostRace({ ...DEFAULT_OPTIMISTIC, startCall: inPlace });
    expect(run.calls).to.have.length(4);
    expect(run.calls.every((c) => c.domain === run.request)).to.equal(true);
  });

  it("an optimistic transaction run alone reads and commits outside the request's domain", async () => {
    const [ref] = await documents(1);
    const { db: recorded, calls } = recording(db());
    const value = await inRequest(async (request) => {
      const result = await runOptimistic(recorded, async (tx) => {
        const read = Number((await tx.get(ref)).get("value"));
        tx.update(ref, { value: read + 5 });
        return read + 5;
      });
      expect(activeDomain()).to.equal(request);
      return result;
    });
    expect(value).to.equal(5);
    expect((await ref.get()).get("value")).to.equal(5);
    expect(calls).to.deep.equal([
      { call: "getAll", domain: null },
      { call: "commit", domain: null },
    ]);
  });

  it("a read the instance's requests share (LocalLocks.sharedRead) starts outside the request's domain", async () => {
    const refs = await documents(2);
    const { db: recorded, calls } = recording(db());
    const locks = new LocalLocks();
    const values = await inRequest(async () => {
      const snapshots = await locks.scope().sharedRead(uniqueId("snapshot"), () => recorded.getAll(...refs));
      return snapshots.map((s) => s.get("value"));
    });
    expect(values).to.deep.equal([0, 1]);
    expect(calls).to.deep.equal([{ call: "getAll", domain: null }]);
  });
});
