import type { Firestore } from "firebase-admin/firestore";
import { orderRef, quantitiesBySku } from "./collections/orders";
import { decideReservation } from "./domain/reservation";
import { readStock, writeStockChanges } from "./inventory/stock";
import { writeAudit } from "./webhook/applyEvent";

export interface ReservationDeps {
  db: Firestore;
  now: () => Date;
}

export type ReservationOutcome = "reserved" | "out_of_stock" | "skipped" | "missing";

/**
 * Handler of the `orders/{orderId}` create trigger: reserves every line or marks the order
 * `out_of_stock`, in one transaction. Safe to run twice: only a `pending` order is touched.
 */
export async function reserveStockForOrder(deps: ReservationDeps, orderId: string): Promise<ReservationOutcome> {
  const { db } = deps;
  const ref = orderRef(db, orderId);
  return db.runTransaction(async (tx) => {
    const order = (await tx.get(ref)).data();
    if (order === undefined) return "missing";
    if (order.status !== "pending") return "skipped";
    const stock = await readStock(tx, db, quantitiesBySku(order.items).keys());
    const decision = decideReservation(order, stock, deps.now());
    if (decision.kind === "skip") return "skipped";
    tx.update(ref, decision.orderPatch);
    writeStockChanges(tx, db, decision.stockChanges);
    writeAudit(tx, db, decision.audit);
    return decision.result;
  });
}
