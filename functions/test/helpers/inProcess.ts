import type { DocumentReference, Firestore, WriteBatch, WriteResult } from "firebase-admin/firestore";
import { LocalLocks } from "../../src/concurrency/localLocks";
import { ReservationBatches } from "../../src/inventory/reservationBatch";
import type { ReservationDeps } from "../../src/reservation";
import { createWebhookHandler, type WebhookDeps } from "../../src/webhook/handler";
import { webhookSecret } from "./emulator";
import { event, signatureHeader } from "./stripeFixtures";

/**
 * The webhook handler called in this process, as one function instance runs it: for fault injection
 * and for what happens between concurrent requests of one instance. Deliveries that share `deps`
 * share its LocalLocks, as requests of one instance do.
 */

export function webhookDeps(database: Firestore): WebhookDeps {
  return {
    db: database,
    now: () => new Date(),
    locks: new LocalLocks(),
    options: { restockOnRefund: true, webhookEventTtlDays: 30 },
    failure: { maxDeliveryAttempts: 5 },
    webhookSecrets: () => [webhookSecret()],
    logDelivery: () => undefined,
  };
}

/** The reservation service of one function instance on `database`: its own locks and batches. */
export function reservationDeps(database: Firestore, now: () => Date = () => new Date()): ReservationDeps {
  return { db: database, now, locks: new LocalLocks(), batches: new ReservationBatches(database, now) };
}

/** Fault injection at the dependency boundary: the first commit fails as Firestore does when unavailable. */
export function unavailableOnce(real: Firestore): Firestore {
  let failed = false;
  return withCommits(real, (commit) => {
    if (failed) return commit();
    failed = true;
    return Promise.reject(Object.assign(new Error("14 UNAVAILABLE: injected outage"), { code: 14 }));
  });
}

export async function invoke(deps: WebhookDeps, envelope: ReturnType<typeof event>) {
  const payload = JSON.stringify(envelope);
  let status = 0;
  let body: unknown = null;
  const res = {
    status(code: number) {
      status = code;
      return res;
    },
    set() {
      return res;
    },
    json(value: unknown) {
      body = value;
    },
  };
  await createWebhookHandler(deps)(
    { method: "POST", rawBody: Buffer.from(payload), headers: { "stripe-signature": signatureHeader(payload, webhookSecret()) } },
    res,
  );
  return { status, body: body as Record<string, unknown> };
}


/**
 * Counts the commits made through `real` (`count`: every batch commit, the optimistic transactions' and
 * the group commits'), and those that lost a race (`conflicts`: FAILED_PRECONDITION / ALREADY_EXISTS /
 * NOT_FOUND / ABORTED, after which the body runs again on fresh reads).
 */
export function countingCommits(real: Firestore): { db: Firestore; count: () => number; conflicts: () => number } {
  let count = 0;
  let conflicts = 0;
  const db = withCommits(real, async (commit) => {
    count += 1;
    try {
      return await commit();
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === 9 || code === 6 || code === 5 || code === 10) conflicts += 1;
      throw error;
    }
  });
  return { db, count: () => count, conflicts: () => conflicts };
}

/** `real`, recording the paths of the documents each of its `getAll` calls reads, one list per call. */
export function recordingReads(real: Firestore): { db: Firestore; calls: string[][] } {
  const calls: string[][] = [];
  const db = replacing(real, "getAll", (...refs: Parameters<Firestore["getAll"]>) => {
    calls.push(refs.filter((ref): ref is DocumentReference => typeof ref === "object" && ref !== null && "path" in ref).map((ref) => ref.path));
    return real.getAll(...refs);
  });
  return { db, calls };
}

/** `real`, with `hook` run and awaited just before its `nth` lock-free read call (`getAll`, from 1) goes out: another writer's turn between two reads. */
export function beforeRead(real: Firestore, nth: number, hook: () => Promise<unknown>): Firestore {
  let calls = 0;
  return replacing(real, "getAll", async (...refs: Parameters<Firestore["getAll"]>) => {
    calls += 1;
    if (calls === nth) await hook();
    return real.getAll(...refs);
  });
}

/** `real`, with `hook` run and awaited just before its first commit goes out: another writer's turn inside a race. */
export function beforeFirstCommit(real: Firestore, hook: () => Promise<unknown>): Firestore {
  return beforeCommits(real, 1, hook);
}

/** `real`, with `hook` run and awaited just before each of its first `count` commits goes out. */
export function beforeCommits(real: Firestore, count: number, hook: () => Promise<unknown>): Firestore {
  let fired = 0;
  return withCommits(real, async (commit) => {
    if (fired < count) {
      fired += 1;
      await hook();
    }
    return commit();
  });
}

/**
 * The answer to a commit that landed is lost: the first commit through `real` is applied, then rejects
 * as Firestore does when unavailable. A lone delivery that made it answers 500 and counts a failed attempt.
 */
export function appliedButUnacknowledged(real: Firestore): Firestore {
  let lost = false;
  return withCommits(real, async (commit) => {
    const applied = await commit();
    if (lost) return applied;
    lost = true;
    throw Object.assign(new Error("14 UNAVAILABLE: injected lost answer"), { code: 14 });
  });
}

/** `real`, whose commits that update `path` fail as Firestore fails a write it refuses (INVALID_ARGUMENT), every time. */
export function refusingUpdatesOf(real: Firestore, path: string): Firestore {
  return replacing(real, "batch", () => {
    const batch = real.batch();
    let refused = false;
    const update = batch.update.bind(batch) as (ref: DocumentReference, ...rest: unknown[]) => WriteBatch;
    batch.update = ((ref: DocumentReference, ...rest: unknown[]) => {
      if (ref.path === path) refused = true;
      return update(ref, ...rest);
    }) as unknown as WriteBatch["update"];
    const commit = batch.commit.bind(batch);
    batch.commit = () => (refused ? Promise.reject(Object.assign(new Error(`3 INVALID_ARGUMENT: injected refusal of ${path}`), { code: 3 })) : commit());
    return batch;
  });
}

/** `real`, with every `batch().commit()` going through `around`. */
function withCommits(real: Firestore, around: (commit: () => Promise<WriteResult[]>) => Promise<WriteResult[]>): Firestore {
  return replacing(real, "batch", () => {
    const batch = real.batch();
    const commit = batch.commit.bind(batch);
    batch.commit = () => around(commit);
    return batch;
  });
}

/** `real`, with its `member` replaced; every other member is the real one's, methods bound to it. */
function replacing<K extends "batch" | "getAll">(real: Firestore, member: K, replacement: Firestore[K]): Firestore {
  return new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === member) return replacement;
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
