import { Timestamp, type DocumentReference, type Firestore, type FirestoreDataConverter, type QueryDocumentSnapshot } from "firebase-admin/firestore";
import { toCount, withoutUndefined } from "./firestoreValues";

export const PRODUCTS = "products";

/** `products/{sku}`: written by the operator (console) or the seed script; the backend only moves stock. */
export interface Product {
  sku: string;
  name: string;
  /**
   * Unit price in integer minor units (> 0). Absent, or not a positive integer: the product is not for
   * sale (checkout refuses it) — an operator typo must never sell at a made-up price.
   */
  price?: number;
  /** Lowercase ISO 4217 of `price`. */
  currency?: string;
  /** Offered for sale; absent means true. Stock keeps moving for orders already placed. */
  active: boolean;
  /** Units on hand. Finalizing a payment decrements it. */
  stock: number;
  /** Units held by orders in status `reserved`. available = stock − reserved. */
  reserved: number;
  /**
   * Stock shards of a hot product (> 1): its units live in `products/{sku}/stockShards/{n}` and this
   * document's figures are their sums, kept up to date by triggers. 1 (or absent): not sharded.
   */
  shards: number;
  /** For sharded products: the stock total the shards hold; an operator edit of `stock` differs from it. */
  stockSynced?: number;
  /**
   * For plain products: `reserved` as this backend's own movements left it (each one moves both by the
   * same amount). Equal to `reserved`, the reservations it counts are exactly the orders holding units,
   * so a held reservation's payment may skip the version guard (inventory/stock.ts, heldVersionFree); an
   * operator's edit of `reserved`, or a product written before the field existed, makes them differ.
   */
  reservedSynced?: number;
  /** For sharded products: the time of the shard snapshot `stock`/`reserved` were summed from. */
  aggregatedAt?: Timestamp;
}

export interface StockLevel {
  stock: number;
  reserved: number;
}

/** A product from its stored fields; tolerant of what an operator may type in the console. */
export function productFromData(sku: string, data: Record<string, unknown>): Product {
  return {
    sku,
    name: typeof data.name === "string" ? data.name : sku,
    ...priceFromData(data),
    active: data.active !== false,
    stock: toCount(data.stock),
    reserved: toCount(data.reserved),
    shards: Math.max(1, toCount(data.shards)),
    ...(data.stockSynced === undefined ? {} : { stockSynced: toCount(data.stockSynced) }),
    ...(typeof data.reservedSynced === "number" ? { reservedSynced: data.reservedSynced } : {}),
    ...(data.aggregatedAt instanceof Timestamp ? { aggregatedAt: data.aggregatedAt } : {}),
  };
}

/** The stored counts a movement writes as values rather than increments (see countsToRewrite). */
export interface CountsToRewrite {
  stock?: number;
  reserved?: number;
}

/**
 * Which of `stock` and `reserved` are not stored as the whole number productFromData reads from them,
 * each with that number: a string or a fraction an operator typed in the console. Firestore's increment
 * replaces a value that is not a number with the increment itself (a `"10"` in stock less 2 would store
 * -2), and adds to a fraction a whole number the decisions never saw (10.5 less 2 stores 8.5, read as
 * 8). So a movement writes these fields as whole numbers, under the version it read. A missing field
 * needs no rewrite: an increment of it starts from 0, as the count read does.
 */
export function countsToRewrite(data: Record<string, unknown>): CountsToRewrite {
  const rewrite: CountsToRewrite = {};
  for (const field of ["stock", "reserved"] as const) {
    const value = data[field];
    if (value !== undefined && value !== null && !Number.isSafeInteger(value)) rewrite[field] = toCount(value);
  }
  return rewrite;
}

/** Price and currency only when both are usable; a lone or malformed one means "no price". "USD" typed in the console is "usd". */
function priceFromData(data: Record<string, unknown>): { price?: number; currency?: string } {
  const { price, currency } = data;
  if (typeof price !== "number" || !Number.isSafeInteger(price) || price <= 0) return {};
  if (typeof currency !== "string" || !/^[A-Za-z]{3}$/.test(currency)) return {};
  return { price, currency: currency.toLowerCase() };
}

export const productConverter: FirestoreDataConverter<Product> = {
  toFirestore(product) {
    const { sku: _sku, ...data } = product as Product;
    return withoutUndefined(data);
  },
  fromFirestore(snapshot: QueryDocumentSnapshot): Product {
    return productFromData(snapshot.id, snapshot.data());
  },
};

export function productRef(db: Firestore, sku: string): DocumentReference<Product> {
  return db.collection(PRODUCTS).doc(sku).withConverter(productConverter);
}

export const STOCK_SHARDS = "stockShards";

/** `products/{sku}/stockShards/{n}`: one slice of a hot product's stock, with the same `stock` and `reserved`. */
export function stockShardRef(db: Firestore, sku: string, shard: number): DocumentReference {
  return db.collection(PRODUCTS).doc(sku).collection(STOCK_SHARDS).doc(String(shard));
}
