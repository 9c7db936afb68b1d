import type { AuditEntry } from "../collections/auditLog";
import type { NotificationDraft, NotificationKind } from "../collections/notifications";
import type { Plan } from "../collections/plans";
import { isTerminal, type InvoiceRecord, type Subscription, type SubscriptionStatus } from "../collections/subscriptions";
import type { EventMeta } from "../domain/commands";
import type { SubscriptionCommand, SubscriptionCommandKind, SubscriptionState } from "./commands";

/**
 * The subscription machine: (the user's subscriptions, plans, command, event, now) → what changes. Pure:
 * no I/O, no clock, no Stripe types. The webhook transaction reads, calls `decideSubscription`, and
 * writes what it returns; the grace job calls `decideGraceExpiry` the same way.
 */

/** `customers/{uid}.entitlement`: what the user may use, recomputed from all their subscriptions. */
export interface Entitlement {
  role: string | null;
  subscriptionId: string | null;
  status: SubscriptionStatus | null;
  /** Set while a grace is running on the current subscription (its end), else null. */
  graceUntil: Date | null;
}

export const NO_ENTITLEMENT: Entitlement = { role: null, subscriptionId: null, status: null, graceUntil: null };

/** The user a Stripe customer maps to (`customers/{uid}.stripeCustomerId`), as the transaction found it. */
export interface CustomerState {
  uid: string;
  stripeCustomerId: string | null;
  entitlement: Entitlement;
}

export type Owner = { found: "none" } | { found: "several"; uids: string[] } | { found: "one"; customer: CustomerState };

export interface SubscriptionOptions {
  /** Access kept after an invoice's first failed payment (GRACE_PERIOD_HOURS). */
  gracePeriodHours: number;
}

export const DEFAULT_SUBSCRIPTION_OPTIONS: SubscriptionOptions = { gracePeriodHours: 24 };

export interface SubscriptionDecideInput {
  owner: Owner;
  /** All of the user's subscriptions, by id (empty when there is no user). */
  subscriptions: ReadonlyMap<string, Subscription>;
  /** `plans/{priceId}` for every price of those subscriptions and of the command; missing = no plan. */
  plans: ReadonlyMap<string, Plan>;
  command: SubscriptionCommand;
  event: EventMeta;
  now: Date;
  options: SubscriptionOptions;
}

/** The audit entry of a subscription event: the shared fields, plus the subscription's before and after. */
export interface SubscriptionAuditEntry extends AuditEntry {
  userId: string | null;
  subscriptionId: string | null;
  subscriptionStatusBefore: SubscriptionStatus | null;
  subscriptionStatusAfter: SubscriptionStatus | null;
  roleBefore: string | null;
  roleAfter: string | null;
}

export interface SubscriptionDecision {
  /** `rejected`: the event does not belong to the user it claims, or to any; nothing but audit and alert. */
  status: "processed" | "rejected";
  result: string;
  uid: string | null;
  subscriptionId: string;
  /** The whole subscription document to write, or null when it does not change. */
  subscription: Subscription | null;
  /** The new entitlement when it changed, else null. */
  entitlement: Entitlement | null;
  audit: SubscriptionAuditEntry;
  notifications: NotificationDraft[];
}

/** What each command does to a subscription in each state. `absent`: no document yet; `linked`: known only by an event without a subscription object. */
export type SubscriptionStateKey = "absent" | "linked" | SubscriptionStatus;

export const SUBSCRIPTION_STATE_KEYS: readonly SubscriptionStateKey[] = [
  "absent",
  "linked",
  "incomplete",
  "trialing",
  "active",
  "past_due",
  "unpaid",
  "paused",
  "canceled",
  "incomplete_expired",
];

type Rule = "link_session" | "apply_state" | "end" | "mark_paid" | "record_failure" | "action_required" | "trial_notice" | { noop: string };

