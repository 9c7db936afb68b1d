// `BENCH_LOCAL_LOCKS=off`: an object that the webhook and reservation code can use in place of a
// LocalLocks, but that coordinates nothing. Every key is always free (a request never waits for
// another request of its instance, and a transaction never gives up its attempt for a busy key), and
// `coalesce` never shares (each copy of a duplicated event runs its own delivery). Correctness then
// rests on Firestore's transactions alone, as it does across instances.
//
// It implements the LocalLocks methods the product code calls (scope, coalesce, transactions,
// heldCount) and the three that LockScope calls back (tryLock, lock, unlock). The transactions still
// run through `inner`'s group commit, so the two knobs stay independent.

export class FreeLocks {
  #inner;
  #LockScope;

  /**
   * @param inner a real LocalLocks: only its `transactions(db)` (the group commit) is used
   * @param LockScope the LockScope class of functions/lib/concurrency/localLocks.js
   */
  constructor(inner, LockScope) {
    if (typeof LockScope !== "function") {
      throw new Error(
        "BENCH_LOCAL_LOCKS=off needs `LockScope` exported from functions/lib/concurrency/localLocks.js " +
          "(or a LocalLocks option that turns keys and coalescing off); this build has neither.",
      );
    }
    this.#inner = inner;
    this.#LockScope = LockScope;
  }

  scope() {
    return new this.#LockScope(this);
  }

  async coalesce(_key, work) {
    return { value: await work(), leader: true };
  }

  transactions(db) {
    return this.#inner.transactions(db);
  }

  get heldCount() {
    return 0;
  }

  tryLock() {
    return true;
  }

  lock() {
    return Promise.resolve();
  }

  unlock() {}
}
