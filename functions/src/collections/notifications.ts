import type { DocumentReference, Firestore, FirestoreDataConverter, QueryDocumentSnapshot } from "firebase-admin/firestore";
import { toCount, toDate, toOptionalDate, withoutUndefined } from "./firestoreValues";

export const NOTIFICATIONS = "notifications";

export type NotificationKind =
  | "order_confirmed"
  | "payment_failed"
  | "order_canceled"
  | "refund_issued"
  | "admin_alert"
  | "subscription_activated"
  | "grace_ended"
  | "trial_will_end"
  | "payment_action_required";

export type NotificationStatus = "queued" | "sending" | "sent" | "failed" | "dead";

/** What the order decision asks to be sent; its `id` is deterministic so a retry can never queue it twice. */
export interface NotificationDraft {
  id: string;
  kind: NotificationKind;
  orderId: string | null;
  userId: string | null;
  eventId: string | null;
  /** Short human-readable reason, mostly for admin alerts. */
  detail: string | null;
}

/** `notifications/{id}`: queued by the backend, delivered by the notification trigger. */
export interface Notification extends NotificationDraft {
  status: NotificationStatus;
  attempts: number;
  createdAt: Date;
  sentAt?: Date;
  lastError?: string;
  /** When a `sending` claim was taken: a claim older than the stuck timeout is re-driven. */
  claimedAt?: Date;
  /** When a `failed` notification may be tried again (exponential backoff). */
  nextAttemptAt?: Date;
}

export const notificationConverter: FirestoreDataConverter<Notification> = {
  toFirestore(notification) {
    const { id: _id, ...data } = notification as Notification;
    return withoutUndefined(data);
  },
  fromFirestore(snapshot: QueryDocumentSnapshot): Notification {
    const d = snapshot.data();
    return withoutUndefined({
      id: snapshot.id,
      kind: d.kind as NotificationKind,
      orderId: typeof d.orderId === "string" ? d.orderId : null,
      userId: typeof d.userId === "string" ? d.userId : null,
      eventId: typeof d.eventId === "string" ? d.eventId : null,
      detail: typeof d.detail === "string" ? d.detail : null,
      status: d.status as NotificationStatus,
      attempts: toCount(d.attempts),
      createdAt: toDate(d.createdAt),
      sentAt: toOptionalDate(d.sentAt),
      lastError: typeof d.lastError === "string" ? d.lastError : undefined,
      claimedAt: toOptionalDate(d.claimedAt),
      nextAttemptAt: toOptionalDate(d.nextAttemptAt),
    }) as Notification;
  },
};

export function notificationRef(db: Firestore, id: string): DocumentReference<Notification> {
  return db.collection(NOTIFICATIONS).doc(id).withConverter(notificationConverter);
}

export function queuedNotification(draft: NotificationDraft, now: Date): Notification {
  return { ...draft, status: "queued", attempts: 0, createdAt: now };
}
