import type { Firestore } from "firebase-admin/firestore";
import { NOTIFICATIONS, notificationRef, queuedNotification, type Notification } from "../collections/notifications";
import type { NotificationProvider } from "./providers";

export interface DeliveryOptions {
  /** Attempts before a notification is `dead` and an admin is alerted. */
  maxAttempts: number;
  /** Backoff after the first failure; doubled after each further one. */
  baseBackoffMs: number;
  /** A `sending` claim older than this is considered lost (crashed worker) and re-driven. */
  stuckAfterMs: number;
}

export const DEFAULT_DELIVERY_OPTIONS: DeliveryOptions = { maxAttempts: 5, baseBackoffMs: 60_000, stuckAfterMs: 10 * 60_000 };

export interface DeliveryDeps {
  db: Firestore;
  now: () => Date;
  provider: NotificationProvider;
  options: DeliveryOptions;
}

export type DeliveryOutcome = "sent" | "failed" | "dead" | "skipped";

/** `trigger`: the create trigger (only `queued` is claimable); `redrive`: the scheduled re-drive. */
export type DeliveryMode = "trigger" | "redrive";

function claimable(n: Notification, mode: DeliveryMode, now: Date, options: DeliveryOptions): boolean {
  if (n.status === "queued") return true;
  if (mode !== "redrive") return false;
  if (n.status === "failed") return (n.nextAttemptAt?.getTime() ?? 0) <= now.getTime();
  if (n.status === "sending") return (n.claimedAt?.getTime() ?? 0) <= now.getTime() - options.stuckAfterMs;
  return false;
}

export function backoffMs(attempts: number, options: DeliveryOptions): number {
  return options.baseBackoffMs * 2 ** Math.max(0, attempts - 1);
}

/**
 * Delivers one notification. The claim (→ `sending`) is a transaction, so a redelivered trigger, the
 * re-drive and a concurrent worker can never send the same notification twice at once.
 */
export async function deliverNotification(deps: DeliveryDeps, id: string, mode: DeliveryMode = "trigger"): Promise<DeliveryOutcome> {
  const { db, options } = deps;
  const ref = notificationRef(db, id);
  const claimed = await db.runTransaction(async (tx): Promise<Notification | null> => {
    const current = (await tx.get(ref)).data();
    const now = deps.now();
    if (current === undefined || !claimable(current, mode, now, options)) return null;
    const attempts = current.attempts + 1;
    tx.update(ref, { status: "sending", attempts, claimedAt: now });
    return { ...current, status: "sending", attempts, claimedAt: now };
  });
  if (claimed === null) return "skipped";
  try {
    await deps.provider.send(claimed);
  } catch (error) {
    return recordFailure(deps, claimed, error instanceof Error ? error.message : String(error), isPermanent(error));
  }
  await ref.update({ status: "sent", sentAt: deps.now(), provider: deps.provider.name });
  return "sent";
}

/** Providers mark failures no retry can fix (unknown recipient, a 5xx refusal) with `permanent: true`. */
function isPermanent(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { permanent?: unknown }).permanent === true;
}

async function recordFailure(deps: DeliveryDeps, n: Notification, message: string, permanent: boolean): Promise<DeliveryOutcome> {
  const { db, options } = deps;
  const now = deps.now();
  const lastError = `${deps.provider.name}: ${message}`;
  const ref = notificationRef(db, n.id);
  if (!permanent && n.attempts < options.maxAttempts) {
    await ref.update({ status: "failed", lastError, failedAt: now, nextAttemptAt: new Date(now.getTime() + backoffMs(n.attempts, options)) });
    return "failed";
  }
  await db.runTransaction(async (tx) => {
    const alertRef = notificationRef(db, `notification_dead:${n.id}`);
    // An alert about a dead alert would only queue another one that cannot be delivered either.
    const alert = n.kind === "admin_alert" ? undefined : await tx.get(alertRef);
    tx.update(ref, { status: "dead", lastError, failedAt: now });
    if (alert && !alert.exists) {
      tx.create(
        alertRef,
        queuedNotification(
          { id: alertRef.id, kind: "admin_alert", orderId: n.orderId, userId: null, eventId: n.eventId, detail: `notification ${n.id} is dead after ${n.attempts} attempts: ${lastError}` },
          now,
        ),
      );
    }
  });
  return "dead";
}

export interface RedriveReport {
  examined: number;
  sent: number;
  failed: number;
  dead: number;
  skipped: number;
}

/** The scheduled re-drive: failed notifications whose backoff has passed, and `sending` ones stuck past the timeout. */
export async function redriveNotifications(deps: DeliveryDeps, limit = 100): Promise<RedriveReport> {
  const now = deps.now();
  const collection = deps.db.collection(NOTIFICATIONS);
  const [failed, stuck] = await Promise.all([
    collection.where("status", "==", "failed").where("nextAttemptAt", "<=", now).orderBy("nextAttemptAt").limit(limit).get(),
    collection
      .where("status", "==", "sending")
      .where("claimedAt", "<=", new Date(now.getTime() - deps.options.stuckAfterMs))
      .orderBy("claimedAt")
      .limit(limit)
      .get(),
  ]);
  const report: RedriveReport = { examined: 0, sent: 0, failed: 0, dead: 0, skipped: 0 };
  for (const doc of [...failed.docs, ...stuck.docs]) {
    report.examined += 1;
    report[await deliverNotification(deps, doc.id, "redrive")] += 1;
  }
  return report;
}
