// Shared pieces of the benchmark: modules loaded from functions/ (the compiled handler and the
// exact dependency versions the functions deploy with), Stripe-shaped events, small helpers.
// Plain Node ESM, no build step: the product code comes from functions/lib (run `npm run build`).

import { randomBytes } from "node:crypto";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const FUNCTIONS_DIR = path.join(ROOT, "functions");
export const RESULTS_DIR = path.join(ROOT, "bench", "results");

/** The emulator is started with this project (scripts/emulators.mjs, single project mode). */
export const PROJECT_ID = "demo-stripe-orders";
/** Every socket the bench opens goes here, and nowhere else. */
export const LOOPBACK = "127.0.0.1";

/** require() resolving from functions/, so firebase-admin, stripe, ... are the functions' own copies. */
export const requireFn = createRequire(path.join(FUNCTIONS_DIR, "package.json"));

export function requireLib(relative) {
  const file = path.join(FUNCTIONS_DIR, "lib", relative);
  if (!fs.existsSync(file)) {
    throw new Error(`${path.relative(ROOT, file)} is missing: run \`npm run build\` first (npm run bench does it).`);
  }
  return requireFn(file);
}

export function loadStripe() {
  const mod = requireFn("stripe");
  return mod.default ?? mod;
}

/** firebase-admin Firestore against the emulator (refuses to run against anything else). */
export function emulatorDb(appName = "bench") {
  const host = process.env.FIRESTORE_EMULATOR_HOST;
  if (!host) {
    throw new Error("FIRESTORE_EMULATOR_HOST is not set: run the bench with `npm run bench` (it starts the Firestore emulator).");
  }
  assertLoopbackHost(host);
  const { initializeApp, getApps } = requireFn("firebase-admin/app");
  const { getFirestore } = requireFn("firebase-admin/firestore");
  const app = getApps().find((a) => a.name === appName) ?? initializeApp({ projectId: PROJECT_ID }, appName);
  return getFirestore(app);
}

export function assertLoopbackHost(hostPort) {
  const host = String(hostPort).replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  if (!["127.0.0.1", "localhost", "::1"].includes(host)) {
    throw new Error(`Refusing to use ${hostPort}: the bench only talks to the local emulator on loopback.`);
  }
}

/**
 * A unique id. `tag` names the scenario run it belongs to (see scenarioTag): the invariant checks
 * select a scenario's documents by it, so they never count another scenario's (or a late write's) data.
 */
export function randomId(prefix, tag = "bench") {
  return `${prefix}_${tag}_${randomBytes(9).toString("hex")}`;
}

/** A tag unique to one scenario at one instance count, e.g. `twins_k3x1a2b3c`. */
export function scenarioTag(name, instances) {
  return `${name}_k${instances}x${randomBytes(3).toString("hex")}`;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** A `payment_intent` with the fields Stripe sends (trimmed like functions/test/helpers/stripeFixtures.ts). */
export function paymentIntent({ id, amount, currency = "usd", orderId, latestCharge = null }) {
  return {
    id,
    object: "payment_intent",
    amount,
    amount_capturable: 0,
    amount_received: amount,
    capture_method: "automatic",
    canceled_at: null,
    cancellation_reason: null,
    client_secret: "pi_secret_redacted",
    confirmation_method: "automatic",
    created: nowSeconds(),
    currency,
    customer: null,
    description: null,
    last_payment_error: null,
    latest_charge: latestCharge,
    livemode: false,
    metadata: orderId ? { orderId } : {},
    payment_method: "pm_card_visa",
    payment_method_types: ["card"],
    status: "succeeded",
  };
}

/**
 * The captured charge of a PaymentIntent, as `charge.succeeded` carries it: Stripe copies the
 * PaymentIntent's metadata to the charge, so it names the order by metadata.orderId too.
 */
export function charge({ id, paymentIntentId, amount, currency = "usd", orderId }) {
  return {
    id,
    object: "charge",
    amount,
    amount_captured: amount,
    amount_refunded: 0,
    balance_transaction: id.replace(/^ch_/, "txn_"),
    billing_details: { address: null, email: null, name: null, phone: null },
    captured: true,
    created: nowSeconds(),
    currency,
    customer: null,
    disputed: false,
    livemode: false,
    metadata: orderId ? { orderId } : {},
    outcome: { network_status: "approved_by_network", risk_level: "normal", seller_message: "Payment complete.", type: "authorized" },
    paid: true,
    payment_intent: paymentIntentId,
    payment_method: "pm_card_visa",
    refunded: false,
    status: "succeeded",
  };
}

export function stripeEvent(type, object, id = randomId("evt")) {
  return {
    id,
    object: "event",
    api_version: "2026-10-28.endive",
    created: nowSeconds(),
    data: { object },
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
  };
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Nearest-rank percentile of an ascending array (null when empty). */
export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

export function round(value, digits = 1) {
  if (value === null || value === undefined || !Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

// ---------------------------------------------------------------------------------------------
// CPU accounting (Linux /proc; elsewhere the figures are null): which process a scenario spends on.
// ---------------------------------------------------------------------------------------------

const CLOCK_TICKS_PER_S = 100; // USER_HZ on Linux

/** Last reading per pid: a process killed during a phase (the crash scenario) keeps its last figure. */
const lastCpuMs = new Map();

function procCpuMs(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
    lastCpuMs.set(pid, ms);
    return ms;
  } catch {
    return lastCpuMs.get(pid) ?? null;
  }
}

function sumCpuMs(pids) {
  if (pids.length === 0) return null;
  let total = 0;
  for (const pid of pids) {
    const ms = procCpuMs(pid);
    if (ms === null) return null;
    total += ms;
  }
  return total;
}

/** The Firestore emulator's JVM, found by its command line (null when it cannot be told apart). */
export function findEmulatorPid() {
  let dirs;
  try {
    dirs = fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d));
  } catch {
    return null;
  }
  const matches = dirs.filter((pid) => {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
      return cmd.includes("java") && /firestore/i.test(cmd);
    } catch {
      return false;
    }
  });
  return matches.length === 1 ? Number(matches[0]) : null;
}

