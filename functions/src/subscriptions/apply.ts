import type { DocumentReference, Firestore, Query, QuerySnapshot, Transaction } from "firebase-admin/firestore";
import { CUSTOMERS, customerConverter, customerRef, type Customer } from "../collections/customers";
import { deadLetterRef } from "../collections/deadLetters";
import { notificationRef, type NotificationDraft } from "../collections/notifications";
import { planRef, type Plan } from "../collections/plans";
import { isSubscriptionStatus, subscriptionRef, subscriptionsOf, type Subscription } from "../collections/subscriptions";
import { webhookEventRef } from "../collections/webhookEvents";
import type { EventMeta } from "../domain/commands";
import { lostToDuplicate, PARKED_RESULT, queueNotifications, resolveLetterOfRecordedEvent, writeAudit, writeEventRecord, type ApplyOutcome, type PipelineDeps } from "../webhook/applyEvent";
import type { SubscriptionCommand } from "./commands";
import { DEFAULT_SUBSCRIPTION_OPTIONS, decideSubscription, NO_ENTITLEMENT, type CustomerState, type Entitlement, type Owner, type SubscriptionOptions } from "./machine";

export interface SubscriptionPipelineDeps extends Pick<PipelineDeps, "db" | "now" | "options"> {
  /** GRACE_PERIOD_HOURS; the documented default when a caller has none. */
  subscriptionOptions?: SubscriptionOptions;
}

export type SubscriptionOutcome = ApplyOutcome & { subscriptionId: string | null };

const DUPLICATE: SubscriptionOutcome = { status: "duplicate", orderId: null, result: null, attempt: null, subscriptionId: null };

/** The users whose `stripeCustomerId` is this Stripe customer: one, or none; two would be a data error. */
export function customersByStripeCustomerId(db: Firestore, stripeCustomerId: string): Query<Customer> {
  return db.collection(CUSTOMERS).where("stripeCustomerId", "==", stripeCustomerId).limit(2).withConverter(customerConverter);
}

/**
 * Applies one subscription event in ONE transaction: reads `webhookEvents/{id}` first (a copy finds it
 * and changes nothing), the user the Stripe customer maps to, all their subscriptions and the plans
 * they name; decides; writes the subscription, the entitlement, one audit entry, the notifications and
 * `create()`s the event record. The `stripeRole` claim follows from the customer document's trigger.
 */
export async function applySubscriptionEvent(
  deps: SubscriptionPipelineDeps,
  meta: EventMeta,
  command: SubscriptionCommand,
  receivedAt: Date,
  { replay = false }: { replay?: boolean } = {},
): Promise<SubscriptionOutcome> {
  const { db } = deps;
  const eventRef = webhookEventRef(db, meta.id);
  const letterRef = deadLetterRef(db, meta.id);
  try {
    return await db.runTransaction(async (tx) => {
      // One round trip for the event's own records and the user its customer maps to.
      const [[existing, letter], owners] = await Promise.all([tx.getAll(eventRef, letterRef), tx.get(customersByStripeCustomerId(db, command.customerId))]);
      if (existing.exists && (!replay || existing.get("result") !== PARKED_RESULT)) {
        resolveLetterOfRecordedEvent(tx, existing, letter, deps.now());
        return DUPLICATE;
      }
      const owner = ownerOf(owners);
      const { subscriptions, plans } = owner.found === "one" ? await readUser(tx, db, owner.customer.uid, command) : { subscriptions: new Map(), plans: new Map() };
      const now = deps.now();
      const decision = decideSubscription({
        owner,
        subscriptions,
        plans,
        command,
        event: meta,
        now,
        options: deps.subscriptionOptions ?? DEFAULT_SUBSCRIPTION_OPTIONS,
      });
      // Deterministic ids are the second guard: a notification already queued is never queued again.
      const drafts = await notYetQueued(tx, db, decision.notifications);

      if (decision.uid !== null && decision.subscription !== null) tx.set(subscriptionRef(db, decision.uid, decision.subscription.id), decision.subscription);
      if (decision.uid !== null && decision.entitlement !== null) tx.update(customerRef(db, decision.uid), { entitlement: decision.entitlement, updatedAt: now });
      writeAudit(tx, db, decision.audit);
      queueNotifications(tx, db, drafts, now);
      writeEventRecord(tx, eventRef, deps, meta, receivedAt, { status: decision.status, result: decision.result, orderId: null }, existing.exists);
      // The record's one field the shared writer does not know; same commit, so it is never missing.
      tx.update(eventRef, { subscriptionId: decision.subscriptionId });
      if (letter.exists) tx.update(letterRef, { status: "replayed", resolvedAt: now });
      const earlierAttempts = letter.exists ? Number(letter.get("attempts") ?? 0) : 0;
      return { status: decision.status, result: decision.result, orderId: null, attempt: earlierAttempts + 1, subscriptionId: decision.subscriptionId };
    });
  } catch (error) {
    await lostToDuplicate(error, eventRef, meta.id);
    return DUPLICATE;
  }
}

export function ownerOf(matches: QuerySnapshot<Customer>): Owner {
  if (matches.empty) return { found: "none" };
  if (matches.size > 1) return { found: "several", uids: matches.docs.map((d) => d.id) };
  return { found: "one", customer: customerState(matches.docs[0].data()) };
}

export function customerState(customer: Customer): CustomerState {
  return { uid: customer.uid, stripeCustomerId: customer.stripeCustomerId ?? null, entitlement: entitlementFrom(customer) };
}

function entitlementFrom(customer: Customer): Entitlement {
  const e = customer.entitlement;
  if (e === undefined) return NO_ENTITLEMENT;
  return { role: e.role, subscriptionId: e.subscriptionId, status: isSubscriptionStatus(e.status) ? e.status : null, graceUntil: e.graceUntil };
}

/** All of the user's subscriptions, and the plans of their prices and of the command's. */
export async function readUser(
  tx: Transaction,
  db: Firestore,
  uid: string,
  command: SubscriptionCommand | null,
): Promise<{ subscriptions: Map<string, Subscription>; plans: Map<string, Plan> }> {
  const snapshot = await tx.get(subscriptionsOf(db, uid));
  const subscriptions = new Map(snapshot.docs.map((d) => [d.id, d.data()]));
  const priceIds = new Set<string>();
  for (const s of subscriptions.values()) if (s.priceId !== null) priceIds.add(s.priceId);
  if (command !== null && "state" in command) priceIds.add(command.state.priceId);
  const plans = new Map<string, Plan>();
  if (priceIds.size > 0) {
    for (const plan of await tx.getAll(...[...priceIds].map((id) => planRef(db, id)))) {
      const data = plan.data();
      if (data) plans.set(plan.id, data);
    }
  }
  return { subscriptions, plans };
}

export async function notYetQueued(tx: Transaction, db: Firestore, drafts: readonly NotificationDraft[]): Promise<NotificationDraft[]> {
  if (drafts.length === 0) return [];
  const refs: DocumentReference[] = drafts.map((d) => notificationRef(db, d.id).withConverter(null));
  const snapshots = await tx.getAll(...refs);
  return drafts.filter((_, i) => !snapshots[i].exists);
}
