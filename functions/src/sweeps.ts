import type { Query, QueryDocumentSnapshot } from "firebase-admin/firestore";
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

/** Records an item that threw, to be passed over; rethrows when Firestore itself is failing. */
export function passOver(failures: SweepFailure[], id: string, error: unknown): void {
  if (isFirestoreFailing(error)) throw error;
  failures.push({ id, error: error instanceof Error ? error.message : String(error) });
}

/**
 * Visits what `query` matches in its order, a page of `pageSize` at a time. Items a sweep passes over or
 * skips still match on the next run, and would be its first page again: a full page is followed by the
 * next, up to `maxPages`, so up to that many of them cannot hold up the items behind them. The cursor is
 * the last document's ordered fields and id, so items handled meanwhile (which leave the query) skip
 * nothing.
 */
export async function eachPaged<T>(query: Query<T>, pageSize: number, maxPages: number, visit: (doc: QueryDocumentSnapshot<T>) => Promise<void>): Promise<void> {
  let page = await query.limit(pageSize).get();
  for (let pages = 1; ; pages++) {
    for (const doc of page.docs) await visit(doc);
    if (page.size < pageSize || pages >= maxPages) return;
    page = await query.startAfter(page.docs[page.size - 1]).limit(pageSize).get();
  }
}

interface SweepLogger {
  info(message: string, fields: object): void;
  error(message: string, fields: object): void;
}

/**
 * Runs one sweep and writes its one line, under the same message either way: at ERROR when items were
 * left (`failures`) or the run failed as a whole (`error`, rethrown so the run shows as failed), so the
 * log-based alert on that message sees both.
 */
export async function runSweep<R extends { failures: readonly SweepFailure[] }>(logger: SweepLogger, message: string, sweep: () => Promise<R>): Promise<R> {
  let report: R;
  try {
    report = await sweep();
  } catch (error) {
    logger.error(message, { error: error instanceof Error ? error.message : String(error) });
    throw error;
  }
  if (report.failures.length > 0) logger.error(message, report);
  else logger.info(message, report);
  return report;
}
