import type { AuditEntry } from "../collections/auditLog";
import type { NotificationDraft, NotificationKind } from "../collections/notifications";
import { quantitiesBySku, type Order, type OrderPatch, type OrderStatus, type StatusChange } from "../collections/orders";
import type { StockLevel } from "../collections/products";
import type { Command, CommandKind, EventMeta } from "./commands";
import { isDocumentId } from "./ids";

/**
 * The order state machine: (order, stock, command, now) → what changes. Pure: no I/O, no clock,
 * no Stripe types. The webhook transaction reads, calls `decide`, and writes what it returns.
 */

/** Signed deltas to apply to `products/{sku}`. */
export interface StockChange {
  sku: string;
  stock: number;
  reserved: number;
}

export interface DecideOptions {
  /** Put the units of a fully refunded order back on sale. */
  restockOnRefund: boolean;
}

export interface DecideInput {
  order: Order;
  /** Current stock of every SKU of the order; a missing SKU means the product does not exist. */
  stock: ReadonlyMap<string, StockLevel>;
  command: Command;
  event: EventMeta;
  now: Date;
  options: DecideOptions;
  /** Set by `decide`: the event is a new payment attempt replacing one that ended, so its ids replace the stored ones. */
  retry?: boolean;
}

export type Decision =
  | {
      kind: "apply";
      /** `rejected`: Stripe's claim does not match the order; nothing but the audit and an alert is written. */
      status: "processed" | "rejected";
      result: string;
      orderPatch: OrderPatch | null;
      stockChanges: StockChange[];
      audit: AuditEntry;
      notifications: NotificationDraft[];
    }
  | {
      /** The order has not reached the state this event applies to: answer non-2xx so Stripe redelivers. */
      kind: "defer";
      reason: string;
    };

/** What each command does in each status. A status missing from a row is a refused transition. */
type Rule =
  | "fulfil"
  | "record_checkout"
  | "record_failure"
  | "cancel"
  | "refund"
  | "open_dispute"
  | "close_dispute"
  | "defer"
  | { noop: string };

export const TRANSITIONS: Record<CommandKind, Partial<Record<OrderStatus, Rule>>> = {
  payment_succeeded: {
    pending: "fulfil",
    reserved: "fulfil",
    // A payment for an order given up on (sweep, out of stock) is still honoured when stock allows.
    out_of_stock: "fulfil",
    canceled: "fulfil",
    finalized: { noop: "already_finalized" },
    partially_refunded: { noop: "already_finalized" },
    refunded: { noop: "already_finalized" },
    disputed: { noop: "already_finalized" },
    needs_review: { noop: "already_in_review" },
  },
  checkout_awaiting_payment: {
    pending: "record_checkout",
    reserved: "record_checkout",
  },
  payment_failed: {
    // The reservation is kept: the customer may retry with another card.
    pending: "record_failure",
    reserved: "record_failure",
    // An earlier attempt's failure delivered after the payment succeeded changes nothing.
    finalized: { noop: "stale_payment_failure" },
    partially_refunded: { noop: "stale_payment_failure" },
    refunded: { noop: "stale_payment_failure" },
    disputed: { noop: "stale_payment_failure" },
    needs_review: { noop: "stale_payment_failure" },
  },
  payment_canceled: {
    pending: "cancel",
    reserved: "cancel",
    canceled: { noop: "already_canceled" },
    // The backend cancels the unpaid PaymentIntent of an order it could not serve (checkout/cancelUnpaid).
    out_of_stock: { noop: "already_out_of_stock" },
  },
  refund_updated: {
    finalized: "refund",
    partially_refunded: "refund",
    needs_review: "refund",
    refunded: "refund",
    // A refund issued before the dispute but delivered after it: recorded, the dispute stays open.
    disputed: "refund",
    // The payment this refund applies to has not been applied yet.
    pending: "defer",
    reserved: "defer",
    out_of_stock: "defer",
    canceled: "defer",
  },
  dispute_opened: {
    finalized: "open_dispute",
    partially_refunded: "open_dispute",
    refunded: "open_dispute",
    needs_review: "open_dispute",
    disputed: "open_dispute",
    pending: "defer",
    reserved: "defer",
    out_of_stock: "defer",
    canceled: "defer",
  },
  dispute_closed: {
    disputed: "close_dispute",
    // Closed delivered before created: record both at once.
    finalized: "close_dispute",
    partially_refunded: "close_dispute",
    refunded: "close_dispute",
    needs_review: "close_dispute",
    pending: "defer",
    reserved: "defer",
    out_of_stock: "defer",
    canceled: "defer",
  },
};

