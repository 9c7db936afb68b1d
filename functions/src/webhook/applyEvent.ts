import type { DocumentReference, Firestore, Transaction } from "firebase-admin/firestore";
import { auditLog, type AuditEntry } from "../collections/auditLog";
import { notificationRef, queuedNotification, type NotificationDraft } from "../collections/notifications";
import { orderRef, ordersByPaymentIntent, quantitiesBySku, type Order, type OrderPatch } from "../collections/orders";
import { webhookEventRef, type WebhookEventRecord, type WebhookEventStatus } from "../collections/webhookEvents";
import type { EventMeta, OrderRef, Translation } from "../domain/commands";
import { deadLetterRef } from "../collections/deadLetters";
import { decide, type DecideOptions } from "../domain/orderMachine";
import { DeferredError, GRPC_ALREADY_EXISTS, grpcCodeOf, TransientError } from "../errors";
import { heldShards, planStock, writeStockChanges } from "../inventory/stock";

export interface PipelineOptions extends DecideOptions {
  /** How long `webhookEvents` records are kept before the TTL policy deletes them. */
  webhookEventTtlDays: number;
}

export interface PipelineDeps {
  db: Firestore;
  now: () => Date;
  options: PipelineOptions;
}

export type ApplyOutcome =
  | { status: WebhookEventStatus; result: string; orderId: string | null; attempt: number }
  | { status: "duplicate"; orderId: null; result: null; attempt: null };

const DUPLICATE: ApplyOutcome = { status: "duplicate", orderId: null, result: null, attempt: null };
const DAY_MS = 24 * 60 * 60 * 1000;
/** The webhookEvents result of an event parked in deadLetters: the only decided event a replay may re-apply. */
export const PARKED_RESULT = "dead_lettered";

/**
 * Applies one verified, translated event in ONE transaction whose first write is `create()` of
 * `webhookEvents/{eventId}`: a concurrent or later copy of the event fails that create and changes
 * nothing. Throws DeferredError when the event cannot apply yet, TransientError on Firestore trouble.
 */
export async function applyEvent(
  deps: PipelineDeps,
  meta: EventMeta,
  translation: Translation,
  receivedAt: Date,
  { replay = false }: { replay?: boolean } = {},
): Promise<ApplyOutcome> {
  const { db } = deps;
  const eventRef = webhookEventRef(db, meta.id);
  // Cheap read outside the transaction: a retry storm of an applied event never contends on the order.
  if (!replay && (await eventRef.get()).exists) return DUPLICATE;
  try {
    return await db.runTransaction(async (tx) => {
      if (replay) {
        const existing = await tx.get(eventRef);
        if (existing.exists && existing.get("result") !== PARKED_RESULT) return DUPLICATE;
      }
      const letterRef = deadLetterRef(db, meta.id);
      const [letter, order] = await Promise.all([
        tx.get(letterRef),
        translation.kind === "command" ? findOrder(tx, db, translation.ref) : Promise.resolve(null),
      ]);
      const earlierAttempts = letter.exists ? Number(letter.get("attempts") ?? 0) : 0;
      const record = (status: WebhookEventStatus, result: string, orderId: string | null): ApplyOutcome => {
        writeEventRecord(tx, eventRef, deps, meta, receivedAt, { status, result, orderId }, replay);
        // A delivery (or replay) that finally applied resolves the dead letter in the same commit.
        if (letter.exists) tx.update(letterRef, { status: "replayed", resolvedAt: deps.now() });
        return { status, result, orderId, attempt: earlierAttempts + 1 };
      };
      if (translation.kind === "ignored") return record("ignored", translation.reason, translation.orderId);

      if (order === null) {
        throw new DeferredError(`No order found for ${describe(translation.ref)}`, "order_not_found", refOrderId(translation.ref));
      }
      const now = deps.now();
      const plan = await planStock(tx, db, { quantities: quantitiesBySku(order.items), held: heldShards(order), key: order.id });
      const decision = decide({ order, stock: plan.levels, command: translation.command, event: meta, now, options: deps.options });
      if (decision.kind === "defer") throw new DeferredError(decision.reason, "order_not_ready", order.id);

      if (decision.orderPatch !== null) tx.update(orderRef(db, order.id), withShards(decision.orderPatch, order, plan.shards, decision.stockChanges.length > 0));
      writeStockChanges(tx, plan, decision.stockChanges);
      writeAudit(tx, db, decision.audit);
      queueNotifications(tx, db, decision.notifications, now);
      return record(decision.status, decision.result, order.id);
    });
  } catch (error) {
    if (grpcCodeOf(error) === GRPC_ALREADY_EXISTS) {
      // Lost the race to another delivery of the same event; anything else already existing is a bug.
      if ((await eventRef.get()).exists) return DUPLICATE;
      throw new TransientError(`A deterministic document already existed while applying ${meta.id}`, { cause: error });
    }
    throw error;
  }
}

export function writeEventRecord(
  tx: Transaction,
  eventRef: DocumentReference,
  deps: Pick<PipelineDeps, "now" | "options">,
  meta: EventMeta,
  receivedAt: Date,
  outcome: { status: WebhookEventStatus; result: string; orderId: string | null },
  overwrite = false,
): void {
  const processedAt = deps.now();
  const record: WebhookEventRecord = {
    type: meta.type,
    status: outcome.status,
    result: outcome.result,
    orderId: outcome.orderId,
    receivedAt,
    processedAt,
    eventCreated: meta.created,
    livemode: meta.livemode,
    expireAt: new Date(processedAt.getTime() + deps.options.webhookEventTtlDays * DAY_MS),
  };
  if (overwrite) tx.set(eventRef, record);
  else tx.create(eventRef, record);
}

export function writeAudit(tx: Transaction, db: Firestore, entry: AuditEntry): void {
  tx.create(auditLog(db).doc(), entry);
}

export function queueNotifications(tx: Transaction, db: Firestore, drafts: readonly NotificationDraft[], now: Date): void {
  for (const draft of drafts) tx.create(notificationRef(db, draft.id), queuedNotification(draft, now));
}

/** Records which shards a first stock movement used, so later releases and restocks hit the same ones. */
export function withShards(patch: OrderPatch, order: Order, shards: Record<string, number>, movesStock: boolean): OrderPatch {
  if (!movesStock || heldShards(order) !== undefined || Object.keys(shards).length === 0) return patch;
  return { ...patch, stockShards: shards };
}

async function findOrder(tx: Transaction, db: Firestore, ref: OrderRef): Promise<Order | null> {
  if (ref.by === "orderId") {
    const snapshot = await tx.get(orderRef(db, ref.orderId));
    return snapshot.data() ?? null;
  }
  const matches = await tx.get(ordersByPaymentIntent(db, ref.paymentIntentId));
  if (matches.size > 1) {
    throw new DeferredError(`Several orders claim PaymentIntent ${ref.paymentIntentId}`, "ambiguous_payment_intent");
  }
  return matches.empty ? null : matches.docs[0].data();
}

function refOrderId(ref: OrderRef): string | null {
  return ref.by === "orderId" ? ref.orderId : null;
}

function describe(ref: OrderRef): string {
  return ref.by === "orderId" ? `orders/${ref.orderId}` : `paymentIntentId ${ref.paymentIntentId}`;
}
