import { readFileSync } from "node:fs";
import { join } from "node:path";
import { getApps, initializeApp } from "firebase-admin/app";
import { getFirestore, Timestamp, type Firestore } from "firebase-admin/firestore";
import { signatureHeader, type StripeEventEnvelope } from "./stripeFixtures";

/** Everything emulator tests share: the project, the endpoint, the committed test secret, waits. */

export const PROJECT_ID = "demo-stripe-orders";
export const REGION = "us-central1";

export function functionsOrigin(): string {
  return `http://127.0.0.1:${process.env.FUNCTIONS_EMULATOR_PORT ?? "5001"}`;
}

export function webhookUrl(): string {
  return `${functionsOrigin()}/${PROJECT_ID}/${REGION}/stripeWebhook`;
}

/** The first secret of functions/.secret.local: the one the emulated function is configured with. */
export function webhookSecret(): string {
  const text = readFileSync(join(__dirname, "..", "..", ".secret.local"), "utf8");
  const line = text.split("\n").find((l) => l.startsWith("STRIPE_WEBHOOK_SECRET="));
  if (!line) throw new Error("functions/.secret.local has no STRIPE_WEBHOOK_SECRET line");
  return line.slice("STRIPE_WEBHOOK_SECRET=".length).split(",")[0].trim();
}

export function db(): Firestore {
  if (!process.env.FIRESTORE_EMULATOR_HOST) {
    throw new Error("FIRESTORE_EMULATOR_HOST is not set: run these tests through `npm test` or `npm run emulators:exec`.");
  }
  const app = getApps()[0] ?? initializeApp({ projectId: PROJECT_ID });
  return getFirestore(app);
}

export interface Delivery {
  status: number;
  body: Record<string, unknown>;
}

export async function post(body: string, headers: Record<string, string>, method = "POST"): Promise<Delivery> {
  const response = await fetch(webhookUrl(), {
    method,
    headers: { "content-type": "application/json", ...headers },
    body: method === "GET" || method === "HEAD" ? undefined : body,
  });
  const text = await response.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    parsed = { raw: text };
  }
  return { status: response.status, body: parsed };
}

/** Signs and delivers an event the way Stripe does. */
export async function deliver(envelope: StripeEventEnvelope, secret = webhookSecret()): Promise<Delivery> {
  const payload = JSON.stringify(envelope);
  return post(payload, { "stripe-signature": signatureHeader(payload, secret) });
}

/** Polls until `check` returns a value, or fails with what it last saw when the deadline passes. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined | null | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
    try {
      const value = await check();
      if (value !== undefined && value !== null && value !== false) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}; last: ${String(last)}`);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

export async function seedProduct(sku: string, stock: number, reserved = 0): Promise<void> {
  await db().collection("products").doc(sku).set({ name: `Product ${sku}`, stock, reserved });
}

export interface OrderSeed {
  id: string;
  userId?: string;
  items: { sku: string; qty: number }[];
  amount: number;
  currency?: string;
  status?: string;
  paymentIntentId?: string;
  checkoutSessionId?: string;
  /** Defaults to now; tests of the sweep seed their orders in their own window far in the past (see pastWindow). */
  createdAt?: Date;
}

export async function createOrder(o: OrderSeed): Promise<void> {
  await db()
    .collection("orders")
    .doc(o.id)
    .create({
      userId: o.userId ?? "user-1",
      items: o.items,
      amount: o.amount,
      currency: o.currency ?? "usd",
      status: o.status ?? "pending",
      createdAt: o.createdAt ? Timestamp.fromDate(o.createdAt) : Timestamp.now(),
      ...(o.paymentIntentId ? { paymentIntentId: o.paymentIntentId } : {}),
      ...(o.checkoutSessionId ? { checkoutSessionId: o.checkoutSessionId } : {}),
    });
}

/** A product with `stock` units and one order for `qty` of them, reserved by the trigger. */
export async function reservedOrder(stock: number, qty: number, amount = 1500): Promise<{ sku: string; orderId: string; amount: number }> {
  const sku = uniqueId("sku");
  const orderId = uniqueId("order");
  await seedProduct(sku, stock);
  await createOrder({ id: orderId, items: [{ sku, qty }], amount });
  await waitForOrderStatus(orderId, "reserved");
  return { sku, orderId, amount };
}

export async function orderData(id: string): Promise<Record<string, unknown>> {
  const snapshot = await db().collection("orders").doc(id).get();
  if (!snapshot.exists) throw new Error(`orders/${id} does not exist`);
  return snapshot.data() as Record<string, unknown>;
}