export function ruleFor(command: CommandKind, status: OrderStatus): Rule | undefined {
  return TRANSITIONS[command][status];
}

/** The rules whose decisions look at stock levels; no other decision reads `stock`. */
const STOCK_RULES: ReadonlySet<Rule> = new Set<Rule>(["fulfil", "cancel", "refund"]);

/**
 * Whether deciding `command` for an order in `status` can look at stock. When false, decide() returns
 * the same decision whatever `stock` holds, so the caller need not read any: a payment's second event,
 * once the first finalized the order, reads no product.
 */
export function needsStock(command: CommandKind, status: OrderStatus): boolean {
  const rule = ruleFor(command, status);
  return typeof rule === "string" && STOCK_RULES.has(rule);
}

export function decide(input: DecideInput): Decision {
  const { order, command } = input;
  const claim = claimMismatch(order, command);
  const otherIds = otherPaymentIds(order, command);
  let retry = false;
  if (otherIds !== null) {
    // A failure or cancellation of another payment attempt must never touch this order.
    if (command.kind === "payment_failed" || command.kind === "payment_canceled") {
      return unchanged(input, "other_payment_attempt", otherIds);
    }
    if (claim !== null) return rejected(input, claim);
    const isPayment = command.kind === "payment_succeeded" || command.kind === "checkout_awaiting_payment";
    if (isPayment && PAID.has(order.status)) {
      return command.kind === "payment_succeeded" ? duplicatePayment(input) : unchanged(input, "other_payment_attempt", otherIds);
    }
    // The customer paid again after the stored attempt failed or expired: a retry, not a spoof.
    if (!isPayment || !storedAttemptEnded(order, command)) return rejected(input, otherIds);
    retry = true;
  } else if (claim !== null) {
    return rejected(input, claim);
  }
  const rule = ruleFor(command.kind, order.status);
  if (rule === undefined) return refused(input);
  if (rule === "defer") {
    return { kind: "defer", reason: `${command.kind} cannot apply to an order in status ${order.status} yet` };
  }
  if (typeof rule === "object") return unchanged(input, rule.noop, null);
  const ruleInput = retry ? { ...input, retry } : input;
  switch (rule) {
    case "fulfil":
      return fulfil(ruleInput);
    case "record_checkout":
      return recordCheckout(ruleInput);
    case "record_failure":
      return recordFailure(input);
    case "cancel":
      return cancel(input);
    case "refund":
      return refund(input);
    case "open_dispute":
      return openDispute(input);
    case "close_dispute":
      return closeDispute(input);
  }
}

/** Statuses an order reaches only once a payment for it succeeded. */
const PAID: ReadonlySet<OrderStatus> = new Set(["finalized", "partially_refunded", "refunded", "disputed", "needs_review"]);

/** Stripe may confirm an order, never define it: the reason when the event's amount or currency disagrees. */
function claimMismatch(order: Order, command: Command): string | null {
  switch (command.kind) {
    case "payment_succeeded":
    case "checkout_awaiting_payment":
      if (command.currency !== order.currency) return "currency_mismatch";
      if (command.amount !== order.amount) return "amount_mismatch";
      return null;
    case "refund_updated":
      if (command.currency !== order.currency) return "currency_mismatch";
      if (command.chargeAmount !== order.amount) return "amount_mismatch";
      return null;
    case "dispute_opened":
    case "dispute_closed":
      return command.currency !== order.currency ? "currency_mismatch" : null;
    default:
      return null;
  }
}

/** The reason when the event is about another PaymentIntent or Checkout Session than the one the order stored. */
function otherPaymentIds(order: Order, command: Command): string | null {
  if (command.paymentIntentId && order.paymentIntentId && command.paymentIntentId !== order.paymentIntentId) {
    return "payment_intent_mismatch";
  }
  if (command.checkoutSessionId && order.checkoutSessionId && command.checkoutSessionId !== order.checkoutSessionId) {
    return "checkout_session_mismatch";
  }
  return null;
}

