import { Timestamp, type Firestore } from "firebase-admin/firestore";
import { auditLog } from "../collections/auditLog";
import { DEAD_LETTERS, deadLetterRef, type DeadLetterStatus } from "../collections/deadLetters";
import { ORDERS } from "../collections/orders";
import { subscriptionRef } from "../collections/subscriptions";
import { webhookEventRef } from "../collections/webhookEvents";

/** Plain JSON for callable responses: Timestamps become ISO strings. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

export function toJson(value: unknown): Json {
  if (value instanceof Timestamp) return value.toDate().toISOString();
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(toJson);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJson(v)]));
  }
  if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") return value;
  return null;
}

export interface EventStatusReport {
  eventId: string;
  webhookEvent: Json;
  deadLetter: Json;
  auditEntries: Json[];
  order: { id: string; status: string | null } | null;
  /** The subscription a subscription event touched, as it is now (null when none, or when its user is unknown). */
  subscription: { id: string; userId: string | null; status: string | null; priceId: string | null; role: string | null } | null;
}

/** "What happened to this Stripe event?" in one answer. */
export async function webhookEventStatus(db: Firestore, eventId: string): Promise<EventStatusReport> {
  const [event, letter, audit] = await Promise.all([
    webhookEventRef(db, eventId).get(),
    deadLetterRef(db, eventId).get(),
    auditLog(db).where("eventId", "==", eventId).get(),
  ]);
  const { payload: _payload, ...letterData } = letter.data() ?? {};
  const orderId = (event.get("orderId") as string | undefined) ?? (letter.get("orderId") as string | undefined) ?? null;
  const order = orderId ? await db.collection(ORDERS).doc(orderId).get() : null;
  const subscriptionId = (event.get("subscriptionId") as string | undefined) ?? null;
  // The audit entry names the user the event was applied to; a rejected event has none.
  const userId = audit.docs.map((d) => d.get("userId") as unknown).find((u): u is string => typeof u === "string") ?? null;
  const subscription = subscriptionId && userId ? (await subscriptionRef(db, userId, subscriptionId).get()).data() : undefined;
  return {
    eventId,
    webhookEvent: event.exists ? toJson(event.data()) : null,
    deadLetter: letter.exists ? toJson({ ...letterData, payloadBytes: Buffer.byteLength(String(letter.get("payload") ?? "")) }) : null,
    auditEntries: audit.docs.map((d) => toJson({ id: d.id, ...d.data() })),
    order: orderId ? { id: orderId, status: (order?.get("status") as string | undefined) ?? null } : null,
    subscription: subscriptionId
      ? { id: subscriptionId, userId, status: subscription?.status ?? null, priceId: subscription?.priceId ?? null, role: subscription?.role ?? null }
      : null,
  };
}

export async function listDeadLetters(db: Firestore, status: DeadLetterStatus, limit: number): Promise<Json[]> {
  const snapshot = await db.collection(DEAD_LETTERS).where("status", "==", status).orderBy("lastFailedAt", "desc").limit(limit).get();
  return snapshot.docs.map((d) => {
    const { payload: _payload, ...data } = d.data();
    return toJson({ eventId: d.id, ...data });
  });
}
