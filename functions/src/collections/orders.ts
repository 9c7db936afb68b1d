import type { DocumentReference, Firestore, FirestoreDataConverter, Query, QueryDocumentSnapshot } from "firebase-admin/firestore";
import { toCount, toDate, toOptionalDate, withoutUndefined } from "./firestoreValues";

export const ORDERS = "orders";

export const ORDER_STATUSES = [
  "pending",
  "reserved",
  "out_of_stock",
  "finalized",
  "canceled",
  "needs_review",
  "refunded",
  "partially_refunded",
  "disputed",
] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

export interface OrderLine {
  sku: string;
  qty: number;
}

export interface StatusChange {
  from: OrderStatus;
  to: OrderStatus;
  at: Date;
  eventId: string | null;
  reason: string;
}

export interface PaymentFailure {
  eventId: string;
  code: string | null;
  message: string | null;
  at: Date;
}

export interface DisputeRecord {
  id: string;
  status: string;
  amount: number;
  /** Status to return to when the dispute is won. */
  priorStatus: OrderStatus;
  openedAt: Date;
  closedAt?: Date;
}

/** `orders/{orderId}`. The client app creates it `pending`; every other field is owned by the backend. */
export interface Order {
  id: string;
  userId: string;
  items: OrderLine[];
  /** Integer minor units (cents). */
  amount: number;
  /** Lowercase ISO 4217. */
  currency: string;
  status: OrderStatus;
  createdAt: Date;
  paymentIntentId?: string;
  checkoutSessionId?: string;
  webhookEventId?: string;
  finalizedAt?: Date;
  refundedAmount?: number;
  statusHistory?: StatusChange[];
  reservedAt?: Date;
  /**
   * For sharded products: where each SKU's units were reserved or taken from, so release, consume and
   * restock hit the same shards. Stored as the shard number when one shard holds the whole line (the
   * common case), or as `{ shard: units }` when the line had to be split over several.
   */
  stockShards?: Record<string, ShardHolding>;
  /**
   * PaymentIntent and Checkout Session ids whose attempt failed, expired or was canceled: a later,
   * different payment for the order is the customer's retry, not a spoof.
   */
  endedPaymentIds?: string[];
  lastPaymentFailure?: PaymentFailure;
  paymentFailures?: number;
  dispute?: DisputeRecord;
  reviewReason?: string;
  updatedAt?: Date;
  /** Absent on orders that did not come from `createCheckout` (seeded, or created before it existed). */
  checkout?: CheckoutFields;
}

export type ShardHolding = number | Record<string, number>;

export const CHECKOUT_UIS = ["payment_intent", "checkout_session"] as const;
export type CheckoutUi = (typeof CHECKOUT_UIS)[number];

/** A line as it was priced when the order was created: a retry sends Stripe exactly these figures again. */
export interface PricedLine extends OrderLine {
  /** Integer minor units, from `products/{sku}.price` at creation. */
  unitAmount: number;
  name: string;
}

/** What `createCheckout` was asked, kept on the order it created; written once, never updated. */
export interface CheckoutFields {
  idempotencyKey: string;
  ui: CheckoutUi;
  lines: PricedLine[];
  successUrl?: string;
  cancelUrl?: string;
}

/** Backend-owned fields the decision may change; `id` and the client's fields never change. */
export type OrderPatch = Partial<Omit<Order, "id" | "userId" | "items" | "amount" | "currency" | "createdAt" | "checkout">>;

function isStatus(value: unknown): value is OrderStatus {
  return typeof value === "string" && (ORDER_STATUSES as readonly string[]).includes(value);
}

function toLines(value: unknown): OrderLine[] {
  if (!Array.isArray(value)) return [];
  return value.map((line: unknown) => {
    const l = (typeof line === "object" && line !== null ? line : {}) as Record<string, unknown>;
    // Kept as found: a SKU that is not a usable document id is refused by the decisions, never looked up.
    return { sku: typeof l.sku === "string" ? l.sku : "", qty: toCount(l.qty) };
  });
}

function toHistory(value: unknown): StatusChange[] | undefined {
  if (!Array.isArray(value)) return undefined;
  return value.map((entry: Record<string, unknown>) => ({
    from: entry.from as OrderStatus,
    to: entry.to as OrderStatus,
    at: toDate(entry.at),
    eventId: typeof entry.eventId === "string" ? entry.eventId : null,
    reason: String(entry.reason ?? ""),
  }));
}

function toDispute(value: unknown): DisputeRecord | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const d = value as Record<string, unknown>;
  // Without an undefined `closedAt`: the record is spread into later patches, and Firestore refuses undefined.
  return withoutUndefined({
    id: String(d.id),
    status: String(d.status),
    amount: toCount(d.amount),
    priorStatus: isStatus(d.priorStatus) ? d.priorStatus : "finalized",
    openedAt: toDate(d.openedAt),
    closedAt: toOptionalDate(d.closedAt),
  }) as DisputeRecord;
}