/** Every stored id the event does not carry belongs to an attempt that failed, expired or was canceled. */
function storedAttemptEnded(order: Order, command: Command): boolean {
  const ended = new Set(order.endedPaymentIds ?? []);
  const stored = [
    order.paymentIntentId !== command.paymentIntentId ? order.paymentIntentId : undefined,
    order.checkoutSessionId !== command.checkoutSessionId ? order.checkoutSessionId : undefined,
  ].filter((id): id is string => id !== undefined);
  return stored.length > 0 && stored.every((id) => ended.has(id));
}

/** The ids of the attempt an event ends, added to those the order already knows as ended. */
function endedIds(input: DecideInput): OrderPatch {
  const { order, command } = input;
  const ended = new Set(order.endedPaymentIds ?? []);
  const before = ended.size;
  for (const id of [command.paymentIntentId, command.checkoutSessionId]) if (id) ended.add(id);
  return ended.size === before ? {} : { endedPaymentIds: [...ended] };
}

function duplicatePayment(input: DecideInput): Decision {
  const { command, order } = input;
  const payment = command.paymentIntentId ?? command.checkoutSessionId ?? "unknown";
  const reason = `a second payment (${payment}) succeeded for order ${order.id}, already paid by ${order.paymentIntentId ?? order.checkoutSessionId ?? "another payment"}: refund ${payment}`;
  return {
    kind: "apply",
    status: "processed",
    result: "duplicate_payment",
    orderPatch: null,
    stockChanges: [],
    audit: audit(input, "duplicate_payment", reason, order.status),
    notifications: [adminAlert(input, reason)],
  };
}

function fulfil(input: DecideInput): Decision {
  const { order, stock, event, now } = input;
  const held = order.status === "reserved";
  const changes: StockChange[] = [];
  const short: string[] = [];
  for (const [sku, qty] of quantitiesBySku(order.items)) {
    const level = stock.get(sku);
    const enough = Number.isInteger(qty) && qty > 0 && level !== undefined && (held ? level.stock >= qty && level.reserved >= qty : level.stock - level.reserved >= qty);
    if (!enough) short.push(sku);
    changes.push({ sku, stock: -qty, reserved: held ? -qty : 0 });
  }
  const ids = paymentIdsToStore(input);
  if (short.length > 0) {
    const reason = `paid but not fulfillable: ${describeShort(short)} (order was ${order.status})`;
    // Never oversell; a held reservation is released so `reserved` keeps matching reserved orders.
    const release = held ? releaseReservation(order, stock) : [];
    return applied(input, {
      result: "needs_review",
      reason,
      patch: { ...ids, ...transition(order, "needs_review", now, event.id, reason), reviewReason: reason },
      stockChanges: release,
      notify: [adminAlert(input, reason)],
    });
  }
  return applied(input, {
    result: "finalized",
    reason: null,
    patch: {
      ...ids,
      ...transition(order, "finalized", now, event.id, event.type),
      webhookEventId: event.id,
      finalizedAt: now,
    },
    stockChanges: changes,
    notify: [notification(input, `order_confirmed:${order.id}`, "order_confirmed", null)],
  });
}

function recordCheckout(input: DecideInput): Decision {
  return applied(input, {
    result: "awaiting_payment_recorded",
    reason: null,
    patch: { ...paymentIdsToStore(input), updatedAt: input.now },
    stockChanges: [],
    notify: [],
  });
}

function recordFailure(input: DecideInput): Decision {
  const { order, command, event, now } = input;
  if (command.kind !== "payment_failed") throw new Error("recordFailure needs payment_failed");
  return applied(input, {
    result: "payment_failure_recorded",
    reason: command.code,
    patch: {
      lastPaymentFailure: { eventId: event.id, code: command.code, message: command.message, at: now },
      paymentFailures: (order.paymentFailures ?? 0) + 1,
      ...endedIds(input),
      updatedAt: now,
    },
    stockChanges: [],
    notify: [notification(input, `payment_failed:${event.id}`, "payment_failed", command.code)],
  });
}

