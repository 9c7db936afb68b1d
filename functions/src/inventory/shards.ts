import type { Firestore, Timestamp } from "firebase-admin/firestore";
import { runOptimistic } from "../concurrency/optimistic";
import { toCount } from "../collections/firestoreValues";
import { productFromData, productRef, stockShardRef, type StockLevel } from "../collections/products";

/**
 * Hot products keep their stock in N shards (`products/{sku}/stockShards/{n}`) so that concurrent
 * orders write different documents. The product document stays the operator's view: its `stock` and
 * `reserved` are the shards' sums (kept by `reconcileProduct`), and an operator edit of `stock` in the
 * console is spread over the shards.
 */

/**
 * Spreads a change of total stock over shards: additions evenly, removals from the shards with the
 * most available units first, never taking a shard below what it has reserved. Pure.
 */
export function distributeStockDelta(levels: readonly StockLevel[], delta: number): number[] {
  const deltas = levels.map(() => 0);
  if (levels.length === 0 || delta === 0) return deltas;
  if (delta > 0) {
    const base = Math.floor(delta / levels.length);
    return deltas.map((_, i) => base + (i < delta % levels.length ? 1 : 0));
  }
  let remaining = -delta;
  const byAvailable = levels.map((l, i) => ({ i, available: Math.max(0, l.stock - l.reserved) })).sort((a, b) => b.available - a.available);
  for (const { i, available } of byAvailable) {
    const take = Math.min(available, remaining);
    if (take > 0) deltas[i] = -take;
    remaining -= take;
    if (remaining === 0) break;
  }
  return deltas;
}

/** Splits an unsharded product's stock into `shards` shards. Only while nothing is reserved. */
export async function configureStockShards(db: Firestore, sku: string, shards: number): Promise<void> {
  if (!Number.isInteger(shards) || shards < 2 || shards > 500) throw new RangeError("shards must be an integer from 2 to 500");
  await db.runTransaction(async (tx) => {
    const product = (await tx.get(productRef(db, sku))).data();
    if (product === undefined) throw new Error(`products/${sku} does not exist`);
    if (product.shards > 1) throw new Error(`products/${sku} is already split into ${product.shards} shards`);
    if (product.reserved !== 0) throw new Error(`products/${sku} has ${product.reserved} units reserved: shard it when no order holds a reservation`);
    const split = distributeStockDelta(Array.from({ length: shards }, () => ({ stock: 0, reserved: 0 })), product.stock);
    split.forEach((stock, n) => tx.set(stockShardRef(db, sku, n), { stock, reserved: 0 }));
    tx.update(productRef(db, sku), { shards, stockSynced: product.stock });
  });
}

export type ReconcileOutcome = "not_sharded" | "unchanged" | "aggregated" | "operator_edit_applied";

/**
 * Makes the product document agree with its shards, in one transaction. Idempotent, so a redelivered
 * trigger is harmless. When `stock` differs from `stockSynced`, an operator edited it: the difference
 * is spread over the shards first.
 */
export async function reconcileProduct(db: Firestore, sku: string): Promise<ReconcileOutcome> {
  return db.runTransaction(async (tx) => {
    const ref = productRef(db, sku);
    const productSnapshot = await tx.get(ref);
    const product = productSnapshot.data();
    if (product === undefined || product.shards <= 1) return "not_sharded";
    const shardRefs = Array.from({ length: product.shards }, (_, n) => stockShardRef(db, sku, n));
    const levels = (await tx.getAll(...shardRefs)).map((s) => ({ stock: toCount(s.get("stock")), reserved: toCount(s.get("reserved")) }));
    const synced = product.stockSynced ?? levels.reduce((sum, l) => sum + l.stock, 0);
    const edit = product.stock - synced;
    const deltas = edit === 0 ? levels.map(() => 0) : distributeStockDelta(levels, edit);
    deltas.forEach((d, n) => {
      if (d !== 0) tx.update(shardRefs[n], { stock: levels[n].stock + d });
    });
    const stock = levels.reduce((sum, l, n) => sum + l.stock + deltas[n], 0);
    const reserved = levels.reduce((sum, l) => sum + l.reserved, 0);
    // Stamped with this transaction's read time (the server's clock: the emulator's serverTimestamp is
    // not its commit time): an aggregation snapshot older than these locked reads never overwrites them.
    // One taken while this commits may; the aggregations of the shard writes below come after it.
    const aggregatedAt = productSnapshot.readTime;
    // A `stock` or `stockSynced` typed as text or a fraction ("12", 12.4) reads as the whole number but
    // still differs from the other to the edit trigger: written back as that number, or every run's
    // write would trigger the next.
    const storedAsRead = productSnapshot.get("stock") === product.stock && productSnapshot.get("stockSynced") === product.stockSynced;
    if (edit === 0 && storedAsRead && stock === product.stock && reserved === product.reserved && stock === product.stockSynced) {
      tx.update(ref, { aggregatedAt });
      return "unchanged";
    }
    tx.update(ref, { stock, reserved, stockSynced: stock, aggregatedAt });
    return edit === 0 ? "aggregated" : "operator_edit_applied";
  });
}

