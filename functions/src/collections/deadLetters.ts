import type { DocumentReference, Firestore } from "firebase-admin/firestore";

export const DEAD_LETTERS = "deadLetters";

export type DeadLetterStatus = "retrying" | "dead" | "replayed";

/** `deadLetters/{eventId}`: a verified event that failed to apply, with its raw payload for replay. */
export interface DeadLetter {
  type: string;
  attempts: number;
  lastError: string;
  retryable: boolean;
  firstFailedAt: Date;
  lastFailedAt: Date;
  /** The verified raw body, exactly as Stripe signed it. */
  payload: string;
  status: DeadLetterStatus;
  orderId: string | null;
}

export function deadLetterRef(db: Firestore, eventId: string): DocumentReference {
  return db.collection(DEAD_LETTERS).doc(eventId);
}
