import type { Firestore } from "firebase-admin/firestore";
import { ORDERS, orderRef, type Order } from "./collections/orders";
import { lockKeys, runTransactionWithLocks, type LocalLocks } from "./concurrency/localLocks";
import type { StockLevel } from "./collections/products";
import { SOLD_OUT_FRESH_MS } from "./collections/soldOut";
import { decideAbandonedRelease, decideReservation, type AbandonPolicy, type ReservationDecision } from "./domain/reservation";
import { planStock, publishSoldOutFindings, stockRequestFor, writeStockChanges, type SoldOutFinding } from "./inventory/stock";
import { queueNotifications, withShards, writeAudit } from "./webhook/applyEvent";

export interface ReservationDeps {
  db: Firestore;
  now: () => Date;
  /** This instance's locks (shared with the webhook): see LocalLocks. */
  locks: LocalLocks;
  /** How old a sold-out marker may refuse a new reservation (SOLD_OUT_FRESH_MS when absent; tests pin it). */
  soldOutFreshMs?: number;
}

export type ReservationOutcome = "reserved" | "out_of_stock" | "canceled" | "skipped" | "missing";

/**
 * Handler of the `orders/{orderId}` create trigger: reserves every line or marks the order
 * `out_of_stock`, in one transaction. Safe to run twice: only a `pending` order is touched.
 */
export async function reserveStockForOrder(deps: ReservationDeps, orderId: string): Promise<ReservationOutcome> {
  return applyToOrder(deps, orderId, (order, stock, now) => decideReservation(order, stock, now));
}

/** Reads the order and its stock, decides, writes: one transaction. */
async function applyToOrder(
  deps: ReservationDeps,
  orderId: string,
  decideFor: (order: Order, stock: ReadonlyMap<string, StockLevel>, now: Date) => ReservationDecision,
): Promise<ReservationOutcome> {
  const { db } = deps;
  const ref = orderRef(db, orderId);
  const scope = deps.locks.scope();
  try {
    await scope.acquire(lockKeys.order(orderId));
    // From the body's last run, the one that committed.
    let soldOut: readonly SoldOutFinding[] = [];
    const outcome = await runTransactionWithLocks(db, scope, async (tx) => {
      soldOut = [];
      const order = (await tx.get(ref)).data();
      if (order === undefined) return "missing";
      if (order.status !== "pending" && order.status !== "reserved") return "skipped";
      const plan = await planStock(tx, db, { ...stockRequestFor(order), refuseOnLocalTakings: true, soldOutFreshMs: deps.soldOutFreshMs ?? SOLD_OUT_FRESH_MS }, scope);
      soldOut = plan.soldOut;
      const now = deps.now();
      const decision = decideFor(order, plan.levels, now);
      if (decision.kind === "skip") return "skipped";
      tx.update(ref, withShards(decision.orderPatch, order, plan.shards, decision.stockChanges.length > 0));
      writeStockChanges(tx, plan, decision.stockChanges);
      writeAudit(tx, db, decision.audit);
      if (decision.result === "canceled") {
        queueNotifications(tx, db, [{ id: `order_canceled:${order.id}`, kind: "order_canceled", orderId: order.id, userId: order.userId, eventId: null, detail: decision.audit.reason }], now);
      }
      if (decision.adminAlert !== null) {
        queueNotifications(tx, db, [{ id: `admin_alert:order:${order.id}`, kind: "admin_alert", orderId: order.id, userId: null, eventId: null, detail: decision.adminAlert }], now);
      }
      return decision.result;
    });
    // After the commit: a group commit waits for every member's body, so a write in the body would hold
    // up the payments grouped with this reservation.
    await publishSoldOutFindings(db, scope, soldOut);
    return outcome;
  } finally {
    scope.releaseAll();
  }
}

export interface SweepReport {
  examined: number;
  canceled: number;
  skipped: number;
}

/**
 * The abandoned-reservation sweep (scheduled): orders still `reserved` past their hold are canceled
 * and their stock released. A payment that arrives later finalizes if stock allows, else needs_review.
 */
export async function releaseAbandonedReservations(deps: ReservationDeps, policy: AbandonPolicy, limit = 200): Promise<SweepReport> {
  const cutoff = new Date(deps.now().getTime() - Math.min(policy.holdMs, policy.checkoutHoldMs));
  const candidates = await deps.db.collection(ORDERS).where("status", "==", "reserved").where("createdAt", "<=", cutoff).orderBy("createdAt").limit(limit).get();
  const report: SweepReport = { examined: 0, canceled: 0, skipped: 0 };
  for (const doc of candidates.docs) {
    report.examined += 1;
    const outcome = await applyToOrder(deps, doc.id, (order, stock, now) => decideAbandonedRelease(order, stock, now, policy));
    if (outcome === "canceled") report.canceled += 1;
    else report.skipped += 1;
  }
  return report;
}

export const DEFAULT_ABANDON_POLICY: AbandonPolicy = { holdMs: 30 * 60_000, checkoutHoldMs: 25 * 60 * 60_000 };