/** Terminal statuses are final: every command on them changes nothing. */
const FINAL = { canceled: { noop: "already_ended" }, incomplete_expired: { noop: "already_ended" } } as const;

function row(rule: Rule): Record<SubscriptionStateKey, Rule> {
  return {
    absent: rule,
    linked: rule,
    incomplete: rule,
    trialing: rule,
    active: rule,
    past_due: rule,
    unpaid: rule,
    paused: rule,
    ...FINAL,
  };
}

export const SUBSCRIPTION_TRANSITIONS: Record<SubscriptionCommandKind, Record<SubscriptionStateKey, Rule>> = {
  checkout_completed: row("link_session"),
  subscription_changed: row("apply_state"),
  subscription_deleted: row("end"),
  trial_will_end: row("trial_notice"),
  invoice_paid: row("mark_paid"),
  invoice_payment_failed: row("record_failure"),
  // Nothing to record but the notification: the subscription document is not created for it.
  invoice_action_required: row("action_required"),
};

export function stateKeyOf(subscription: Subscription | undefined): SubscriptionStateKey {
  if (subscription === undefined) return "absent";
  if (!isDescribed(subscription)) return "linked";
  return subscription.status as SubscriptionStatus;
}

export function subscriptionRuleFor(command: SubscriptionCommandKind, state: SubscriptionStateKey): Rule {
  return SUBSCRIPTION_TRANSITIONS[command][state];
}

const HOUR_MS = 3_600_000;
const INVOICES_KEPT = 24;

/** Tie-break for events of the same second: the status further along wins. */
const RANK: Record<SubscriptionStatus, number> = {
  incomplete: 0,
  trialing: 1,
  active: 2,
  past_due: 3,
  unpaid: 4,
  paused: 5,
  canceled: 6,
  incomplete_expired: 6,
};

/** Known from a subscription object (status and price): only such a subscription can be the current one. */
export function isDescribed(s: Subscription): s is Subscription & { status: SubscriptionStatus; priceId: string } {
  return s.status !== null && s.priceId !== null;
}

/** The user's current subscription: the newest (Stripe's `created`) that is described and not terminal. */
export function currentSubscription(subscriptions: Iterable<Subscription>): Subscription | null {
  let best: Subscription | null = null;
  for (const s of subscriptions) {
    if (!isDescribed(s) || isTerminal(s.status)) continue;
    if (best === null || newer(s, best)) best = s;
  }
  return best;
}

function newer(a: Subscription, b: Subscription): boolean {
  const ta = a.stripeCreated?.getTime() ?? 0;
  const tb = b.stripeCreated?.getTime() ?? 0;
  return ta !== tb ? ta > tb : a.id > b.id;
}

/** SPEC 8: the plan's role while the current subscription is active or trialing, or past_due within its grace. */
export function entitlementOf(subscriptions: Iterable<Subscription>, plans: ReadonlyMap<string, Plan>, now: Date): Entitlement {
  const current = currentSubscription(subscriptions);
  if (current === null) return NO_ENTITLEMENT;
  const inGrace = current.graceUntil !== null && current.graceUntil.getTime() > now.getTime();
  const grants = current.status === "active" || current.status === "trialing" || (current.status === "past_due" && inGrace);
  const plan = current.priceId === null ? undefined : plans.get(current.priceId);
  return {
    role: grants && plan !== undefined ? plan.role : null,
    subscriptionId: current.id,
    status: current.status,
    graceUntil: inGrace ? current.graceUntil : null,
  };
}

export function sameEntitlement(a: Entitlement, b: Entitlement): boolean {
  return a.role === b.role && a.subscriptionId === b.subscriptionId && a.status === b.status && (a.graceUntil?.getTime() ?? null) === (b.graceUntil?.getTime() ?? null);
}

