#!/usr/bin/env node
// Buys a demo product end to end on the local emulators, the way a shop's web app would:
//
//   npm run demo:buy -- tshirt 2          (while `npm start` runs, in another terminal)
//
// 1. signs in a demo user on the Auth emulator (Firebase client SDK),
// 2. calls the `createCheckout` callable with SKUs and quantities only (the server prices them),
// 3. watches the order through the client SDK (the user may read their own orders),
// 4. once it is reserved, confirms the PaymentIntent with the test card pm_card_visa through the
//    `stripe` package — on the local Stripe stand-in, or on Stripe itself with a real test key
//    (functions/.secret.local without STRIPE_API_* in functions/.env.local, and `stripe listen`),
// 5. waits for the webhook to finalize the order and for its order_confirmed notification.
// Exits 0 when the order is finalized and the notification sent, 1 otherwise (with what it saw),
// within DEMO_BUY_TIMEOUT_MS (default 60000).

import { randomUUID } from "node:crypto";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const PROJECT_ID = "demo-stripe-orders";
const REGION = "us-central1";
const DEMO_EMAIL = "demo-buyer@example.com";
const DEMO_PASSWORD = "demo-buyer-password";
const TIMEOUT_MS = Number(process.env.DEMO_BUY_TIMEOUT_MS || 60_000);

const requireFromFunctions = createRequire(path.join(ROOT, "functions", "package.json"));

class DemoFailure extends Error {}

/** KEY=VALUE lines of a dotenv file (comments and blanks skipped); {} when it does not exist. */
function readDotenv(file) {
  let text = "";
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return {};
  }
  const out = {};
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (m && !line.trimStart().startsWith("#")) out[m[1]] = m[2].replace(/^"(.*)"$/, "$1");
  }
  return out;
}

function emulatorPorts() {
  try {
    return JSON.parse(fs.readFileSync(path.join(ROOT, "firebase.json"), "utf8")).emulators ?? {};
  } catch {
    return {};
  }
}

function parseArgs(argv) {
  const [sku = "tshirt", qtyText = "1", ...rest] = argv;
  const qty = Number(qtyText);
  if (rest.length > 0 || !Number.isInteger(qty) || qty < 1) {
    throw new DemoFailure("Usage: npm run demo:buy -- <sku> [qty]   e.g. npm run demo:buy -- tshirt 2");
  }
  return { sku, qty };
}

/** The Stripe client the functions use in the emulator: same key, same STRIPE_API_* endpoint. */
function stripeClient() {
  const Stripe = requireFromFunctions("stripe");
  const secrets = readDotenv(path.join(ROOT, "functions", ".secret.local"));
  const envLocal = readDotenv(path.join(ROOT, "functions", ".env.local"));
  const setting = (name) => process.env[name] ?? envLocal[name];
  const key = process.env.STRIPE_SECRET_KEY ?? secrets.STRIPE_SECRET_KEY;
  if (!key) throw new DemoFailure("functions/.secret.local has no STRIPE_SECRET_KEY.");
  const host = setting("STRIPE_API_HOST");
  const endpoint = host
    ? { host, port: Number(setting("STRIPE_API_PORT") || 443), protocol: setting("STRIPE_API_PROTOCOL") || "https" }
    : {};
  const where = host ? `${endpoint.protocol}://${host}:${endpoint.port} (local stand-in)` : "api.stripe.com (your test key)";
  return { stripe: new Stripe(key, { ...endpoint, maxNetworkRetries: 1 }), where, local: Boolean(host) };
}

function elapsed(start) {
  return `+${((Date.now() - start) / 1000).toFixed(1)}s`;
}

