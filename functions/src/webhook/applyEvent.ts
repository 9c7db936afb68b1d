import type { DocumentReference, DocumentSnapshot, Firestore } from "firebase-admin/firestore";
import { auditLog, type AuditEntry } from "../collections/auditLog";
import { notificationRef, queuedNotification, type NotificationDraft } from "../collections/notifications";
import { orderFromData, orderRef, ordersByPaymentIntent, type Order, type OrderPatch, type ShardHolding } from "../collections/orders";
import { webhookEventRef, type WebhookEventRecord, type WebhookEventStatus } from "../collections/webhookEvents";
import type { EventMeta, OrderRef, Translation } from "../domain/commands";
import { deadLetterRef } from "../collections/deadLetters";
import { decide, needsStock, type DecideOptions } from "../domain/orderMachine";
import { DeferredError, GRPC_ALREADY_EXISTS, grpcCodeOf, TransientError } from "../errors";
import { heldShards, noStock, planStock, stockRequestFor, writeStockChanges } from "../inventory/stock";
import type { TransactionLike } from "../concurrency/groupCommit";
import { lockKeys, runTransactionWithLocks, type LocalLocks, type LockScope } from "../concurrency/localLocks";

export interface PipelineOptions extends DecideOptions {
  /** How long `webhookEvents` records are kept before the TTL policy deletes them. */
  webhookEventTtlDays: number;
}

export interface PipelineDeps {
  db: Firestore;
  now: () => Date;
  options: PipelineOptions;
  /** This instance's locks: concurrent requests for the same order or stock queue here, not in Firestore. */
  locks: LocalLocks;
}

export type ApplyOutcome =
  | { status: WebhookEventStatus; result: string; orderId: string | null; attempt: number }
  | { status: "duplicate"; orderId: null; result: null; attempt: null };

const DUPLICATE: ApplyOutcome = { status: "duplicate", orderId: null, result: null, attempt: null };
const DAY_MS = 24 * 60 * 60 * 1000;
/** The webhookEvents result of an event parked in deadLetters: the only decided event a replay may re-apply. */
export const PARKED_RESULT = "dead_lettered";

/** A `webhookEvents` record of an event that was decided (applied, ignored, rejected), not one parked for replay. */
export function isDecidedRecord(event: DocumentSnapshot): boolean {
  return event.exists && event.get("result") !== PARKED_RESULT;
}

/**
 * A copy of an event that is already recorded changes nothing, except a dead letter an earlier copy left
 * although the event applied (its commit landed but the answer was lost, and the failure was counted):
 * that letter is resolved, so the console does not show a failure Stripe has stopped retrying. A parked
 * event's letter stays for its replay.
 */
export function resolveLetterOfRecordedEvent(tx: Pick<TransactionLike, "update">, event: DocumentSnapshot, letter: DocumentSnapshot, now: Date): void {
  if (!isDecidedRecord(event)) return;
  if (letter.exists && letter.get("status") !== "replayed") tx.update(letter.ref, { status: "replayed", resolvedAt: now });
}

/**
 * Applies one verified, translated event in ONE transaction that reads `webhookEvents/{eventId}` first
 * and `create()`s it: a later copy finds it and changes nothing, a concurrent one fails that create. Throws DeferredError when the event cannot apply yet, TransientError on Firestore trouble.
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
  const scope = deps.locks.scope();
  const ref = translation.kind === "command" ? translation.ref : null;
  try {
    // An order named by PaymentIntent is looked up without a lock first, so that its key is taken before
    // the transaction as for one named by id: found inside it, the order's key could be busy, and the
    // transaction would hold the order's read lock while it gave up and waited (in a group commit, until
    // the whole group ends). The transaction checks that the order still carries the PaymentIntent.
    const byId = ref === null ? null : ref.by === "orderId" ? ref.orderId : await orderIdForPaymentIntent(db, ref.paymentIntentId);
    // Stripe sends several events for one payment at once; they queue here rather than on the order's lock.
    if (byId !== null) await scope.acquire(lockKeys.order(byId));
    return await runTransactionWithLocks(db, scope, async (tx) => {
      const letterRef = deadLetterRef(db, meta.id);
      // One round trip for everything the event's id and order id name; the stock comes after.
      const [existing, letter, byIdSnapshot] = await tx.getAll(eventRef, letterRef, ...(byId !== null ? [orderRef(db, byId).withConverter(null)] : []));
      if (existing.exists && (!replay || existing.get("result") !== PARKED_RESULT)) {
        resolveLetterOfRecordedEvent(tx, existing, letter, deps.now());
        return DUPLICATE;
      }
      const named = byId !== null ? orderFromSnapshot(byIdSnapshot) : null;
      const order =
        ref === null
          ? null
          : ref.by === "orderId"
            ? named
            : named !== null && named.paymentIntentId === ref.paymentIntentId
              ? named
              : await findOrderByPaymentIntent(tx, db, ref.paymentIntentId, scope);
      const earlierAttempts = letter.exists ? Number(letter.get("attempts") ?? 0) : 0;
      const record = (status: WebhookEventStatus, result: string, orderId: string | null): ApplyOutcome => {
        // Overwrite only a parked record this replay read; a transient dead letter has none yet.
        writeEventRecord(tx, eventRef, deps, meta, receivedAt, { status, result, orderId }, existing.exists);
        // A delivery (or replay) that finally applied resolves the dead letter in the same commit.
        if (letter.exists) tx.update(letterRef, { status: "replayed", resolvedAt: deps.now() });
        return { status, result, orderId, attempt: earlierAttempts + 1 };
      };
      if (translation.kind === "ignored") return record("ignored", translation.reason, translation.orderId);

      if (order === null) {
        throw new DeferredError(`No order found for ${describe(translation.ref)}`, "order_not_found", refOrderId(translation.ref));
      }
      const now = deps.now();
      // Many events decide without stock (the second event of a payment, a failure, a dispute): they
      // read no product and finish on the first read.
      const plan = needsStock(translation.command.kind, order.status)
        ? await planStock(tx, db, stockRequestFor(order), scope, { readAgain: orderRef(db, order.id) })
        : noStock();
      const decision = decide({ order, stock: plan.levels, command: translation.command, event: meta, now, options: deps.options });
      if (decision.kind === "defer") throw new DeferredError(decision.reason, "order_not_ready", order.id);

      if (decision.orderPatch !== null) tx.update(orderRef(db, order.id), withShards(decision.orderPatch, order, plan.shards, decision.stockChanges.length > 0));
      writeStockChanges(tx, plan, decision.stockChanges);
      writeAudit(tx, db, decision.audit);
      queueNotifications(tx, db, decision.notifications, now);
      return record(decision.status, decision.result, order.id);
    });
  } catch (error) {
    await lostToDuplicate(error, eventRef, meta.id);
    return DUPLICATE;
  } finally {
    scope.releaseAll();
  }
}

/**
 * After a failed commit: returns when another delivery of the same event recorded it first (the caller
 * answers `duplicate`); rethrows anything else. Any other deterministic document already existing is a bug.
 * A parked record does not count: a replay starts from it, so its presence says nothing about who won.
 */
