import type { Firestore } from "firebase-admin/firestore";
import { ORDERS, orderRef } from "./collections/orders";
import { lockKeys, runTransactionWithLocks, type LocalLocks } from "./concurrency/localLocks";
import { decideAbandonedRelease, type AbandonPolicy } from "./domain/reservation";
import type { ReservationBatches, ReservationOutcome } from "./inventory/reservationBatch";
import { planStock, stockRequestFor, writeStockChanges } from "./inventory/stock";
import { queueNotifications, withShards, writeAudit } from "./webhook/applyEvent";
import { eachPaged, passOver, UNLIMITED, type SweepOptions, type SweepRun } from "./sweeps";

export type { ReservationOutcome } from "./inventory/reservationBatch";

export interface ReservationDeps {
  db: Firestore;
  now: () => Date;
  /** This instance's locks: see LocalLocks. */
  locks: LocalLocks;
  /** This instance's reservation batches, on the same `db` and `now`: see ReservationBatches. */
  batches: ReservationBatches;
}

/**
 * Handler of the `orders/{orderId}` create trigger: reserves every line or marks the order
 * `out_of_stock`, in one transaction shared with the instance's other new orders. Safe to run twice:
 * only a `pending` order is touched.
 */
export function reserveStockForOrder(deps: ReservationDeps, orderId: string): Promise<ReservationOutcome> {
  return deps.batches.reserve(orderId);
}

/**
 * Cancels one order if its reservation was abandoned (decideAbandonedRelease) and releases its units, in
 * one transaction; anything but a `reserved` order is left as it is.
 */
async function releaseIfAbandoned(deps: ReservationDeps, orderId: string, policy: AbandonPolicy): Promise<ReservationOutcome> {
  const { db } = deps;
  const ref = orderRef(db, orderId);
  const scope = deps.locks.scope();
  try {
    await scope.acquire(lockKeys.order(orderId));
    return await runTransactionWithLocks(db, scope, async (tx) => {
      const order = (await tx.get(ref)).data();
      if (order === undefined) return "missing";
      if (order.status !== "reserved") return "skipped";
      const plan = await planStock(tx, db, stockRequestFor(order), scope);
      const now = deps.now();
      const decision = decideAbandonedRelease(order, plan.levels, now, policy);
      if (decision.kind === "skip") return "skipped";
      tx.update(ref, withShards(decision.orderPatch, order, plan.shards, decision.stockChanges.length > 0));
      writeStockChanges(tx, plan, decision.stockChanges);
      writeAudit(tx, db, decision.audit);
      queueNotifications(tx, db, [{ id: `order_canceled:${order.id}`, kind: "order_canceled", orderId: order.id, userId: order.userId, eventId: null, detail: decision.audit.reason }], now);
      return decision.result;
    });
  } finally {
    scope.releaseAll();
  }
}

export interface SweepReport extends SweepRun {
  examined: number;
  canceled: number;
  skipped: number;
}

/** Pages of orders one run reads at most. */
const MAX_PAGES = 5;

/**
 * The abandoned-reservation sweep (scheduled): orders still `reserved` past their hold are canceled
 * and their stock released. A payment that arrives later finalizes if stock allows, else needs_review.
 * An order whose release throws (its held shard deleted, say) is reported and passed over (sweeps.ts).
 * Orders that stay (those, and orders a Checkout Session still holds, which the 30-minute cutoff
 * includes) are paged past (eachPaged), up to MAX_PAGES pages a run.
 */
export async function releaseAbandonedReservations(deps: ReservationDeps, policy: AbandonPolicy, { pageSize = 200, budget = UNLIMITED }: SweepOptions = {}): Promise<SweepReport> {
  const cutoff = new Date(deps.now().getTime() - Math.min(policy.holdMs, policy.checkoutHoldMs));
  const query = deps.db.collection(ORDERS).where("status", "==", "reserved").where("createdAt", "<=", cutoff).orderBy("createdAt");
  const report: SweepReport = { examined: 0, canceled: 0, skipped: 0, failures: [], complete: true };
  report.complete = await eachPaged(query, { pageSize, maxPages: MAX_PAGES, budget }, async (doc) => {
    report.examined += 1;
    let outcome: ReservationOutcome;
    try {
      outcome = await releaseIfAbandoned(deps, doc.id, policy);
    } catch (error) {
      passOver(report.failures, doc.id, error);
      return;
    }
    if (outcome === "canceled") report.canceled += 1;
    else report.skipped += 1;
  });
  return report;
}

export const DEFAULT_ABANDON_POLICY: AbandonPolicy = { holdMs: 30 * 60_000, checkoutHoldMs: 25 * 60 * 60_000 };
