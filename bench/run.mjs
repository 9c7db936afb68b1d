#!/usr/bin/env node
// The webhook benchmark proper. Runs with the Firestore emulator up (FIRESTORE_EMULATOR_HOST set):
// `npm run bench` starts it through scripts/emulators.mjs and runs this file inside.
//
// Scenarios (each on freshly cleared data; N = BENCH_EVENTS, default 500):
//   baseline         N distinct events, concurrency 50, to the baseline handler (verify + one create()).
//   spread           N orders over 50 products, reserved first (not measured), then N payment_intent.succeeded, concurrency 50.
//   duplicates       one event delivered N times, concurrency 100, after its order was reserved.
//   hot_sku_reserve  N orders of ONE product that has stock for 80 % of them (a flash sale that sells out):
//                    reserveStockForOrder (the orders/{id} create trigger), concurrency 50.
//   hot_sku_pay      then a payment_intent.succeeded for each of them, concurrency 50 (the refused
//                    buyers' payments go to needs_review: never oversold).
//
// Knobs (env): BENCH_EVENTS (500), BENCH_PHASE_BUDGET_S (120: a phase stops sending after this),
// BENCH_OP_TIMEOUT_S (45: one request / reservation), BENCH_TOTAL_BUDGET_S (480: the whole run),
// BENCH_ONLY (comma list of scenarios). It clears the emulator's database between scenarios, so it
// refuses to run unless BENCH_OWNS_EMULATOR=1 (set by scripts/bench.mjs) or --clear-ok is given.

import { fork } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import {
  LOOPBACK,
  PROJECT_ID,
  RESULTS_DIR,
  ROOT,
  assertLoopbackHost,
  cpuPerOp,
  transactionsPerOp,
  cpuSnapshot,
  emulatorDb,
  findEmulatorPid,
  loadStripe,
  paymentIntent,
  percentile,
  randomId,
  requireLib,
  round,
  sleep,
  stripeEvent,
} from "./common.mjs";
import { checkInvariants } from "./invariants.mjs";
import { post, runLoad, settle } from "./load.mjs";
import { latencySvg, table } from "./report.mjs";

const num = (name, fallback, min, max) => {
  const raw = process.env[name];
  const v = raw === undefined || raw === "" ? fallback : Number(raw);
  if (!Number.isFinite(v) || v < min || v > max) throw new Error(`${name}=${raw} must be a number in ${min}..${max}`);
  return v;
};
const N = num("BENCH_EVENTS", 500, 1, 5000);
const PHASE_BUDGET_MS = num("BENCH_PHASE_BUDGET_S", 120, 1, 600) * 1000;
const OP_TIMEOUT_MS = num("BENCH_OP_TIMEOUT_S", 45, 1, 300) * 1000;
const TOTAL_BUDGET_MS = num("BENCH_TOTAL_BUDGET_S", 480, 10, 3600) * 1000;
const ONLY = (process.env.BENCH_ONLY ?? "").split(",").map((s) => s.trim()).filter(Boolean);
const PRODUCTS_SPREAD = 50;
/** Stock shards of the hot product (the design under test); 1 measures the unsharded product document. */
const HOT_SHARDS = num("BENCH_HOT_SHARDS", 50, 1, 500);
/** The hot product's stock as a share of its orders: below 1, the sale sells out and some buyers are refused. */
const HOT_STOCK_SHARE = 0.8;
const AMOUNT = 2500;
const CURRENCY = "usd";

const runStart = performance.now();
const remainingMs = () => TOTAL_BUDGET_MS - (performance.now() - runStart);
const log = (msg) => console.log(msg);
const Stripe = loadStripe();
const { reserveStockForOrder } = requireLib("reservation.js");
const { LocalLocks } = requireLib("concurrency/localLocks.js");
// The reserve phases play one function instance running the orders/{id} create trigger concurrently.
const triggerLocks = new LocalLocks();
const secret = `whsec_bench_${randomId("s").slice(-18)}`;

