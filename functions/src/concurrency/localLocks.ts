import { performance } from "node:perf_hooks";
import type { Firestore } from "firebase-admin/firestore";
import { DEFAULT_GROUP_COMMIT, GroupCommit, type GroupCommitOptions, type TransactionBody } from "./groupCommit";

/**
 * Coordination between the concurrent requests of ONE function instance (a v2 function serves up to 80
 * at once). The optimistic transactions (see OptimisticTransaction) are what make every write correct;
 * nothing here is needed for correctness, and other instances do not see these keys. What they remove
 * is wasted work between requests of the same instance: two transactions that read and then write the
 * same document under a version guard cannot both commit, so the loser runs again; waiting in-process
 * for a few milliseconds instead costs no round trip. Copies of one event in flight at once share one
 * delivery (`coalesce`).
 *
 * Two rules keep these waits from ever deadlocking: keys are waited for in one global order
 * (`LockScope.acquire`), and never inside a transaction body: a body only takes free keys
 * (`LockScope.require`) and otherwise gives up its attempt (`runTransactionWithLocks`; in a group
 * commit, a member's failure reaches it only once the shared commit has ended).
 *
 * The instance's transactions themselves run through its group commit (`transactions`, see GroupCommit).
 */
export class LocalLocks {
  /** Held keys → resolvers of the requests waiting for them, in arrival order. */
  private readonly queues = new Map<string, Array<() => void>>();
  /** Work and reads in flight that later calls with the same key share (`coalesce`, `sharedRead`). */
  private readonly flights = new Map<string, { startedAt: number; promise: Promise<unknown> }>();
  /** What this instance last saw of a figure that only steers a choice (see `LockScope.hint`). */
  private readonly hints = new Map<string, number>();
  private readonly groups = new WeakMap<Firestore, GroupCommit>();

  /**
   * `coordination.localKeys` false turns the keys and the coalescing off (every key is free, every call
   * runs its own work): the bench's knob for measuring what they are worth across instances.
   */
  constructor(
    private readonly groupCommit: GroupCommitOptions = DEFAULT_GROUP_COMMIT,
    private readonly coordination: { localKeys: boolean } = { localKeys: true },
  ) {}

  /** A set of keys held for one unit of work; release them all with `releaseAll()` in a `finally`. */
  scope(): LockScope {
    return new LockScope(this);
  }

  /**
   * Runs `work` unless a call with the same key is already running in this instance: then waits for that
   * call and shares its result (or its error). `leader` says which of the two happened.
   */
  async coalesce<T>(key: string, work: () => Promise<T>): Promise<{ value: T; leader: boolean }> {
    const { promise, leader } = this.share(`work:${key}`, work, -Infinity);
    return { value: await promise, leader };
  }

  /** @internal See LockScope.sharedRead: joins a read of `key` in flight that started after `notBefore`. */
  sharedRead<T>(key: string, read: () => Promise<T>, notBefore: number): Promise<T> {
    // The instance's read, shared by its requests: started where the transaction layer starts its calls.
    return this.share(`read:${key}`, () => this.groupCommit.optimistic.startCall(read), notBefore).promise;
  }

  /** Joins the flight of `key` if one started after `notBefore`, else starts `work` as the new one. */
  private share<T>(key: string, work: () => Promise<T>, notBefore: number): { promise: Promise<T>; leader: boolean } {
    const running = this.flights.get(key);
    if (this.coordination.localKeys && running !== undefined && running.startedAt > notBefore) return { promise: running.promise as Promise<T>, leader: false };
    const startedAt = performance.now();
    const promise = work();
    if (!this.coordination.localKeys) return { promise, leader: true };
    const flight = { startedAt, promise };
    this.flights.set(key, flight);
    const forget = () => {
      if (this.flights.get(key) === flight) this.flights.delete(key);
    };
    promise.then(forget, forget);
    return { promise, leader: true };
  }

  /** @internal See LockScope.hint. */
  hint(key: string): number | undefined {
    return this.coordination.localKeys ? this.hints.get(key) : undefined;
  }

  /** @internal See LockScope.noteHint. */
  noteHint(key: string, value: number): void {
    if (!this.coordination.localKeys) return;
    // A bound, not a cache to evict from carefully: a hint that is gone only costs one read to learn again.
    if (this.hints.size >= MAX_HINTS && !this.hints.has(key)) this.hints.clear();
    this.hints.set(key, value);
  }

  /** This instance's group commit on `db`: the transactions its requests run together (see GroupCommit). */
  transactions(db: Firestore): GroupCommit {
    let group = this.groups.get(db);
    if (group === undefined) {
      group = new GroupCommit(db, this.groupCommit);
      this.groups.set(db, group);
    }
    return group;
  }

  /** How many keys are held: for tests and diagnostics. */
  get heldCount(): number {
    return this.queues.size;
  }

  /** @internal Whether some request of this instance holds `key`. */
  isLocked(key: string): boolean {
    return this.coordination.localKeys && this.queues.has(key);
  }

  /** @internal */
  tryLock(key: string): boolean {
    if (!this.coordination.localKeys) return true;
    if (this.queues.has(key)) return false;
    this.queues.set(key, []);
    return true;
  }

  /** @internal */
  lock(key: string): Promise<void> {
    if (!this.coordination.localKeys) return Promise.resolve();
    const queue = this.queues.get(key);
    if (queue === undefined) {
      this.queues.set(key, []);
      return Promise.resolve();
    }
    return new Promise((resolve) => queue.push(resolve));
  }

