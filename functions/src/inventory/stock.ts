import { createHash } from "node:crypto";
import { FieldValue, type DocumentReference, type DocumentSnapshot, type Firestore } from "firebase-admin/firestore";
import { productRef, stockShardRef, type StockLevel } from "../collections/products";
import type { StockChange } from "../domain/orderMachine";
import { toCount } from "../collections/firestoreValues";
import { quantitiesBySku, type Order } from "../collections/orders";
import type { TransactionLike } from "../concurrency/groupCommit";
import { lockKeys, LocksWanted, type LockScope } from "../concurrency/localLocks";

/**
 * Where each SKU's stock is read and written inside a transaction. Unsharded products: the product
 * document. Hot products split into N shards: ONE shard per order line, so concurrent orders for the
 * same product touch different documents instead of all contending on one.
 */
export interface StockPlan {
  /** The level the decision sees per SKU: the product's, or the chosen shard's. */
  levels: Map<string, StockLevel>;
  refs: Map<string, DocumentReference>;
  /** SKU → shard chosen, for sharded SKUs only (recorded on the order so a release hits the same shard). */
  shards: Record<string, number>;
}

export interface StockRequest {
  /** Quantity per SKU. */
  quantities: ReadonlyMap<string, number>;
  /** Shards the order's units are in (reserved, or sold for a restock). */
  held?: Readonly<Record<string, number>>;
  /**
   * True while the order is `reserved`: its units are reserved in its `held` shards, and, for a SKU
   * without one, in the product document (a product cannot be split into shards while anything is
   * reserved, see configureStockShards). Shards are only written by this backend, never below what
   * they have reserved (`distributeStockDelta`), so a held shard has at least the order's units in
   * `stock` and in `reserved`: consuming or releasing them needs no read.
   */
  reserved?: boolean;
  /** Spreads orders over shards deterministically (the order id). */
  key: string;
}

/** Shards an order's units are in, and whether they are its live reservation. */
export function stockRequestFor(order: Order): StockRequest {
  const held = heldShards(order);
  return { quantities: quantitiesBySku(order.items), key: order.id, reserved: order.status === "reserved", ...(held ? { held } : {}) };
}

/**
 * Shard counts are configuration, read without a transaction lock: locking the hot product document
 * in every transaction would bring back the contention sharding removes.
 */