/**
 * CPU time used so far, in ms: the emulator, the processes that run the handler under test (`handlerPids`:
 * the K function servers, or the K reservation workers) summed, and the bench client.
 */
export function cpuSnapshot({ handlerPids, emulatorPid }) {
  const own = process.cpuUsage();
  return {
    emulator: emulatorPid === null ? null : procCpuMs(emulatorPid),
    handler: sumCpuMs(handlerPids),
    bench: (own.user + own.system) / 1000,
  };
}

/** CPU ms per completed operation, per process group, between two snapshots. */
export function cpuPerOp(before, after, ops) {
  const per = (k) => (before[k] === null || after[k] === null || ops === 0 ? null : Math.round(((after[k] - before[k]) / ops) * 100) / 100);
  return { emulator: per("emulator"), handler: per("handler"), bench: per("bench") };
}

// ---------------------------------------------------------------------------------------------
// Counters reported by the instances: cumulative trees of numbers, diffed per phase and summed over K.
// A counter an instance does not expose is null, and stays null in every sum it enters.
// ---------------------------------------------------------------------------------------------

/** after − before, key by key (a key missing before counts from 0). */
export function diffCounters(before, after) {
  if (after === null || after === undefined) return null;
  if (typeof after === "number") return typeof before === "number" ? after - before : after;
  if (typeof after !== "object") return null;
  const out = {};
  for (const [k, v] of Object.entries(after)) out[k] = diffCounters(before?.[k], v);
  return out;
}

/** Key-by-key sum; null as soon as one of the trees is null at that key. */
export function sumCounters(trees) {
  if (trees.length === 0) return null;
  if (trees.some((t) => t === null || t === undefined)) return null;
  if (trees.every((t) => typeof t === "number")) return trees.reduce((a, b) => a + b, 0);
  if (!trees.every((t) => typeof t === "object")) return null;
  const keys = new Set(trees.flatMap((t) => Object.keys(t)));
  const out = {};
  for (const k of keys) {
    const values = trees.map((t) => t[k]);
    // Error-class maps only name the classes an instance saw: a missing key is a zero there.
    out[k] = values.every((v) => v === undefined || typeof v === "number") ? values.reduce((a, b) => a + (b ?? 0), 0) : sumCounters(values.map((v) => v ?? {}));
  }
  return out;
}

/** gRPC status names (the Admin SDK's errors carry the number). */
export const GRPC_NAMES = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
];

/** A short class name for an error: the gRPC status name, else its code or constructor name. */
export function errorClass(error) {
  const code = error?.code;
  if (typeof code === "number") return GRPC_NAMES[code] ?? `grpc_${code}`;
  if (typeof code === "string" && code.length <= 40) return code;
  const name = error?.constructor?.name;
  return typeof name === "string" && name !== "Error" ? name : "Error";
}
