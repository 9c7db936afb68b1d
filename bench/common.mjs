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

export function randomId(prefix) {
  return `${prefix}_bench_${randomBytes(9).toString("hex")}`;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** A `payment_intent` with the fields Stripe sends (trimmed like functions/test/helpers/stripeFixtures.ts). */
export function paymentIntent({ id, amount, currency = "usd", orderId }) {
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
    latest_charge: null,
    livemode: false,
    metadata: orderId ? { orderId } : {},
    payment_method: "pm_card_visa",
    payment_method_types: ["card"],
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

function procCpuMs(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
  } catch {
    return null;
  }
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

/** CPU time used so far by each process of the run, in ms. */
export function cpuSnapshot({ serverPid, emulatorPid }) {
  const own = process.cpuUsage();
  return {
    emulator: emulatorPid === null ? null : procCpuMs(emulatorPid),
    server: serverPid === null ? null : procCpuMs(serverPid),
    bench: (own.user + own.system) / 1000,
  };
}

/** CPU ms per completed operation, per process, between two snapshots. */
export function cpuPerOp(before, after, ops) {
  const per = (k) => (before[k] === null || after[k] === null || ops === 0 ? null : Math.round(((after[k] - before[k]) / ops) * 100) / 100);
  return { emulator: per("emulator"), server: per("server"), bench: per("bench") };
}

/**
 * Firestore transactions per completed operation, from two readings of GroupCommit's counters:
 * shared transactions plus those run alone (retries inside one runTransaction are not counted).
 */
export function transactionsPerOp(before, after, ops) {
  if (!before || !after || ops === 0) return null;
  const d = (k) => after[k] - before[k];
  return {
    per_op: Math.round(((d("groups") + d("alone")) / ops) * 1000) / 1000,
    shared: d("groups"),
    shared_members: d("members"),
    shared_failed: d("failedGroups"),
    left_out_overlapping: d("overlaps"),
    alone: d("alone"),
    read_rounds: d("rounds"),
  };
}