let db;
let server;
let serverPorts;
const agents = [];

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
    paymentIntentId: piId,
    createdAt: new Date(),
  };
}

/** Seeds products and pending orders. Returns the orders: [{orderId, sku, piId}]. */
async function seed({ tag, products, orders }) {
  const writes = [];
  for (const [sku, stock] of products) writes.push([db.collection("products").doc(sku), { name: `Bench ${sku}`, stock, reserved: 0 }]);
  for (const o of orders) writes.push([db.collection("orders").doc(o.orderId), newOrder(o.orderId, o.sku, o.piId)]);
  await writeInBatches(writes);
  log(`  [${tag}] seeded ${products.size} product(s), ${orders.length} pending order(s)`);
}

function makeOrders(n, skuOf) {
  return Array.from({ length: n }, (_, i) => ({ orderId: randomId("ord"), sku: skuOf(i), piId: randomId("pi") }));
}

function paymentEvent(order) {
  return stripeEvent("payment_intent.succeeded", paymentIntent({ id: order.piId, amount: AMOUNT, currency: CURRENCY, orderId: order.orderId }));
}

/** Reservations with the trigger's own code, called directly; returns the runLoad result. */
async function reserveAll(label, orders, concurrency, budgetMs) {
  const deps = { db, now: () => new Date(), locks: triggerLocks };
  const cpuBefore = cpuNow();
  const txBefore = { ...triggerLocks.transactions(db).stats };
  const load = await runLoad({
    label,
    total: orders.length,
    concurrency,
    budgetMs,
    opTimeoutMs: OP_TIMEOUT_MS,
    log,
    op: async (i) => {
      const outcome = await reserveStockForOrder(deps, orders[i].orderId);
      return { ok: true, code: outcome };
    },
  });
  // The reservations run in this process, as the trigger's code: it is the "function" here.
  load.cpu = { ...cpuPerOp(cpuBefore, cpuNow(), load.completed), handler: "bench" };
  load.transactions = transactionsPerOp(txBefore, triggerLocks.transactions(db).stats, load.completed);
  const still = await settle(load.unsettled, OP_TIMEOUT_MS);
  if (still > 0) log(`  [${label}] ${still} reservation(s) still unsettled after waiting`);
  const outcomes = new Map(
    orders.map((o, i) => {
      const r = load.results[i];
      return [o.orderId, r === null ? "unsent" : r.code === "client_timeout" ? "unknown" : r.ok ? r.code : "failed"];
    }),
  );
  return { load, outcomes };
}

// ---------------------------------------------------------------------------------------------
// The server (child process) and HTTP delivery
// ---------------------------------------------------------------------------------------------

