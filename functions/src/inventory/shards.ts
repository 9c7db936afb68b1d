import type { Firestore } from "firebase-admin/firestore";
import { toCount } from "../collections/firestoreValues";
import { productRef, stockShardRef, type StockLevel } from "../collections/products";

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
    const product = (await tx.get(ref)).data();
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
    if (edit === 0 && stock === product.stock && reserved === product.reserved && stock === product.stockSynced) return "unchanged";
    tx.update(ref, { stock, reserved, stockSynced: stock });
    return edit === 0 ? "aggregated" : "operator_edit_applied";
  });
}