function cancel(input: DecideInput): Decision {
  const { order, command, event, now, stock } = input;
  const reason = command.kind === "payment_canceled" ? command.reason ?? event.type : event.type;
  return applied(input, {
    result: "canceled",
    reason,
    patch: { ...transition(order, "canceled", now, event.id, reason), ...endedIds(input) },
    stockChanges: order.status === "reserved" ? releaseReservation(order, stock) : [],
    notify: [notification(input, `order_canceled:${order.id}`, "order_canceled", reason)],
  });
}

function refund(input: DecideInput): Decision {
  const { order, command, event, now, options } = input;
  if (command.kind !== "refund_updated") throw new Error("refund needs refund_updated");
  const already = order.refundedAmount ?? 0;
  // Cumulative totals make a second event for the same refund (or an older one) a no-op.
  if (command.amountRefunded <= already) return unchanged(input, "refund_already_applied", null);
  const full = command.amountRefunded >= order.amount;
  const refundedAmount = Math.min(command.amountRefunded, order.amount);
  // While disputed, the refund applies to the status the order will return to if the dispute is won.
  const dispute = order.status === "disputed" ? order.dispute : undefined;
  const base: OrderStatus = dispute ? dispute.priorStatus : order.status;
  const wasFulfilled = base !== "needs_review";
  let next: OrderStatus = base;
  if (full) next = "refunded";
  else if (wasFulfilled) next = "partially_refunded";
  const restock = full && wasFulfilled && options.restockOnRefund && base !== "refunded";
  const lines = restock ? [...quantitiesBySku(order.items)] : [];
  // A refund is always recorded; units of a product deleted since (discontinued) have nowhere to go.
  const gone = lines.filter(([sku]) => !input.stock.has(sku)).map(([sku]) => sku);
  const stockChanges = lines.filter(([sku]) => input.stock.has(sku)).map(([sku, qty]) => ({ sku, stock: qty, reserved: 0 }));
  const reason = `refunded ${refundedAmount} of ${order.amount}${gone.length > 0 ? `; restock skipped for ${gone.join(", ")} (product no longer exists)` : ""}`;
  return applied(input, {
    result: full ? "refunded" : "partially_refunded",
    reason,
    patch: {
      ...transition(order, dispute ? order.status : next, now, event.id, reason),
      refundedAmount,
      ...(dispute ? { dispute: { ...dispute, priorStatus: next } } : {}),
    },
    stockChanges,
    notify: [notification(input, `refund_issued:${order.id}:${refundedAmount}`, "refund_issued", reason)],
  });
}

function openDispute(input: DecideInput): Decision {
  const { order, command, event, now } = input;
  if (command.kind !== "dispute_opened") throw new Error("openDispute needs dispute_opened");
  if (order.dispute?.id === command.disputeId) return unchanged(input, "dispute_already_recorded", null);
  if (order.status === "disputed") return refused(input);
  const reason = `dispute ${command.disputeId} opened (${command.disputeStatus})`;
  return applied(input, {
    result: "disputed",
    reason,
    patch: {
      ...transition(order, "disputed", now, event.id, reason),
      dispute: { id: command.disputeId, status: command.disputeStatus, amount: command.amount, priorStatus: order.status, openedAt: now },
    },
    stockChanges: [],
    notify: [adminAlert(input, reason)],
  });
}

function closeDispute(input: DecideInput): Decision {
  const { order, command, event, now } = input;
  if (command.kind !== "dispute_closed") throw new Error("closeDispute needs dispute_closed");
  const current = order.dispute;
  if (current?.id === command.disputeId && current.closedAt !== undefined) return unchanged(input, "dispute_already_recorded", null);
  if (order.status === "disputed" && current?.id !== command.disputeId) return refused(input);
  const lost = command.disputeStatus === "lost";
  const priorStatus = current?.id === command.disputeId ? current.priorStatus : order.status;
  const status: OrderStatus = lost ? "disputed" : priorStatus;
  const reason = `dispute ${command.disputeId} closed: ${command.disputeStatus}`;
  return applied(input, {
    result: lost ? "dispute_lost" : "dispute_won",
    reason,
    patch: {
      ...transition(order, status, now, event.id, reason),
      dispute: {
        id: command.disputeId,
        status: command.disputeStatus,
        amount: command.amount,
        priorStatus,
        openedAt: current?.id === command.disputeId ? current.openedAt : now,
        closedAt: now,
      },
    },
    stockChanges: [],
    notify: lost ? [adminAlert(input, reason)] : [],
  });
}

