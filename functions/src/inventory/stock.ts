import { FieldValue, type Firestore, type Transaction } from "firebase-admin/firestore";
import { productRef, type StockLevel } from "../collections/products";
import type { StockChange } from "../domain/orderMachine";

/** Reads the stock of the given SKUs inside a transaction; a SKU without a product is absent from the map. */
export async function readStock(tx: Transaction, db: Firestore, skus: Iterable<string>): Promise<Map<string, StockLevel>> {
  const refs = [...new Set(skus)].map((sku) => productRef(db, sku));
  const levels = new Map<string, StockLevel>();
  if (refs.length === 0) return levels;
  const snapshots = await tx.getAll(...refs);
  for (const snapshot of snapshots) {
    const product = snapshot.data();
    if (product) levels.set(product.sku, { stock: product.stock, reserved: product.reserved });
  }
  return levels;
}

/** Applies signed deltas; the decision has already checked that none goes below zero. */
export function writeStockChanges(tx: Transaction, db: Firestore, changes: readonly StockChange[]): void {
  for (const change of changes) {
    const update: Record<string, FieldValue> = {};
    if (change.stock !== 0) update.stock = FieldValue.increment(change.stock);
    if (change.reserved !== 0) update.reserved = FieldValue.increment(change.reserved);
    if (Object.keys(update).length > 0) tx.update(productRef(db, change.sku), update);
  }
}