export function decideSubscription(input: SubscriptionDecideInput): SubscriptionDecision {
  const { owner, command } = input;
  if (owner.found === "none") return rejected(input, null, "unknown_customer", `Stripe customer ${command.customerId} maps to no user (customers/{uid}.stripeCustomerId)`);
  if (owner.found === "several") {
    return rejected(input, null, "ambiguous_customer", `Stripe customer ${command.customerId} is the stripeCustomerId of several users: ${owner.uids.join(", ")}`);
  }
  const { customer } = owner;
  if (customer.stripeCustomerId !== command.customerId) {
    return rejected(input, customer.uid, "customer_mismatch", `customers/${customer.uid} stores another Stripe customer than ${command.customerId}`);
  }
  if (command.uidClaim !== null && command.uidClaim !== customer.uid) {
    // Metadata and client_reference_id never decide who: a claim for someone else is a spoof or a bug.
    return rejected(input, customer.uid, "customer_mismatch", `event claims uid ${JSON.stringify(command.uidClaim)} but Stripe customer ${command.customerId} belongs to ${customer.uid}`);
  }
  const before = input.subscriptions.get(command.subscriptionId);
  const rule = subscriptionRuleFor(command.kind, stateKeyOf(before));
  if (typeof rule === "object") return outcome(input, customer, before, { result: rule.noop, next: null, notify: [] });
  switch (rule) {
    case "link_session":
      return linkSession(input, customer, before);
    case "apply_state":
    case "trial_notice":
      return changeState(input, customer, before);
    case "end":
      return end(input, customer, before);
    case "mark_paid":
      return markPaid(input, customer, before);
    case "record_failure":
      return recordFailure(input, customer, before);
    case "action_required":
      return actionRequired(input, customer, before);
  }
}