export async function lostToDuplicate(error: unknown, eventRef: DocumentReference, eventId: string): Promise<void> {
  if (grpcCodeOf(error) !== GRPC_ALREADY_EXISTS) throw error;
  if (isDecidedRecord(await eventRef.get())) return;
  throw new TransientError(`A deterministic document already existed while applying ${eventId}`, { cause: error });
}

export function writeEventRecord(
  tx: TransactionLike,
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
  // A replay overwrites the parked record it read: an update, which an optimistic transaction can guard.
  if (overwrite) tx.update(eventRef, { ...record });
  else tx.create(eventRef, record);
}

export function writeAudit(tx: TransactionLike, db: Firestore, entry: AuditEntry): void {
  tx.create(auditLog(db).doc(), entry);
}

export function queueNotifications(tx: TransactionLike, db: Firestore, drafts: readonly NotificationDraft[], now: Date): void {
  for (const draft of drafts) tx.create(notificationRef(db, draft.id), queuedNotification(draft, now));
}

/** Records which shards a first stock movement used, so later releases and restocks hit the same ones. */
export function withShards(patch: OrderPatch, order: Order, shards: Record<string, ShardHolding>, movesStock: boolean): OrderPatch {
  if (!movesStock || heldShards(order) !== undefined || Object.keys(shards).length === 0) return patch;
  return { ...patch, stockShards: shards };
}

function orderFromSnapshot(snapshot: DocumentSnapshot): Order | null {
  const data = snapshot.data();
  return data === undefined ? null : orderFromData(snapshot.id, data);
}

/** The one order claiming a PaymentIntent, from a lock-free read; null when none or several do (the transaction decides). */
async function orderIdForPaymentIntent(db: Firestore, paymentIntentId: string): Promise<string | null> {
  const matches = await ordersByPaymentIntent(db, paymentIntentId).get();
  return matches.size === 1 ? matches.docs[0].id : null;
}

/** Inside the transaction: when the lock-free lookup found no single order, or its order changed since. */
async function findOrderByPaymentIntent(tx: TransactionLike, db: Firestore, paymentIntentId: string, scope: LockScope): Promise<Order | null> {
  // Untyped, like the read of an order named by id: the stock read reads it again by the same reference
  // (planStock's readAgain), which a rerun after a lost race is then served without a round trip.
  const matches = await tx.get(ordersByPaymentIntent(db, paymentIntentId).withConverter(null));
  if (matches.size > 1) {
    throw new DeferredError(`Several orders claim PaymentIntent ${paymentIntentId}`, "ambiguous_payment_intent");
  }
  if (matches.empty) return null;
  // Known only now: take its key like a delivery that named the order did before its transaction.
  scope.require(lockKeys.order(matches.docs[0].id));
  return orderFromSnapshot(matches.docs[0]);
}

function refOrderId(ref: OrderRef): string | null {
  return ref.by === "orderId" ? ref.orderId : null;
}

function describe(ref: OrderRef): string {
  return ref.by === "orderId" ? `orders/${ref.orderId}` : `paymentIntentId ${ref.paymentIntentId}`;
}
