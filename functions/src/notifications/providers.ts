import type { Notification } from "../collections/notifications";

/** Where notifications go. Implementations throw to report a failed delivery. */
export interface NotificationProvider {
  readonly name: string;
  send(notification: Notification): Promise<void>;
}

export type StructuredLog = (message: string, fields: Record<string, unknown>) => void;

/** The default provider (and the emulator's): one structured log line per notification. */
export function logProvider(log: StructuredLog): NotificationProvider {
  return {
    name: "log",
    async send(notification) {
      log("notification delivered", {
        notification_id: notification.id,
        kind: notification.kind,
        order_id: notification.orderId,
        user_id: notification.userId,
        event_id: notification.eventId,
        detail: notification.detail,
        attempt: notification.attempts,
      });
    },
  };
}
