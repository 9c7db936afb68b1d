#!/usr/bin/env node
// Seeds demo data into the Firestore EMULATOR (never production) for project demo-stripe-orders.
//
//   node scripts/emulators.mjs exec --only firestore "node scripts/seed.mjs"   (seed, then exit)
//   node scripts/seed.mjs --serve [--ready-file <path>]                         (used by `npm start`)
//
// Idempotent: each products/{sku} and orders/demo-order-1 is created only if it does not exist
// yet, so re-running never resets stock, reservations or an order's progress.
// With --serve it then prints the local Stripe banner and waits for Ctrl-C / SIGTERM (it also
// exits by itself once the emulators are gone). --ready-file is written after the banner.

import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const PROJECT_ID = "demo-stripe-orders";
const REGION = "us-central1";
const ALREADY_EXISTS = 6; // gRPC status code

// Prices in integer minor units (cents), operator-owned like stock: createCheckout prices orders from them.
export const DEMO_PRODUCTS = [
  { sku: "tshirt", name: "Stripe T-shirt", stock: 50, price: 2000, currency: "usd", active: true },
  { sku: "mug", name: "Stripe Mug", stock: 20, price: 1200, currency: "usd", active: true },
  { sku: "sticker-pack", name: "Stripe Sticker Pack", stock: 500, price: 500, currency: "usd", active: true },
  { sku: "hoodie", name: "Stripe Hoodie", stock: 5, price: 5500, currency: "usd", active: true },
  // Retired: readable, not for sale (checkout answers invalid-argument).
  { sku: "poster-2019", name: "Stripe Poster (2019)", stock: 3, price: 1500, currency: "usd", active: false },
];
export const DEMO_ORDER_ID = "demo-order-1";

function isAlreadyExists(err) {
  return err?.code === ALREADY_EXISTS || err?.code === "already-exists" || /ALREADY_EXISTS/.test(String(err?.message));
}

/** Creates `ref` with `data` unless it exists; resolves true when created, false when already there. */
async function createIfMissing(ref, data) {
  try {
    await ref.create(data);
    return true;
  } catch (err) {
    if (isAlreadyExists(err)) return false;
    throw err;
  }
}

export async function seed() {
  if (!process.env.FIRESTORE_EMULATOR_HOST) {
    throw new Error(
      "FIRESTORE_EMULATOR_HOST is not set, and this script only writes to the emulator: run it through " +
        '`node scripts/emulators.mjs exec --only firestore "node scripts/seed.mjs"` (or `npm start`, which seeds by itself).',
    );
  }
  // Emulator only: skip google-auth's GCE metadata-server probe (a noisy, pointless network call here).
  process.env.METADATA_SERVER_DETECTION ??= "none";
  const requireFromFunctions = createRequire(path.join(ROOT, "functions", "package.json"));
  const { initializeApp, getApps, deleteApp } = requireFromFunctions("firebase-admin/app");
  const { getFirestore, Timestamp } = requireFromFunctions("firebase-admin/firestore");

  const app = getApps().find((a) => a.name === "seed") ?? initializeApp({ projectId: PROJECT_ID }, "seed");
  const db = getFirestore(app);
  try {
    const productResults = await Promise.all(
      DEMO_PRODUCTS.map(async ({ sku, name, stock, price, currency, active }) => ({
        sku,
        created: await createIfMissing(db.collection("products").doc(sku), {
          name,
          stock,
          reserved: 0,
          price,
          currency,
          active,
        }),
      })),
    );
    const orderCreated = await createIfMissing(db.collection("orders").doc(DEMO_ORDER_ID), {
      userId: "demo-user",
      items: [{ sku: "tshirt", qty: 1 }],
      amount: 2000,
      currency: "usd",
      status: "pending",
      createdAt: Timestamp.now(),
    });

    const created = productResults.filter((r) => r.created).map((r) => r.sku);
    const existing = productResults.filter((r) => !r.created).map((r) => r.sku);
    const parts = [];
    if (created.length) parts.push(`created products ${created.join(", ")}`);
    if (existing.length) parts.push(`products already present: ${existing.join(", ")}`);
    parts.push(orderCreated ? `created orders/${DEMO_ORDER_ID}` : `orders/${DEMO_ORDER_ID} already seeded`);
    console.log(`[seed] ${process.env.FIRESTORE_EMULATOR_HOST} (${PROJECT_ID}): ${parts.join("; ")}.`);
    return { createdProducts: created, existingProducts: existing, orderCreated };
  } finally {
    await deleteApp(app);
  }
}

