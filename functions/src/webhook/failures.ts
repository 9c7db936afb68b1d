import { toDate } from "../collections/firestoreValues";
import { deadLetterRef, type DeadLetter, type DeadLetterStatus } from "../collections/deadLetters";
import { webhookEventRef } from "../collections/webhookEvents";
import type { EventMeta } from "../domain/commands";
import { DeferredError, type AppError } from "../errors";
import { isDecidedRecord, PARKED_RESULT, queueNotifications, resolveLetterOfRecordedEvent, writeEventRecord, type PipelineDeps } from "./applyEvent";

export interface FailureOptions {
  /** Failed deliveries of one event before its dead letter is `dead`. */
  maxDeliveryAttempts: number;
}

export interface FailureRecord {
  attempts: number;
  status: DeadLetterStatus;
  /** The event was parked: acknowledged to Stripe (200) and left for an operator to replay. */
  parked: boolean;
}

/**
 * Counts a failed delivery in `deadLetters/{eventId}`, outside the transaction that failed, keeping
 * the verified payload for replay. A deferred event that keeps failing is parked: its webhookEvents
 * record says `rejected`/`dead_lettered`, so Stripe stops retrying it for days and an admin is alerted.
 * Parking writes no audit entry: the dead letter is the record, and the replay that finally applies
 * the event writes its one audit entry.
 * Transient failures are never parked here: Stripe keeps retrying them and the dead letter shows it.
 */
export async function recordFailedDelivery(
  deps: PipelineDeps & { failure: FailureOptions },
  meta: EventMeta,
  rawBody: string,
  error: AppError,
  receivedAt: Date,
): Promise<FailureRecord> {
  const { db } = deps;
  const letterRef = deadLetterRef(db, meta.id);
  const eventRef = webhookEventRef(db, meta.id);
  return db.runTransaction(async (tx) => {
    const [letter, event] = await Promise.all([tx.get(letterRef), tx.get(eventRef)]);
    const now = deps.now();
    // The event is recorded, so the failing delivery applied it (its commit landed, its answer was
    // lost) or a concurrent copy did: nothing failed that a retry must fix. Stripe's redelivery answers
    // `duplicate`; a letter an earlier count left is resolved.
    if (isDecidedRecord(event)) {
      resolveLetterOfRecordedEvent(tx, event, letter, now);
      return { attempts: letter.exists ? Number(letter.get("attempts") ?? 0) : 0, status: "replayed", parked: false };
    }
    const earlierAttempts = letter.exists ? Number(letter.get("attempts") ?? 0) : 0;
    // The event is parked, not decided: copies at two instances failed together and the other's count
    // reached the limit first. That one answered Stripe 200 and left the letter (`dead`, not retryable,
    // its order) for the replay; this copy is answered the same and rewrites nothing.
    if (event.exists) return { attempts: earlierAttempts, status: "dead", parked: true };
    const attempts = earlierAttempts + 1;
    const exhausted = attempts >= deps.failure.maxDeliveryAttempts;
    const deferred = error instanceof DeferredError;
    const parked = deferred && exhausted;
    const status: DeadLetterStatus = exhausted ? "dead" : "retrying";
    const data: DeadLetter = {
      type: meta.type,
      attempts,
      lastError: `${error.code}: ${error.message}`,
      retryable: !parked,
      firstFailedAt: letter.exists ? toDate(letter.get("firstFailedAt")) : now,
      lastFailedAt: now,
      payload: rawBody,
      status,
      orderId: deferred ? error.orderId : null,
    };
    tx.set(letterRef, data);
    if (parked) {
      const orderId = deferred ? error.orderId : null;
      writeEventRecord(tx, eventRef, deps, meta, receivedAt, { status: "rejected", result: PARKED_RESULT, orderId });
      queueNotifications(
        tx,
        db,
        [{ id: `dead_letter:${meta.id}`, kind: "admin_alert", orderId, userId: null, eventId: meta.id, detail: `dead-lettered after ${attempts} attempts: ${data.lastError}` }],
        now,
      );
    }
    return { attempts, status, parked };
  });
}