export async function productData(sku: string): Promise<{ stock: number; reserved: number }> {
  const data = (await db().collection("products").doc(sku).get()).data();
  if (!data) throw new Error(`products/${sku} does not exist`);
  return { stock: Number(data.stock), reserved: Number(data.reserved) };
}

export async function waitForOrderStatus(id: string, status: string): Promise<Record<string, unknown>> {
  return eventually(`orders/${id} to be ${status}`, async () => {
    const data = await orderData(id);
    return data.status === status ? data : undefined;
  });
}

export async function countWhere(collection: string, field: string, value: string): Promise<number> {
  const snapshot = await db().collection(collection).where(field, "==", value).count().get();
  return snapshot.data().count;
}

export interface Footprint {
  events: Record<string, { webhookEvent: unknown; deadLetter: unknown; auditEntries: string[]; notifications: string[] }>;
  orders: Record<string, { order: unknown; auditEntries: string[]; notifications: string[] }>;
  products: Record<string, unknown>;
}

/**
 * Everything the backend can write about a test's own ids: the documents named by its event ids
 * (webhookEvents, deadLetters, and the audit entries and notifications that name them), its orders
 * (the documents, their audit entries and notifications) and its products. Two equal footprints mean
 * nothing was written for those ids. Notifications and audit entries are compared by id, since the
 * delivery trigger may still move a notification from `queued` to `sent`.
 */
export async function footprint(ids: { eventIds?: string[]; orderIds?: string[]; skus?: string[] }): Promise<Footprint> {
  const database = db();
  const idsWhere = async (collection: string, field: string, value: string) =>
    (await database.collection(collection).where(field, "==", value).get()).docs.map((d) => d.id).sort();
  const data = async (collection: string, id: string) => (await database.collection(collection).doc(id).get()).data() ?? null;
  const result: Footprint = { events: {}, orders: {}, products: {} };
  for (const id of ids.eventIds ?? []) {
    result.events[id] = {
      webhookEvent: await data("webhookEvents", id),
      deadLetter: await data("deadLetters", id),
      auditEntries: await idsWhere("auditLog", "eventId", id),
      notifications: await idsWhere("notifications", "eventId", id),
    };
  }
  for (const id of ids.orderIds ?? []) {
    result.orders[id] = { order: await data("orders", id), auditEntries: await idsWhere("auditLog", "orderId", id), notifications: await idsWhere("notifications", "orderId", id) };
  }
  for (const sku of ids.skus ?? []) result.products[sku] = await data("products", sku);
  return result;
}

/** The notifications of one kind whose `field` (orderId, eventId) names one of this test's ids. */
export async function notificationsWhere(field: "orderId" | "eventId", value: string, kind?: string): Promise<Record<string, unknown>[]> {
  let query = db().collection("notifications").where(field, "==", value);
  if (kind !== undefined) query = query.where("kind", "==", kind);
  return (await query.get()).docs.map((d) => ({ id: d.id, ...d.data() }));
}

/**
 * A window of time of this test's own, far in the past (a random minute of 2001): the scheduled cores
 * (sweep, re-drive) take `now` from their deps, so a test that seeds its documents at `start` and runs
 * the core with a clock just after it never makes another test's documents (stamped with today's time)
 * candidates.
 */
export function pastWindow(): { start: Date; after: (ms: number) => Date } {
  const year = Date.UTC(2001, 0, 1);
  const minute = Math.floor(Math.random() * 364 * 24 * 60);
  const start = new Date(year + minute * 60_000);
  return { start, after: (ms) => new Date(start.getTime() + ms) };
}

/** Unique ids per test, so tests never see each other's documents. */
export function uniqueId(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Pauses / resumes Firestore-triggered functions through the Emulator Hub (HTTP functions keep running). */
/** Runs `work` with the deployed background triggers paused, and resumes them whatever happens. */
export async function withTriggersPaused<T>(work: () => Promise<T>): Promise<T> {
  await setBackgroundTriggers(false);
  try {
    return await work();
  } finally {
    await setBackgroundTriggers(true);
  }
}

async function setBackgroundTriggers(enabled: boolean): Promise<void> {
  const hub = process.env.FIREBASE_EMULATOR_HUB ?? "127.0.0.1:4400";
  const path = enabled ? "enableBackgroundTriggers" : "disableBackgroundTriggers";
  const response = await fetch(`http://${hub}/functions/${path}`, { method: "PUT" });
  if (!response.ok) throw new Error(`Emulator Hub refused ${path}: ${response.status} ${await response.text()}`);
}