/** Running emulators as reported by the hub (null when it cannot be reached). */
async function hubEmulators(timeoutMs = 2000) {
  const hub = process.env.FIREBASE_EMULATOR_HUB;
  if (!hub) return null;
  try {
    const res = await fetch(`http://${hub}/emulators`, { signal: AbortSignal.timeout(timeoutMs) });
    return res.ok ? await res.json() : null;
  } catch {
    return null;
  }
}

function hostPort(info, fallbackHost, fallbackPort) {
  const host = info?.host ?? fallbackHost;
  const port = info?.port ?? fallbackPort;
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

function firebaseJsonEmulators() {
  try {
    return JSON.parse(fs.readFileSync(path.join(ROOT, "firebase.json"), "utf8")).emulators ?? {};
  } catch {
    return {};
  }
}

export function banner({ functionsHostPort, uiUrl, projectId = PROJECT_ID, standinUrl = defaultStandinUrl() }) {
  const webhookUrl = `http://${functionsHostPort}/${projectId}/${REGION}/stripeWebhook`;
  const rule = "-".repeat(78);
  return [
    "",
    rule,
    ` stripe-orders emulators are running (project ${projectId}). Press Ctrl-C to stop.`,
    "",
    ` Webhook URL:   ${webhookUrl}`,
    ` Stripe (local test-mode stand-in): ${standinUrl}`,
    ...(uiUrl ? [` Emulator UI:   ${uiUrl}`] : []),
    "",
    " Buy offline, end to end (sign in, createCheckout, pay with pm_card_visa, watch the order):",
    "      npm run demo:buy -- tshirt 2",
    "",
    " With a real Stripe test account instead:",
    " 1. Put your sk_test_... in functions/.secret.local (STRIPE_SECRET_KEY), drop STRIPE_API_* from",
    "    functions/.env.local, and forward Stripe's events:",
    `      stripe listen --forward-to ${webhookUrl}`,
    " 2. Append the whsec_... that `stripe listen` prints to STRIPE_WEBHOOK_SECRET in",
    "    functions/.secret.local (a comma-separated list is accepted), then restart `npm start`.",
    ` 3. Pay the seeded order ${DEMO_ORDER_ID}:`,
    `      stripe trigger payment_intent.succeeded --override payment_intent:amount=2000 --override payment_intent:currency=usd --add payment_intent:metadata.orderId=${DEMO_ORDER_ID}`,
    rule,
    "",
  ].join("\n");
}

function defaultStandinUrl() {
  return `http://127.0.0.1:${process.env.STRIPE_STANDIN_PORT || 12111}`;
}

/** Prints the banner, then waits until a signal arrives or the emulators (our parent) go away. */
async function serve(readyFile) {
  const running = (await hubEmulators()) ?? {};
  const configured = firebaseJsonEmulators();
  const functionsHostPort = hostPort(running.functions, configured.functions?.host ?? "127.0.0.1", configured.functions?.port ?? 5001);
  const uiUrl = running.ui ? `http://${hostPort(running.ui, "127.0.0.1", 4000)}` : null;
  console.log(banner({ functionsHostPort, uiUrl, projectId: process.env.GCLOUD_PROJECT || PROJECT_ID }));
  if (readyFile) fs.writeFileSync(readyFile, `${new Date().toISOString()}\n`);

  await new Promise((resolve) => {
    let timer = null;
    const done = () => {
      clearInterval(timer);
      resolve();
    };
    for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.once(signal, done);
    // Never outlive the emulators: stop when orphaned or when the hub has been gone a few times.
    const parent = process.ppid;
    let misses = 0;
    timer = setInterval(async () => {
      if (process.ppid !== parent) return done();
      misses = (await hubEmulators(1500)) ? 0 : misses + 1;
      if (misses >= 3) done();
    }, 2000);
  });
}

function argValue(argv, name) {
  const i = argv.indexOf(name);
  if (i !== -1) return argv[i + 1];
  const prefixed = argv.find((a) => a.startsWith(`${name}=`));
  return prefixed ? prefixed.slice(name.length + 1) : undefined;
}

const isEntryPoint = (() => {
  try {
    return process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
})();

if (isEntryPoint) {
  const argv = process.argv.slice(2);
  try {
    await seed();
    if (argv.includes("--serve")) {
      const readyFile = argValue(argv, "--ready-file");
      await serve(readyFile ? path.resolve(readyFile) : undefined);
    }
    process.exit(0);
  } catch (err) {
    console.error(`[seed] ${err?.message ?? err}`);
    process.exit(1);
  }
}
