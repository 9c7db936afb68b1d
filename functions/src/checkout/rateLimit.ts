import type { Firestore, Transaction } from "firebase-admin/firestore";
import { rateLimitRef } from "../collections/rateLimits";
import { CheckoutError } from "./errors";

/**
 * Per-user limit on NEW checkouts (payments and subscriptions together): at most `limit` in any
 * sliding window. Kept in Firestore, so it holds across instances, and taken in the transaction that
 * creates the order, so a refused checkout creates nothing and a created one is always counted.
 */

export const RATE_LIMIT_WINDOW_MS = 60_000;

export type RateDecision = { allowed: true; checkouts: Date[] } | { allowed: false; retryAfterMs: number };

/** Pure: the recent checkouts (any order), now, the limit → the list to store, or how long to wait. */
export function decideRateLimit(recent: readonly Date[], now: Date, limit: number, windowMs = RATE_LIMIT_WINDOW_MS): RateDecision {
  if (limit < 1) return { allowed: false, retryAfterMs: windowMs };
  const since = now.getTime() - windowMs;
  // Times a little ahead of `now` (another instance's clock) still count.
  const inWindow = recent.filter((t) => t.getTime() > since).sort((a, b) => a.getTime() - b.getTime());
  if (inWindow.length >= limit) {
    // The slot frees when the oldest checkout that still counts leaves the window.
    const oldest = inWindow[inWindow.length - limit];
    return { allowed: false, retryAfterMs: Math.min(windowMs, Math.max(1, oldest.getTime() + windowMs - now.getTime())) };
  }
  return { allowed: true, checkouts: [...inWindow, now] };
}

/**
 * Reads `rateLimits/{uid}`, refuses (CheckoutError `rate_limited` → resource-exhausted) or records one
 * more checkout at `now`, inside the caller's transaction. Firestore transactions read before they
 * write: call it after the transaction's other reads and before its writes.
 * Shared by `createCheckout` and `createSubscriptionCheckout`.
 */
export async function takeCheckoutSlot(tx: Transaction, db: Firestore, uid: string, now: Date, limitPerMinute: number): Promise<void> {
  const ref = rateLimitRef(db, uid);
  const record = (await tx.get(ref)).data();
  const decision = decideRateLimit(record?.checkouts ?? [], now, limitPerMinute);
  if (!decision.allowed) {
    const retryAfterSeconds = Math.ceil(decision.retryAfterMs / 1000);
    throw new CheckoutError("rate_limited", `At most ${limitPerMinute} new checkouts a minute; try again in ${retryAfterSeconds} s.`, {
      reason: "rate_limited",
      retryAfterSeconds,
    });
  }
  tx.set(ref, { uid, checkouts: decision.checkouts, updatedAt: now, expireAt: new Date(now.getTime() + RATE_LIMIT_WINDOW_MS) });
}
