// One function instance under test: a child process (bench/run.mjs forks K of them, one Firestore
// client and one LocalLocks each, see bench/instance.mjs) that serves, through
// @google-cloud/functions-framework (the Node runtime of v2 functions, real request concurrency):
//   - stripeWebhook: the real handler, createWebhookHandler() from functions/lib, on a real Firestore
//     (the emulator), with a bench-only signing secret;
//   - baseline: verify the signature with Stripe's constructEvent + create() one document in a
//     transaction, nothing else.
// Each function gets its own server on 127.0.0.1 and an ephemeral port, reported to the parent over IPC.
// The parent asks for stats (in-flight count; per phase: answers, results, server-side durations;
// cumulative: the instance's transaction counters) and says "stop". It may also kill -9 it (crash).

import { performance } from "node:perf_hooks";
import { LOOPBACK, loadStripe, requireFn, requireLib } from "./common.mjs";
import { buildInstance } from "./instance.mjs";

if (typeof process.send !== "function") {
  console.error("bench/server.mjs is started by bench/run.mjs (it needs an IPC channel).");
  process.exit(2);
}

const secret = process.env.BENCH_WEBHOOK_SECRET;
if (!secret) {
  console.error("BENCH_WEBHOOK_SECRET is not set.");
  process.exit(2);
}

const framework = requireFn("@google-cloud/functions-framework");
const { getTestServer } = requireFn("@google-cloud/functions-framework/testing");
const { createWebhookHandler } = requireLib("webhook/handler.js");
const Stripe = loadStripe();
const instance = buildInstance("bench-server");
const { db, locks } = instance;

/** Per function: requests in flight, answers by HTTP status / result, handler durations. */
const stats = {};
function statsFor(name) {
  stats[name] ??= { inflight: 0, byStatus: {}, byResult: {}, durations: [] };
  return stats[name];
}

/** Counts in-flight requests and the handler's own duration (what the server spends per request). */
function instrumented(name, handler) {
  const s = statsFor(name);
  return async (req, res) => {
    s.inflight++;
    const started = performance.now();
    try {
      await handler(req, res);
    } finally {
      s.inflight--;
      s.durations.push(performance.now() - started);
      s.byStatus[res.statusCode] = (s.byStatus[res.statusCode] ?? 0) + 1;
    }
  };
}

const webhook = createWebhookHandler({
  db,
  now: () => new Date(),
  locks,
  options: { restockOnRefund: true, webhookEventTtlDays: 30 },
  failure: { maxDeliveryAttempts: 5 },
  webhookSecrets: () => [secret],
  // Production logs one structured line per delivery; the bench counts them instead of printing 1,500 lines.
  logDelivery: (entry) => {
    const s = statsFor("stripeWebhook");
    const key = entry.detail && entry.result !== "failed" ? `${entry.result}:${entry.detail}` : entry.result;
    s.byResult[key] = (s.byResult[key] ?? 0) + 1;
    if (entry.http_status >= 500 && (s.lastErrors ??= []).length < 5) s.lastErrors.push(entry.detail);
  },
});

const baselineCollection = db.collection("benchBaseline");

async function baseline(req, res) {
  const s = statsFor("baseline");
  let event;
  try {
    event = Stripe.webhooks.constructEvent(req.rawBody, req.headers["stripe-signature"], secret);
  } catch (error) {
    s.byResult.signature_invalid = (s.byResult.signature_invalid ?? 0) + 1;
    res.status(400).json({ error: { code: "signature_invalid", message: error.message } });
    return;
  }
  try {
    await db.runTransaction(async (tx) => {
      tx.create(baselineCollection.doc(event.id), { type: event.type, receivedAt: new Date() });
    });
    s.byResult.processed = (s.byResult.processed ?? 0) + 1;
    res.status(200).json({ received: true, eventId: event.id, status: "processed" });
  } catch (error) {
    if (error?.code === 6) {
      s.byResult.duplicate = (s.byResult.duplicate ?? 0) + 1;
      res.status(200).json({ received: true, eventId: event.id, status: "duplicate" });
      return;
    }
    s.byResult.failed = (s.byResult.failed ?? 0) + 1;
    res.status(500).json({ error: { code: "transient", message: String(error?.message ?? error) } });
  }
}

framework.http("stripeWebhook", instrumented("stripeWebhook", webhook));
framework.http("baseline", instrumented("baseline", baseline));

function listen(name) {
  const server = getTestServer(name);
  server.setTimeout(0); // as the framework's main does
  // Behind a load balancer the backend keeps idle connections open longer than the balancer does
  // (Node's default is 5 s): otherwise a connection the client reuses can be closed under it, a
  // reset that is the harness's, not the handler's.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, LOOPBACK, () => resolve({ server, port: server.address().port }));
  });
}

const servers = {};
for (const name of ["stripeWebhook", "baseline"]) servers[name] = await listen(name);

process.on("message", async (message) => {
  if (message?.type === "stats") {
    const name = message.name;
    const s = statsFor(name);
    const reply = {
      type: "stats",
      id: message.id,
      name,
      inflight: s.inflight,
      byStatus: s.byStatus,
      byResult: s.byResult,
      durations: s.durations,
      lastErrors: s.lastErrors ?? [],
      totals: instance.stats(),
    };
    if (message.reset) Object.assign(s, { byStatus: {}, byResult: {}, durations: [], lastErrors: [] });
    process.send(reply);
  } else if (message?.type === "stop") {
    for (const { server } of Object.values(servers)) server.close();
    for (const { server } of Object.values(servers)) server.closeAllConnections?.();
    await db.terminate().catch(() => {});
    process.exit(0);
  }
});
process.on("disconnect", () => process.exit(0));
process.on("uncaughtException", (error) => {
  console.error(`[bench server] uncaught exception: ${error?.stack ?? error}`);
  process.exit(16); // what the framework's ErrorHandler does: the instance dies
});
process.on("unhandledRejection", (error) => {
  console.error(`[bench server] unhandled rejection: ${error?.stack ?? error}`);
  process.exit(16);
});

process.send({ type: "ready", knobs: instance.knobs, ports: Object.fromEntries(Object.entries(servers).map(([name, { port }]) => [name, port])) });