async function main() {
  const { sku, qty } = parseArgs(process.argv.slice(2));
  const ports = emulatorPorts();
  const hostOf = (name, fallbackPort) => `${ports[name]?.host ?? "127.0.0.1"}:${ports[name]?.port ?? fallbackPort}`;
  const firestoreHost = process.env.FIRESTORE_EMULATOR_HOST ?? hostOf("firestore", 8080);
  const authHost = process.env.FIREBASE_AUTH_EMULATOR_HOST ?? hostOf("auth", 9099);
  const functionsHost = hostOf("functions", 5001);
  // The Admin SDK (for the backend-only notification) must only ever see the emulator.
  process.env.FIRESTORE_EMULATOR_HOST = firestoreHost;
  process.env.METADATA_SERVER_DETECTION ??= "none";

  const { initializeApp } = requireFromFunctions("firebase/app");
  const { connectAuthEmulator, createUserWithEmailAndPassword, getAuth, signInWithEmailAndPassword } = requireFromFunctions("firebase/auth");
  const { connectFunctionsEmulator, getFunctions, httpsCallable } = requireFromFunctions("firebase/functions");
  const { connectFirestoreEmulator, doc, getFirestore, onSnapshot } = requireFromFunctions("firebase/firestore");
  const admin = requireFromFunctions("firebase-admin/app");
  const { getFirestore: adminFirestore } = requireFromFunctions("firebase-admin/firestore");

  const start = Date.now();
  const deadline = start + TIMEOUT_MS;
  const log = (message) => console.log(`[demo:buy] ${elapsed(start)} ${message}`);

  const app = initializeApp({ apiKey: "demo-api-key", projectId: PROJECT_ID, appId: "demo-buy" }, "demo-buy");
  const auth = getAuth(app);
  connectAuthEmulator(auth, `http://${authHost}`, { disableWarnings: true });
  const functions = getFunctions(app, REGION);
  const [fnHost, fnPort] = functionsHost.split(":");
  connectFunctionsEmulator(functions, fnHost, Number(fnPort));
  const firestore = getFirestore(app);
  const [fsHost, fsPort] = firestoreHost.split(":");
  connectFirestoreEmulator(firestore, fsHost, Number(fsPort));
  const backend = adminFirestore(admin.initializeApp({ projectId: PROJECT_ID }, "demo-buy-admin"));
  const { stripe, where, local } = stripeClient();

  // 1. A demo user (created on first use).
  let credential;
  try {
    credential = await createUserWithEmailAndPassword(auth, DEMO_EMAIL, DEMO_PASSWORD);
  } catch (error) {
    if (error?.code === "auth/email-already-in-use") credential = await signInWithEmailAndPassword(auth, DEMO_EMAIL, DEMO_PASSWORD);
    else if (error?.code === "auth/network-request-failed") throw new DemoFailure(`The Auth emulator does not answer on ${authHost}: is \`npm start\` running?`);
    else throw error;
  }
  const uid = credential.user.uid;
  log(`signed in as ${DEMO_EMAIL} (uid ${uid}) on the Auth emulator`);

  // 2. Only SKUs and quantities leave the client; the server prices them.
  const idempotencyKey = `demo-${randomUUID()}`;
  let answer;
  try {
    answer = (await httpsCallable(functions, "createCheckout")({ items: [{ sku, qty }], idempotencyKey })).data;
  } catch (error) {
    throw new DemoFailure(`createCheckout failed: ${error?.code ?? ""} ${error?.message ?? error}${error?.details ? ` ${JSON.stringify(error.details)}` : ""}`);
  }
  log(`createCheckout → order ${answer.orderId}, ${answer.amount} ${answer.currency} (minor units), PaymentIntent ${answer.paymentIntentId}`);

  // 3. Watch the order as its owner (the reservation trigger may have moved it on already).
  log("order pending (created by createCheckout)");
  const seen = ["pending"];
  let current = null;
  let watchError = null;
  const unsubscribe = onSnapshot(
    doc(firestore, "orders", answer.orderId),
    (snapshot) => {
      current = snapshot.data() ?? null;
      const status = current?.status;
      if (status && seen.at(-1) !== status) {
        seen.push(status);
        log(`order ${status}`);
      }
    },
    (error) => {
      watchError = error;
    },
  );
  const waitFor = async (what, check) => {
    for (;;) {
      if (watchError) throw new DemoFailure(`watching the order failed: ${watchError.message}`);
      const value = await check();
      if (value) return value;
      if (Date.now() > deadline) throw new DemoFailure(`no ${what} within ${TIMEOUT_MS} ms; order statuses seen: ${seen.join(" → ") || "none"}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  try {
    const held = await waitFor("reservation", async () => (["reserved", "out_of_stock"].includes(current?.status) ? current.status : null));
    if (held === "out_of_stock") {
      throw new DemoFailure(`${sku} is out of stock: the order is out_of_stock and its PaymentIntent is canceled, nobody is charged.`);
    }

    // 4. Pay like the shopper's browser would (Stripe.js does this with the clientSecret).
    const confirmed = await stripe.paymentIntents.confirm(answer.paymentIntentId, {
      payment_method: "pm_card_visa",
      ...(local ? {} : { return_url: "http://localhost:5173/thanks" }),
    });
    log(`PaymentIntent ${confirmed.id} ${confirmed.status} with pm_card_visa on ${where}`);

    // 5. The webhook finalizes; the notification trigger sends order_confirmed.
    await waitFor("finalization", async () => current?.status === "finalized");
    const notification = await waitFor("sent order_confirmed notification", async () => {
      const docs = (await backend.collection("notifications").where("orderId", "==", answer.orderId).where("kind", "==", "order_confirmed").get()).docs;
      return docs.find((d) => d.get("status") === "sent") ?? null;
    });
    log(`notification ${notification.id} ${notification.get("status")} (attempts: ${notification.get("attempts")})`);
    const product = (await backend.collection("products").doc(sku).get()).data() ?? {};
    const history = (current.statusHistory ?? []).map((h) => h.to);
    console.log("");
    console.log(`[demo:buy] OK: ${["pending", ...history].join(" → ")}; ${sku} stock now ${product.stock} (reserved ${product.reserved}).`);
  } finally {
    unsubscribe();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`[demo:buy] FAILED: ${error instanceof DemoFailure ? error.message : (error?.stack ?? error)}`);
    process.exit(1);
  },
);
