import type { Query, QueryDocumentSnapshot } from "firebase-admin/firestore";
import { performance } from "node:perf_hooks";
import { isFirestoreFailing } from "./errors";

/**
 * What the scheduled sweeps (abandoned reservations, notification re-drive, grace revocation) share.
 * Each goes through its items oldest first, one transaction each; an item that throws on every run
 * (data no code path can handle, a document deleted under it) would stop the items after it for good
 * if it failed the run, so it is recorded, passed over, and tried again by the next run. Firestore
 * itself failing is no item's fault: the run stops and fails as a whole, as it would for every item.
 */

/** One item a sweep could not handle: left as it was. */
export interface SweepFailure {
  id: string;
  error: string;
}

/** What every sweep's report carries, besides its counts; runSweep writes it as the run's line. */
export interface SweepRun {
  /** Items whose handling threw: left as they were, tried again by the next run (see passOver). */
  failures: SweepFailure[];
  /** False when the run's budget or page cap stopped it, perhaps before the end of its query; the next run goes on. */
  complete: boolean;
}

/** What a sweep's line says of an error. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Records an item that threw, to be passed over; rethrows when Firestore itself is failing. */
export function passOver(failures: SweepFailure[], id: string, error: unknown): void {
  if (isFirestoreFailing(error)) throw error;
  failures.push({ id, error: messageOf(error) });
}

/**
 * The sweeps' function timeout: their schedule's interval (5 minutes; the grace revocation runs every
 * 10), so runs do not pile up.
 */
export const SWEEP_TIMEOUT_SECONDS = 300;

/**
 * A run starts no item after this long, so that its slowest item (a notification's send, up to
 * DEFAULT_DELIVERY_OPTIONS.sendTimeoutMs, 2 minutes, with its claim and its record around it) normally
 * ends and the run writes its line before the timeout: a run the platform kills logs nothing, and the
 * sweep's alerts would not see it. The last minute is left for Firestore calls that are slow but not failing.
 */
export const SWEEP_BUDGET_MS = 120_000;

/** Says when a run should start no further item. */
export interface SweepBudget {
  spent(): boolean;
}

export const UNLIMITED: SweepBudget = { spent: () => false };

/** A budget of `ms` from now, on a monotonic clock in milliseconds. */
export function budgetOf(ms: number, clock: () => number = () => performance.now()): SweepBudget {
  const until = clock() + ms;
  return { spent: () => clock() >= until };
}

/** How a sweep goes through its query: page size and time budget. */
export interface SweepOptions {
  pageSize?: number;
  budget?: SweepBudget;
}

/**
 * Visits what `query` matches in its order, a page of `pageSize` at a time. Items a sweep passes over
 * (and orders it leaves reserved) still match on the next run, and would be its first page again: a
 * full page is followed by the next, up to `maxPages`, so up to that many of them cannot hold up the
 * items behind them. The cursor is the last document's ordered field and id, so items handled meanwhile
 * (which leave the query) skip nothing. Returns false when the budget or the page cap stopped it, so it
 * may not have reached the end of the query: the next run goes on from its start.
 */
export async function eachPaged<T>(
  query: Query<T>,
  { pageSize, maxPages, budget }: { pageSize: number; maxPages: number; budget: SweepBudget },
  visit: (doc: QueryDocumentSnapshot<T>) => Promise<void>,
): Promise<boolean> {
  let page = await query.limit(pageSize).get();
  for (let pages = 1; ; pages++) {
    for (const doc of page.docs) {
      if (budget.spent()) return false;
      await visit(doc);
    }
    if (page.size < pageSize) return true;
    if (pages >= maxPages || budget.spent()) return false;
    page = await query.startAfter(page.docs[page.size - 1]).limit(pageSize).get();
  }
}

interface SweepLogger {
  info(message: string, fields: object): void;
  warn(message: string, fields: object): void;
  error(message: string, fields: object): void;
}

/**
 * Runs one sweep and writes its one line, under the same message whatever happened: at ERROR when items
 * were left (`failures`) or the run failed as a whole (`error`, rethrown so the run shows as failed), so
 * the log-based alert on that message sees both; at WARNING when its budget or page cap stopped it
 * (`complete: false`), which a backlog that does not drain repeats run after run.
 */
export async function runSweep<R extends SweepRun>(logger: SweepLogger, message: string, sweep: () => Promise<R>): Promise<R> {
  let report: R;
  try {
    report = await sweep();
  } catch (error) {
    logger.error(message, { error: messageOf(error) });
    throw error;
  }
  if (report.failures.length > 0) logger.error(message, report);
  else if (!report.complete) logger.warn(message, report);
  else logger.info(message, report);
  return report;
}
