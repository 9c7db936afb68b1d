import { Timestamp, type DocumentReference, type Firestore, type FirestoreDataConverter, type QueryDocumentSnapshot } from "firebase-admin/firestore";
import { PRODUCTS } from "./products";
import { toCount } from "./firestoreValues";

const STOCK_HINTS = "stockHints";
const SOLD_OUT = "soldOut";

/**
 * How long a sold-out marker may refuse new reservations, by Firestore's clock. One second: the
 * marker is rewritten about this often during a sell-out, by one request of all the instances
 * (publishSoldOut), which is the write rate production sustains on one document, and a unit released
 * meanwhile waits at most this long for its next buyer.
 */
export const SOLD_OUT_FRESH_MS = 1000;

/**
 * `products/{sku}/stockHints/soldOut`: backend-only. Written after a reservation commits whose lock-free
 * read of all of a sharded product's shards found no unit available in any of them (publishSoldOut);
 * `at` is that read's time and `shards` how many it read. Until it is SOLD_OUT_FRESH_MS old, a new
 * reservation of the product may be refused on it instead of reading every shard again (contract
 * deviation 14). Nothing else reads it, and no sale or release writes it: it ages out, so the shards
 * stay the only stock.
 */
export interface SoldOutMarker {
  shards: number;
  at: Timestamp;
}

export const soldOutConverter: FirestoreDataConverter<SoldOutMarker> = {
  toFirestore(marker) {
    const { shards, at } = marker as SoldOutMarker;
    return { shards, at };
  },
  fromFirestore(snapshot: QueryDocumentSnapshot): SoldOutMarker {
    const at = snapshot.get("at");
    // Something unreadable is a marker from the beginning of time: too old to refuse anybody.
    return { shards: toCount(snapshot.get("shards")), at: at instanceof Timestamp ? at : Timestamp.fromMillis(0) };
  },
};

export function soldOutRef(db: Firestore, sku: string): DocumentReference<SoldOutMarker> {
  return db.collection(PRODUCTS).doc(sku).collection(STOCK_HINTS).doc(SOLD_OUT).withConverter(soldOutConverter);
}

/**
 * Whether `marker`, read at `readAt`, refuses a new reservation of a product split into `shards`: it
 * was written for that many shards and at most `freshMs` before the read. Both times are Firestore's,
 * so no instance's clock is trusted; a marker that seems to come after its own read is not. Pure.
 */
export function soldOutRefuses(marker: SoldOutMarker | undefined, shards: number, readAt: Timestamp, freshMs: number = SOLD_OUT_FRESH_MS): boolean {
  if (marker === undefined || marker.shards !== shards) return false;
  const age = readAt.toMillis() - marker.at.toMillis();
  return age >= 0 && age <= freshMs;
}
