import type Stripe from "stripe";
import { deadLetterRef } from "../collections/deadLetters";
import { webhookEventRef } from "../collections/webhookEvents";
import { DeferredError } from "../errors";
import { applyVerifiedEvent, type VerifiedEventDeps } from "../subscriptions/dispatch";
import { isDecidedRecord, type ApplyOutcome } from "./applyEvent";

export type ReplayOutcome = ApplyOutcome | { status: "deferred"; result: string; orderId: string | null; attempt: null };

export class NoDeadLetterError extends Error {}

/** The letter is `replayed` and its event's webhookEvents record is gone: a replay would decide the event again. */
export class AlreadyReplayedError extends Error {}

/**
 * Re-applies a dead-lettered event from its stored, verified payload through the same pipeline as a
 * delivery. Idempotent: once applied, a second replay answers `duplicate` and changes nothing, and once
 * the applied event's record has expired it is refused (AlreadyReplayedError).
 */
export async function replayDeadLetter(deps: VerifiedEventDeps, eventId: string): Promise<ReplayOutcome> {
  const letter = await deadLetterRef(deps.db, eventId).get();
  const payload = letter.get("payload");
  if (!letter.exists || typeof payload !== "string") {
    throw new NoDeadLetterError(`deadLetters/${eventId} does not exist: only a dead-lettered event keeps the payload a replay needs.`);
  }
  if (letter.get("status") === "replayed") {
    // The event was decided when its letter was resolved. Its record is what makes another run a no-op;
    // past the record's TTL the pipeline would decide the event again (a second audit entry, ...), so a
    // resolved letter never reaches it.
    if (isDecidedRecord(await webhookEventRef(deps.db, eventId).get())) return { status: "duplicate", orderId: null, result: null, attempt: null };
    throw new AlreadyReplayedError(
      `deadLetters/${eventId} was already replayed and its webhookEvents record has expired: replaying it would apply the event a second time.`,
    );
  }
  // The payload was verified when it was received; it is re-read from our own store, not from a caller.
  const event = JSON.parse(payload) as Stripe.Event;
  try {
    // The same dispatch as a delivery: a parked subscription event replays through the subscription pipeline.
    return await applyVerifiedEvent(deps, event, deps.now(), { replay: true });
  } catch (error) {
    if (!(error instanceof DeferredError)) throw error;
    await letter.ref.update({ lastError: `deferred: ${error.message}`, lastReplayAt: deps.now() });
    return { status: "deferred", result: error.reason, orderId: error.orderId, attempt: null };
  }
}