function toFailure(value: unknown): PaymentFailure | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const f = value as Record<string, unknown>;
  return {
    eventId: String(f.eventId),
    code: typeof f.code === "string" ? f.code : null,
    message: typeof f.message === "string" ? f.message : null,
    at: toDate(f.at),
  };
}

function toShardMap(value: unknown): Record<string, ShardHolding> | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  return Object.fromEntries(
    Object.entries(value).map(([sku, holding]): [string, ShardHolding] => [
      sku,
      typeof holding === "object" && holding !== null
        ? Object.fromEntries(Object.entries(holding).map(([shard, units]) => [shard, toCount(units)]))
        : toCount(holding),
    ]),
  );
}

function toPricedLines(value: unknown): PricedLine[] {
  if (!Array.isArray(value)) return [];
  return value.map((line: unknown) => {
    const l = (typeof line === "object" && line !== null ? line : {}) as Record<string, unknown>;
    return { sku: String(l.sku ?? ""), qty: toCount(l.qty), unitAmount: toCount(l.unitAmount), name: String(l.name ?? l.sku ?? "") };
  });
}

function toCheckout(value: unknown): CheckoutFields | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const c = value as Record<string, unknown>;
  const ui = (CHECKOUT_UIS as readonly unknown[]).includes(c.ui) ? (c.ui as CheckoutUi) : "payment_intent";
  return withoutUndefined({
    idempotencyKey: String(c.idempotencyKey ?? ""),
    ui,
    lines: toPricedLines(c.lines),
    successUrl: typeof c.successUrl === "string" ? c.successUrl : undefined,
    cancelUrl: typeof c.cancelUrl === "string" ? c.cancelUrl : undefined,
  }) as CheckoutFields;
}

function toStringList(value: unknown): string[] | undefined {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : undefined;
}

function optionalString(value: unknown): string | undefined {
  return typeof value === "string" && value.length > 0 ? value : undefined;
}

export function orderFromData(id: string, data: Record<string, unknown>): Order {
  if (!isStatus(data.status)) {
    throw new TypeError(`orders/${id} has an unknown status ${JSON.stringify(data.status)}`);
  }
  return withoutUndefined({
    id,
    userId: String(data.userId ?? ""),
    items: toLines(data.items),
    amount: toCount(data.amount),
    currency: String(data.currency ?? "").toLowerCase(),
    status: data.status,
    createdAt: toDate(data.createdAt),
    paymentIntentId: optionalString(data.paymentIntentId),
    checkoutSessionId: optionalString(data.checkoutSessionId),
    webhookEventId: optionalString(data.webhookEventId),
    finalizedAt: toOptionalDate(data.finalizedAt),
    refundedAmount: data.refundedAmount === undefined ? undefined : toCount(data.refundedAmount),
    statusHistory: toHistory(data.statusHistory),
    reservedAt: toOptionalDate(data.reservedAt),
    stockShards: toShardMap(data.stockShards),
    lastPaymentFailure: toFailure(data.lastPaymentFailure),
    paymentFailures: data.paymentFailures === undefined ? undefined : toCount(data.paymentFailures),
    dispute: toDispute(data.dispute),
    reviewReason: optionalString(data.reviewReason),
    endedPaymentIds: toStringList(data.endedPaymentIds),
    checkout: toCheckout(data.checkout),
    updatedAt: toOptionalDate(data.updatedAt),
  }) as Order;
}

export const orderConverter: FirestoreDataConverter<Order> = {
  toFirestore(order) {
    const { id: _id, checkout, ...data } = order as Order;
    return withoutUndefined({ ...data, checkout: checkout ? withoutUndefined(checkout) : undefined });
  },
  fromFirestore(snapshot: QueryDocumentSnapshot): Order {
    return orderFromData(snapshot.id, snapshot.data());
  },
};

export function orderRef(db: Firestore, orderId: string): DocumentReference<Order> {
  return db.collection(ORDERS).doc(orderId).withConverter(orderConverter);
}

/** Charges, refunds and disputes name only their PaymentIntent; two matches would be a data error. */
export function ordersByPaymentIntent(db: Firestore, paymentIntentId: string): Query<Order> {
  return db.collection(ORDERS).where("paymentIntentId", "==", paymentIntentId).limit(2).withConverter(orderConverter);
}

/** Quantities per SKU: an order may list one SKU on several lines. */
export function quantitiesBySku(items: readonly OrderLine[]): Map<string, number> {
  const bySku = new Map<string, number>();
  for (const { sku, qty } of items) bySku.set(sku, (bySku.get(sku) ?? 0) + qty);
  return bySku;
}
