import type { Firestore } from "firebase-admin/firestore";
import { notificationRef, type Notification } from "../collections/notifications";
import type { NotificationProvider } from "./providers";

export interface DeliveryDeps {
  db: Firestore;
  now: () => Date;
  provider: NotificationProvider;
}

export type DeliveryOutcome = "sent" | "failed" | "skipped";

/**
 * Handler of the `notifications/{id}` create trigger. The claim (`queued` → `sending`) is a
 * transaction, so a redelivered trigger or a concurrent worker cannot send the same notification twice.
 */
export async function deliverNotification(deps: DeliveryDeps, id: string): Promise<DeliveryOutcome> {
  const { db } = deps;
  const ref = notificationRef(db, id);
  const claimed = await db.runTransaction(async (tx): Promise<Notification | null> => {
    const current = (await tx.get(ref)).data();
    if (current === undefined || current.status !== "queued") return null;
    const attempts = current.attempts + 1;
    tx.update(ref, { status: "sending", attempts, claimedAt: deps.now() });
    return { ...current, status: "sending", attempts };
  });
  if (claimed === null) return "skipped";
  try {
    await deps.provider.send(claimed);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    await ref.update({ status: "failed", lastError: `${deps.provider.name}: ${message}`, failedAt: deps.now() });
    return "failed";
  }
  await ref.update({ status: "sent", sentAt: deps.now(), provider: deps.provider.name });
  return "sent";
}
