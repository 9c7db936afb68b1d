// What one bench process (a function server, bench/server.mjs, or a reservation worker,
// bench/worker.mjs) builds for itself, as one Cloud Functions instance would: its own Firestore
// client, its own LocalLocks (with the knobs applied), and counters of the commits it makes. The
// counters wrap `db.runTransaction` and `db.batch` of this process's client, so they see every
// commit whatever the layer above it does: a Firestore transaction, or an optimistic transaction's
// batch (a conflict there is a commit failing FAILED_PRECONDITION / ALREADY_EXISTS, after which the
// body runs again); GroupCommit's own counters are added when the build exposes them.
//
// Knobs (env, read at start; no code edits needed):
//   BENCH_GROUP_COMMIT=off  LocalLocks built with the group commit disabled (every transaction runs alone)
//   BENCH_LOCAL_LOCKS=off   LocalLocks built with localKeys: false (keys always free, coalesce never shares)
//   BENCH_RESERVATION_BATCH=off  ReservationBatches with maxOrders 1 (every new order its own transaction, concurrently)
//   BENCH_LEAVE_REQUEST_DOMAIN=off  the transaction layer starts its Firestore calls inside the runtime's
//                           per-request domain instead of outside it (functions/src/concurrency/requestDomain.ts);
//                           it changes nothing in the reservation workers, which run outside any domain

import fs from "node:fs";
import path from "node:path";
import { FUNCTIONS_DIR, emulatorDb, errorClass, requireLib } from "./common.mjs";

export function knobsFromEnv(env = process.env) {
  const flag = (name) => {
    const raw = (env[name] ?? "").trim().toLowerCase();
    if (raw === "" || raw === "on") return "on";
    if (raw === "off") return "off";
    throw new Error(`${name}=${env[name]} must be "on" or "off"`);
  };
  return {
    group_commit: flag("BENCH_GROUP_COMMIT"),
    local_locks: flag("BENCH_LOCAL_LOCKS"),
    reservation_batch: flag("BENCH_RESERVATION_BATCH"),
    leave_request_domain: flag("BENCH_LEAVE_REQUEST_DOMAIN"),
  };
}

function libExists(relative) {
  return fs.existsSync(path.join(FUNCTIONS_DIR, "lib", relative));
}

/**
 * Counts, for this process's client: transactions begun (`runs`), attempts (each run of a body: the
 * SDK retries a body after a retryable error), commits that succeeded, runs that failed for good, and
 * the errors by class, where they surfaced: out of a body (a read, or the code's own LocksWanted),
 * out of the commit, and the final error of a failed run. `lock_timeouts` counts the emulator's
 * "Transaction lock timeout" among them.
 */
export function instrumentTransactions(db) {
  const c = { runs: 0, attempts: 0, committed: 0, failed: 0, lock_timeouts: 0, read_calls: 0, read_documents: 0, read_calls_by_size: {}, body_errors: {}, commit_errors: {}, final_errors: {} };
  const note = (map, error) => {
    const k = errorClass(error);
    map[k] = (map[k] ?? 0) + 1;
    if (map !== c.final_errors && /lock timeout/i.test(String(error?.message ?? ""))) c.lock_timeouts++;
  };
  const commitWrapped = new WeakSet();
  // Transaction#commit is how the SDK ends each attempt; wrapping it on the instance only observes.
  const watchCommit = (tx) => {
    if (commitWrapped.has(tx) || typeof tx?.commit !== "function") return;
    commitWrapped.add(tx);
    const commit = tx.commit;
    tx.commit = function (...args) {
      return commit.apply(this, args).catch((error) => {
        note(c.commit_errors, error);
        throw error;
      });
    };
  };
  const original = db.runTransaction.bind(db);
  db.runTransaction = (updateFunction, options) => {
    c.runs++;
    const counted = (tx) => {
      c.attempts++;
      watchCommit(tx);
      let result;
      try {
        result = updateFunction(tx);
      } catch (error) {
        note(c.body_errors, error);
        throw error;
      }
      return Promise.resolve(result).catch((error) => {
        note(c.body_errors, error);
        throw error;
      });
    };
    return original(counted, options).then(
      (value) => {
        c.committed++;
        return value;
      },
      (error) => {
        c.failed++;
        note(c.final_errors, error);
        throw error;
      },
    );
  };
  // An optimistic transaction commits a batch (its own check batches are never committed, so never counted).
  const originalBatch = db.batch.bind(db);
  db.batch = () => {
    const batch = originalBatch();
    const commit = batch.commit.bind(batch);
    batch.commit = () => {
      c.runs++;
      c.attempts++;
      return commit().then(
        (value) => {
          c.committed++;
          return value;
        },
        (error) => {
          note(c.commit_errors, error);
          throw error;
        },
      );
    };
    return batch;
  };
  // Lock-free reads (the optimistic transactions' and the group's read rounds): round trips and documents.
  const originalGetAll = db.getAll.bind(db);
  db.getAll = (...refs) => {
    const documents = refs.filter((r) => typeof r?.path === "string").length;
    c.read_calls++;
    c.read_documents += documents;
    // One document: a transaction run alone, or a lone read (a marker); 25 or more: a shard snapshot.
    const size = documents >= 25 ? "25+" : documents >= 6 ? "6-24" : documents >= 2 ? "2-5" : "1";
    c.read_calls_by_size[size] = (c.read_calls_by_size[size] ?? 0) + 1;
    return originalGetAll(...refs);
  };
  return { snapshot: () => structuredClone(c) };
}