async function shardCounts(db: Firestore, skus: readonly string[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  if (skus.length === 0) return counts;
  const snapshots = await db.getAll(...skus.map((sku) => db.collection("products").doc(sku)));
  for (const snapshot of snapshots) {
    if (snapshot.exists) counts.set(snapshot.id, Math.max(1, toCount(snapshot.get("shards"))));
  }
  return counts;
}

/** The shards an order's units are in: set while reserved and after payment; nothing is held before or after a cancel. */
export function heldShards(order: { status: string; stockShards?: Record<string, number> }): Record<string, number> | undefined {
  return ["pending", "out_of_stock", "canceled"].includes(order.status) ? undefined : order.stockShards;
}

export function startShard(key: string, sku: string, shards: number): number {
  return createHash("sha1").update(`${key}/${sku}`).digest().readUInt32BE(0) % shards;
}

/**
 * Reads, inside `tx`, the stock the decision needs and says where its changes go. A document read and
 * then written is first taken in `scope` (or LocksWanted is thrown, see runTransactionWithLocks), so
 * requests of this instance queue for it instead of locking each other out in Firestore; a new
 * reservation on a sharded product prefers a shard nobody in this instance is using.
 */
export async function planStock(tx: TransactionLike, db: Firestore, request: StockRequest, scope: LockScope): Promise<StockPlan> {
  const plan: StockPlan = { levels: new Map(), refs: new Map(), shards: {} };
  const skus = [...request.quantities.keys()].sort();
  const toRead: string[] = [];
  for (const sku of skus) {
    const shard = request.held?.[sku];
    if (request.reserved === true && shard !== undefined) {
      // A lower bound, which is all that consuming or releasing this reservation needs: no read, just a
      // blind increment. The key is still taken: a transaction of this instance that read the shard
      // holds it until commit, and a write to it would wait on that read inside Firestore.
      scope.require(lockKeys.shard(sku, shard));
      const qty = request.quantities.get(sku) ?? 0;
      plan.levels.set(sku, { stock: qty, reserved: qty });
      plan.refs.set(sku, stockShardRef(db, sku, shard));
      plan.shards[sku] = shard;
    } else {
      toRead.push(sku);
    }
  }
  // A reserved order's other SKUs are on their product documents: no need to look up shard counts.
  const counts = request.reserved === true ? new Map<string, number>() : await shardCounts(db, toRead);
  const plain = toRead.filter((sku) => (counts.get(sku) ?? 1) <= 1);
  if (plain.length > 0) {
    // Operators edit these documents directly, so every movement re-reads them in the transaction.
    scope.require(...plain.map(lockKeys.product));
    const snapshots = await tx.getAll(...plain.map((sku) => productRef(db, sku)));
    for (const snapshot of snapshots) {
      const product = snapshot.data();
      if (product !== undefined && product.shards > 1) {
        // Split into shards after the lock-free count was read (configureStockShards): a reservation
        // cannot be on it (it refuses to split while anything is reserved), so decide again with shards.
        if (request.reserved === true) throw new Error(`products/${product.sku} is split into shards, yet order ${request.key} holds its reservation on the product document`);
        throw new LocksWanted([]);
      }
      plan.refs.set(snapshot.id, snapshot.ref);
      if (product) plan.levels.set(product.sku, { stock: product.stock, reserved: product.reserved });
    }
  }
  for (const sku of toRead.filter((s) => (counts.get(s) ?? 1) > 1)) {
    const chosen = await chooseShard(tx, db, scope, sku, counts.get(sku) as number, request);
    plan.levels.set(sku, chosen.level);
    plan.refs.set(sku, chosen.ref);
    plan.shards[sku] = chosen.shard;
  }
  return plan;
}

interface ShardChoice {
  shard: number;
  level: StockLevel;
  ref: DocumentReference;
}

/** How many shards a reservation tries inside its transaction after a lock-free read said they fit. */
const CANDIDATES_TRIED = 3;

/**
 * The shard a sharded SKU's change goes to: the one the order holds units in; else, probing from a
 * per-order start, a shard with enough available units.
 *
 * Every shard read inside the transaction takes a Firestore read lock until commit, and two
 * transactions that each read a shard the other then writes wait for each other until one is aborted
 * (seconds in the emulator). So the transaction reads as few shards as it can: the first one nobody
 * here holds; if that one is short, a lock-free read of all the others (one consistent snapshot)
 * finds candidates, and only those are read in the transaction. Only the chosen shard is held.
 *
 * When that snapshot shows no units anywhere, the order is refused on it, without locking every
 * shard: a refusal writes no stock, so it can never oversell; at worst it misses a unit released in
 * the same few milliseconds, as if the buyer had come a moment earlier. Locking all shards instead
 * would make every sale of the product wait for every refusal, exactly when a sale sells out.
 */
async function chooseShard(tx: TransactionLike, db: Firestore, scope: LockScope, sku: string, n: number, request: StockRequest): Promise<ShardChoice> {
  const qty = request.quantities.get(sku) ?? 0;
  const key = (shard: number) => lockKeys.shard(sku, shard);
  const toChoice = (shard: number, snapshot: DocumentSnapshot): ShardChoice => ({
    shard,
    ref: snapshot.ref,
    level: { stock: toCount(snapshot.get("stock")), reserved: toCount(snapshot.get("reserved")) },
  });
  const read = async (shards: number[]): Promise<ShardChoice[]> =>
    (await tx.getAll(...shards.map((shard) => stockShardRef(db, sku, shard)))).map((snapshot, i) => toChoice(shards[i], snapshot));
  const fits = (choice: ShardChoice) => choice.level.stock - choice.level.reserved >= qty;
  const held = request.held?.[sku];
  if (held !== undefined) {
    scope.require(key(held));
    return (await read([held]))[0];
  }
  const start = startShard(request.key, sku, n);
  const probe = Array.from({ length: n }, (_, i) => (start + i) % n);
  const tried: ShardChoice[] = [];
  // Reads one shard this request holds. It keeps the key even if the shard is short: the read holds
  // the document in Firestore until commit, and nobody here should write it before then.
  const attempt = async (shard: number): Promise<ShardChoice | null> => {
    const [choice] = await read([shard]);
    tried.push(choice);
    return fits(choice) ? choice : null;
  };

  // Keys of this SKU held from an earlier attempt (or waited for) and not read now are let go.
  const choose = (choice: ShardChoice): ShardChoice => {
    for (const shard of probe) if (!tried.some((t) => t.shard === shard)) scope.release(key(shard));
    return choice;
  };

  const preferred = probe.find((shard) => scope.tryAcquire(key(shard)));
  if (preferred !== undefined) {
    const choice = await attempt(preferred);
    if (choice !== null) return choose(choice);
  }
  const others = probe.filter((shard) => shard !== preferred);
  const unlocked = await db.getAll(...others.map((shard) => stockShardRef(db, sku, shard)));
  const candidates = others.filter((shard, i) => fits(toChoice(shard, unlocked[i])));
  const busy: number[] = [];
  for (const shard of candidates) {
    if (tried.length > CANDIDATES_TRIED) break;
    if (!scope.tryAcquire(key(shard))) {
      busy.push(shard);
      continue;
    }
    const choice = await attempt(shard);
    if (choice !== null) return choose(choice);
  }
  // Units are left only in shards other requests here are writing: wait for one, then run again.
  if (busy.length > 0) throw new LocksWanted([key(busy[0])]);
  // The snapshot showed units that other instances took before this transaction read them (or more
  // candidates than it tries): run again on a new snapshot. Only a snapshot without units refuses.
  if (candidates.length > 0) throw new LocksWanted([]);
  return choose(tried[0] ?? toChoice(others[0], unlocked[0]));
}

/** Applies signed deltas where the plan read them; the decision has already checked that none goes below zero. */
export function writeStockChanges(tx: TransactionLike, plan: StockPlan, changes: readonly StockChange[]): void {
  for (const change of changes) {
    const ref = plan.refs.get(change.sku);
    if (ref === undefined) throw new Error(`No stock location planned for ${change.sku}`);
    const update: Record<string, FieldValue> = {};
    if (change.stock !== 0) update.stock = FieldValue.increment(change.stock);
    if (change.reserved !== 0) update.reserved = FieldValue.increment(change.reserved);
    if (Object.keys(update).length > 0) tx.update(ref, update);
  }
}