/** The scheduled job: recompute one user's entitlement at `now`; revokes the role once a grace has passed unpaid. */
export function decideGraceExpiry(input: {
  customer: CustomerState;
  subscriptions: ReadonlyMap<string, Subscription>;
  plans: ReadonlyMap<string, Plan>;
  now: Date;
}): { entitlement: Entitlement | null; audit: SubscriptionAuditEntry | null; notifications: NotificationDraft[] } {
  const { customer, subscriptions, plans, now } = input;
  const after = entitlementOf(subscriptions.values(), plans, now);
  if (sameEntitlement(after, customer.entitlement)) return { entitlement: null, audit: null, notifications: [] };
  const ended = graceEndedNotice(customer, after, subscriptions, now, null);
  const current = after.subscriptionId === null ? undefined : subscriptions.get(after.subscriptionId);
  return {
    entitlement: after,
    audit: {
      eventId: null,
      eventType: null,
      orderId: null,
      action: "grace_expiry",
      result: ended.length > 0 ? "grace_ended" : "entitlement_recomputed",
      reason: current?.graceUntil ? `grace until ${current.graceUntil.toISOString()}` : null,
      before: null,
      after: null,
      at: now,
      userId: customer.uid,
      subscriptionId: after.subscriptionId ?? customer.entitlement.subscriptionId,
      subscriptionStatusBefore: customer.entitlement.status,
      subscriptionStatusAfter: after.status,
      roleBefore: customer.entitlement.role,
      roleAfter: after.role,
    },
    notifications: ended,
  };
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

interface Change {
  result: string;
  next: Subscription | null;
  notify: NotificationDraft[];
  reason?: string;
}

function blank(input: SubscriptionDecideInput): Subscription {
  return {
    id: input.command.subscriptionId,
    status: null,
    priceId: null,
    role: null,
    currentPeriodEnd: null,
    cancelAtPeriodEnd: false,
    graceUntil: null,
    lastEventCreated: null,
    updatedAt: input.now,
    stripeCreated: null,
    checkoutSessionId: null,
    activatedAt: null,
    invoices: {},
  };
}

function linkSession(input: SubscriptionDecideInput, customer: CustomerState, before: Subscription | undefined): SubscriptionDecision {
  const { command } = input;
  if (command.kind !== "checkout_completed") throw new Error("linkSession needs checkout_completed");
  const base = before ?? blank(input);
  const next = base.checkoutSessionId === null ? { ...base, checkoutSessionId: command.checkoutSessionId, updatedAt: input.now } : null;
  return outcome(input, customer, before, { result: settledResult(input, before ?? base, "linked"), next, notify: [] });
}

/** `created|updated|paused|resumed|trial_will_end`: the object's state, unless an event applied later says otherwise. */
function changeState(input: SubscriptionDecideInput, customer: CustomerState, before: Subscription | undefined): SubscriptionDecision {
  const { command, event } = input;
  if (command.kind !== "subscription_changed" && command.kind !== "trial_will_end") throw new Error("changeState needs a subscription state");
  const applied = applyState(input, before, command.state);
  const notify: NotificationDraft[] = [];
  if (command.kind === "trial_will_end" && (applied.kind === "applied" ? applied.next : before)?.status === "trialing") {
    const trialEnd = command.state.trialEnd;
    notify.push(notice(input, customer, `trial_will_end:${event.id}`, "trial_will_end", trialEnd ? `trial ends ${trialEnd.toISOString()}` : null));
  }
  if (applied.kind === "stale") return outcome(input, customer, before, { result: "stale", next: null, notify, reason: staleReason(before, event) });
  const change = activation(input, customer, applied.next);
  change.notify.push(...notify, ...unknownPlan(input, before, applied.next));
  if (change.result === "activated") return outcome(input, customer, before, change);
  const wasCurrent = before !== undefined && currentSubscription(input.subscriptions.values())?.id === before.id;
  let result: string;
  if (before === undefined || !isDescribed(before)) result = "linked";
  else if (isTerminal(applied.next.status)) result = wasCurrent ? "ended" : "superseded";
  else if (before.graceUntil === null && applied.next.graceUntil !== null) result = "grace_started";
  else if (before.graceUntil !== null && applied.next.graceUntil === null) result = "grace_cleared";
  else if (sameState(before, applied.next)) result = settledResult(input, applied.next, "unchanged");
  else result = "updated";
  if (command.kind === "trial_will_end" && notify.length > 0 && (result === "unchanged" || result === "already_active")) result = "trial_will_end";
  return outcome(input, customer, before, { ...change, result });
}

/** `customer.subscription.deleted`: ends the entitlement only for the current subscription; an old one is superseded. */
function end(input: SubscriptionDecideInput, customer: CustomerState, before: Subscription | undefined): SubscriptionDecision {
  const { command, event } = input;
  if (command.kind !== "subscription_deleted") throw new Error("end needs subscription_deleted");
  if (!isTerminal(command.state.status)) {
    return outcome(input, customer, before, { result: "not_canceled", next: null, notify: [], reason: `deleted event with status ${command.state.status}` });
  }
  const applied = applyState(input, before, command.state);
  if (applied.kind === "stale") return outcome(input, customer, before, { result: "stale", next: null, notify: [], reason: staleReason(before, event) });
  const current = currentSubscription(input.subscriptions.values());
  const result = current !== null && current.id === command.subscriptionId ? "ended" : current !== null ? "superseded" : "already_ended";
  return outcome(input, customer, before, { result, next: applied.next, notify: [] });
}

/** `invoice.paid`: marks the subscription active and clears its grace (unless a later state was applied since). */
function markPaid(input: SubscriptionDecideInput, customer: CustomerState, before: Subscription | undefined): SubscriptionDecision {
  const { command, event, now } = input;
  if (command.kind !== "invoice_paid") throw new Error("markPaid needs invoice_paid");
  const base = before ?? blank(input);
  const invoices = withInvoice(base.invoices, command.invoiceId, (r) => ({ ...r, paidAt: r.paidAt ?? event.created }));
  const t = event.created.getTime();
  // A payment wins ties: only a state applied from a strictly later event stands over it.
  const current = base.lastEventCreated === null || t >= base.lastEventCreated.getTime();
  const next: Subscription = current
    ? { ...base, status: "active", graceUntil: null, lastEventCreated: event.created, invoices, updatedAt: now }
    : { ...base, invoices, updatedAt: now };
  if (!isDescribed(next)) return outcome(input, customer, before, { result: "linked", next, notify: [] });
  const change = activation(input, customer, next);
  if (change.result === "activated") return outcome(input, customer, before, change);
  let result: string;
  if (before?.graceUntil != null && next.graceUntil === null) result = "grace_cleared";
  else if (!current) result = settledResult(input, next, "stale");
  else result = settledResult(input, next, before?.status === next.status ? "unchanged" : "updated");
  return outcome(input, customer, before, { ...change, result });
}

/** `invoice.payment_failed`: one notification per invoice; grace from its first failure, never extended. */
function recordFailure(input: SubscriptionDecideInput, customer: CustomerState, before: Subscription | undefined): SubscriptionDecision {
  const { command, event, now, options } = input;
  if (command.kind !== "invoice_payment_failed") throw new Error("recordFailure needs invoice_payment_failed");
  const base = before ?? blank(input);
  const record = base.invoices[command.invoiceId];
  if (record?.paidAt) {
    return outcome(input, customer, before, { result: "stale", next: null, notify: [], reason: `invoice ${command.invoiceId} was paid at ${record.paidAt.toISOString()}` });
  }
  const firstFailure = record?.firstFailedAt && record.firstFailedAt.getTime() <= event.created.getTime() ? record.firstFailedAt : event.created;
  const invoices = withInvoice(base.invoices, command.invoiceId, (r) => ({ ...r, firstFailedAt: firstFailure, failures: r.failures + 1 }));
  const firstTime = record === undefined || record.failures === 0;
  const notify = firstTime ? [notice(input, customer, `payment_failed:${command.invoiceId}`, "payment_failed", `invoice ${command.invoiceId} (${command.billingReason ?? "unknown reason"})`)] : [];
  let graceUntil = base.graceUntil;
  const current = currentSubscription(input.subscriptions.values());
  const hadAccess = base.status === "active" || base.status === "trialing" || base.status === "past_due";
  if (current?.id === base.id && hadAccess) {
    const fromThisInvoice = new Date(firstFailure.getTime() + options.gracePeriodHours * HOUR_MS);
    // An open (or lapsed, unpaid) grace is never pushed later by another failure.
    graceUntil = graceUntil === null || fromThisInvoice.getTime() < graceUntil.getTime() ? fromThisInvoice : graceUntil;
  }
  const next: Subscription = { ...base, invoices, graceUntil, updatedAt: now };
  const result = before?.graceUntil == null && graceUntil !== null ? "grace_started" : "payment_failure_recorded";
  return outcome(input, customer, before, { result, next, notify });
}

function actionRequired(input: SubscriptionDecideInput, customer: CustomerState, before: Subscription | undefined): SubscriptionDecision {
  const { command, event } = input;
  if (command.kind !== "invoice_action_required") throw new Error("actionRequired needs invoice_action_required");
  const notify = [notice(input, customer, `payment_action_required:${event.id}`, "payment_action_required", `invoice ${command.invoiceId} needs the customer to confirm the payment`)];
  return outcome(input, customer, before, { result: "payment_action_required", next: null, notify });
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

type Applied = { kind: "applied"; next: Subscription } | { kind: "stale" };

/**
 * The event's state, when it is newer than the watermark (same second: the status further along wins).
 * An older event still describes a subscription known only from an invoice (price, period), keeping
 * its status; on one already described it is stale.
 */
function applyState(input: SubscriptionDecideInput, before: Subscription | undefined, state: SubscriptionState): Applied {
  const { event, now, options } = input;
  const base = before ?? blank(input);
  const role = input.plans.get(state.priceId)?.role ?? null;
  const description = {
    priceId: state.priceId,
    role,
    currentPeriodEnd: state.currentPeriodEnd,
    cancelAtPeriodEnd: state.cancelAtPeriodEnd,
    stripeCreated: state.created,
    updatedAt: now,
  };
  const w = base.lastEventCreated?.getTime() ?? null;
  const t = event.created.getTime();
  const isNewer = base.status === null || w === null || t > w || (t === w && RANK[state.status] >= RANK[base.status]);
  if (!isNewer) {
    if (isDescribed(base)) return { kind: "stale" };
    return { kind: "applied", next: { ...base, ...description } };
  }
  let graceUntil = base.graceUntil;
  if (state.status === "active" || state.status === "trialing") graceUntil = null;
  // past_due before its invoice's failure event: the grace starts now (the failure event can only shorten it).
  else if (state.status === "past_due" && graceUntil === null) graceUntil = new Date(t + options.gracePeriodHours * HOUR_MS);
  return { kind: "applied", next: { ...base, ...description, status: state.status, graceUntil, lastEventCreated: event.created } };
}

/** The one activation: the first time the subscription grants its plan's role. */
function activation(input: SubscriptionDecideInput, customer: CustomerState, next: Subscription): Change {
  const plan = next.priceId === null ? undefined : input.plans.get(next.priceId);
  const grants = next.status === "active" || next.status === "trialing";
  if (next.activatedAt !== null || !grants || plan === undefined || !isDescribed(next)) return { result: "", next, notify: [] };
  const activated = { ...next, activatedAt: input.now };
  return {
    result: "activated",
    next: activated,
    notify: [notice(input, customer, `subscription_activated:${next.id}`, "subscription_activated", `plan ${plan.priceId} (role ${plan.role})`)],
  };
}

/** `already_active` when the subscription was activated and grants access; otherwise `fallback`. */
function settledResult(input: SubscriptionDecideInput, s: Subscription, fallback: string): string {
  const grants = s.status === "active" || s.status === "trialing";
  return s.activatedAt !== null && grants && isDescribed(s) && input.plans.has(s.priceId) ? "already_active" : fallback;
}

function unknownPlan(input: SubscriptionDecideInput, before: Subscription | undefined, next: Subscription): NotificationDraft[] {
  if (next.priceId === null || input.plans.has(next.priceId) || before?.priceId === next.priceId) return [];
  return [adminAlert(input, null, `subscription ${next.id} is for price ${next.priceId}, which has no plans/${next.priceId}: it grants no role`)];
}

function sameState(a: Subscription, b: Subscription): boolean {
  return (
    a.status === b.status &&
    a.priceId === b.priceId &&
    a.cancelAtPeriodEnd === b.cancelAtPeriodEnd &&
    (a.currentPeriodEnd?.getTime() ?? null) === (b.currentPeriodEnd?.getTime() ?? null)
  );
}

function staleReason(before: Subscription | undefined, event: EventMeta): string {
  return `event created ${event.created.toISOString()} is older than the last applied (${before?.lastEventCreated?.toISOString() ?? "none"})`;
}

function withInvoice(invoices: Record<string, InvoiceRecord>, invoiceId: string, update: (r: InvoiceRecord) => InvoiceRecord): Record<string, InvoiceRecord> {
  const next = { ...invoices, [invoiceId]: update(invoices[invoiceId] ?? { firstFailedAt: null, failures: 0, paidAt: null }) };
  const ids = Object.keys(next);
  if (ids.length <= INVOICES_KEPT) return next;
  const latest = (r: InvoiceRecord) => Math.max(r.firstFailedAt?.getTime() ?? 0, r.paidAt?.getTime() ?? 0);
  const keep = ids.sort((a, b) => latest(next[b]) - latest(next[a])).slice(0, INVOICES_KEPT);
  if (!keep.includes(invoiceId)) keep[keep.length - 1] = invoiceId;
  return Object.fromEntries(keep.map((id) => [id, next[id]]));
}

/** The role lost because the current subscription's grace ran out unpaid: `grace_ended`, once per grace. */
function graceEndedNotice(customer: CustomerState, after: Entitlement, subscriptions: ReadonlyMap<string, Subscription>, now: Date, eventId: string | null): NotificationDraft[] {
  if (customer.entitlement.role === null || after.role !== null || after.status !== "past_due" || after.subscriptionId === null) return [];
  const graceUntil = subscriptions.get(after.subscriptionId)?.graceUntil;
  if (!graceUntil || graceUntil.getTime() > now.getTime()) return [];
  return [
    {
      id: `grace_ended:${after.subscriptionId}:${graceUntil.getTime()}`,
      kind: "grace_ended",
      orderId: null,
      userId: customer.uid,
      eventId,
      detail: `payment not received by ${graceUntil.toISOString()}: role ${customer.entitlement.role} revoked`,
    },
  ];
}

function notice(input: SubscriptionDecideInput, customer: CustomerState, id: string, kind: NotificationKind, detail: string | null): NotificationDraft {
  return { id, kind, orderId: null, userId: customer.uid, eventId: input.event.id, detail };
}

function adminAlert(input: SubscriptionDecideInput, uid: string | null, detail: string): NotificationDraft {
  return { id: `admin_alert:${input.event.id}`, kind: "admin_alert", orderId: null, userId: uid, eventId: input.event.id, detail };
}

function outcome(input: SubscriptionDecideInput, customer: CustomerState, before: Subscription | undefined, change: Change): SubscriptionDecision {
  const { command, event, now } = input;
  const subscriptions = new Map(input.subscriptions);
  if (change.next !== null) subscriptions.set(change.next.id, change.next);
  const after = entitlementOf(subscriptions.values(), input.plans, now);
  const changed = !sameEntitlement(after, customer.entitlement);
  const notifications = [...change.notify, ...(changed ? graceEndedNotice(customer, after, subscriptions, now, event.id) : [])];
  const afterSub = change.next ?? before;
  return {
    status: "processed",
    result: change.result,
    uid: customer.uid,
    subscriptionId: command.subscriptionId,
    subscription: change.next,
    entitlement: changed ? after : null,
    audit: {
      eventId: event.id,
      eventType: event.type,
      orderId: null,
      action: command.kind,
      result: change.result,
      reason: change.reason ?? null,
      before: null,
      after: null,
      at: now,
      userId: customer.uid,
      subscriptionId: command.subscriptionId,
      subscriptionStatusBefore: before?.status ?? null,
      subscriptionStatusAfter: afterSub?.status ?? null,
      roleBefore: customer.entitlement.role,
      roleAfter: after.role,
    },
    notifications: dedupe(notifications),
  };
}

function rejected(input: SubscriptionDecideInput, uid: string | null, result: string, reason: string): SubscriptionDecision {
  const { command, event, now } = input;
  return {
    status: "rejected",
    result,
    uid,
    subscriptionId: command.subscriptionId,
    subscription: null,
    entitlement: null,
    audit: {
      eventId: event.id,
      eventType: event.type,
      orderId: null,
      action: command.kind,
      result,
      reason,
      before: null,
      after: null,
      at: now,
      userId: uid,
      subscriptionId: command.subscriptionId,
      subscriptionStatusBefore: null,
      subscriptionStatusAfter: null,
      roleBefore: null,
      roleAfter: null,
    },
    notifications: [adminAlert(input, uid, `rejected ${event.type} ${event.id}: ${reason}`)],
  };
}

function dedupe(drafts: NotificationDraft[]): NotificationDraft[] {
  const seen = new Set<string>();
  return drafts.filter((d) => (seen.has(d.id) ? false : (seen.add(d.id), true)));
}