let messageSeq = 0;
function ask(message, timeoutMs = 10_000) {
  const id = ++messageSeq;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      server.off("message", onMessage);
      reject(new Error(`bench server did not answer ${message.type} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (m) => {
      if (m?.id === id) {
        clearTimeout(timer);
        server.off("message", onMessage);
        resolve(m);
      }
    };
    server.on("message", onMessage);
    server.send({ ...message, id });
  });
}

let emulatorPid = null;
const cpuNow = () => cpuSnapshot({ serverPid: server?.pid ?? null, emulatorPid });

async function startServer() {
  server = fork(path.join(ROOT, "bench", "server.mjs"), [], {
    env: { ...process.env, BENCH_WEBHOOK_SECRET: secret, NODE_ENV: "production" },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const ready = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("bench server did not start within 60 s")), 60_000);
    server.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`bench server exited with code ${code} before it was ready`));
    });
    server.on("message", (m) => {
      if (m?.type === "ready") {
        clearTimeout(timer);
        resolve(m);
      }
    });
  });
  serverPorts = ready.ports;
  server.on("exit", (code, signal) => {
    if (!stopping) {
      console.error(`bench server died (code ${code}, signal ${signal})`);
      process.exitCode = 1;
    }
  });
  log(`functions-framework serving stripeWebhook on ${LOOPBACK}:${serverPorts.stripeWebhook}, baseline on ${LOOPBACK}:${serverPorts.baseline}`);
}

let stopping = false;
async function stopServer() {
  stopping = true;
  if (!server || server.exitCode !== null) return;
  const exited = new Promise((resolve) => server.once("exit", resolve));
  try {
    server.send({ type: "stop" });
  } catch {
    // IPC already closed
  }
  const timer = setTimeout(() => server.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Waits until the server has nothing in flight (requests the client gave up on may still run). */
async function serverQuiet(name, capMs) {
  const until = performance.now() + capMs;
  for (;;) {
    const s = await ask({ type: "stats", name });
    if (s.inflight === 0) return 0;
    if (performance.now() > until) return s.inflight;
    await sleep(250);
  }
}

/** Delivers `bodies[i]` (signed at send time, like Stripe) to the named function. */
async function deliverAll({ label, fn, bodies, concurrency, budgetMs }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  agents.push(agent);
  const port = serverPorts[fn];
  const cpuBefore = cpuNow();
  const txBefore = (await ask({ type: "stats", name: fn })).transactions;
  const load = await runLoad({
    label,
    total: bodies.length,
    concurrency,
    budgetMs,
    opTimeoutMs: OP_TIMEOUT_MS,
    log,
    op: async (i) => {
      const payload = bodies[i];
      const signature = Stripe.webhooks.generateTestHeaderString({ payload, secret });
      const res = await post(agent, port, payload, { "stripe-signature": signature }, OP_TIMEOUT_MS);
      const ok = res.status >= 200 && res.status < 300;
      const code = res.status === 0 ? (res.timeout ? "client_timeout" : "network_error") : res.status;
      return { ok, code, bodyStatus: res.body?.status ?? null, result: res.body?.result ?? res.body?.error?.code ?? null };
    },
  });
  const stillRunning = await serverQuiet(fn, OP_TIMEOUT_MS + 15_000);
  load.cpu = { ...cpuPerOp(cpuBefore, cpuNow(), load.completed), handler: "server" };
  if (stillRunning > 0) log(`  [${label}] the server still has ${stillRunning} request(s) in flight`);
  const stats = await ask({ type: "stats", name: fn, reset: true });
  // The baseline handler runs its own transaction per event, outside GroupCommit.
  if (fn !== "baseline") load.transactions = transactionsPerOp(txBefore, stats.transactions, load.completed);
  agent.destroy();
  return { load, stats };
}

/** eventId -> applied | failed | unknown | unsent, from what each delivery of it got. */
function eventOutcomes(ids, results) {
  const outcome = new Map(ids.map((id) => [id, "unsent"]));
  results.forEach((r, i) => {
    if (r === null) return;
    const id = ids[i];
    const prev = outcome.get(id);
    const now = r.ok ? "applied" : r.code === "client_timeout" || r.code === "network_error" ? "unknown" : "failed";
    const rank = { unsent: 0, failed: 1, unknown: 2, applied: 3 };
    if (rank[now] > rank[prev]) outcome.set(id, now);
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

/**
 * Not measured: opens the gRPC channels of both processes, JIT-compiles the paths and wakes the
 * emulator, so the first scenario does not pay for a cold start the others do not.
 */
async function warmUp() {
  const started = performance.now();
  const count = Math.min(100, N);
  const ignored = Array.from({ length: count }, () => JSON.stringify(stripeEvent("customer.created", { id: randomId("cus"), object: "customer" })));
  const pay = Array.from({ length: count }, () => JSON.stringify(stripeEvent("payment_intent.succeeded", paymentIntent({ id: randomId("pi"), amount: AMOUNT, orderId: randomId("ord") }))));
  const quiet = () => {};
  for (const [fn, bodies] of [["baseline", pay], ["stripeWebhook", ignored]]) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
    await runLoad({
      label: `warm-up ${fn}`,
      total: bodies.length,
      concurrency: 10,
      budgetMs: 30_000,
      opTimeoutMs: OP_TIMEOUT_MS,
      log: quiet,
      op: async (i) => {
        const signature = Stripe.webhooks.generateTestHeaderString({ payload: bodies[i], secret });
        const res = await post(agent, serverPorts[fn], bodies[i], { "stripe-signature": signature }, OP_TIMEOUT_MS);
        return { ok: res.status >= 200 && res.status < 300, code: res.status };
      },
    });
    agent.destroy();
    await serverQuiet(fn, 30_000);
    await ask({ type: "stats", name: fn, reset: true });
  }
  const sku = "sku_warmup";
  const orders = makeOrders(Math.min(20, N), () => sku);
  await writeInBatches([
    [db.collection("products").doc(sku), { name: "warm-up", stock: 1000, reserved: 0 }],
    ...orders.map((o) => [db.collection("orders").doc(o.orderId), newOrder(o.orderId, sku, o.piId)]),
  ]);
  const deps = { db, now: () => new Date(), locks: triggerLocks };
  for (const o of orders) await reserveStockForOrder(deps, o.orderId);
  await clearDatabase();
  log(`warm-up done in ${((performance.now() - started) / 1000).toFixed(1)} s (not measured)`);
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

const rows = [];
const series = [];

function phaseBudget(label) {
  // Leave room for the drain (one op timeout) and the invariant reads.
  const budget = Math.min(PHASE_BUDGET_MS, remainingMs() - OP_TIMEOUT_MS - 20_000);
  if (budget < 5_000) {
    log(`  [${label}] skipped: the run's total budget (${TOTAL_BUDGET_MS / 1000} s) is spent`);
    return null;
  }
  return budget;
}

function record(name, { load, stats, invariants, extra = {}, budgetMs }) {
  const serverDurations = (stats?.durations ?? []).slice().sort((a, b) => a - b);
  const row = {
    name,
    events: load.total,
    concurrency: load.concurrency,
    completed: load.completed,
    timed_out: load.timedOut,
    budget_s: round(budgetMs / 1000, 0),
    elapsed_s: round(load.elapsedMs / 1000, 2),
    p50_ms: load.summary.p50_ms,
    p95_ms: load.summary.p95_ms,
    p99_ms: load.summary.p99_ms,
    max_ms: load.summary.max_ms,
    throughput_per_s: load.summary.throughput_per_s,
    non_2xx: load.failed,
    invariants_ok: invariants.ok,
    cpu_ms_per_op: load.cpu,
    firestore_transactions: load.transactions ?? undefined,
    server_p50_ms: round(percentile(serverDurations, 50)),
    server_p95_ms: round(percentile(serverDurations, 95)),
    outcomes: outcomeCounts(load.results),
    server_results: stats?.byResult ?? undefined,
    server_errors: stats?.lastErrors?.length ? stats.lastErrors : undefined,
    invariant_checks: invariants.checks,
    firestore_counts: invariants.counts,
    ...extra,
  };
  rows.push(row);
  series.push({ name, latencies: load.latencies, timed_out: load.timedOut });
  const failed = invariants.checks.filter((c) => !c.ok);
  log(
    `  [${name}] ${row.completed}/${row.events} completed in ${row.elapsed_s} s${row.timed_out ? " (TIMED OUT: budget spent)" : ""}: ` +
      `p50 ${row.p50_ms} ms, p95 ${row.p95_ms} ms, max ${row.max_ms} ms, ${row.throughput_per_s}/s ok, non-2xx ${row.non_2xx}; ` +
      `invariants ${invariants.ok ? "ok" : "FAILED"}`,
  );
  log(`  [${name}] outcomes ${JSON.stringify(row.outcomes)}; firestore ${JSON.stringify(invariants.counts)}`);
  if (load.transactions) log(`  [${name}] Firestore transactions per operation: ${load.transactions.per_op} (${load.transactions.shared} shared by ${load.transactions.shared_members} members, ${load.transactions.shared_failed} of them failed; ${load.transactions.alone} alone)`);
  if (load.cpu) log(`  [${name}] CPU ms per operation: emulator ${load.cpu.emulator ?? "n/a"}, function server ${load.cpu.server ?? "n/a"}, bench client ${load.cpu.bench}`);
  for (const c of failed) log(`  [${name}] INVARIANT FAILED: ${c.name}: ${c.detail}`);
  return row;
}

function skippedRow(name, events, concurrency) {
  rows.push({ name, events, concurrency, completed: 0, skipped: true, timed_out: false, p50_ms: null, p95_ms: null, max_ms: null, throughput_per_s: null, non_2xx: 0, invariants_ok: true });
}

async function scenarioBaseline() {
  const name = "baseline";
  log(`\n== ${name}: ${N} distinct events, concurrency 50, verify + one create() ==`);
  await clearDatabase();
  const events = Array.from({ length: N }, () => stripeEvent("payment_intent.succeeded", paymentIntent({ id: randomId("pi"), amount: AMOUNT, orderId: randomId("ord") })));
  const budgetMs = phaseBudget(name);
  if (budgetMs === null) return skippedRow(name, N, 50);
  const { load, stats } = await deliverAll({ label: name, fn: "baseline", bodies: events.map((e) => JSON.stringify(e)), concurrency: 50, budgetMs });
  const invariants = await checkInvariants(db, { baseline: true, events: eventOutcomes(events.map((e) => e.id), load.results) });
  record(name, { load, stats, invariants, budgetMs });
}

async function scenarioSpread() {
  const name = "spread";
  log(`\n== ${name}: ${N} reserved orders over ${PRODUCTS_SPREAD} products, ${N} payment_intent.succeeded, concurrency 50 ==`);
  await clearDatabase();
  const skus = Array.from({ length: PRODUCTS_SPREAD }, (_, i) => `sku_spread_${String(i).padStart(2, "0")}`);
  const perSku = Math.ceil(N / PRODUCTS_SPREAD);
  const initialStock = new Map(skus.map((sku) => [sku, perSku * 2]));
  const orders = makeOrders(N, (i) => skus[i % skus.length]);
  await seed({ tag: name, products: initialStock, orders });
  const setupBudget = phaseBudget(`${name} setup`);
  if (setupBudget === null) return skippedRow(name, N, 50);
  const { load: setup, outcomes: reservations } = await reserveAll(`${name} setup: reserve`, orders, 50, setupBudget);
  log(`  [${name} setup] reserved ${setup.codes.reserved ?? 0}/${N} orders in ${(setup.elapsedMs / 1000).toFixed(1)} s (not measured) ${JSON.stringify(setup.codes)}`);
  const budgetMs = phaseBudget(name);
  if (budgetMs === null) return skippedRow(name, N, 50);
  const events = orders.map(paymentEvent);
  const { load, stats } = await deliverAll({ label: name, fn: "stripeWebhook", bodies: events.map((e) => JSON.stringify(e)), concurrency: 50, budgetMs });
  const invariants = await checkInvariants(db, { initialStock, reservations, events: eventOutcomes(events.map((e) => e.id), load.results) });
  record(name, { load, stats, invariants, budgetMs, extra: { setup_reserved: setup.codes.reserved ?? 0, setup_s: round(setup.elapsedMs / 1000, 1) } });
}

async function scenarioDuplicates() {
  const name = "duplicates";
  log(`\n== ${name}: one event delivered ${N} times, concurrency 100 ==`);
  await clearDatabase();
  const sku = "sku_dup";
  const initialStock = new Map([[sku, 10]]);
  const orders = makeOrders(1, () => sku);
  await seed({ tag: name, products: initialStock, orders });
  const { outcomes: reservations } = await reserveAll(`${name} setup: reserve`, orders, 1, 30_000);
  log(`  [${name} setup] order ${reservations.get(orders[0].orderId)}`);
  const budgetMs = phaseBudget(name);
  if (budgetMs === null) return skippedRow(name, N, 100);
  const event = paymentEvent(orders[0]);
  const body = JSON.stringify(event);
  const { load, stats } = await deliverAll({ label: name, fn: "stripeWebhook", bodies: Array.from({ length: N }, () => body), concurrency: 100, budgetMs });
  const processedResponses = load.results.filter((r) => r?.ok && r.bodyStatus === "processed").length;
  const invariants = await checkInvariants(db, {
    initialStock,
    reservations,
    events: eventOutcomes(Array.from({ length: N }, () => event.id), load.results),
    exactlyOnce: { eventId: event.id, orderId: orders[0].orderId, sku, qty: 1, initial: 10 },
    processedResponses,
  });
  record(name, { load, stats, invariants, budgetMs, extra: { processed_answers: processedResponses } });
}

async function scenarioHotSku() {
  const units = Math.floor(N * HOT_STOCK_SHARE);
  log(`\n== hot_sku (${HOT_SHARDS} shard(s)): ${N} orders for ONE product with ${units} units; reserve (concurrency 50), then pay (concurrency 50) ==`);
  await clearDatabase();
  const sku = "sku_hot";
  const initialStock = new Map([[sku, units]]);
  const orders = makeOrders(N, () => sku);
  await seed({ tag: "hot_sku", products: initialStock, orders });
  if (HOT_SHARDS > 1) {
    await requireLib("inventory/shards.js").configureStockShards(db, sku, HOT_SHARDS);
    log(`  [hot_sku] ${sku} split into ${HOT_SHARDS} stock shards`);
  }

  const reserveName = "hot_sku_reserve";
  const reserveBudget = phaseBudget(reserveName);
  let reservations = new Map(orders.map((o) => [o.orderId, "unsent"]));
  if (reserveBudget === null) skippedRow(reserveName, N, 50);
  else {
    const r = await reserveAll(reserveName, orders, 50, reserveBudget);
    reservations = r.outcomes;
    const invariants = await checkInvariants(db, { initialStock, reservations, events: new Map() });
    record(reserveName, { load: r.load, invariants, budgetMs: reserveBudget });
  }

  const payName = "hot_sku_pay";
  const payBudget = phaseBudget(payName);
  if (payBudget === null) return skippedRow(payName, N, 50);
  const events = orders.map(paymentEvent);
  const { load, stats } = await deliverAll({ label: payName, fn: "stripeWebhook", bodies: events.map((e) => JSON.stringify(e)), concurrency: 50, budgetMs: payBudget });
  const invariants = await checkInvariants(db, { initialStock, reservations, events: eventOutcomes(events.map((e) => e.id), load.results) });
  record(payName, { load, stats, invariants, budgetMs: payBudget });
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

/** a / b to 3 significant digits (hot-SKU ratios are far below 0.01). */
function ratio(a, b) {
  return a === null || a === undefined || !b ? null : Number((a / b).toPrecision(3));
}

async function main() {
  if (process.env.BENCH_OWNS_EMULATOR !== "1" && !process.argv.includes("--clear-ok")) {
    throw new Error(
      "bench/run.mjs deletes every document of the emulator between scenarios: run it with `npm run bench` " +
        "(which starts its own emulator) or pass --clear-ok if the emulator at FIRESTORE_EMULATOR_HOST is disposable.",
    );
  }
  db = emulatorDb();
  log(`stripeWebhook bench: ${N} events per scenario, phase budget ${PHASE_BUDGET_MS / 1000} s, op timeout ${OP_TIMEOUT_MS / 1000} s, ` +
    `Firestore emulator ${process.env.FIRESTORE_EMULATOR_HOST}, ${os.cpus().length} CPU(s), Node ${process.version}`);
  await startServer();
  emulatorPid = findEmulatorPid();
  log(emulatorPid === null ? "CPU accounting: emulator process not found (figures n/a)" : `CPU accounting: emulator pid ${emulatorPid}, function server pid ${server.pid}`);
  await warmUp();

  const scenarios = { baseline: scenarioBaseline, spread: scenarioSpread, duplicates: scenarioDuplicates, hot_sku: scenarioHotSku };
  for (const [name, run] of Object.entries(scenarios)) {
    if (ONLY.length && !ONLY.includes(name)) continue;
    await run();
  }

  const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
  const ratios = {
    duplicates_p95_vs_baseline_p95: ratio(byName.duplicates?.p95_ms, byName.baseline?.p95_ms),
    spread_throughput_vs_baseline: ratio(byName.spread?.throughput_per_s, byName.baseline?.throughput_per_s),
    hot_sku_reserve_throughput_vs_spread: ratio(byName.hot_sku_reserve?.throughput_per_s, byName.spread?.throughput_per_s),
    hot_sku_pay_throughput_vs_spread: ratio(byName.hot_sku_pay?.throughput_per_s, byName.spread?.throughput_per_s),
  };
  const cpus = os.cpus();
  const result = {
    generatedAt: new Date().toISOString(),
    machine: { cpus: cpus.length, cpu_model: cpus[0]?.model ?? null, node: process.version, platform: `${os.platform()} ${os.release()}`, memory_gb: round(os.totalmem() / 2 ** 30, 1) },
    config: {
      events_per_scenario: N,
      phase_budget_s: PHASE_BUDGET_MS / 1000,
      hot_sku_stock_shards: HOT_SHARDS,
      hot_sku_stock_per_order: HOT_STOCK_SHARE,
      op_timeout_s: OP_TIMEOUT_MS / 1000,
      firestore: "Cloud Firestore emulator (local, single JVM): absolute numbers are not production numbers; compare ratios",
      server: "@google-cloud/functions-framework getServer (one process, unlimited request concurrency) on 127.0.0.1",
      definitions: {
        latency: "client-side, request sent to response read (all completed requests, 2xx or not); reserve phases: one reserveStockForOrder call",
        throughput_per_s: "successful (2xx / reservation returned) operations per second of phase wall time, drain included",
        non_2xx: "answers outside 2xx, client timeouts and network errors; reserve phases: calls that threw or timed out",
        server_p50_ms: "handler time measured inside the functions-framework process",
        firestore_transactions: "Firestore transactions the handler ran (GroupCommit counters): shared ones (several deliveries in one commit) plus those run alone, per completed operation; baseline runs its own transaction per event and reports none",
        cpu_ms_per_op: "CPU time (user + system, from /proc) per completed operation of the emulator JVM, the functions-framework process (server) and the bench process (which also runs the reserve phases' handler: handler = bench)",
      },
    },
    scenarios: rows,
    ratios,
  };
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const jsonFile = path.join(RESULTS_DIR, "latest.json");
  fs.writeFileSync(`${jsonFile}.tmp`, JSON.stringify(result, null, 2) + "\n");
  fs.renameSync(`${jsonFile}.tmp`, jsonFile);
  const svgFile = path.join(RESULTS_DIR, "latency.svg");
  fs.writeFileSync(
    svgFile,
    latencySvg(series, { subtitle: `${N} events per scenario · ${result.machine.cpus} CPU(s) · Node ${process.version} · Firestore emulator · ${result.generatedAt}` }),
  );

  log(`\n${table(rows)}\n`);
  log("ratios:");
  for (const [k, v] of Object.entries(ratios)) log(`  ${k.padEnd(38)} ${v ?? "-"}`);
  log(`\nwrote ${path.relative(ROOT, jsonFile)} and ${path.relative(ROOT, svgFile)} (total ${((performance.now() - runStart) / 1000).toFixed(0)} s)`);
  return rows.every((r) => r.invariants_ok) ? 0 : 1;
}

const hardStop = setTimeout(() => {
  console.error(`bench: still running after ${TOTAL_BUDGET_MS / 1000 + 90} s, giving up`);
  server?.kill("SIGKILL");
  process.exit(1);
}, TOTAL_BUDGET_MS + 90_000);
hardStop.unref();

let exitCode = 1;
try {
  exitCode = await main();
} catch (error) {
  console.error(`bench failed: ${error?.stack ?? error}`);
} finally {
  for (const agent of agents) agent.destroy();
  await stopServer().catch(() => {});
  await db?.terminate().catch(() => {});
}
process.exit(exitCode);
