import { createHash } from "node:crypto";
import { FieldValue, type DocumentReference, type Firestore, type Transaction } from "firebase-admin/firestore";
import { productRef, stockShardRef, type StockLevel } from "../collections/products";
import type { StockChange } from "../domain/orderMachine";
import { toCount } from "../collections/firestoreValues";

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
  /** Shards the order already holds units in (from its reservation). */
  held?: Readonly<Record<string, number>>;
  /** Spreads orders over shards deterministically (the order id). */
  key: string;
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

export async function planStock(tx: Transaction, db: Firestore, request: StockRequest): Promise<StockPlan> {
  const skus = [...request.quantities.keys()];
  const counts = await shardCounts(db, skus);
  const plan: StockPlan = { levels: new Map(), refs: new Map(), shards: {} };
  const plain = skus.filter((sku) => (counts.get(sku) ?? 1) <= 1);
  if (plain.length > 0) {
    const snapshots = await tx.getAll(...plain.map((sku) => productRef(db, sku)));
    for (const snapshot of snapshots) {
      const product = snapshot.data();
      plan.refs.set(snapshot.id, snapshot.ref);
      if (product) plan.levels.set(product.sku, { stock: product.stock, reserved: product.reserved });
    }
  }
  for (const sku of skus.filter((s) => (counts.get(s) ?? 1) > 1)) {
    const n = counts.get(sku) as number;
    const qty = request.quantities.get(sku) ?? 0;
    const held = request.held?.[sku];
    // Units already reserved live in one shard; otherwise probe from a per-order start for one that fits.
    const order = held !== undefined ? [held] : Array.from({ length: n }, (_, i) => (startShard(request.key, sku, n) + i) % n);
    let chosen: { shard: number; level: StockLevel; ref: DocumentReference } | null = null;
    for (const shard of order) {
      const ref = stockShardRef(db, sku, shard);
      const data = (await tx.get(ref)).data();
      const level = { stock: toCount(data?.stock), reserved: toCount(data?.reserved) };
      chosen ??= { shard, level, ref };
      if (held !== undefined || level.stock - level.reserved >= qty) {
        chosen = { shard, level, ref };
        break;
      }
    }
    if (chosen === null) continue;
    plan.levels.set(sku, chosen.level);
    plan.refs.set(sku, chosen.ref);
    plan.shards[sku] = chosen.shard;
  }
  return plan;
}

/** Applies signed deltas where the plan read them; the decision has already checked that none goes below zero. */
export function writeStockChanges(tx: Transaction, plan: StockPlan, changes: readonly StockChange[]): void {
  for (const change of changes) {
    const ref = plan.refs.get(change.sku);
    if (ref === undefined) throw new Error(`No stock location planned for ${change.sku}`);
    const update: Record<string, FieldValue> = {};
    if (change.stock !== 0) update.stock = FieldValue.increment(change.stock);
    if (change.reserved !== 0) update.reserved = FieldValue.increment(change.reserved);
    if (Object.keys(update).length > 0) tx.update(ref, update);
  }
}