/** Why lines could not be served: SKUs that cannot name a product are told apart from real shortages. */
export function describeShort(skus: readonly string[]): string {
  const invalid = skus.filter((sku) => !isDocumentId(sku));
  const short = skus.filter((sku) => isDocumentId(sku));
  return [
    ...(invalid.length > 0 ? [`invalid SKU ${invalid.map((sku) => JSON.stringify(sku)).join(", ")}`] : []),
    ...(short.length > 0 ? [`insufficient stock for ${short.join(", ")}`] : []),
  ].join("; ");
}

/** Releases what a `reserved` order holds, never taking `reserved` below zero. */
export function releaseReservation(order: Order, stock: ReadonlyMap<string, StockLevel>): StockChange[] {
  return [...quantitiesBySku(order.items)].map(([sku, qty]) => ({
    sku,
    stock: 0,
    reserved: -Math.min(qty, stock.get(sku)?.reserved ?? 0),
  }));
}

/** The payment ids an event reveals that the order has not stored yet. */
function paymentIdsToStore({ order, command, retry }: DecideInput): OrderPatch {
  const patch: OrderPatch = {};
  if (command.paymentIntentId && (retry || !order.paymentIntentId)) patch.paymentIntentId = command.paymentIntentId;
  if (command.checkoutSessionId && (retry || !order.checkoutSessionId)) patch.checkoutSessionId = command.checkoutSessionId;
  return patch;
}

export function transition(order: Order, to: OrderStatus, now: Date, eventId: string | null, reason: string): OrderPatch {
  if (to === order.status) return { updatedAt: now };
  const change: StatusChange = { from: order.status, to, at: now, eventId, reason };
  return { status: to, statusHistory: [...(order.statusHistory ?? []), change], updatedAt: now };
}

function notification(input: DecideInput, id: string, kind: NotificationKind, detail: string | null): NotificationDraft {
  return { id, kind, orderId: input.order.id, userId: input.order.userId, eventId: input.event.id, detail };
}

function adminAlert(input: DecideInput, detail: string): NotificationDraft {
  return notification(input, `admin_alert:${input.event.id}`, "admin_alert", detail);
}

interface Applied {
  result: string;
  reason: string | null;
  patch: OrderPatch;
  stockChanges: StockChange[];
  notify: NotificationDraft[];
}

function applied(input: DecideInput, a: Applied): Decision {
  return {
    kind: "apply",
    status: "processed",
    result: a.result,
    orderPatch: a.patch,
    stockChanges: a.stockChanges.filter((c) => c.stock !== 0 || c.reserved !== 0),
    audit: audit(input, a.result, a.reason, a.patch.status ?? input.order.status),
    notifications: a.notify,
  };
}

function unchanged(input: DecideInput, result: string, reason: string | null): Decision {
  return {
    kind: "apply",
    status: "processed",
    result,
    orderPatch: null,
    stockChanges: [],
    audit: audit(input, result, reason, input.order.status),
    notifications: [],
  };
}

function refused(input: DecideInput): Decision {
  const reason = `no transition for ${input.command.kind} from ${input.order.status}`;
  return unchanged(input, "refused_transition", reason);
}

function rejected(input: DecideInput, reason: string): Decision {
  return {
    kind: "apply",
    status: "rejected",
    result: reason,
    orderPatch: null,
    stockChanges: [],
    audit: audit(input, reason, `event does not match the order: ${reason}`, input.order.status),
    notifications: [adminAlert(input, `rejected ${input.event.type} ${input.event.id}: ${reason}`)],
  };
}

function audit(input: DecideInput, result: string, reason: string | null, after: OrderStatus): AuditEntry {
  return {
    eventId: input.event.id,
    eventType: input.event.type,
    orderId: input.order.id,
    action: input.command.kind,
    result,
    reason,
    before: input.order.status,
    after,
    at: input.now,
  };
}
