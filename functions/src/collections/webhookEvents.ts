import type { DocumentReference, Firestore } from "firebase-admin/firestore";

export const WEBHOOK_EVENTS = "webhookEvents";

export type WebhookEventStatus = "processed" | "ignored" | "rejected";

/**
 * `webhookEvents/{eventId}`: created in the same transaction that applies the event, so its
 * existence is the proof that the event was applied (or deliberately not).
 */
export interface WebhookEventRecord {
  type: string;
  status: WebhookEventStatus;
  result: string;
  orderId: string | null;
  /** The subscription a subscription event touched (customers/{uid}/subscriptions/{id}). */
  subscriptionId?: string | null;
  receivedAt: Date;
  processedAt: Date;
  /** Stripe's `created` (seconds resolution), kept as a Timestamp. */
  eventCreated: Date;
  livemode: boolean;
  /** TTL field: Firestore deletes the record after this instant (policy in firestore.indexes.json). */
  expireAt: Date;
}

export function webhookEventRef(db: Firestore, eventId: string): DocumentReference {
  return db.collection(WEBHOOK_EVENTS).doc(eventId);
}
