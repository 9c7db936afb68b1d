#!/usr/bin/env node
// The webhook benchmark proper. Runs with the Firestore emulator up (FIRESTORE_EMULATOR_HOST set):
// `npm run bench` starts it through scripts/emulators.mjs and runs this file inside.
//
// For each instance count K in BENCH_INSTANCES (default 1,3), on the one emulator: K function servers
// (bench/server.mjs: functions-framework + the real handler, own Firestore client and LocalLocks each)
// and K reservation workers (bench/worker.mjs: reserveStockForOrder from functions/lib, own deps each).
// Requests go round-robin over the live servers, reservations round-robin over the workers, and the
// instances' counters are summed. Then every selected scenario, each on freshly cleared data and with
// ids tagged for that scenario alone (N = BENCH_EVENTS, default 500):
//   baseline         N distinct events, concurrency 50, to the baseline handler (verify + one create()).
//   spread           N orders over 50 products, reserved first (not measured), then N payment_intent.succeeded, concurrency 50.
//   duplicates       one event delivered N times, concurrency 100, after its order was reserved.
//   hot_sku_reserve  N orders of ONE product that has stock for 80 % of them (a flash sale that sells out):
//                    the reservation trigger's code on the K workers, concurrency 50 (with BENCH_CHECKOUT_WRITE_MS=n,
//                    checkout's writes of the orders' PaymentIntent ids land meanwhile, each within n ms of its
//                    reservation being sent).
//   hot_sku_pay      then a payment_intent.succeeded for each of them, concurrency 50 (the refused
//                    buyers' payments go to needs_review: never oversold).
//   twins            BENCH_TWINS_ORDERS (min(100, N)) reserved orders, each paid by two events at once
//                    (payment_intent.succeeded + charge.succeeded of its PaymentIntent), concurrency 50.
//   crash            (K ≥ 2) spread, and half way one server is killed with SIGKILL; every event that got
//                    no 2xx is redelivered to the survivors with bounded retries and backoff, as Stripe would.
//
// Knobs (env): BENCH_INSTANCES (1,3), BENCH_SCENARIOS (comma list of the names above, hot_sku for both
// phases; BENCH_ONLY is an alias), BENCH_EVENTS (500), BENCH_TWINS_ORDERS, BENCH_TWINS_APART=1, BENCH_COLD_CONNECTIONS=1, BENCH_HOT_SHARDS (50),
// BENCH_PHASE_BUDGET_S (120: a phase stops sending after this), BENCH_OP_TIMEOUT_S (45: one request /
// reservation), BENCH_TOTAL_BUDGET_S (60 + 200 per instance count: the whole run, shared fairly between the
// instance counts), BENCH_CRASH_RETRIES (6), BENCH_CRASH_BACKOFF_MS (500, doubling, at most 8 s);
// BENCH_GROUP_COMMIT=off, BENCH_LOCAL_LOCKS=off, BENCH_RESERVATION_BATCH=off and BENCH_LEAVE_REQUEST_DOMAIN=off
// reach the instances (bench/instance.mjs).
// It clears the emulator's database between scenarios, so it refuses to run unless
// BENCH_OWNS_EMULATOR=1 (set by scripts/bench.mjs) or --clear-ok is given.

import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { Cluster } from "./cluster.mjs";
import {
  LOOPBACK,
  PROJECT_ID,
  RESULTS_DIR,
  ROOT,
  assertLoopbackHost,
  charge,
  cpuPerOp,
  cpuSnapshot,
  diffCounters,
  emulatorDb,
  findEmulatorPid,
  loadStripe,
  paymentIntent,
  percentile,
  randomId,
  requireLib,
  round,
  scenarioTag,
  sleep,
  stripeEvent,
  sumCounters,
} from "./common.mjs";
import { knobsFromEnv } from "./instance.mjs";
import { checkInvariants } from "./invariants.mjs";
import { post, runLoad, settle } from "./load.mjs";
import { latencySvg, table } from "./report.mjs";

const num = (name, fallback, min, max) => {
  const raw = process.env[name];
  const v = raw === undefined || raw === "" ? fallback : Number(raw);
  if (!Number.isFinite(v) || v < min || v > max) throw new Error(`${name}=${raw} must be a number in ${min}..${max}`);
  return v;
};
const ALL_SCENARIOS = ["baseline", "spread", "duplicates", "hot_sku", "twins", "crash"];
function parseInstances(raw) {
  const list = String(raw).split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (list.length === 0 || list.some((k) => !Number.isInteger(k) || k < 1 || k > 12)) {
    throw new Error(`BENCH_INSTANCES=${raw} must be a comma list of instance counts in 1..12`);
  }
  return [...new Set(list)];
}
function parseScenarios(raw) {
  const list = String(raw).split(",").map((s) => s.trim()).filter(Boolean).map((s) => (s.startsWith("hot_sku") ? "hot_sku" : s));
  const unknown = list.filter((s) => !ALL_SCENARIOS.includes(s));
  if (unknown.length) throw new Error(`BENCH_SCENARIOS: unknown scenario(s) ${unknown.join(", ")} (known: ${ALL_SCENARIOS.join(", ")})`);
  return list.length ? list : ALL_SCENARIOS;
}
const INSTANCES = parseInstances(process.env.BENCH_INSTANCES || "1,3");
const SCENARIOS = parseScenarios(process.env.BENCH_SCENARIOS ?? process.env.BENCH_ONLY ?? "");
const N = num("BENCH_EVENTS", 500, 1, 5000);
const TWINS_ORDERS = num("BENCH_TWINS_ORDERS", Math.min(100, N), 1, 2500);
const PHASE_BUDGET_MS = num("BENCH_PHASE_BUDGET_S", 120, 1, 600) * 1000;
const OP_TIMEOUT_MS = num("BENCH_OP_TIMEOUT_S", 45, 1, 300) * 1000;
const TOTAL_BUDGET_MS = num("BENCH_TOTAL_BUDGET_S", 60 + 200 * INSTANCES.length, 10, 7200) * 1000;
const CRASH_RETRIES = num("BENCH_CRASH_RETRIES", 6, 1, 20);
const CRASH_BACKOFF_MS = num("BENCH_CRASH_BACKOFF_MS", 500, 0, 60_000);
const KNOBS = knobsFromEnv();
const PRODUCTS_SPREAD = num("BENCH_SPREAD_PRODUCTS", 50, 1, 5000);
/** Stock shards of the hot product (the design under test); 1 measures the unsharded product document. */
const HOT_SHARDS = num("BENCH_HOT_SHARDS", 50, 1, 500);
// BENCH_CHECKOUT_WRITE_MS=n: hot_sku orders are created without their PaymentIntent id, which the bench
// writes on each order a random 0..n ms after sending its reservation, as createCheckout stores it once
// Stripe answers (while the trigger may be reserving the order). Unset (the default, as issue 12 defines
// the scenario): orders are seeded with it.
const CHECKOUT_WRITE_MS = (process.env.BENCH_CHECKOUT_WRITE_MS ?? "").trim() === "" ? null : num("BENCH_CHECKOUT_WRITE_MS", 100, 0, 10_000);
// BENCH_TWINS_APART=1: twins sends every order's payment_intent.succeeded first and all the charges after
// them: the same events, but an order's charge goes out only after BENCH_TWINS_ORDERS - 1 other events
// (99 by default, twice the concurrency), so the two events of a payment rarely meet; it measures what
// their race costs (unset, the default: the two go out together, as issue 12 defines the scenario).
const TWINS_APART = (process.env.BENCH_TWINS_APART ?? "").trim() === "1";
// BENCH_COLD_CONNECTIONS=1: each phase opens its HTTP connections inside its timed window (see openConnections).
const COLD_CONNECTIONS = (process.env.BENCH_COLD_CONNECTIONS ?? "").trim() === "1";
/** The hot product's stock as a share of its orders: below 1, the sale sells out and some buyers are refused. */
const HOT_STOCK_SHARE = 0.8;
const AMOUNT = 2500;
const CURRENCY = "usd";
/** The Firestore emulator's log (firebase-tools starts it in the repo root): its lock timeouts are counted per phase. */
const EMULATOR_LOG = path.join(ROOT, "firestore-debug.log");

