import type { Firestore } from "firebase-admin/firestore";
import { CUSTOMERS, customerRef } from "../collections/customers";
import { queueNotifications, writeAudit } from "../webhook/applyEvent";
import { customerState, notYetQueued, readUser } from "./apply";
import { decideGraceExpiry } from "./machine";
import { eachPaged, passOver, UNLIMITED, type SweepOptions, type SweepRun } from "../sweeps";

export interface GraceDeps {
  db: Firestore;
  now: () => Date;
}

export interface GraceReport extends SweepRun {
  examined: number;
  revoked: number;
}

/** Users per query page, and pages a run reads at most (users whose recomputation throws are paged past). */
const PAGE = 200;
const MAX_PAGES = 50;

/**
 * The scheduled revocation's core (tests call it with a clock): every user whose entitlement still
 * carries a `graceUntil` at or before `now` gets their entitlement recomputed from all their
 * subscriptions, in one transaction each. Unpaid → role null, `grace_ended` queued; paid in the
 * meantime → nothing changes. A recomputed entitlement no longer carries the passed grace, so a user
 * is handled once; a repeated run finds nothing.
 */
export async function revokeExpiredGrace(deps: GraceDeps, now: Date, { pageSize = PAGE, budget = UNLIMITED }: SweepOptions = {}): Promise<GraceReport> {
  const report: GraceReport = { examined: 0, revoked: 0, failures: [], complete: true };
  const due = deps.db.collection(CUSTOMERS).where("entitlement.graceUntil", "<=", now).orderBy("entitlement.graceUntil");
  report.complete = await eachPaged(due, { pageSize, maxPages: MAX_PAGES, budget }, async (doc) => {
    report.examined += 1;
    try {
      if (await recomputeEntitlement(deps.db, doc.id, now)) report.revoked += 1;
    } catch (error) {
      passOver(report.failures, doc.id, error);
    }
  });
  return report;
}

/** One user, one transaction: true when the role was taken away. */
export async function recomputeEntitlement(db: Firestore, uid: string, now: Date): Promise<boolean> {
  const ref = customerRef(db, uid);
  return db.runTransaction(async (tx) => {
    const customer = (await tx.get(ref)).data();
    if (customer === undefined) return false;
    const { subscriptions, plans } = await readUser(tx, db, uid, null);
    const state = customerState(customer);
    const decision = decideGraceExpiry({ customer: state, subscriptions, plans, now });
    if (decision.entitlement === null || decision.audit === null) return false;
    const drafts = await notYetQueued(tx, db, decision.notifications);
    tx.update(ref, { entitlement: decision.entitlement, updatedAt: now });
    writeAudit(tx, db, decision.audit);
    queueNotifications(tx, db, drafts, now);
    return state.entitlement.role !== null && decision.entitlement.role === null;
  });
}