/** GroupCommit's counters when the build has them (numbers only), else null. */
function groupCommitStats(locks, db) {
  try {
    const stats = typeof locks?.transactions === "function" ? locks.transactions(db)?.stats : undefined;
    if (!stats || typeof stats !== "object") return null;
    const numbers = Object.fromEntries(Object.entries(stats).filter(([, v]) => typeof v === "number"));
    return Object.keys(numbers).length ? numbers : null;
  } catch {
    return null;
  }
}

/**
 * Builds this process's instance: { db, locks, knobs, stats() }. `knobs` says what was applied:
 * "on" / "off", or "absent" when the build has no such mechanism to turn off.
 */
export function buildInstance(appName) {
  const db = emulatorDb(appName);
  const counters = instrumentTransactions(db);
  const knobs = knobsFromEnv();
  const applied = { ...knobs };
  const groupFailures = {};
  const localLocks = requireLib("concurrency/localLocks.js");
  const defaults = libExists("concurrency/groupCommit.js") ? requireLib("concurrency/groupCommit.js").DEFAULT_GROUP_COMMIT : undefined;
  // Knob off: the same optimistic options, with the calls started in place (inside the request's domain).
  let optimistic = defaults?.optimistic;
  if (!optimistic || !libExists("concurrency/requestDomain.js")) applied.leave_request_domain = "absent";
  else if (knobs.leave_request_domain === "off") optimistic = { ...optimistic, startCall: requireLib("concurrency/requestDomain.js").inPlace };
  let real;
  if (defaults && typeof defaults === "object") {
    // As runtime.ts builds it, with the failure hook counting instead of logging.
    const onGroupFailure = (failure) => {
      const k = typeof failure?.code === "number" ? errorClass({ code: failure.code }) : String(failure?.code ?? "unknown");
      groupFailures[k] = (groupFailures[k] ?? 0) + 1;
    };
    const slots = process.env.BENCH_GC_MAX_IN_FLIGHT ? { maxInFlight: Number(process.env.BENCH_GC_MAX_IN_FLIGHT) } : {};
    real = new localLocks.LocalLocks({ ...defaults, optimistic, ...slots, onGroupFailure, ...(knobs.group_commit === "off" ? { enabled: false } : {}) }, { localKeys: knobs.local_locks !== "off" });
  } else {
    // No group commit in this build: "off" is what runs anyway.
    real = new localLocks.LocalLocks(undefined, { localKeys: knobs.local_locks !== "off" });
    applied.group_commit = "absent";
  }
  const locks = real;
  // The reservation trigger's batches (a reservation worker's); an older build reserves order by order.
  let batches = null;
  if (libExists("inventory/reservationBatch.js")) {
    const { ReservationBatches, DEFAULT_RESERVATION_BATCH } = requireLib("inventory/reservationBatch.js");
    batches = new ReservationBatches(db, () => new Date(), {
      ...DEFAULT_RESERVATION_BATCH,
      ...(optimistic ? { optimistic: { ...DEFAULT_RESERVATION_BATCH.optimistic, startCall: optimistic.startCall } } : {}),
      ...(knobs.reservation_batch === "off" ? { maxOrders: 1 } : {}),
    });
  } else {
    applied.reservation_batch = "absent";
  }
  return {
    db,
    locks,
    batches,
    knobs: applied,
    /** Cumulative counters: the parent diffs them per phase and sums them over the instances. */
    stats: () => ({ attempts: counters.snapshot(), group_commit: groupCommitStats(real, db), reservation_batches: batches ? { ...batches.stats } : null, group_failures: { ...groupFailures } }),
  };
}