const runStart = performance.now();
const remainingMs = () => TOTAL_BUDGET_MS - (performance.now() - runStart);
const log = (msg) => console.log(msg);
const Stripe = loadStripe();
const secret = `whsec_bench_${randomId("s").slice(-18)}`;

let db;
/** The instances of the current block (one instance count). */
let cluster = null;
let K = 0;
let blockDeadline = 0;
let emulatorPid = null;
let appliedKnobs = null;

// ---------------------------------------------------------------------------------------------
// Setup helpers
// ---------------------------------------------------------------------------------------------

async function clearDatabase() {
  const host = process.env.FIRESTORE_EMULATOR_HOST;
  assertLoopbackHost(host);
  const url = `http://${host}/emulator/v1/projects/${PROJECT_ID}/databases/(default)/documents`;
  const res = await fetch(url, { method: "DELETE", signal: AbortSignal.timeout(30_000) });
  if (!res.ok) throw new Error(`Clearing the emulator failed: ${res.status} ${await res.text()}`);
}

async function writeInBatches(writes) {
  for (let i = 0; i < writes.length; i += 400) {
    const batch = db.batch();
    for (const [ref, data] of writes.slice(i, i + 400)) batch.set(ref, data);
    await batch.commit();
  }
}

function newOrder(orderId, sku, piId) {
  return {
    userId: `user_${orderId.slice(-6)}`,
    items: [{ sku, qty: 1 }],
    amount: AMOUNT,
    currency: CURRENCY,
    status: "pending",
    ...(piId === null ? {} : { paymentIntentId: piId }),
    createdAt: new Date(),
  };
}

/** Seeds products and pending orders (without their PaymentIntent id when `checkoutWrites`: see CHECKOUT_WRITE_MS). */
async function seed({ label, products, orders, checkoutWrites = false }) {
  const writes = [];
  for (const [sku, stock] of products) writes.push([db.collection("products").doc(sku), { name: `Bench ${sku}`, stock, reserved: 0 }]);
  for (const o of orders) writes.push([db.collection("orders").doc(o.orderId), newOrder(o.orderId, o.sku, checkoutWrites ? null : o.piId)]);
  await writeInBatches(writes);
  log(`  [${label}] seeded ${products.size} product(s), ${orders.length} pending order(s)`);
}

function makeOrders(n, skuOf, tag) {
  return Array.from({ length: n }, (_, i) => ({ orderId: randomId("ord", tag), sku: skuOf(i), piId: randomId("pi", tag) }));
}

function paymentEvent(order, tag) {
  return stripeEvent("payment_intent.succeeded", paymentIntent({ id: order.piId, amount: AMOUNT, currency: CURRENCY, orderId: order.orderId }), randomId("evt", tag));
}

/** The two events Stripe sends for one successful payment: the PaymentIntent's and its charge's. */
function twinEvents(order, tag) {
  const chargeId = randomId("ch", tag);
  return [
    stripeEvent("payment_intent.succeeded", paymentIntent({ id: order.piId, amount: AMOUNT, currency: CURRENCY, orderId: order.orderId, latestCharge: chargeId }), randomId("evt", tag)),
    stripeEvent("charge.succeeded", charge({ id: chargeId, paymentIntentId: order.piId, amount: AMOUNT, currency: CURRENCY, orderId: order.orderId }), randomId("evt", tag)),
  ];
}

function catalog(tag, orders) {
  const skus = Array.from({ length: PRODUCTS_SPREAD }, (_, i) => `sku_${tag}_${String(i).padStart(2, "0")}`);
  const perSku = Math.ceil(orders / PRODUCTS_SPREAD);
  return { skus, initialStock: new Map(skus.map((sku) => [sku, perSku * 2])) };
}

// ---------------------------------------------------------------------------------------------
// Per-phase counters: the instances' own (diffed, summed over K), CPU, the emulator's log
// ---------------------------------------------------------------------------------------------

const cpuNow = (group) => cpuSnapshot({ handlerPids: cluster[group].map((c) => c.pid).filter((p) => p !== null), emulatorPid });

function logMark() {
  try {
    return fs.statSync(EMULATOR_LOG).size;
  } catch {
    return null;
  }
}

