import type { CollectionReference, Firestore } from "firebase-admin/firestore";
import type { OrderStatus } from "./orders";

export const AUDIT_LOG = "auditLog";

/** `auditLog/{autoId}`: one entry per applied event, plus one per reservation attempt. Append-only. */
export interface AuditEntry {
  eventId: string | null;
  eventType: string | null;
  orderId: string | null;
  action: string;
  result: string;
  reason: string | null;
  before: OrderStatus | null;
  after: OrderStatus | null;
  at: Date;
}

export function auditLog(db: Firestore): CollectionReference {
  return db.collection(AUDIT_LOG);
}
