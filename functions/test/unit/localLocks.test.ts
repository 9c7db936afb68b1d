import { expect } from "chai";
import { LocalLocks, LocksWanted, lockKeys } from "../../src/concurrency/localLocks";

/** A promise and the function that settles it, to hold work open until the test says so. */
function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

/** Lets every already-settled promise callback run. */
const drain = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("LocalLocks (per-instance coordination)", () => {
  describe("coalesce", () => {
    it("runs the work once for concurrent calls with one key, and every caller gets its result", async () => {
      const locks = new LocalLocks();
      const release = gate<string>();
      let runs = 0;
      const work = () => {
        runs += 1;
        return release.promise;
      };
      const calls = Array.from({ length: 5 }, () => locks.coalesce("event:evt_1", work));
      release.open("applied");
      const results = await Promise.all(calls);
      expect(runs).to.equal(1);
      expect(results.map((r) => r.value)).to.deep.equal(Array(5).fill("applied"));
      expect(results.filter((r) => r.leader)).to.have.length(1);
    });

    it("runs again once the first call has settled (a later copy is not coalesced)", async () => {
      const locks = new LocalLocks();
      let runs = 0;
      await locks.coalesce("k", async () => ++runs);
      const second = await locks.coalesce("k", async () => ++runs);
      expect(runs).to.equal(2);
      expect(second).to.deep.equal({ value: 2, leader: true });
    });

    it("keeps different keys apart", async () => {
      const locks = new LocalLocks();
      const a = gate<string>();
      const first = locks.coalesce("a", () => a.promise);
      const second = await locks.coalesce("b", async () => "b");
      expect(second).to.deep.equal({ value: "b", leader: true });
      a.open("a");
      expect(await first).to.deep.equal({ value: "a", leader: true });
    });

    it("shares the first call's error with the callers that waited, then forgets it", async () => {
      const locks = new LocalLocks();
      const fail = gate();
      const leader = locks.coalesce("k", async () => {
        await fail.promise;
        throw new Error("unavailable");
      });
      const follower = locks.coalesce("k", async () => "never run");
      fail.open();
      const settled = await Promise.allSettled([leader, follower]);
      expect(settled.map((s) => (s.status === "rejected" ? (s.reason as Error).message : "fulfilled"))).to.deep.equal(["unavailable", "unavailable"]);
      expect(await locks.coalesce("k", async () => "ok")).to.deep.equal({ value: "ok", leader: true });
    });
  });

  describe("sharedRead", () => {
    it("gives concurrent callers of one key one read, and a later caller a read of its own", async () => {
      const locks = new LocalLocks();
      const first = locks.scope();
      const second = locks.scope();
      const release = gate<number>();
      let reads = 0;
      const read = () => {
        reads += 1;
        return release.promise;
      };
      const together = [first.sharedRead("shards:sku/50", read), second.sharedRead("shards:sku/50", read)];
      release.open(7);
      expect(await Promise.all(together)).to.deep.equal([7, 7]);
      expect(reads).to.equal(1);
      expect(await first.sharedRead("shards:sku/50", async () => ++reads)).to.equal(2);
      // It takes no key: nothing is held afterwards.
      expect(locks.heldCount).to.equal(0);
    });

    it("after a request finds a shared read out of date, does not give it a read that started before", async () => {
      const locks = new LocalLocks();
      const other = locks.scope();
      const mine = locks.scope();
      const slow = gate<string>();
      const inFlight = other.sharedRead("shards:sku/50", () => slow.promise);
      mine.sharedReadWasStale("shards:sku/50");
      const own = await mine.sharedRead("shards:sku/50", async () => "fresh");
      slow.open("old");
      expect(own).to.equal("fresh");
      expect(await inFlight).to.equal("old");
    });
  });

  describe("scopes", () => {
    it("hands a key to waiters one at a time, in arrival order", async () => {
      const locks = new LocalLocks();
      const order: string[] = [];
      const holder = locks.scope();
      await holder.acquire("k");
      const waiters = ["w1", "w2", "w3"].map(async (name) => {
        const scope = locks.scope();
        await scope.acquire("k");
        order.push(`${name} in`);
        await drain();
        order.push(`${name} out`);
        scope.releaseAll();
      });
      await drain();
      expect(order).to.deep.equal([]);
      holder.releaseAll();
      await Promise.all(waiters);
      expect(order).to.deep.equal(["w1 in", "w1 out", "w2 in", "w2 out", "w3 in", "w3 out"]);
      expect(locks.heldCount).to.equal(0);
    });

    it("tryAcquire takes only free keys, and is true for a key the scope already holds", async () => {
      const locks = new LocalLocks();
      const a = locks.scope();
      const b = locks.scope();
      expect(a.tryAcquire("k")).to.equal(true);
      expect(a.tryAcquire("k")).to.equal(true);
      expect(b.tryAcquire("k")).to.equal(false);
      a.release("k");
      expect(b.tryAcquire("k")).to.equal(true);
      expect(a.holds("k")).to.equal(false);
      b.releaseAll();
      expect(locks.heldCount).to.equal(0);
    });

    it("acquiring a key twice in one scope does not wait for itself", async () => {
      const locks = new LocalLocks();
      const scope = locks.scope();
      await scope.acquire("k", "k");
      await scope.acquire("k");
      expect(scope.holds("k")).to.equal(true);
      scope.releaseAll();
      expect(locks.heldCount).to.equal(0);
    });

    it("two scopes asking for the same keys in opposite orders both finish (keys are taken sorted)", async () => {
      const locks = new LocalLocks();
      const done: string[] = [];
      const run = async (name: string, keys: string[]) => {
        const scope = locks.scope();
        await scope.acquire(...keys);
        await drain();
        done.push(name);
        scope.releaseAll();
      };
      await Promise.all([run("x", ["a", "b", "c"]), run("y", ["c", "b", "a"])]);
      expect(done.sort()).to.deep.equal(["x", "y"]);
      expect(locks.heldCount).to.equal(0);
    });

    it("require takes free keys, and otherwise throws LocksWanted naming the busy ones while holding none of them", () => {
      const locks = new LocalLocks();
      const other = locks.scope();
      other.tryAcquire("b");
      const scope = locks.scope();
      scope.require("a");
      expect(scope.holds("a")).to.equal(true);
      let wanted: readonly string[] = [];
      try {
        scope.require("b", "c");
      } catch (error) {
        expect(error).to.be.instanceOf(LocksWanted);
        wanted = (error as LocksWanted).keys;
      }
      expect(wanted).to.deep.equal(["b"]);
      expect(scope.holds("c")).to.equal(false);
      expect(scope.holds("a")).to.equal(true);
      other.releaseAll();
      scope.releaseAll();
      expect(locks.heldCount).to.equal(0);
    });

    it("waitFor lets go of later-ranked keys and takes them back with the wanted one, in order", async () => {
      const locks = new LocalLocks();
      const scope = locks.scope();
      await scope.acquire("1:order", "3:shard");
      const other = locks.scope();
      await other.acquire("2:product");
      const waiting = scope.waitFor(["2:product"]);
      await drain();
      // While it waits, it holds nothing ranked after what it waits for: another request can take the shard.
      expect(scope.holds("3:shard")).to.equal(false);
      expect(scope.holds("1:order")).to.equal(true);
      other.releaseAll();
      await waiting;
      expect(["1:order", "2:product", "3:shard"].map((k) => scope.holds(k))).to.deep.equal([true, true, true]);
      scope.releaseAll();
      expect(locks.heldCount).to.equal(0);
    });

    it("ranks keys: an order before products before shards", () => {
      const keys = [lockKeys.shard("a", 1), lockKeys.product("z"), lockKeys.order("o"), lockKeys.product("b")];
      expect([...keys].sort()).to.deep.equal([lockKeys.order("o"), lockKeys.product("b"), lockKeys.product("z"), lockKeys.shard("a", 1)]);
    });

    it("heldByOther is true only for a key another scope of the instance holds", () => {
      const locks = new LocalLocks();
      const [a, b] = [locks.scope(), locks.scope()];
      expect(a.tryAcquire("3:shard:x/0")).to.equal(true);
      expect([a.heldByOther("3:shard:x/0"), b.heldByOther("3:shard:x/0"), b.heldByOther("3:shard:x/1")]).to.deep.equal([false, true, false]);
      a.releaseAll();
      expect(b.heldByOther("3:shard:x/0")).to.equal(false);
    });
  });

  describe("hints", () => {
    it("are shared by the scopes of one instance, and the last note wins", () => {
      const locks = new LocalLocks();
      const [a, b] = [locks.scope(), locks.scope()];
      expect(a.hint("3:shard:x/0")).to.equal(undefined);
      a.noteHint("3:shard:x/0", 4);
      b.noteHint("3:shard:x/0", 3);
      expect([a.hint("3:shard:x/0"), b.hint("3:shard:x/0"), new LocalLocks().scope().hint("3:shard:x/0")]).to.deep.equal([3, 3, undefined]);
    });

    it("are off with the local keys (the bench's knob): nothing is noted, and no key is held by another", () => {
      const locks = new LocalLocks(undefined, { localKeys: false });
      const [a, b] = [locks.scope(), locks.scope()];
      a.noteHint("3:shard:x/0", 4);
      a.tryAcquire("3:shard:x/0");
      expect([a.hint("3:shard:x/0"), b.heldByOther("3:shard:x/0")]).to.deep.equal([undefined, false]);
    });

    it("stay bounded: past 10,000 keys they start again from empty", () => {
      const scope = new LocalLocks().scope();
      for (let n = 0; n < 10_000; n++) scope.noteHint(`3:shard:x/${n}`, n);
      expect(scope.hint("3:shard:x/0")).to.equal(0);
      scope.noteHint("3:shard:y/0", 7);
      expect([scope.hint("3:shard:x/0"), scope.hint("3:shard:y/0")]).to.deep.equal([undefined, 7]);
    });
  });
});
