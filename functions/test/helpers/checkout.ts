import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "chai";
import { deleteApp, initializeApp, type FirebaseApp } from "firebase/app";
import { connectAuthEmulator, getAuth, signInAnonymously } from "firebase/auth";
import { connectFirestoreEmulator, getFirestore, type Firestore as ClientFirestore } from "firebase/firestore";
import { connectFunctionsEmulator, FunctionsError, getFunctions, httpsCallable } from "firebase/functions";
import type { QueryDocumentSnapshot } from "firebase-admin/firestore";
import Stripe from "stripe";
import { db, PROJECT_ID, REGION, uniqueId } from "./emulator";

/** Checkout tests: shoppers through the Firebase client SDK, and the Stripe stand-in through the real `stripe` package. */

function hostPort(envValue: string | undefined, fallback: string): { host: string; port: number } {
  const raw = envValue ?? fallback;
  const i = raw.lastIndexOf(":");
  return { host: raw.slice(0, i), port: Number(raw.slice(i + 1)) };
}

export interface Shopper {
  app: FirebaseApp;
  /** null when the shopper is not signed in. */
  uid: string | null;
  firestore: ClientFirestore;
  checkout(data: unknown): Promise<Record<string, unknown>>;
}

const apps: FirebaseApp[] = [];

/** A client app of its own (so each test has its own user), connected to the emulators. */
export async function shopper({ signedIn = true }: { signedIn?: boolean } = {}): Promise<Shopper> {
  const app = initializeApp({ apiKey: "demo-api-key", projectId: PROJECT_ID, appId: "demo-app" }, uniqueId("shopper"));
  apps.push(app);
  const auth = getAuth(app);
  connectAuthEmulator(auth, `http://${process.env.FIREBASE_AUTH_EMULATOR_HOST ?? "127.0.0.1:9099"}`, { disableWarnings: true });
  const functions = getFunctions(app, REGION);
  const fn = hostPort(process.env.FUNCTIONS_EMULATOR_HOST, `127.0.0.1:${process.env.FUNCTIONS_EMULATOR_PORT ?? "5001"}`);
  connectFunctionsEmulator(functions, fn.host, fn.port);
  const firestore = getFirestore(app);
  const fs = hostPort(process.env.FIRESTORE_EMULATOR_HOST, "127.0.0.1:8080");
  connectFirestoreEmulator(firestore, fs.host, fs.port);
  const uid = signedIn ? (await signInAnonymously(auth)).user.uid : null;
  const call = httpsCallable<unknown, Record<string, unknown>>(functions, "createCheckout");
  return { app, uid, firestore, checkout: async (data) => (await call(data)).data };
}

export async function closeShoppers(): Promise<void> {
  await Promise.all(apps.splice(0).map((app) => deleteApp(app)));
}

export function signedInUid(s: Shopper): string {
  if (s.uid === null) throw new Error("shopper is not signed in");
  return s.uid;
}

/** Awaits a call that must fail with callable code `code`; returns the error's details. */
export async function expectCallableError(promise: Promise<unknown>, code: string): Promise<Record<string, unknown>> {
  try {
    await promise;
  } catch (error) {
    if (!(error instanceof FunctionsError)) throw error;
    expect(error.code, error.message).to.equal(`functions/${code}`);
    return (error.details ?? {}) as Record<string, unknown>;
  }
  throw new Error(`expected the call to fail with ${code}, it succeeded`);
}

export function newIdempotencyKey(): string {
  return uniqueId("key").replace(/[^A-Za-z0-9_-]/g, "_");
}

// ------------------------------------------------------------------------------------------------
// The Stripe stand-in
// ------------------------------------------------------------------------------------------------

export function standinOrigin(): string {
  return `http://127.0.0.1:${process.env.STRIPE_STANDIN_PORT ?? "12111"}`;
}

/** The test secret key of functions/.secret.local: the one the emulated functions use. */
export function stripeSecretKey(): string {
  const text = readFileSync(join(__dirname, "..", "..", ".secret.local"), "utf8");
  const line = text.split("\n").find((l) => l.startsWith("STRIPE_SECRET_KEY="));
  if (!line) throw new Error("functions/.secret.local has no STRIPE_SECRET_KEY line");
  return line.slice("STRIPE_SECRET_KEY=".length).trim();
}

let client: Stripe | undefined;

/** The real `stripe` package, pointed at the stand-in. */
export function standinStripe(): Stripe {
  const { port } = new URL(standinOrigin());
  client ??= new Stripe(stripeSecretKey(), { host: "127.0.0.1", port: Number(port), protocol: "http", maxNetworkRetries: 0 });
  return client;
}

async function standinControl(path: string, body: unknown): Promise<unknown> {
  const response = await fetch(`${standinOrigin()}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const text = await response.text();
  if (!response.ok) throw new Error(`stand-in ${path} answered ${response.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

/** The next `times` requests matching method + path answer `status` with Stripe's api_error shape. */
export async function injectStripeFault(fault: { method: string; path: string; status: number; times: number }): Promise<void> {
  await standinControl("/__standin/faults", fault);
}

/** Pays a Checkout Session as a shopper would on Stripe's page. */
export async function completeCheckoutSession(sessionId: string, paymentMethod = "pm_card_visa"): Promise<void> {
  await standinControl(`/__standin/checkout/sessions/${sessionId}/complete`, { payment_method: paymentMethod });
}

export async function paymentIntentsOf(customer: string): Promise<Stripe.PaymentIntent[]> {
  return (await standinStripe().paymentIntents.list({ customer, limit: 100 })).data;
}

// ------------------------------------------------------------------------------------------------
// Firestore (Admin SDK) views of what a checkout wrote
// ------------------------------------------------------------------------------------------------

export interface PricedProductSeed {
  price?: number;
  currency?: string;
  active?: boolean;
  stock?: number;
}

/** A product of the test's own, with a price. */
export async function pricedProduct(seed: PricedProductSeed = {}): Promise<string> {
  const sku = uniqueId("sku");
  await db()
    .collection("products")
    .doc(sku)
    .set({
      name: `Product ${sku}`,
      stock: seed.stock ?? 10,
      reserved: 0,
      ...(seed.price === undefined ? { price: 1000 } : { price: seed.price }),
      currency: seed.currency ?? "usd",
      ...(seed.active === undefined ? {} : { active: seed.active }),
    });
  return sku;
}

export async function ordersOf(uid: string): Promise<QueryDocumentSnapshot[]> {
  return (await db().collection("orders").where("userId", "==", uid).get()).docs;
}

export async function stripeCustomerOf(uid: string): Promise<string | undefined> {
  return (await db().collection("customers").doc(uid).get()).get("stripeCustomerId") as string | undefined;
}

export async function recordedCheckouts(uid: string): Promise<number> {
  const snapshot = await db().collection("rateLimits").doc(uid).get();
  return snapshot.exists ? (snapshot.get("checkouts") as unknown[]).length : 0;
}

export async function notificationsOf(orderId: string, kind: string): Promise<QueryDocumentSnapshot[]> {
  return (await db().collection("notifications").where("orderId", "==", orderId).where("kind", "==", kind).get()).docs;
}
