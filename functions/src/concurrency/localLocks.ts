/**
 * Coordination between the concurrent requests of ONE function instance (a v2 function serves up to 80
 * at once). Firestore transactions are what make every write correct; nothing here is needed for
 * correctness, and other instances do not see these locks. What they remove is contention between
 * requests of the same instance: two transactions that read and then write the same document lock
 * each other out, and Firestore settles that by aborting one (production, then the client retries)
 * or by a lock timeout of up to about 20 s (the emulator). Waiting in-process for a few milliseconds
 * instead is cheaper in both.
 *
 * Lock keys are taken in one global order (see `LockScope.acquire`), so requests cannot deadlock on them.
 */
export class LocalLocks {
  /** Held keys → resolvers of the requests waiting for them, in arrival order. */
  private readonly queues = new Map<string, Array<() => void>>();
  private readonly flights = new Map<string, Promise<unknown>>();

  /** A set of keys held for one unit of work; release them all with `releaseAll()` in a `finally`. */
  scope(): LockScope {
    return new LockScope(this);
  }

  /**
   * Runs `work` unless a call with the same key is already running in this instance: then waits for that
   * call and shares its result (or its error). `leader` says which of the two happened.
   */
  async coalesce<T>(key: string, work: () => Promise<T>): Promise<{ value: T; leader: boolean }> {
    const running = this.flights.get(key) as Promise<T> | undefined;
    if (running !== undefined) return { value: await running, leader: false };
    const flight = work();
    this.flights.set(key, flight);
    try {
      return { value: await flight, leader: true };
    } finally {
      this.flights.delete(key);
    }
  }

  /** How many keys are held: for tests and diagnostics. */
  get heldCount(): number {
    return this.queues.size;
  }

  /** @internal */
  tryLock(key: string): boolean {
    if (this.queues.has(key)) return false;
    this.queues.set(key, []);
    return true;
  }

  /** @internal */
  lock(key: string): Promise<void> {
    const queue = this.queues.get(key);
    if (queue === undefined) {
      this.queues.set(key, []);
      return Promise.resolve();
    }
    return new Promise((resolve) => queue.push(resolve));
  }

  /** @internal Hands the key to the next waiter, if any (it stays held), else frees it. */
  unlock(key: string): void {
    const next = this.queues.get(key)?.shift();
    if (next !== undefined) next();
    else this.queues.delete(key);
  }
}

/**
 * The keys one request holds. Keys are ranked by the order their kinds are taken in a request:
 * the order first, then plain products (sorted, all at once), then one stock shard per SKU in SKU
 * order, never waiting for a second shard of a SKU while holding one. Every request waits only for
 * keys ranked above all it holds, so no two requests can wait on each other.
 */
export class LockScope {
  private readonly held = new Set<string>();

  constructor(private readonly locks: LocalLocks) {}

  /** Waits for every key not yet held, in sorted order. */
  async acquire(...keys: string[]): Promise<void> {
    for (const key of [...new Set(keys)].sort()) {
      if (this.held.has(key)) continue;
      await this.locks.lock(key);
      this.held.add(key);
    }
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

  release(key: string): void {
    if (this.held.delete(key)) this.locks.unlock(key);
  }

  releaseAll(): void {
    for (const key of this.held) this.locks.unlock(key);
    this.held.clear();
  }
}

export const lockKeys = {
  order: (orderId: string) => `1:order:${orderId}`,
  product: (sku: string) => `2:product:${sku}`,
  shard: (sku: string, shard: number) => `3:shard:${sku}/${shard}`,
};
