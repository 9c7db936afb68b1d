import type { DocumentReference, Firestore, FirestoreDataConverter, QueryDocumentSnapshot } from "firebase-admin/firestore";
import { toDate } from "./firestoreValues";

export const RATE_LIMITS = "rateLimits";

/**
 * `rateLimits/{uid}`: backend-only. The times of the user's recent new checkouts (payments and
 * subscriptions share it), newest last, at most the limit's worth inside the window.
 */
export interface RateLimitRecord {
  uid: string;
  checkouts: Date[];
  updatedAt: Date;
  /** TTL field: an idle user's record is deleted once nothing in it can count any more. */
  expireAt: Date;
}

export const rateLimitConverter: FirestoreDataConverter<RateLimitRecord> = {
  toFirestore(record) {
    const { uid: _uid, ...data } = record as RateLimitRecord;
    return data;
  },
  fromFirestore(snapshot: QueryDocumentSnapshot): RateLimitRecord {
    const d = snapshot.data();
    const checkouts = Array.isArray(d.checkouts) ? d.checkouts.map((t: unknown) => toDate(t)) : [];
    return { uid: snapshot.id, checkouts, updatedAt: toDate(d.updatedAt), expireAt: toDate(d.expireAt) };
  },
};

export function rateLimitRef(db: Firestore, uid: string): DocumentReference<RateLimitRecord> {
  return db.collection(RATE_LIMITS).doc(uid).withConverter(rateLimitConverter);
}