  /** @internal Hands the key to the next waiter, if any (it stays held), else frees it. */
  unlock(key: string): void {
    if (!this.coordination.localKeys) return;
    const next = this.queues.get(key)?.shift();
    if (next !== undefined) next();
    else this.queues.delete(key);
  }
}

/**
 * Thrown inside a transaction that needs keys another request of this instance holds, or, with no
 * keys, that decided on a lock-free read which turned out stale and must simply run again.
 */
export class LocksWanted extends Error {
  constructor(readonly keys: readonly string[]) {
    super(`waiting for ${keys.join(", ")}`);
  }
}

/**
 * The keys one request holds. Keys sort by rank: the order first, then plain products, then stock
 * shards (see `lockKeys`), and are waited for only in that order.
 */
export class LockScope {
  private readonly held = new Set<string>();
  private readonly staleSince = new Map<string, number>();

  constructor(private readonly locks: LocalLocks) {}

  /** Runs a transaction in this instance's group commit on `db`. */
  transaction<T>(db: Firestore, body: TransactionBody<T>): Promise<T> {
    return this.locks.transactions(db).run(body);
  }

  /**
   * A lock-free read that concurrent requests of this instance share: a call while the same `key` is
   * being read waits for that read instead of making its own, if that read started at or after
   * `notBefore` (pass when the caller's attempt began, so it is never older than what the caller has
   * already read). Only for reads whose result may be a moment old (a snapshot a refusal is decided
   * on); inside a transaction too, as it takes no key.
   */
  sharedRead<T>(key: string, read: () => Promise<T>, notBefore = -Infinity): Promise<T> {
    return this.locks.sharedRead(key, read, Math.max(notBefore, this.staleSince.get(key) ?? -Infinity));
  }

  /**
   * This request found what `sharedRead(key)` gave it out of date (units it showed were gone): its next
   * shared read of `key` only joins a read started from now on, so it never decides twice on one snapshot.
   */
  sharedReadWasStale(key: string): void {
    this.staleSince.set(key, performance.now());
  }

  /**
   * What this instance last noted for `key` (see noteHint), or undefined. A hint steers which document
   * a request tries first, never what it decides: it may be old, and other instances never update it.
   */
  hint(key: string): number | undefined {
    return this.locks.hint(key);
  }

  noteHint(key: string, value: number): void {
    this.locks.noteHint(key, value);
  }

  /** Waits for every key not yet held, in sorted order. Never call it inside a transaction. */
  async acquire(...keys: string[]): Promise<void> {
    for (const key of [...new Set(keys)].sort()) {
      if (this.held.has(key)) continue;
      await this.locks.lock(key);
      this.held.add(key);
    }
  }

  /** For use inside a transaction: takes the keys if they are free, else throws LocksWanted (holding none of them). */
  require(...keys: string[]): void {
    const taken = keys.filter((key) => !this.held.has(key) && this.tryAcquire(key));
    const missing = keys.filter((key) => !this.held.has(key));
    if (missing.length === 0) return;
    for (const key of taken) this.release(key);
    throw new LocksWanted(missing);
  }

  /** Takes the key if nobody in this instance holds it; true when this scope now holds it. */
  tryAcquire(key: string): boolean {
    if (this.held.has(key)) return true;
    if (!this.locks.tryLock(key)) return false;
    this.held.add(key);
    return true;
  }

  holds(key: string): boolean {
    return this.held.has(key);
  }

  /** Another request of this instance holds `key` (so it is writing that document, or about to). */
  heldByOther(key: string): boolean {
    return !this.held.has(key) && this.locks.isLocked(key);
  }

  release(key: string): void {
    if (!this.held.delete(key)) return;
    this.locks.unlock(key);
  }

  releaseAll(): void {
    for (const key of this.held) this.locks.unlock(key);
    this.held.clear();
  }

  /**
   * Waits for `wanted` in rank order: keys held that rank after the first wanted one are let go
   * and waited for again with it, so this request never waits while holding a later key.
   */
  async waitFor(wanted: readonly string[]): Promise<void> {
    if (wanted.length === 0) return;
    const first = [...wanted].sort()[0];
    const later = [...this.held].filter((key) => key > first);
    for (const key of later) this.release(key);
    await this.acquire(...wanted, ...later);
  }
}

/** Hints kept per instance: a sharded product has at most 500 shards (configureStockShards). */
const MAX_HINTS = 10_000;

/** How many times a transaction may give up its attempt to wait for local keys before it fails. */
const MAX_LOCK_ROUNDS = 10;

/**
 * Runs `body` as a transaction (in the instance's group commit), where `body` may throw LocksWanted: the
 * attempt is dropped (nothing was written), the keys are waited for, and the transaction runs again
 * holding them.
 */
export async function runTransactionWithLocks<T>(db: Firestore, scope: LockScope, body: TransactionBody<T>): Promise<T> {
  for (let round = 1; ; round++) {
    try {
      return await scope.transaction(db, body);
    } catch (error) {
      if (!(error instanceof LocksWanted) || round >= MAX_LOCK_ROUNDS) throw error;
      // No key to wait for: a lock-free snapshot was stale (another instance took the units). Back off a
      // little, jittered, so instances racing for the last units do not rerun in lockstep.
      if (error.keys.length === 0) await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * round));
      await scope.waitFor(error.keys);
    }
  }
}

/** Lock keys; the prefix is the rank. */
export const lockKeys = {
  order: (orderId: string) => `1:order:${orderId}`,
  product: (sku: string) => `2:product:${sku}`,
  shard: (sku: string, shard: number) => `3:shard:${sku}/${shard}`,
};
