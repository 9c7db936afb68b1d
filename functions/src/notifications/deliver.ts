import type { Firestore } from "firebase-admin/firestore";
import { NOTIFICATIONS, notificationRef, queuedNotification, type Notification } from "../collections/notifications";
import type { NotificationProvider } from "./providers";
import { eachPaged, messageOf, passOver, UNLIMITED, type SweepOptions, type SweepRun } from "../sweeps";

export interface DeliveryOptions {
  /** Attempts before a notification is `dead` and an admin is alerted. */
  maxAttempts: number;
  /** Backoff after the first failure; doubled after each further one. */
  baseBackoffMs: number;
  /** A `sending` claim older than this is considered lost (crashed worker) and re-driven. */
  stuckAfterMs: number;
  /**
   * How long one send may take before it counts as failed. Kept well under `stuckAfterMs`, so a claim
   * is re-driven only when its worker is gone, never while a slow provider is still sending it.
   */
  sendTimeoutMs: number;
}

export const DEFAULT_DELIVERY_OPTIONS: DeliveryOptions = { maxAttempts: 5, baseBackoffMs: 60_000, stuckAfterMs: 10 * 60_000, sendTimeoutMs: 2 * 60_000 };

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
    await withDeadline(deps.provider.send(claimed), options.sendTimeoutMs);
  } catch (error) {
    return recordFailure(deps, claimed, error instanceof Error ? error.message : String(error), isPermanent(error), error instanceof SendTimeout);
  }
  await ref.update({ status: "sent", sentAt: deps.now(), provider: deps.provider.name });
  return "sent";
}

/** A send that outlived `sendTimeoutMs`: it may still have reached the recipient, so its retry waits. */
class SendTimeout extends Error {}

function withDeadline(send: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SendTimeout(`no answer from the provider within ${ms} ms (outcome unknown)`)), ms);
  });
  return Promise.race([send, deadline]).finally(() => clearTimeout(timer));
}

/** Providers mark failures no retry can fix (unknown recipient, a 5xx refusal) with `permanent: true`. */
function isPermanent(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { permanent?: unknown }).permanent === true;
}

async function recordFailure(deps: DeliveryDeps, n: Notification, message: string, permanent: boolean, timedOut: boolean): Promise<DeliveryOutcome> {
  const { db, options } = deps;
  const now = deps.now();
  const lastError = `${deps.provider.name}: ${message}`;
  const ref = notificationRef(db, n.id);
  if (!permanent && n.attempts < options.maxAttempts) {
    // After a timeout the provider may still be at it: retry only once any send of it has surely ended.
    const wait = timedOut ? Math.max(backoffMs(n.attempts, options), options.stuckAfterMs) : backoffMs(n.attempts, options);
    await ref.update({ status: "failed", lastError, failedAt: now, nextAttemptAt: new Date(now.getTime() + wait) });
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

export interface RedriveReport extends SweepRun {
  examined: number;
  sent: number;
  failed: number;
  dead: number;
  skipped: number;
}

/** Pages of notifications of each kind (failed, stuck) one re-drive reads at most. */
const MAX_PAGES = 5;

/**
 * The scheduled re-drive: failed notifications whose backoff has passed and `sending` ones stuck past
 * the timeout, each kind oldest first. One whose delivery throws stays as it was and is paged past
 * (sweeps.ts).
 */
export async function redriveNotifications(deps: DeliveryDeps, { pageSize = 100, budget = UNLIMITED }: SweepOptions = {}): Promise<RedriveReport> {
  const now = deps.now();
  const collection = deps.db.collection(NOTIFICATIONS);
  const failed = collection.where("status", "==", "failed").where("nextAttemptAt", "<=", now).orderBy("nextAttemptAt");
  const stuck = collection
    .where("status", "==", "sending")
    .where("claimedAt", "<=", new Date(now.getTime() - deps.options.stuckAfterMs))
    .orderBy("claimedAt");
  const report: RedriveReport = { examined: 0, sent: 0, failed: 0, dead: 0, skipped: 0, failures: [], complete: true };
  const redrive = async (doc: { id: string }) => {
    report.examined += 1;
    try {
      report[await deliverNotification(deps, doc.id, "redrive")] += 1;
    } catch (error) {
      passOver(report.failures, doc.id, error);
    }
  };
  // Side by side, so that a backlog of either kind does not spend the budget before the other's turn.
  // When one fails (Firestore itself failing), the other starts no further item, and both have ended
  // before the run reports.
  let failing = false;
  const paging = { pageSize, maxPages: MAX_PAGES, budget: { spent: () => failing || budget.spent() } };
  const side = (query: typeof failed) =>
    eachPaged(query, paging, redrive).catch((error: unknown) => {
      failing = true;
      throw error;
    });
  const [failedRun, stuckRun] = await Promise.allSettled([side(failed), side(stuck)]);
  if (failedRun.status === "rejected" && stuckRun.status === "rejected") {
    // The run's line names both causes and which query each came from: usually one outage, not always.
    throw new AggregateError(
      [failedRun.reason, stuckRun.reason],
      `Both re-drive queries failed: failed notifications: ${messageOf(failedRun.reason)}; stuck notifications: ${messageOf(stuckRun.reason)}`,
    );
  }
  if (failedRun.status === "rejected") throw failedRun.reason;
  if (stuckRun.status === "rejected") throw stuckRun.reason;
  report.complete = failedRun.value && stuckRun.value;
  return report;
}
