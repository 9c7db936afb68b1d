import type { AuditEntry } from "../collections/auditLog";
import { quantitiesBySku, type Order, type OrderPatch, type OrderStatus } from "../collections/orders";
import type { StockLevel } from "../collections/products";
import { isDocumentId } from "./ids";
import { describeShort, releaseReservation, transition, type StockChange } from "./orderMachine";

/** Reserve every line of a new order, or none: pure, like the payment decision. */
export type ReservationDecision =
  | { kind: "skip"; reason: string }
  | {
      kind: "apply";
      result: "reserved" | "out_of_stock" | "canceled";
      orderPatch: OrderPatch;
      stockChanges: StockChange[];
      audit: AuditEntry;
      /** For an operator: the order itself is malformed (lines no product can match), not just early or unlucky. */
      adminAlert: string | null;
    };

export function decideReservation(order: Order, stock: ReadonlyMap<string, StockLevel>, now: Date): ReservationDecision {
  // A payment may have arrived first (or the trigger is redelivered): the order is no longer ours to reserve.
  if (order.status !== "pending") return { kind: "skip", reason: `order is ${order.status}` };
  const wanted = quantitiesBySku(order.items);
  const invalid = order.items.length === 0 || [...wanted.values()].some((qty) => !Number.isInteger(qty) || qty <= 0);
  const badSkus = [...wanted.keys()].filter((sku) => !isDocumentId(sku));
  const short = [...wanted].filter(([sku, qty]) => {
    const level = stock.get(sku);
    return level === undefined || level.stock - level.reserved < qty;
  });
  const to: OrderStatus = invalid || short.length > 0 ? "out_of_stock" : "reserved";
  const reason = invalid
    ? "order has no valid lines"
    : short.length > 0
      ? describeShort(short.map(([sku]) => sku))
      : "stock reserved";
  const orderPatch: OrderPatch = {
    status: to,
    statusHistory: [...(order.statusHistory ?? []), { from: order.status, to, at: now, eventId: null, reason }],
    updatedAt: now,
    ...(to === "reserved" ? { reservedAt: now } : {}),
  };
  return {
    kind: "apply",
    result: to,
    adminAlert: invalid || badSkus.length > 0 ? `order ${order.id} cannot be served: ${reason}` : null,
    orderPatch,
    stockChanges: to === "reserved" ? [...wanted].map(([sku, qty]) => ({ sku, stock: 0, reserved: qty })) : [],
    audit: {
      eventId: null,
      eventType: null,
      orderId: order.id,
      action: "reserve_stock",
      result: to,
      reason,
      before: order.status,
      after: to,
      at: now,
    },
  };
}

export interface AbandonPolicy {
  /** A reservation without a Checkout Session is released this long after the order was created. */
  holdMs: number;
  /** A Checkout Session holds its order until it expires (at most 24 h) — released after this as a backstop. */
  checkoutHoldMs: number;
}

/** Release of a reservation nobody paid for: pure, the sweep applies it in a transaction. */
export function decideAbandonedRelease(
  order: Order,
  stock: ReadonlyMap<string, StockLevel>,
  now: Date,
  policy: AbandonPolicy,
): ReservationDecision {
  if (order.status !== "reserved") return { kind: "skip", reason: `order is ${order.status}` };
  const hold = order.checkoutSessionId ? policy.checkoutHoldMs : policy.holdMs;
  if (now.getTime() - order.createdAt.getTime() < hold) return { kind: "skip", reason: "reservation still held" };
  const reason = `reservation abandoned after ${Math.round(hold / 60_000)} min without payment`;
  return {
    kind: "apply",
    result: "canceled",
    adminAlert: null,
    orderPatch: transition(order, "canceled", now, null, reason),
    stockChanges: releaseReservation(order, stock),
    audit: { eventId: null, eventType: null, orderId: order.id, action: "release_abandoned", result: "canceled", reason, before: order.status, after: "canceled", at: now },
  };
}