/** "Transaction lock timeout" lines the emulator logged since `mark` (null when its log is not found). */
function lockTimeoutsSince(mark) {
  if (mark === null) return null;
  let fd;
  try {
    const size = fs.statSync(EMULATOR_LOG).size;
    if (size < mark) return null;
    fd = fs.openSync(EMULATOR_LOG, "r");
    const buffer = Buffer.alloc(size - mark);
    fs.readSync(fd, buffer, 0, buffer.length, mark);
    // One "Operation failed: Transaction lock timeout." line per timeout (the exception's own line follows it).
    return (buffer.toString("utf8").match(/Operation failed: [^\n]*lock timeout/gi) ?? []).length;
  } catch {
    return null;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Starts a phase's accounting on `group` ("servers" | "workers"); `end()` returns its figures. */
async function phaseCounters(group, fn) {
  const before = await cluster.stats(group, fn);
  const cpuBefore = cpuNow(group);
  const mark = logMark();
  return {
    async end(completed) {
      const after = await cluster.stats(group, fn, { reset: true });
      const present = after.map((a, i) => [a, before[i]]).filter(([a]) => a);
      return {
        byStatus: sumCounters(present.map(([a]) => a.byStatus ?? {})) ?? {},
        byResult: sumCounters(present.map(([a]) => a.byResult ?? {})) ?? {},
        durations: present.flatMap(([a]) => a.durations ?? []),
        lastErrors: present.flatMap(([a]) => a.lastErrors ?? []).slice(0, 5),
        totals: sumCounters(present.map(([a, b]) => diffCounters(b?.totals, a.totals))),
        cpu: { ...cpuPerOp(cpuBefore, cpuNow(group), completed), processes: `${cluster[group].length} ${group}` },
        emulatorLockTimeouts: lockTimeoutsSince(mark),
      };
    },
  };
}

/** Two phases' figures as one (the crash scenario: first pass + redeliveries). */
function mergeCounters(a, b) {
  const n = (x, y) => (x === null || y === null ? null : x + y);
  return {
    byStatus: sumCounters([a.byStatus, b.byStatus]),
    byResult: sumCounters([a.byResult, b.byResult]),
    durations: [...a.durations, ...b.durations],
    lastErrors: [...a.lastErrors, ...b.lastErrors].slice(0, 5),
    totals: sumCounters([a.totals, b.totals]),
    cpu: a.cpu,
    emulatorLockTimeouts: n(a.emulatorLockTimeouts, b.emulatorLockTimeouts),
  };
}

// ---------------------------------------------------------------------------------------------
// Delivery: HTTP round-robin over the live servers; reservations round-robin over the workers
// ---------------------------------------------------------------------------------------------

/** Waits until no live server has a request in flight (requests the client gave up on may still run). */
async function serversQuiet(fn, capMs) {
  const until = performance.now() + capMs;
  for (;;) {
    const live = cluster.liveServers();
    const inflight = (await Promise.all(live.map((s) => s.ask({ type: "stats", name: fn }).then((m) => m.inflight, () => 0)))).reduce((a, b) => a + b, 0);
    if (inflight === 0) return 0;
    if (performance.now() > until) return inflight;
    await sleep(250);
  }
}

/**
 * Delivers `bodies[i]` (signed at send time, like Stripe) to the named function of a live server,
 * round-robin. `onDispatch(i)` runs before item i is sent (the crash scenario kills a server there).
 */
async function deliverAll({ label, fn, bodies, concurrency, budgetMs, onDispatch }) {
  const agents = new Map();
  const agentFor = (server) => {
    let agent = agents.get(server);
    if (!agent) {
      agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
      agents.set(server, agent);
    }
    return agent;
  };
  for (const s of cluster.servers) s.inflightOps = new Set();
  const opening = performance.now();
  if (!COLD_CONNECTIONS) await openConnections(agentFor, fn, concurrency);
  const openMs = performance.now() - opening;
  const counters = await phaseCounters("servers", fn);
  const load = await runLoad({
    label,
    total: bodies.length,
    concurrency,
    budgetMs,
    opTimeoutMs: OP_TIMEOUT_MS,
    log,
    op: async (i) => {
      if (onDispatch) await onDispatch(i);
      const live = cluster.liveServers();
      if (live.length === 0) return { ok: false, code: "no_instance" };
      const server = live[i % live.length];
      const payload = bodies[i];
      const signature = Stripe.webhooks.generateTestHeaderString({ payload, secret });
      server.inflightOps.add(i);
      const res = await post(agentFor(server), server.ready.ports[fn], payload, { "stripe-signature": signature }, OP_TIMEOUT_MS);
      server.inflightOps.delete(i);
      const ok = res.status >= 200 && res.status < 300;
      const code = res.status === 0 ? (res.timeout ? "client_timeout" : "network_error") : res.status;
      if (code === "network_error") log(`  [${label}] network error on server ${cluster.servers.indexOf(server) + 1}: ${res.error}`);
      return { ok, code, bodyStatus: res.body?.status ?? null, result: res.body?.result ?? res.body?.error?.code ?? null };
    },
  });
  const stillRunning = await serversQuiet(fn, OP_TIMEOUT_MS + 15_000);
  if (stillRunning > 0) log(`  [${label}] the servers still have ${stillRunning} request(s) in flight`);
  const stats = await counters.end(load.completed);
  for (const agent of agents.values()) agent.destroy();
  return { load, stats, openMs };
}

/**
 * Opens the phase's keep-alive connections before it is timed: `concurrency` unsigned POSTs to each live
 * server at once, as many as the phase can have in flight there (each is answered 400 without touching Firestore),
 * then the servers' per-phase answers are reset so that the phase counts only its own. Opened inside
 * the phase, a burst of new loopback connections stalled some requests 0.2-1 s before the server saw
 * them (docs/performance.md, tenth round); behind a load balancer, which keeps its connections to an
 * instance open, a delivery does not pay for one. BENCH_COLD_CONNECTIONS=1 keeps the old way.
 */
async function openConnections(agentFor, fn, concurrency) {
  const live = cluster.liveServers();
  const answers = await Promise.all(live.flatMap((server) => Array.from({ length: concurrency }, () => post(agentFor(server), server.ready.ports[fn], "{}", {}, OP_TIMEOUT_MS))));
  const unexpected = answers.filter((a) => a.status !== 400).length;
  if (unexpected > 0) log(`  ${unexpected} of ${answers.length} connection-opening requests to ${fn} were not answered 400`);
  const counted = (await cluster.stats("servers", fn, { reset: true })).reduce((sum, s) => sum + Object.values(s?.byStatus ?? {}).reduce((a, b) => a + b, 0), 0);
  // Answers beyond these requests' are late ones of an earlier phase (a request the client gave up on): say so.
  if (counted > answers.length) log(`  ${counted - answers.length} late answer(s) of an earlier phase to ${fn} are left out of the counts`);
}

/** Reservations with the trigger's code on `workers` (round-robin); returns the load and each order's outcome. */
async function reserveAll({ label, orders, concurrency, budgetMs, workers = cluster.workers, checkoutWrites = false }) {
  const counters = await phaseCounters("workers", null);
  // Checkout's writes of the PaymentIntent ids, as they land during the reservations (see CHECKOUT_WRITE_MS).
  const stored = [];
  const storePaymentIntent = (o) =>
    stored.push(new Promise((resolve) => setTimeout(resolve, Math.random() * CHECKOUT_WRITE_MS)).then(() => db.collection("orders").doc(o.orderId).update({ paymentIntentId: o.piId })));
  const load = await runLoad({
    label,
    total: orders.length,
    concurrency,
    budgetMs,
    opTimeoutMs: OP_TIMEOUT_MS,
    log,
    op: async (i) => {
      if (checkoutWrites) storePaymentIntent(orders[i]);
      const answer = await workers[i % workers.length].ask({ type: "reserve", orderId: orders[i].orderId }, 0);
      return answer.ok ? { ok: true, code: answer.outcome } : { ok: false, code: answer.errorClass ?? "failed", error: answer.error };
    },
  });
  const still = await settle(load.unsettled, OP_TIMEOUT_MS);
  if (still > 0) log(`  [${label}] ${still} reservation(s) still unsettled after waiting`);
  await Promise.all(stored);
  const stats = await counters.end(load.completed);
  const outcomes = new Map(
    orders.map((o, i) => {
      const r = load.results[i];
      return [o.orderId, r === null ? "unsent" : r.code === "client_timeout" ? "unknown" : r.ok ? r.code : "failed"];
    }),
  );
  return { load, outcomes, stats };
}

/** Setup reservations (not measured): one worker, as one instance of the trigger. */
async function reserveSetup(label, orders) {
  const budget = phaseBudget(`${label} setup`);
  if (budget === null) return null;
  const r = await reserveAll({ label: `${label} setup: reserve`, orders, concurrency: 50, budgetMs: budget, workers: [cluster.workers[0]] });
  log(`  [${label} setup] reserved ${r.load.codes.reserved ?? 0}/${orders.length} orders in ${(r.load.elapsedMs / 1000).toFixed(1)} s (not measured) ${JSON.stringify(r.load.codes)}`);
  return r;
}

/** eventId -> applied | failed | unknown | unsent, from what each delivery of it got. */
function eventOutcomes(ids, results) {
  const outcome = new Map(ids.map((id) => [id, "unsent"]));
  const rank = { unsent: 0, failed: 1, unknown: 2, applied: 3 };
  results.forEach((r, i) => {
    if (r === null) return;
    const id = ids[i];
    const now = r.ok ? "applied" : r.code === "client_timeout" || r.code === "network_error" ? "unknown" : "failed";
    if (rank[now] > rank[outcome.get(id)]) outcome.set(id, now);
  });
  return outcome;
}

function outcomeCounts(results) {
  const counts = {};
  for (const r of results) {
    if (r === null) continue;
    const key = [r.code, r.bodyStatus, r.result].filter((v) => v !== null && v !== undefined).join(" ");
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/** HTTP answer classes as the client saw them: 200, 409, 500, and everything else (with its detail). */
function answerClasses(results) {
  const classes = { 200: 0, 409: 0, 500: 0, other: 0 };
  const other = {};
  for (const r of results) {
    if (r === null) continue;
    if (r.code === 200 || r.code === 409 || r.code === 500) classes[r.code]++;
    else {
      classes.other++;
      other[r.code] = (other[r.code] ?? 0) + 1;
    }
  }
  return Object.keys(other).length ? { ...classes, other_detail: other } : classes;
}

/**
 * Not measured: opens the gRPC channels of every process, JIT-compiles the paths and wakes the
 * emulator, so the first scenario does not pay for a cold start the others do not.
 */
async function warmUp() {
  const started = performance.now();
  const tag = scenarioTag("warm", K);
  // The baseline too is warmed at the size it is measured at.
  const ignored = Array.from({ length: N }, () => JSON.stringify(stripeEvent("customer.created", { id: randomId("cus", tag), object: "customer" }, randomId("evt", tag))));
  const pay = Array.from({ length: N }, () => JSON.stringify(stripeEvent("payment_intent.succeeded", paymentIntent({ id: randomId("pi", tag), amount: AMOUNT, orderId: randomId("ord", tag) }), randomId("evt", tag))));
  for (const [fn, bodies] of [["baseline", pay], ["stripeWebhook", ignored]]) await deliverAll({ label: `warm-up ${fn}`, fn, bodies, concurrency: 10, budgetMs: 30_000 });
  // The paths the scenarios measure, at their size, in every process: N reservations over the spread
  // products on the K workers, then each order paid by its two twin events over the K servers. A first
  // spread-shaped phase at K = 3 measured 60-126 ok/s where the same phase run again measured 179
  // (emulator CPU per payment 6-15 ms, then 3.4): the JVM and V8 compile what runs often, and a warm-up
  // of a few dozen payments did not get there.
  const { skus } = catalog(tag, N);
  const orders = makeOrders(N, (i) => skus[i % skus.length], tag);
  await seed({ label: "warm-up", products: new Map(skus.map((sku) => [sku, 4 * N])), orders });
  await reserveAll({ label: "warm-up reserve", orders, concurrency: 50, budgetMs: 60_000 });
  const payments = orders.flatMap((o) => twinEvents(o, tag));
  await deliverAll({ label: "warm-up pay", fn: "stripeWebhook", bodies: payments.map((e) => JSON.stringify(e)), concurrency: 50, budgetMs: 60_000 });
  await clearDatabase();
  log(`warm-up done in ${((performance.now() - started) / 1000).toFixed(1)} s (not measured)`);
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

const rows = [];
const series = [];

function phaseBudget(label) {
  // Leave room for the drain (one op timeout) and the invariant reads, within this instance count's share.
  const budget = Math.min(PHASE_BUDGET_MS, blockDeadline - performance.now() - OP_TIMEOUT_MS - 20_000, remainingMs() - OP_TIMEOUT_MS - 20_000);
  if (budget < 5_000) {
    log(`  [${label}] skipped: the run's time budget (${TOTAL_BUDGET_MS / 1000} s, shared by K = ${INSTANCES.join(", ")}) is spent`);
    return null;
  }
  return budget;
}

const perOp = (v, ops) => (v === null || v === undefined || !ops ? null : round(v / ops, 3));

/** Firestore transactions the instances ran, from their runTransaction counters (null when not reported). */
function transactionSummary(totals, ops) {
  const a = totals?.attempts;
  if (!a || typeof a.runs !== "number") return null;
  const both = (k) => (a.body_errors?.[k] ?? 0) + (a.commit_errors?.[k] ?? 0);
  return {
    per_op: perOp(a.runs, ops),
    attempts_per_op: perOp(a.attempts, ops),
    runs: a.runs,
    attempts: a.attempts,
    retried_attempts: a.attempts - a.runs,
    committed: a.committed,
    failed: a.failed,
    aborted: both("ABORTED"),
    failed_precondition: both("FAILED_PRECONDITION"),
    already_exists: both("ALREADY_EXISTS"),
    lock_timeouts: a.lock_timeouts,
    local_lock_rounds: a.body_errors?.LocksWanted ?? 0,
    read_calls_per_op: perOp(a.read_calls ?? null, ops),
    read_documents_per_op: perOp(a.read_documents ?? null, ops),
    read_calls_by_size: a.read_calls_by_size ?? null,
    body_errors: a.body_errors,
    commit_errors: a.commit_errors,
    final_errors: a.final_errors,
  };
}

/** GroupCommit's counters (shared transactions and those run alone), when the build exposes them. */
function groupCommitSummary(totals, ops) {
  const g = totals?.group_commit;
  if (!g || typeof g.groups !== "number" || typeof g.alone !== "number") return null;
  return {
    per_op: perOp(g.groups + g.alone, ops),
    shared: g.groups,
    shared_members: g.members ?? null,
    shared_failed: g.failedGroups ?? null,
    shared_failures_by_code: totals.group_failures ?? null,
    left_out_overlapping: g.overlaps ?? null,
    alone: g.alone,
    lone_arrivals: g.loneArrivals ?? null,
    missed_twice: g.missedTwice ?? null,
    requeued: g.requeued ?? null,
    pruned_after_conflict: g.pruned ?? null,
    retried_after_conflict: g.retriedGroups ?? null,
    lost_again: g.lostAgain ?? null,
    read_rounds: g.rounds ?? null,
  };
}

function record(name, { load, stats, invariants, extra = {}, budgetMs, latencies = load.latencies, results = load.results, overHttp = true }) {
  const serverDurations = (stats?.durations ?? []).slice().sort((a, b) => a - b);
  const transactions = transactionSummary(stats?.totals, load.completed);
  const groupCommit = groupCommitSummary(stats?.totals, load.completed);
  const summary = extra.summary ?? load.summary;
  const row = {
    name,
    instances: K,
    events: load.total,
    concurrency: load.concurrency,
    completed: load.completed,
    timed_out: load.timedOut,
    budget_s: round(budgetMs / 1000, 0),
    elapsed_s: round((extra.elapsedMs ?? load.elapsedMs) / 1000, 2),
    p50_ms: summary.p50_ms,
    p95_ms: summary.p95_ms,
    p99_ms: summary.p99_ms,
    max_ms: summary.max_ms,
    throughput_per_s: summary.throughput_per_s,
    non_2xx: load.failed,
    answers: overHttp ? answerClasses(results) : null,
    invariants_ok: invariants.ok,
    cpu_ms_per_op: stats?.cpu ?? null,
    firestore_transactions: transactions,
    group_commit: groupCommit,
    reservation_batches: stats?.totals?.reservation_batches ?? null,
    emulator_lock_timeouts: stats?.emulatorLockTimeouts ?? null,
    server_p50_ms: round(percentile(serverDurations, 50)),
    server_p95_ms: round(percentile(serverDurations, 95)),
    outcomes: outcomeCounts(results),
    server_answers: overHttp ? (stats?.byStatus ?? null) : null,
    server_results: stats?.byResult ?? null,
    server_errors: stats?.lastErrors?.length ? stats.lastErrors : undefined,
    invariant_checks: invariants.checks,
    firestore_counts: invariants.counts,
    foreign_documents: invariants.foreign,
    ...Object.fromEntries(Object.entries(extra).filter(([k]) => k !== "summary" && k !== "elapsedMs")),
  };
  rows.push(row);
  series.push({ name: `${name} K=${K}`, latencies, timed_out: load.timedOut });
  const failed = invariants.checks.filter((c) => !c.ok);
  log(
    `  [${name} K=${K}] ${row.completed}/${row.events} completed in ${row.elapsed_s} s${row.timed_out ? " (TIMED OUT: budget spent)" : ""}: ` +
      `p50 ${row.p50_ms} ms, p95 ${row.p95_ms} ms, max ${row.max_ms} ms, ${row.throughput_per_s}/s ok, non-2xx ${row.non_2xx}; ` +
      `invariants ${invariants.ok ? "ok" : "FAILED"}`,
  );
  log(`  [${name} K=${K}] outcomes ${JSON.stringify(row.outcomes)}; firestore ${JSON.stringify(invariants.counts)}`);
  if (transactions) {
    log(
      `  [${name} K=${K}] Firestore transactions: ${transactions.per_op}/op (${transactions.runs} begun, ${transactions.retried_attempts} retried attempts, ` +
        `${transactions.aborted} ABORTED, ${transactions.failed_precondition} FAILED_PRECONDITION, ${transactions.lock_timeouts} lock timeouts, ` +
        `${transactions.local_lock_rounds} local-lock rounds; runs rejected ${JSON.stringify(transactions.final_errors)}); lock-free reads ${transactions.read_calls_per_op}/op of ${transactions.read_documents_per_op} documents/op (calls by documents read: ${JSON.stringify(transactions.read_calls_by_size ?? {})}); emulator log: ${row.emulator_lock_timeouts ?? "n/a"} lock timeouts`,
    );
  }
  if (groupCommit) log(`  [${name} K=${K}] group commit: ${groupCommit.shared} shared by ${groupCommit.shared_members} members (${groupCommit.shared_failed} failed), ${groupCommit.alone} alone (${groupCommit.lone_arrivals ?? "n/a"} groups of one, ${groupCommit.missed_twice ?? "n/a"} missed twice), ${groupCommit.requeued ?? 0} requeued into the next group; ${groupCommit.retried_after_conflict ?? "n/a"} conflicts re-decided, ${groupCommit.lost_again ?? "n/a"} of them lost again`);
  const batches = stats?.totals?.reservation_batches;
  if (batches && batches.batches > 0) log(`  [${name} K=${K}] reservation batches: ${JSON.stringify(batches)}`);
  if (row.cpu_ms_per_op) log(`  [${name} K=${K}] CPU ms per operation: emulator ${row.cpu_ms_per_op.emulator ?? "n/a"}, ${row.cpu_ms_per_op.processes} ${row.cpu_ms_per_op.handler ?? "n/a"}, bench client ${row.cpu_ms_per_op.bench}`);
  for (const c of failed) log(`  [${name} K=${K}] INVARIANT FAILED: ${c.name}: ${c.detail}`);
  return row;
}

function skippedRow(name, events, concurrency) {
  rows.push({ name, instances: K, events, concurrency, completed: 0, skipped: true, timed_out: false, p50_ms: null, p95_ms: null, max_ms: null, throughput_per_s: null, non_2xx: 0, answers: null, invariants_ok: true });
}

async function scenarioBaseline() {
  const name = "baseline";
  log(`\n== ${name} K=${K}: ${N} distinct events, concurrency 50, verify + one create() ==`);
  await clearDatabase();
  const tag = scenarioTag(name, K);
  const events = Array.from({ length: N }, () => stripeEvent("payment_intent.succeeded", paymentIntent({ id: randomId("pi", tag), amount: AMOUNT, orderId: randomId("ord", tag) }), randomId("evt", tag)));
  const budgetMs = phaseBudget(name);
  if (budgetMs === null) return skippedRow(name, N, 50);
  const { load, stats } = await deliverAll({ label: name, fn: "baseline", bodies: events.map((e) => JSON.stringify(e)), concurrency: 50, budgetMs });
  const invariants = await checkInvariants(db, { tag, baseline: true, events: eventOutcomes(events.map((e) => e.id), load.results) });
  record(name, { load, stats, invariants, budgetMs });
}

/** N reserved orders over the spread products and one payment event each: what spread and crash pay. Null when skipped. */
async function prepareSpread(name) {
  await clearDatabase();
  const tag = scenarioTag(name, K);
  const { skus, initialStock } = catalog(tag, N);
  const orders = makeOrders(N, (i) => skus[i % skus.length], tag);
  await seed({ label: name, products: initialStock, orders });
  const setup = await reserveSetup(name, orders);
  if (setup === null) return null;
  const budgetMs = phaseBudget(name);
  if (budgetMs === null) return null;
  return { tag, initialStock, orders, setup, budgetMs, events: orders.map((o) => paymentEvent(o, tag)) };
}

async function scenarioSpread() {
  const name = "spread";
  log(`\n== ${name} K=${K}: ${N} reserved orders over ${PRODUCTS_SPREAD} products, ${N} payment_intent.succeeded, concurrency 50 ==`);
  const prepared = await prepareSpread(name);
  if (prepared === null) return skippedRow(name, N, 50);
  const { tag, initialStock, orders, setup, budgetMs, events } = prepared;
  const { load, stats } = await deliverAll({ label: name, fn: "stripeWebhook", bodies: events.map((e) => JSON.stringify(e)), concurrency: 50, budgetMs });
  const payments = new Map(orders.map((o, i) => [o.orderId, [events[i].id]]));
  const invariants = await checkInvariants(db, { tag, initialStock, reservations: setup.outcomes, payments, events: eventOutcomes(events.map((e) => e.id), load.results) });
  record(name, { load, stats, invariants, budgetMs, extra: { setup_reserved: setup.load.codes.reserved ?? 0, setup_s: round(setup.load.elapsedMs / 1000, 1) } });
}

async function scenarioDuplicates() {
  const name = "duplicates";
  log(`\n== ${name} K=${K}: one event delivered ${N} times round-robin over ${K} instance(s), concurrency 100 ==`);
  await clearDatabase();
  const tag = scenarioTag(name, K);
  const sku = `sku_${tag}`;
  const initialStock = new Map([[sku, 10]]);
  const orders = makeOrders(1, () => sku, tag);
  await seed({ label: name, products: initialStock, orders });
  const setup = await reserveSetup(name, orders);
  if (setup === null) return skippedRow(name, N, 100);
  const budgetMs = phaseBudget(name);
  if (budgetMs === null) return skippedRow(name, N, 100);
  const event = paymentEvent(orders[0], tag);
  const body = JSON.stringify(event);
  const { load, stats } = await deliverAll({ label: name, fn: "stripeWebhook", bodies: Array.from({ length: N }, () => body), concurrency: 100, budgetMs });
  const processedResponses = load.results.filter((r) => r?.ok && r.bodyStatus === "processed").length;
  const invariants = await checkInvariants(db, {
    tag,
    initialStock,
    reservations: setup.outcomes,
    events: eventOutcomes(Array.from({ length: N }, () => event.id), load.results),
    exactlyOnce: { eventId: event.id, orderId: orders[0].orderId, sku, qty: 1, initial: 10, unanswered: load.results.filter((r) => r && (r.code === "client_timeout" || r.code === "network_error")).length },
    processedResponses,
  });
  record(name, { load, stats, invariants, budgetMs, extra: { processed_answers: processedResponses } });
}

async function scenarioHotSku() {
  const units = Math.floor(N * HOT_STOCK_SHARE);
  log(`\n== hot_sku K=${K} (${HOT_SHARDS} shard(s)): ${N} orders for ONE product with ${units} units; reserve over ${K} worker(s) (concurrency 50), then pay (concurrency 50) ==`);
  await clearDatabase();
  const tag = scenarioTag("hot", K);
  const sku = `sku_${tag}`;
  const initialStock = new Map([[sku, units]]);
  const orders = makeOrders(N, () => sku, tag);
  const checkoutWrites = CHECKOUT_WRITE_MS !== null;
  await seed({ label: "hot_sku", products: initialStock, orders, checkoutWrites });
  if (HOT_SHARDS > 1) {
    await requireLib("inventory/shards.js").configureStockShards(db, sku, HOT_SHARDS);
    log(`  [hot_sku] ${sku} split into ${HOT_SHARDS} stock shards`);
  }

  const reserveName = "hot_sku_reserve";
  const reserveBudget = phaseBudget(reserveName);
  let reservations = new Map(orders.map((o) => [o.orderId, "unsent"]));
  if (reserveBudget === null) skippedRow(reserveName, N, 50);
  else {
    const r = await reserveAll({ label: reserveName, orders, concurrency: 50, budgetMs: reserveBudget, checkoutWrites });
    reservations = r.outcomes;
    const invariants = await checkInvariants(db, { tag, initialStock, reservations, events: new Map() });
    record(reserveName, { load: r.load, stats: r.stats, invariants, budgetMs: reserveBudget, overHttp: false });
  }

  const payName = "hot_sku_pay";
  const payBudget = phaseBudget(payName);
  if (payBudget === null) return skippedRow(payName, N, 50);
  const events = orders.map((o) => paymentEvent(o, tag));
  const { load, stats } = await deliverAll({ label: payName, fn: "stripeWebhook", bodies: events.map((e) => JSON.stringify(e)), concurrency: 50, budgetMs: payBudget });
  const invariants = await checkInvariants(db, { tag, initialStock, reservations, events: eventOutcomes(events.map((e) => e.id), load.results) });
  record(payName, { load, stats, invariants, budgetMs: payBudget });
}

async function scenarioTwins() {
  const name = "twins";
  const n = TWINS_ORDERS;
  log(`\n== ${name} K=${K}: ${n} reserved orders, each paid by payment_intent.succeeded + charge.succeeded at once (${2 * n} events), concurrency 50 ==`);
  await clearDatabase();
  const tag = scenarioTag(name, K);
  const { skus, initialStock } = catalog(tag, n);
  const orders = makeOrders(n, (i) => skus[i % skus.length], tag);
  await seed({ label: name, products: initialStock, orders });
  const setup = await reserveSetup(name, orders);
  if (setup === null) return skippedRow(name, 2 * n, 50);
  const budgetMs = phaseBudget(name);
  if (budgetMs === null) return skippedRow(name, 2 * n, 50);
  // Adjacent in the list, so sent together, and to different instances when K > 1; which comes first
  // alternates. Apart (BENCH_TWINS_APART=1): every PaymentIntent's event, then every charge's.
  const events = [];
  const charges = [];
  const payments = new Map();
  orders.forEach((o, j) => {
    const [pi, ch] = twinEvents(o, tag);
    if (TWINS_APART) {
      events.push(pi);
      charges.push(ch);
    } else events.push(...(j % 2 === 0 ? [pi, ch] : [ch, pi]));
    payments.set(o.orderId, [pi.id, ch.id]);
  });
  events.push(...charges);
  const { load, stats } = await deliverAll({ label: name, fn: "stripeWebhook", bodies: events.map((e) => JSON.stringify(e)), concurrency: 50, budgetMs });
  const invariants = await checkInvariants(db, { tag, initialStock, reservations: setup.outcomes, payments, twins: true, events: eventOutcomes(events.map((e) => e.id), load.results) });
  record(name, { load, stats, invariants, budgetMs, extra: { orders: n, finalized_orders: invariants.counts.finalized } });
}

async function scenarioCrash() {
  const name = "crash";
  log(`\n== ${name} K=${K}: spread (${N} payments, concurrency 50); one server killed with SIGKILL half way, then redelivery to the survivors ==`);
  const prepared = await prepareSpread(name);
  if (prepared === null) return skippedRow(name, N, 50);
  const { tag, initialStock, orders, setup, budgetMs, events } = prepared;
  const bodies = events.map((e) => JSON.stringify(e));
  const victim = cluster.servers[K - 1];
  const half = Math.floor(N / 2);
  let killedAt = null;
  let lostInFlight = 0;
  let killing = null;
  const started = performance.now();
  const first = await deliverAll({
    label: `${name} first pass`,
    fn: "stripeWebhook",
    bodies,
    concurrency: 50,
    budgetMs,
    onDispatch: async (i) => {
      if (i < half) return;
      killing ??= (async () => {
        await victim.stats("stripeWebhook").catch(() => null); // its counters, as of just before the crash
        lostInFlight = victim.inflightOps.size;
        victim.kill9();
        killedAt = performance.now();
        log(`  [${name}] killed ${victim.label} (pid ${victim.pid}) with SIGKILL after ${i} of ${N} dispatches; ${lostInFlight} request(s) in flight on it`);
      })();
      await killing;
    },
  });
  const attempts = first.load.results.map((r) => (r ? [r] : []));
  const acknowledged = () => attempts.map((list) => list.some((r) => r.ok));
  const firstPassUnacknowledged = acknowledged().filter((ok) => !ok).length;
  log(`  [${name}] first pass: ${N - firstPassUnacknowledged}/${N} acknowledged; redelivering ${firstPassUnacknowledged} to ${cluster.liveServers().length} survivor(s)`);

  // Stripe redelivers each unacknowledged event later, with growing delays; compressed here.
  let stats = first.stats;
  // The time spent opening connections before each pass is not the crash's (see openConnections).
  let redeliveryOpeningMs = 0;
  let rounds = 0;
  let redeliveries = 0;
  let appliedBeforeCrash = 0;
  for (let round = 1; round <= CRASH_RETRIES; round++) {
    const pending = acknowledged().flatMap((ok, i) => (ok ? [] : [i]));
    if (pending.length === 0) break;
    const budget = phaseBudget(`${name} redelivery ${round}`);
    if (budget === null) break;
    await sleep(Math.min(8_000, CRASH_BACKOFF_MS * 2 ** (round - 1)));
    rounds = round;
    redeliveries += pending.length;
    const again = await deliverAll({ label: `${name} redelivery ${round}`, fn: "stripeWebhook", bodies: pending.map((i) => bodies[i]), concurrency: 50, budgetMs: budget });
    again.load.results.forEach((r, j) => {
      if (!r) return;
      attempts[pending[j]].push(r);
      if (r.ok && r.bodyStatus === "duplicate" && !attempts[pending[j]].slice(0, -1).some((p) => p.ok)) appliedBeforeCrash++;
    });
    stats = mergeCounters(stats, again.stats);
    redeliveryOpeningMs += again.openMs;
  }
  const ended = performance.now();
  const stillUnacknowledged = acknowledged().filter((ok) => !ok).length;
  const flat = attempts.flatMap((list, i) => list.map((r) => [i, r]));
  const outcomes = eventOutcomes(flat.map(([i]) => events[i].id), flat.map(([, r]) => r));
  const payments = new Map(orders.map((o, i) => [o.orderId, [events[i].id]]));
  const invariants = await checkInvariants(db, { tag, initialStock, reservations: setup.outcomes, payments, allAcknowledged: true, events: outcomes });
  const okEvents = N - stillUnacknowledged;
  const openingMs = first.openMs + redeliveryOpeningMs;
  const elapsedMs = ended - started - openingMs;
  const recoverMs = killedAt === null || stillUnacknowledged > 0 ? null : ended - killedAt - redeliveryOpeningMs;
  const summary = { ...first.load.summary, throughput_per_s: round((okEvents / elapsedMs) * 1000, 2) };
  record(name, {
    load: first.load,
    stats,
    invariants,
    budgetMs,
    results: flat.map(([, r]) => r),
    extra: {
      summary,
      elapsedMs,
      killed_instance: victim.label,
      killed_after_dispatches: half,
      lost_in_flight: lostInFlight,
      first_pass_unacknowledged: firstPassUnacknowledged,
      applied_before_crash: appliedBeforeCrash,
      redelivered: redeliveries,
      redelivery_rounds: rounds,
      still_unacknowledged: stillUnacknowledged,
      recover_s: recoverMs === null ? null : round(recoverMs / 1000, 2),
      connections_opening_ms: round(openingMs, 1),
      definitions: "latency: first pass; ok/s: events acknowledged / (first pass + redelivery) wall time, without the time spent opening connections before each pass; recover_s likewise; answers: every delivery, redeliveries included",
    },
  });
  log(`  [${name}] ${lostInFlight} lost in flight, ${firstPassUnacknowledged} unacknowledged after the first pass (${appliedBeforeCrash} of them had applied), ${redeliveries} redeliveries in ${rounds} round(s), ${stillUnacknowledged} never acknowledged; recovered ${recoverMs === null ? "n/a" : `${(recoverMs / 1000).toFixed(1)} s`} after the kill`);
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

/** a / b to 3 significant digits (hot-SKU ratios can be far below 0.01). */
function ratio(a, b) {
  return a === null || a === undefined || !b ? null : Number((a / b).toPrecision(3));
}

/** The issue's goals, per instance count, against the same count's rows. */
function ratiosFor(k) {
  const by = Object.fromEntries(rows.filter((r) => r.instances === k && !r.skipped).map((r) => [r.name, r]));
  const values = {
    spread_throughput_vs_baseline: [ratio(by.spread?.throughput_per_s, by.baseline?.throughput_per_s), ">=", 0.6],
    hot_sku_reserve_throughput_vs_spread: [ratio(by.hot_sku_reserve?.throughput_per_s, by.spread?.throughput_per_s), ">=", 0.8],
    hot_sku_pay_throughput_vs_spread: [ratio(by.hot_sku_pay?.throughput_per_s, by.spread?.throughput_per_s), ">=", 0.8],
    duplicates_p95_vs_baseline_p95: [ratio(by.duplicates?.p95_ms, by.baseline?.p95_ms), "<=", 1.0],
    hot_sku_reserve_p95_vs_spread_p95: [ratio(by.hot_sku_reserve?.p95_ms, by.spread?.p95_ms), "<=", 2.0],
    hot_sku_pay_p95_vs_spread_p95: [ratio(by.hot_sku_pay?.p95_ms, by.spread?.p95_ms), "<=", 2.0],
    twins_throughput_vs_baseline: [ratio(by.twins?.throughput_per_s, by.baseline?.throughput_per_s), ">=", 0.6],
  };
  const ratios = {};
  const goals = {};
  for (const [key, [value, op, goal]] of Object.entries(values)) {
    ratios[key] = value;
    goals[key] = { value, goal: `${op} ${goal}`, met: value === null ? null : op === ">=" ? value >= goal : value <= goal };
  }
  for (const name of ["duplicates", "spread"]) if (by[name]) goals[`${name}_non_2xx`] = { value: by[name].non_2xx, goal: "= 0", met: by[name].non_2xx === 0 };
  const measured = rows.filter((r) => r.instances === k && !r.skipped);
  goals.invariants = { value: measured.filter((r) => !r.invariants_ok).map((r) => r.name), goal: "all exact", met: measured.every((r) => r.invariants_ok) };
  return { ratios, goals };
}

async function runBlock(k, blocksLeft) {
  K = k;
  blockDeadline = performance.now() + remainingMs() / blocksLeft;
  log(`\n######## K = ${K}: ${K} function server(s) + ${K} reservation worker(s), one emulator; this block's budget ${Math.round(remainingMs() / blocksLeft / 1000)} s ########`);
  const env = { ...process.env, BENCH_WEBHOOK_SECRET: secret, NODE_ENV: "production" };
  cluster = new Cluster(K, env);
  try {
    const { knobs, ports } = await cluster.start();
    appliedKnobs ??= knobs;
    log(`functions-framework: stripeWebhook on ${ports.map((p) => `${LOOPBACK}:${p.stripeWebhook}`).join(", ")}; knobs ${JSON.stringify(knobs)}`);
    log(emulatorPid === null ? "CPU accounting: emulator process not found (figures n/a)" : `CPU accounting: emulator pid ${emulatorPid}, servers ${cluster.servers.map((s) => s.pid).join(",")}, workers ${cluster.workers.map((w) => w.pid).join(",")}`);
    await warmUp();
    const scenarios = { baseline: scenarioBaseline, spread: scenarioSpread, duplicates: scenarioDuplicates, hot_sku: scenarioHotSku, twins: scenarioTwins, crash: scenarioCrash };
    const seq = process.env.BENCH_SEQUENCE ? process.env.BENCH_SEQUENCE.split(",").map((n) => [n, scenarios[n]]) : Object.entries(scenarios);
    for (const [name, run] of seq) {
      if (!SCENARIOS.includes(name)) continue;
      if (name === "crash" && K < 2) {
        log(`\n== crash K=${K}: skipped (needs at least 2 instances: one is killed) ==`);
        continue;
      }
      await run();
    }
  } finally {
    await cluster.stop();
  }
}

async function main() {
  if (process.env.BENCH_OWNS_EMULATOR !== "1" && !process.argv.includes("--clear-ok")) {
    throw new Error(
      "bench/run.mjs deletes every document of the emulator between scenarios: run it with `npm run bench` " +
        "(which starts its own emulator) or pass --clear-ok if the emulator at FIRESTORE_EMULATOR_HOST is disposable.",
    );
  }
  db = emulatorDb();
  emulatorPid = findEmulatorPid();
  log(
    `stripeWebhook bench: K = ${INSTANCES.join(", ")}; scenarios ${SCENARIOS.join(", ")}; ${N} events per scenario (twins ${TWINS_ORDERS} orders); ` +
      `phase budget ${PHASE_BUDGET_MS / 1000} s, op timeout ${OP_TIMEOUT_MS / 1000} s, total budget ${TOTAL_BUDGET_MS / 1000} s; knobs ${JSON.stringify(KNOBS)}; ` +
      `Firestore emulator ${process.env.FIRESTORE_EMULATOR_HOST}, ${os.cpus().length} CPU(s), Node ${process.version}`,
  );
  for (const [i, k] of INSTANCES.entries()) await runBlock(k, INSTANCES.length - i);

  const perK = Object.fromEntries(INSTANCES.map((k) => [k, ratiosFor(k)]));
  const cpus = os.cpus();
  const result = {
    generatedAt: new Date().toISOString(),
    machine: { cpus: cpus.length, cpu_model: cpus[0]?.model ?? null, node: process.version, platform: `${os.platform()} ${os.release()}`, memory_gb: round(os.totalmem() / 2 ** 30, 1) },
    config: {
      instances: INSTANCES,
      scenarios: SCENARIOS,
      knobs: appliedKnobs ?? KNOBS,
      events_per_scenario: N,
      twins_orders: TWINS_ORDERS,
      twins_apart: TWINS_APART,
      cold_connections: COLD_CONNECTIONS,
      phase_budget_s: PHASE_BUDGET_MS / 1000,
      total_budget_s: TOTAL_BUDGET_MS / 1000,
      hot_sku_stock_shards: HOT_SHARDS,
      hot_sku_checkout_write_ms: CHECKOUT_WRITE_MS,
      hot_sku_stock_per_order: HOT_STOCK_SHARE,
      op_timeout_s: OP_TIMEOUT_MS / 1000,
      crash: { retries: CRASH_RETRIES, backoff_ms: CRASH_BACKOFF_MS, backoff: "doubling from backoff_ms, at most 8 s" },
      firestore: "Cloud Firestore emulator (local, single JVM): absolute numbers are not production numbers; compare ratios within one run",
      server: "K processes, each @google-cloud/functions-framework getServer (unlimited request concurrency) on 127.0.0.1 with its own Firestore client and LocalLocks; K reservation workers likewise",
      definitions: {
        instances: "K: function servers (and reservation workers) running at once against the one emulator; requests round-robin over the live servers",
        latency: "client-side, request sent to response read (all completed requests, 2xx or not); reserve phases: one reserveStockForOrder call over IPC",
        throughput_per_s: "successful (2xx / reservation returned) operations per second of phase wall time, drain included",
        non_2xx: "answers outside 2xx, client timeouts and network errors; reserve phases: calls that threw or timed out",
        answers: "HTTP answers as the client saw them: 200, 409, 500, other (with other_detail: other statuses, network_error, client_timeout)",
        server_p50_ms: "handler time measured inside the instances",
        firestore_transactions: "from each instance's db.runTransaction and batch commits, summed over K: commits begun per completed operation (a Firestore transaction, or an optimistic transaction's batch), attempts (the SDK reruns a transaction body after a retryable error), errors by gRPC class where they surfaced (body = a read or the code's own LocksWanted; commit: FAILED_PRECONDITION / ALREADY_EXISTS are optimistic conflicts, after which the body runs again on fresh reads), lock_timeouts = the emulator's 'Transaction lock timeout' among them; baseline begins one per event",
        group_commit: "GroupCommit's own counters when the build exposes them (else null): shared transactions, their members, failed ones (members then run alone), transactions run alone",
        emulator_lock_timeouts: "'Operation failed: Transaction lock timeout' lines the emulator wrote to firestore-debug.log during the phase (null when the log is not found)",
        cpu_ms_per_op: "CPU time (user + system, from /proc) per completed operation of the emulator JVM, the K processes running the handler (servers, or workers for reserve phases) summed, and the bench client",
      },
    },
    scenarios: rows,
    ratios: Object.fromEntries(Object.entries(perK).map(([k, v]) => [k, v.ratios])),
    goals: Object.fromEntries(Object.entries(perK).map(([k, v]) => [k, v.goals])),
  };
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const jsonFile = path.join(RESULTS_DIR, "latest.json");
  fs.writeFileSync(`${jsonFile}.tmp`, JSON.stringify(result, null, 2) + "\n");
  fs.renameSync(`${jsonFile}.tmp`, jsonFile);
  const svgFile = path.join(RESULTS_DIR, "latency.svg");
  fs.writeFileSync(
    svgFile,
    latencySvg(series, { subtitle: `K = ${INSTANCES.join(", ")} · ${N} events per scenario · ${result.machine.cpus} CPU(s) · Node ${process.version} · Firestore emulator · ${result.generatedAt}` }),
  );

  log(`\n${table(rows)}\n`);
  for (const [k, { goals }] of Object.entries(perK)) {
    log(`ratios and goals at K = ${k} (against K = ${k}'s own baseline / spread):`);
    for (const [key, g] of Object.entries(goals)) {
      const mark = g.met === null ? "-" : g.met ? "ok" : "MISSED";
      log(`  ${key.padEnd(38)} ${String(Array.isArray(g.value) ? g.value.join(",") || "-" : g.value ?? "-").padStart(8)}  goal ${g.goal.padEnd(9)} ${mark}`);
    }
  }
  log(`\nwrote ${path.relative(ROOT, jsonFile)} and ${path.relative(ROOT, svgFile)} (total ${((performance.now() - runStart) / 1000).toFixed(0)} s)`);
  return rows.every((r) => r.invariants_ok) ? 0 : 1;
}

const hardStop = setTimeout(() => {
  console.error(`bench: still running after ${TOTAL_BUDGET_MS / 1000 + 90} s, giving up`);
  cluster?.kill();
  process.exit(1);
}, TOTAL_BUDGET_MS + 90_000);
hardStop.unref();

let exitCode = 1;
try {
  exitCode = await main();
} catch (error) {
  console.error(`bench failed: ${error?.stack ?? error}`);
} finally {
  await cluster?.stop().catch(() => {});
  await db?.terminate().catch(() => {});
}
process.exit(exitCode);
