// One instance of the reservation trigger (the `orders/{orderId}` create trigger runs as its own
// service in production): a child process forked by bench/run.mjs (K of them), with its own Firestore
// client and LocalLocks (bench/instance.mjs), running `reserveStockForOrder` from functions/lib for
// the order ids the parent sends over IPC, as many at once as the parent sends.

import { performance } from "node:perf_hooks";
import { errorClass, requireLib } from "./common.mjs";
import { buildInstance } from "./instance.mjs";

if (typeof process.send !== "function") {
  console.error("bench/worker.mjs is started by bench/run.mjs (it needs an IPC channel).");
  process.exit(2);
}

const { reserveStockForOrder } = requireLib("reservation.js");
const instance = buildInstance("bench-worker");
const deps = { db: instance.db, now: () => new Date(), locks: instance.locks, batches: instance.batches };

let inflight = 0;
let phase = { byOutcome: {}, durations: [], lastErrors: [] };

async function reserve(message) {
  inflight++;
  const started = performance.now();
  let reply;
  try {
    const outcome = await reserveStockForOrder(deps, message.orderId);
    reply = { ok: true, outcome };
  } catch (error) {
    reply = { ok: false, outcome: "failed", errorClass: errorClass(error), error: String(error?.message ?? error).slice(0, 300) };
    if (phase.lastErrors.length < 5) phase.lastErrors.push(reply.error);
  } finally {
    inflight--;
  }
  const ms = performance.now() - started;
  phase.durations.push(ms);
  phase.byOutcome[reply.outcome] = (phase.byOutcome[reply.outcome] ?? 0) + 1;
  process.send({ type: "reserved", id: message.id, ...reply, ms });
}

process.on("message", async (message) => {
  if (message?.type === "reserve") {
    void reserve(message);
  } else if (message?.type === "stats") {
    process.send({ type: "stats", id: message.id, inflight, byResult: phase.byOutcome, byStatus: {}, durations: phase.durations, lastErrors: phase.lastErrors, totals: instance.stats() });
    if (message.reset) phase = { byOutcome: {}, durations: [], lastErrors: [] };
  } else if (message?.type === "stop") {
    await instance.db.terminate().catch(() => {});
    process.exit(0);
  }
});
process.on("disconnect", () => process.exit(0));
process.on("uncaughtException", (error) => {
  console.error(`[bench worker] uncaught exception: ${error?.stack ?? error}`);
  process.exit(16);
});
process.on("unhandledRejection", (error) => {
  console.error(`[bench worker] unhandled rejection: ${error?.stack ?? error}`);
  process.exit(16);
});

process.send({ type: "ready", knobs: instance.knobs });