export type AggregateOutcome = "not_sharded" | "unchanged" | "superseded" | "aggregated" | `reconciled:${ReconcileOutcome}`;

/**
 * Production Firestore sustains about one write a second to one document: a hot product's document
 * is aggregated at most this often, however fast its shards are written (see aggregateShards).
 */
export const AGGREGATE_MIN_INTERVAL_MS = 1000;

export interface AggregateOptions {
  /** When the shard write that started this run happened: a later aggregation already covers it. */
  changedAt?: Timestamp;
  /** Aggregations of one product are at least this far apart (the trigger passes AGGREGATE_MIN_INTERVAL_MS). */
  minIntervalMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

/**
 * What the shard trigger runs: sets the product document to its shards' sums. The shards are read
 * without locks, as one snapshot with the product: a transaction reading every shard would make each
 * sale of the product wait for each aggregation, during a flash sale twice per order. The write
 * carries the snapshot's time and a snapshot never overwrites a newer one, so after a burst of shard
 * writes the last aggregation leaves the exact sums, whatever order the triggers ran in. An operator
 * edit not yet spread over the shards goes to `reconcileProduct`, which locks them: a lost run of the
 * edit trigger is made up by the next shard write.
 *
 * During a sale every shard write starts a run. A run that comes less than `minIntervalMs` after the
 * last aggregation waits out the rest of the interval, then does nothing if an aggregation taken after
 * its shard write has landed meanwhile: a burst of N shard writes costs about one product write a
 * second, and the last run still leaves the exact sums. The write is an optimistic transaction, so the
 * runs that wake together do not lock each other out: one writes, the others find it and stop.
 */
export async function aggregateShards(db: Firestore, sku: string, options: AggregateOptions = {}): Promise<AggregateOutcome> {
  const ref = productRef(db, sku);
  const { changedAt, minIntervalMs = 0, sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)) } = options;
  let first = await ref.get();
  const covered = (aggregatedAt: Timestamp | undefined) => changedAt !== undefined && aggregatedAt !== undefined && aggregatedAt.valueOf() >= changedAt.valueOf();
  if (covered(first.data()?.aggregatedAt)) return "superseded";
  const last = first.data()?.aggregatedAt;
  const since = last === undefined ? Infinity : first.readTime.toMillis() - last.toMillis();
  // Never more than one interval: an `aggregatedAt` ahead of this read (clock skew, a hand edit) must not stall the run.
  if (since < minIntervalMs) {
    await sleep(Math.min(minIntervalMs, minIntervalMs - since));
    first = await ref.get();
    if (covered(first.data()?.aggregatedAt)) return "superseded";
  }
  const shards = first.data()?.shards ?? 1;
  if (shards <= 1) return "not_sharded";
  const [productSnapshot, ...shardSnapshots] = await db.getAll(ref.withConverter(null), ...Array.from({ length: shards }, (_, n) => stockShardRef(db, sku, n)));
  const data = productSnapshot.data();
  if (data === undefined) return "not_sharded";
  const product = productFromData(sku, data);
  if (editPending(product)) return `reconciled:${await reconcileProduct(db, sku)}`;
  const stock = shardSnapshots.reduce((sum, s) => sum + toCount(s.get("stock")), 0);
  const reserved = shardSnapshots.reduce((sum, s) => sum + toCount(s.get("reserved")), 0);
  // Equal figures are only settled when the last aggregation saw every shard write in this snapshot:
  // otherwise an older aggregation still in flight could commit its figures after this one returned.
  const lastShardWrite = shardSnapshots.reduce((latest, s) => (s.updateTime !== undefined && s.updateTime.valueOf() > latest ? s.updateTime.valueOf() : latest), "");
  const settled = product.aggregatedAt !== undefined && product.aggregatedAt.valueOf() >= lastShardWrite;
  if (settled && product.stock === stock && product.reserved === reserved && product.stockSynced === stock) return "unchanged";
  const snapshotTime = productSnapshot.readTime;
  const outcome = await runOptimistic(db, async (tx): Promise<AggregateOutcome | "edit_pending"> => {
    const current = (await tx.get(ref)).data();
    if (current === undefined) return "not_sharded";
    if (editPending(current)) return "edit_pending";
    if (current.aggregatedAt !== undefined && current.aggregatedAt.valueOf() >= snapshotTime.valueOf()) return "superseded";
    // Runs that woke together: the one that wrote first took a snapshot that already holds this run's shard write.
    if (covered(current.aggregatedAt)) return "superseded";
    tx.update(ref, { stock, reserved, stockSynced: stock, aggregatedAt: snapshotTime });
    return "aggregated";
  });
  return outcome === "edit_pending" ? `reconciled:${await reconcileProduct(db, sku)}` : outcome;
}

/** An operator changed `stock` and the change is not in the shards yet (or the product predates `stockSynced`). */
function editPending(product: { stock: number; stockSynced?: number }): boolean {
  return product.stockSynced === undefined || product.stock !== product.stockSynced;
}
