import { expect } from "chai";
import type { Plan } from "../../src/collections/plans";
import type { Subscription, SubscriptionStatus } from "../../src/collections/subscriptions";
import type { EventMeta } from "../../src/domain/commands";
import { SUBSCRIPTION_COMMAND_KINDS, type SubscriptionCommand, type SubscriptionCommandKind, type SubscriptionState } from "../../src/subscriptions/commands";
import {
  currentSubscription,
  decideGraceExpiry,
  decideSubscription,
  entitlementOf,
  NO_ENTITLEMENT,
  SUBSCRIPTION_STATE_KEYS,
  SUBSCRIPTION_TRANSITIONS,
  type CustomerState,
  type Entitlement,
  type Owner,
  type SubscriptionDecision,
  type SubscriptionStateKey,
} from "../../src/subscriptions/machine";

/**
 * Unit tests of the pure subscription machine (SPEC section 8). No emulator, no clock: every input is
 * built here, and every decision is fed back into an in-memory user, as the transaction would.
 */

const HOUR = 3_600_000;
const T0 = Date.parse("2026-03-01T12:00:00.000Z");
const at = (offsetMs: number) => new Date(T0 + offsetMs);
const UID = "user_1";
const CUSTOMER = "cus_1";
const SUB = "sub_1";
const BASIC = "price_basic";
const PRO = "price_pro";
const PLANS = new Map<string, Plan>([
  [BASIC, { priceId: BASIC, role: "basic", active: true }],
  [PRO, { priceId: PRO, role: "pro", active: true }],
]);
const OPTIONS = { gracePeriodHours: 24 };

const EVENT_TYPE: Record<SubscriptionCommandKind, string> = {
  checkout_completed: "checkout.session.completed",
  subscription_changed: "customer.subscription.updated",
  subscription_deleted: "customer.subscription.deleted",
  trial_will_end: "customer.subscription.trial_will_end",
  invoice_paid: "invoice.paid",
  invoice_payment_failed: "invoice.payment_failed",
  invoice_action_required: "invoice.payment_action_required",
};

let eventSeq = 0;
function meta(command: SubscriptionCommand, created: Date, id = `evt_${++eventSeq}`): EventMeta {
  return { id, type: EVENT_TYPE[command.kind], created, livemode: false };
}

function state(o: Partial<SubscriptionState> = {}): SubscriptionState {
  return { status: "active", priceId: BASIC, currentPeriodEnd: at(30 * 24 * HOUR), cancelAtPeriodEnd: false, created: at(0), trialEnd: null, ...o };
}

const common = (subscriptionId = SUB, uidClaim: string | null = null) => ({ customerId: CUSTOMER, subscriptionId, uidClaim });

const cmd = {
  checkout: (subscriptionId = SUB, uidClaim: string | null = UID): SubscriptionCommand => ({ ...common(subscriptionId, uidClaim), kind: "checkout_completed", checkoutSessionId: "cs_1" }),
  changed: (s: Partial<SubscriptionState> = {}, subscriptionId = SUB, change: "created" | "updated" = "updated"): SubscriptionCommand => ({
    ...common(subscriptionId),
    kind: "subscription_changed",
    change,
    state: state(s),
  }),
  deleted: (s: Partial<SubscriptionState> = {}, subscriptionId = SUB): SubscriptionCommand => ({ ...common(subscriptionId), kind: "subscription_deleted", state: state({ status: "canceled", ...s }) }),
  trialWillEnd: (s: Partial<SubscriptionState> = {}): SubscriptionCommand => ({ ...common(), kind: "trial_will_end", state: state({ status: "trialing", trialEnd: at(72 * HOUR), ...s }) }),
  paid: (invoiceId = "in_1", subscriptionId = SUB, billingReason = "subscription_cycle"): SubscriptionCommand => ({ ...common(subscriptionId), kind: "invoice_paid", invoiceId, billingReason }),
  failed: (invoiceId = "in_1", subscriptionId = SUB): SubscriptionCommand => ({ ...common(subscriptionId), kind: "invoice_payment_failed", invoiceId, billingReason: "subscription_cycle" }),
  actionRequired: (invoiceId = "in_1"): SubscriptionCommand => ({ ...common(), kind: "invoice_action_required", invoiceId, billingReason: "subscription_cycle" }),
};

function sub(o: Partial<Subscription> & { id?: string } = {}): Subscription {
  return {
    id: SUB,
    status: "active",
    priceId: BASIC,
    role: "basic",
    currentPeriodEnd: at(30 * 24 * HOUR),
    cancelAtPeriodEnd: false,
    graceUntil: null,
    lastEventCreated: at(-60_000),
    updatedAt: at(-60_000),
    stripeCreated: at(0),
    checkoutSessionId: "cs_1",
    activatedAt: at(-60_000),
    invoices: {},
    ...o,
  };
}

/** One user's data as the transaction would hold it; `apply` writes a decision back like apply.ts does. */
class User {
  subscriptions = new Map<string, Subscription>();
  entitlement: Entitlement = NO_ENTITLEMENT;
  decisions: SubscriptionDecision[] = [];

  constructor(subs: Subscription[] = [], now = at(0)) {
    for (const s of subs) this.subscriptions.set(s.id, s);
    this.entitlement = entitlementOf(this.subscriptions.values(), PLANS, now);
  }

  customer(): CustomerState {
    return { uid: UID, stripeCustomerId: CUSTOMER, entitlement: this.entitlement };
  }

  decide(command: SubscriptionCommand, created: Date, now = created, owner: Owner = { found: "one", customer: this.customer() }): SubscriptionDecision {
    return decideSubscription({ owner, subscriptions: this.subscriptions, plans: PLANS, command, event: meta(command, created), now, options: OPTIONS });
  }

  apply(command: SubscriptionCommand, created: Date, now = created): SubscriptionDecision {
    const d = this.decide(command, created, now);
    if (d.subscription) this.subscriptions.set(d.subscription.id, d.subscription);
    if (d.entitlement) this.entitlement = d.entitlement;
    this.decisions.push(d);
    return d;
  }

  notifications(kind?: string) {
    return this.decisions.flatMap((d) => d.notifications).filter((n) => kind === undefined || n.kind === kind);
  }

  get(id = SUB): Subscription {
    const s = this.subscriptions.get(id);
    if (!s) throw new Error(`no subscription ${id}`);
    return s;
  }
}

// ---------------------------------------------------------------------------------------------
// 1. Every (state, command) pair
// ---------------------------------------------------------------------------------------------

/** The subscription in each state the table names, as the user's only (and so current) subscription. */
function subscriptionIn(key: SubscriptionStateKey): Subscription | null {
  if (key === "absent") return null;
  if (key === "linked") return sub({ status: null, priceId: null, role: null, lastEventCreated: null, stripeCreated: null, activatedAt: null });
  const everActive: SubscriptionStatus[] = ["trialing", "active", "past_due", "unpaid", "paused", "canceled"];
  return sub({
    status: key,
    activatedAt: everActive.includes(key) ? at(-60_000) : null,
    graceUntil: key === "past_due" ? at(12 * HOUR) : null,
  });
}

/** Each command as the table runs it: a minute after the state's last event. */
const TABLE_COMMANDS: Record<SubscriptionCommandKind, SubscriptionCommand> = {
  checkout_completed: cmd.checkout(),
  subscription_changed: cmd.changed(),
  subscription_deleted: cmd.deleted(),
  trial_will_end: cmd.trialWillEnd(),
  invoice_paid: cmd.paid(),
  invoice_payment_failed: cmd.failed(),
  invoice_action_required: cmd.actionRequired(),
};

interface Cell {
  result: string;
  /** Status of the subscription after (null: none or not known). */
  status: SubscriptionStatus | null;
  role: string | null;
  notify: string[];
}

const c = (result: string, status: SubscriptionStatus | null, role: string | null, notify: string[] = []): Cell => ({ result, status, role, notify });
const ENDED = (status: SubscriptionStatus): Cell => c("already_ended", status, null);

const EXPECTED: Record<SubscriptionStateKey, Record<SubscriptionCommandKind, Cell>> = {
  absent: {
    checkout_completed: c("linked", null, null),
    subscription_changed: c("activated", "active", "basic", ["subscription_activated"]),
    subscription_deleted: c("already_ended", "canceled", null),
    trial_will_end: c("activated", "trialing", "basic", ["subscription_activated", "trial_will_end"]),
    // Paid, but no price known yet: linked; the subscription object activates it.
    invoice_paid: c("linked", "active", null),
    invoice_payment_failed: c("payment_failure_recorded", null, null, ["payment_failed"]),
    invoice_action_required: c("payment_action_required", null, null, ["payment_action_required"]),
  },
  linked: {
    checkout_completed: c("linked", null, null),
    subscription_changed: c("activated", "active", "basic", ["subscription_activated"]),
    subscription_deleted: c("already_ended", "canceled", null),
    trial_will_end: c("activated", "trialing", "basic", ["subscription_activated", "trial_will_end"]),
    invoice_paid: c("linked", "active", null),
    invoice_payment_failed: c("payment_failure_recorded", null, null, ["payment_failed"]),
    invoice_action_required: c("payment_action_required", null, null, ["payment_action_required"]),
  },
  incomplete: {
    checkout_completed: c("linked", "incomplete", null),
    subscription_changed: c("activated", "active", "basic", ["subscription_activated"]),
    subscription_deleted: c("ended", "canceled", null),
    trial_will_end: c("activated", "trialing", "basic", ["subscription_activated", "trial_will_end"]),
    invoice_paid: c("activated", "active", "basic", ["subscription_activated"]),
    // It never gave access: no grace.
    invoice_payment_failed: c("payment_failure_recorded", "incomplete", null, ["payment_failed"]),
    invoice_action_required: c("payment_action_required", "incomplete", null, ["payment_action_required"]),
  },
  trialing: {
    checkout_completed: c("already_active", "trialing", "basic"),
    subscription_changed: c("updated", "active", "basic"),
    subscription_deleted: c("ended", "canceled", null),
    trial_will_end: c("trial_will_end", "trialing", "basic", ["trial_will_end"]),
    invoice_paid: c("already_active", "active", "basic"),
    invoice_payment_failed: c("grace_started", "trialing", "basic", ["payment_failed"]),
    invoice_action_required: c("payment_action_required", "trialing", "basic", ["payment_action_required"]),
  },
  active: {
    checkout_completed: c("already_active", "active", "basic"),
    subscription_changed: c("already_active", "active", "basic"),
    subscription_deleted: c("ended", "canceled", null),
    trial_will_end: c("updated", "trialing", "basic", ["trial_will_end"]),
    invoice_paid: c("already_active", "active", "basic"),
    invoice_payment_failed: c("grace_started", "active", "basic", ["payment_failed"]),
    invoice_action_required: c("payment_action_required", "active", "basic", ["payment_action_required"]),
  },
  past_due: {
    checkout_completed: c("linked", "past_due", "basic"),
    subscription_changed: c("grace_cleared", "active", "basic"),
    subscription_deleted: c("ended", "canceled", null),
    trial_will_end: c("grace_cleared", "trialing", "basic", ["trial_will_end"]),
    invoice_paid: c("grace_cleared", "active", "basic"),
    // The grace running is not extended: the role stays until it ends.
    invoice_payment_failed: c("payment_failure_recorded", "past_due", "basic", ["payment_failed"]),
    invoice_action_required: c("payment_action_required", "past_due", "basic", ["payment_action_required"]),
  },
  unpaid: {
    checkout_completed: c("linked", "unpaid", null),
    subscription_changed: c("updated", "active", "basic"),
    subscription_deleted: c("ended", "canceled", null),
    trial_will_end: c("updated", "trialing", "basic", ["trial_will_end"]),
    invoice_paid: c("already_active", "active", "basic"),
    invoice_payment_failed: c("payment_failure_recorded", "unpaid", null, ["payment_failed"]),
    invoice_action_required: c("payment_action_required", "unpaid", null, ["payment_action_required"]),
  },
  paused: {
    checkout_completed: c("linked", "paused", null),
    subscription_changed: c("updated", "active", "basic"),
    subscription_deleted: c("ended", "canceled", null),
    trial_will_end: c("updated", "trialing", "basic", ["trial_will_end"]),
    invoice_paid: c("already_active", "active", "basic"),
    invoice_payment_failed: c("payment_failure_recorded", "paused", null, ["payment_failed"]),
    invoice_action_required: c("payment_action_required", "paused", null, ["payment_action_required"]),
  },
  canceled: {
    checkout_completed: ENDED("canceled"),
    subscription_changed: ENDED("canceled"),
    subscription_deleted: ENDED("canceled"),
    trial_will_end: ENDED("canceled"),
    invoice_paid: ENDED("canceled"),
    invoice_payment_failed: ENDED("canceled"),
    invoice_action_required: ENDED("canceled"),
  },
  incomplete_expired: {
    checkout_completed: ENDED("incomplete_expired"),
    subscription_changed: ENDED("incomplete_expired"),
    subscription_deleted: ENDED("incomplete_expired"),
    trial_will_end: ENDED("incomplete_expired"),
    invoice_paid: ENDED("incomplete_expired"),
    invoice_payment_failed: ENDED("incomplete_expired"),
    invoice_action_required: ENDED("incomplete_expired"),
  },
};

describe("decideSubscription: every (state, command) pair", () => {
  it("covers the 10 states × 7 command kinds, in the table and in this test", () => {
    expect(SUBSCRIPTION_STATE_KEYS).to.have.length(10);
    expect(SUBSCRIPTION_COMMAND_KINDS).to.have.length(7);
    expect(Object.keys(SUBSCRIPTION_TRANSITIONS).sort()).to.deep.equal([...SUBSCRIPTION_COMMAND_KINDS].sort());
    for (const kind of SUBSCRIPTION_COMMAND_KINDS) expect(Object.keys(SUBSCRIPTION_TRANSITIONS[kind]).sort()).to.deep.equal([...SUBSCRIPTION_STATE_KEYS].sort());
    expect(Object.keys(EXPECTED).sort()).to.deep.equal([...SUBSCRIPTION_STATE_KEYS].sort());
  });

  for (const key of SUBSCRIPTION_STATE_KEYS) {
    for (const kind of SUBSCRIPTION_COMMAND_KINDS) {
      const expected = EXPECTED[key][kind];
      it(`${key} × ${kind}: ${expected.result} → ${expected.status ?? "-"}, role ${expected.role ?? "none"}`, () => {
        const before = subscriptionIn(key);
        const user = new User(before ? [before] : []);
        const entitlementBefore = user.entitlement;
        const d = user.apply(TABLE_COMMANDS[kind], at(0));

        expect(d.status).to.equal("processed");
        expect(d.result).to.equal(expected.result);
        expect(user.subscriptions.get(SUB)?.status ?? null).to.equal(expected.status);
        expect(user.entitlement.role).to.equal(expected.role);
        expect(d.notifications.map((n) => n.kind).sort()).to.deep.equal([...expected.notify].sort());
        for (const n of d.notifications) expect(n).to.include({ userId: UID, orderId: null });
        expect(d.audit).to.include({ action: kind, result: expected.result, userId: UID, subscriptionId: SUB, subscriptionStatusBefore: before?.status ?? null });
        expect(d.audit.roleBefore).to.equal(entitlementBefore.role);
        expect(d.audit.roleAfter).to.equal(user.entitlement.role);

        if (key === "canceled" || key === "incomplete_expired") {
          // Terminal statuses are final: nothing is written, nobody is told.
          expect(d.subscription).to.equal(null);
          expect(d.entitlement).to.equal(null);
          expect(d.notifications).to.deep.equal([]);
        }
        if (d.subscription !== null) {
          // The role is the plan's, whatever the event says; the watermark never moves back.
          if (d.subscription.priceId !== null) expect(d.subscription.role).to.equal(PLANS.get(d.subscription.priceId)?.role);
          if (before?.lastEventCreated && d.subscription.lastEventCreated) expect(d.subscription.lastEventCreated.getTime()).to.be.at.least(before.lastEventCreated.getTime());
        }
      });
    }
  }
});

// ---------------------------------------------------------------------------------------------
// 2. One activation for the first payment's three events, in any order
// ---------------------------------------------------------------------------------------------

function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) return [items];
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

/** A small deterministic PRNG, so a failing case can be replayed from its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe("decideSubscription: the first payment's three events", () => {
  const kinds = ["checkout", "created", "paid"] as const;
  type Kind = (typeof kinds)[number];
  const firstPayment = (created: SubscriptionStatus): Record<Kind, SubscriptionCommand> => ({
    checkout: cmd.checkout(),
    created: cmd.changed({ status: created }, SUB, "created"),
    paid: cmd.paid("in_first", SUB, "subscription_create"),
  });

  for (const createdStatus of ["active", "incomplete"] as const) {
    for (const order of permutations([...kinds])) {
      it(`${order.join(" → ")} (created ${createdStatus}): one activation, the others already_active or linked`, () => {
        const user = new User();
        const events = firstPayment(createdStatus);
        const results = order.map((k) => user.apply(events[k], at(0)).result);
        expect(results.filter((r) => r === "activated")).to.have.length(1);
        for (const r of results) expect(r).to.be.oneOf(["activated", "already_active", "linked"]);
        expect(user.notifications("subscription_activated")).to.have.length(1);
        expect(user.get().status).to.equal("active");
        expect(user.entitlement).to.deep.equal({ role: "basic", subscriptionId: SUB, status: "active", graceUntil: null });
      });
    }
  }

  it("property: any order, duplicates, and one-second skews of the three events → exactly one activation", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const random = rng(seed);
      const createdStatus: SubscriptionStatus = random() < 0.5 ? "active" : "incomplete";
      const events = firstPayment(createdStatus);
      // Stripe's created: the subscription first, its invoice paid then or a second later, the session last.
      const created: Record<Kind, Date> = { created: at(0), paid: at(random() < 0.5 ? 0 : 1000), checkout: at(random() < 0.5 ? 1000 : 2000) };
      const deliveries: Kind[] = [...kinds, ...kinds.filter(() => random() < 0.4)];
      for (let i = deliveries.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [deliveries[i], deliveries[j]] = [deliveries[j], deliveries[i]];
      }
      const user = new User();
      const results = deliveries.map((k) => user.apply(events[k], created[k], at(5000)).result);
      const context = `seed ${seed}: ${deliveries.join(",")} (created ${createdStatus}) → ${results.join(",")}`;
      expect(results.filter((r) => r === "activated"), context).to.have.length(1);
      expect(user.notifications("subscription_activated"), context).to.have.length(1);
      expect(user.entitlement.role, context).to.equal("basic");
      expect(user.get().status, context).to.equal("active");
    }
  });

  it("a subscription created incomplete activates when it becomes active, not before", () => {
    const user = new User();
    expect(user.apply(cmd.changed({ status: "incomplete" }, SUB, "created"), at(0)).result).to.equal("linked");
    expect(user.entitlement.role).to.equal(null);
    expect(user.apply(cmd.changed({ status: "active" }), at(2000)).result).to.equal("activated");
    expect(user.entitlement.role).to.equal("basic");
  });

  it("trialing → active: activated once (trialing grants the role), then updated", () => {
    const user = new User();
    expect(user.apply(cmd.changed({ status: "trialing", trialEnd: at(14 * 24 * HOUR) }, SUB, "created"), at(0)).result).to.equal("activated");
    expect(user.entitlement).to.include({ role: "basic", status: "trialing" });
    expect(user.apply(cmd.trialWillEnd({ trialEnd: at(14 * 24 * HOUR) }), at(11 * 24 * HOUR)).result).to.equal("trial_will_end");
    expect(user.apply(cmd.changed({ status: "active" }), at(14 * 24 * HOUR)).result).to.equal("updated");
    expect(user.entitlement).to.include({ role: "basic", status: "active" });
    expect(user.notifications("subscription_activated")).to.have.length(1);
    expect(user.notifications("trial_will_end")).to.have.length(1);
  });
});

// ---------------------------------------------------------------------------------------------
// 3. Identity: the Stripe customer decides who, nothing else
// ---------------------------------------------------------------------------------------------

describe("decideSubscription: customer identity", () => {
  it("a customer that maps to no user → rejected, nothing written, admin alert", () => {
    const user = new User();
    const d = user.decide(cmd.changed(), at(0), at(0), { found: "none" });
    expect(d).to.deep.include({ status: "rejected", result: "unknown_customer", subscription: null, entitlement: null, uid: null });
    expect(d.notifications.map((n) => n.kind)).to.deep.equal(["admin_alert"]);
    expect(d.audit).to.include({ result: "unknown_customer", userId: null });
  });

  it("a customer that several users store → rejected (ambiguous), admin alert", () => {
    const d = new User().decide(cmd.paid(), at(0), at(0), { found: "several", uids: ["a", "b"] });
    expect(d).to.include({ status: "rejected", result: "ambiguous_customer" });
    expect(d.notifications[0].detail).to.include("a, b");
  });

  it("client_reference_id naming another user → rejected, the real owner's data untouched", () => {
    const user = new User([sub()]);
    const d = user.decide(cmd.checkout(SUB, "someone_else"), at(0));
    expect(d).to.include({ status: "rejected", result: "customer_mismatch", subscription: null, entitlement: null });
    expect(d.notifications.map((n) => n.kind)).to.deep.equal(["admin_alert"]);
  });

  it("metadata.uid naming another user on a subscription event → rejected", () => {
    const command: SubscriptionCommand = { ...cmd.changed(), uidClaim: "mallory" };
    expect(new User().decide(command, at(0))).to.include({ status: "rejected", result: "customer_mismatch" });
  });

  it("a claim that matches the owner is fine", () => {
    const user = new User();
    expect(user.apply(cmd.checkout(SUB, UID), at(0)).status).to.equal("processed");
  });

  it("a user document whose stripeCustomerId differs from the event's customer → rejected", () => {
    const user = new User();
    const d = user.decide(cmd.changed(), at(0), at(0), { found: "one", customer: { uid: UID, stripeCustomerId: "cus_other", entitlement: NO_ENTITLEMENT } });
    expect(d).to.include({ status: "rejected", result: "customer_mismatch" });
  });
});

// ---------------------------------------------------------------------------------------------
// 4. Grace, renewals and failures
// ---------------------------------------------------------------------------------------------

describe("decideSubscription: grace", () => {
  function activeUser(): User {
    const user = new User();
    user.apply(cmd.changed({ status: "active" }, SUB, "created"), at(0));
    return user;
  }

  it("renewal failed → past_due with the role kept → paid within grace → active, grace cleared", () => {
    const user = activeUser();
    const failedAt = at(30 * 24 * HOUR);
    const d = user.apply(cmd.failed("in_renewal"), failedAt);
    expect(d.result).to.equal("grace_started");
    expect(user.get().graceUntil?.toISOString()).to.equal(new Date(failedAt.getTime() + 24 * HOUR).toISOString());
    expect(user.apply(cmd.changed({ status: "past_due" }), failedAt).result).to.equal("updated");
    expect(user.entitlement).to.deep.equal({ role: "basic", subscriptionId: SUB, status: "past_due", graceUntil: user.get().graceUntil });
    const paid = user.apply(cmd.paid("in_renewal"), at(30 * 24 * HOUR + 5 * HOUR));
    expect(paid.result).to.equal("grace_cleared");
    expect(user.entitlement).to.deep.equal({ role: "basic", subscriptionId: SUB, status: "active", graceUntil: null });
    expect(user.notifications("payment_failed")).to.have.length(1);
    expect(user.notifications("grace_ended")).to.have.length(0);
  });

  it("past_due delivered before the invoice's failure: the grace starts then, and the role is kept", () => {
    const user = activeUser();
    const t = at(30 * 24 * HOUR);
    expect(user.apply(cmd.changed({ status: "past_due" }), t).result).to.equal("grace_started");
    expect(user.entitlement.role).to.equal("basic");
    expect(user.apply(cmd.failed("in_renewal"), new Date(t.getTime() + 1000)).result).to.equal("payment_failure_recorded");
    // The failure one second later does not push the grace.
    expect(user.get().graceUntil?.getTime()).to.equal(t.getTime() + 24 * HOUR);
  });

  it("two failures of one invoice: the grace is not extended and payment_failed is queued once", () => {
    const user = activeUser();
    const first = at(30 * 24 * HOUR);
    user.apply(cmd.failed("in_r"), first);
    user.apply(cmd.changed({ status: "past_due" }), first);
    const retry = user.apply(cmd.failed("in_r"), new Date(first.getTime() + 20 * HOUR));
    expect(retry.result).to.equal("payment_failure_recorded");
    expect(retry.notifications).to.deep.equal([]);
    expect(user.get().graceUntil?.getTime()).to.equal(first.getTime() + 24 * HOUR);
    expect(user.get().invoices.in_r).to.deep.include({ failures: 2 });
    expect(user.notifications("payment_failed").map((n) => n.id)).to.deep.equal(["payment_failed:in_r"]);
  });

  it("failed → grace passes → the job revokes the role once, with one grace_ended", () => {
    const user = activeUser();
    const first = at(30 * 24 * HOUR);
    user.apply(cmd.failed("in_r"), first);
    user.apply(cmd.changed({ status: "past_due" }), first);
    const input = (now: Date) => ({ customer: user.customer(), subscriptions: user.subscriptions, plans: PLANS, now });

    // Before the grace ends the job changes nothing.
    expect(decideGraceExpiry(input(new Date(first.getTime() + 23 * HOUR)))).to.deep.equal({ entitlement: null, audit: null, notifications: [] });
    const expiry = decideGraceExpiry(input(new Date(first.getTime() + 25 * HOUR)));
    expect(expiry.entitlement).to.deep.equal({ role: null, subscriptionId: SUB, status: "past_due", graceUntil: null });
    expect(expiry.audit).to.include({ action: "grace_expiry", result: "grace_ended", roleBefore: "basic", roleAfter: null, userId: UID });
    expect(expiry.notifications.map((n) => n.id)).to.deep.equal([`grace_ended:${SUB}:${first.getTime() + 24 * HOUR}`]);
    user.entitlement = expiry.entitlement ?? user.entitlement;
    // A second run, or a retry of the same failure afterwards, does not give a new grace.
    expect(decideGraceExpiry(input(new Date(first.getTime() + 26 * HOUR))).entitlement).to.equal(null);
    const late = user.apply(cmd.failed("in_r"), new Date(first.getTime() + 48 * HOUR));
    expect(late.result).to.equal("payment_failure_recorded");
    expect(user.entitlement.role).to.equal(null);
    // Paying at last gives the role back, without a second activation.
    expect(user.apply(cmd.paid("in_r"), new Date(first.getTime() + 50 * HOUR)).result).to.equal("grace_cleared");
    expect(user.entitlement.role).to.equal("basic");
    expect(user.notifications("subscription_activated")).to.have.length(1);
  });

  it("an event applied after the grace ran out revokes the role itself and queues grace_ended", () => {
    const user = activeUser();
    const first = at(30 * 24 * HOUR);
    user.apply(cmd.failed("in_r"), first);
    user.apply(cmd.changed({ status: "past_due" }), first);
    const d = user.apply(cmd.changed({ status: "past_due", cancelAtPeriodEnd: true }), new Date(first.getTime() + 30 * HOUR));
    expect(user.entitlement.role).to.equal(null);
    expect(d.notifications.map((n) => n.kind)).to.deep.equal(["grace_ended"]);
  });

  it("a failure delivered after its invoice was paid is stale: no grace, no notification", () => {
    const user = activeUser();
    user.apply(cmd.paid("in_r"), at(30 * 24 * HOUR + 1000));
    const d = user.apply(cmd.failed("in_r"), at(30 * 24 * HOUR));
    expect(d).to.include({ result: "stale", subscription: null });
    expect(d.notifications).to.deep.equal([]);
  });

  it("an invoice paid older than a later past_due leaves the status (another invoice is failing)", () => {
    const user = activeUser();
    user.apply(cmd.failed("in_2"), at(60 * 24 * HOUR));
    user.apply(cmd.changed({ status: "past_due" }), at(60 * 24 * HOUR));
    const d = user.apply(cmd.paid("in_1"), at(30 * 24 * HOUR));
    expect(d.result).to.equal("stale");
    expect(user.get().status).to.equal("past_due");
    expect(user.get().graceUntil).to.not.equal(null);
  });

  it("a failure of a subscription that is not the current one gives no grace", () => {
    const user = activeUser();
    user.apply(cmd.changed({ status: "active", priceId: PRO, created: at(1000) }, "sub_new", "created"), at(1000));
    const d = user.apply(cmd.failed("in_old"), at(2000));
    expect(d.result).to.equal("payment_failure_recorded");
    expect(user.get().graceUntil).to.equal(null);
  });
});

// ---------------------------------------------------------------------------------------------
// 5. Upgrades, cancellations, order of events
// ---------------------------------------------------------------------------------------------

describe("decideSubscription: upgrades, cancellation and stale events", () => {
  it("upgrade: the new subscription's role is granted; deleting the old one is superseded and changes nothing", () => {
    const user = new User();
    user.apply(cmd.changed({ status: "active" }, "sub_old", "created"), at(0));
    expect(user.entitlement.role).to.equal("basic");
    const upgraded = user.apply(cmd.changed({ status: "active", priceId: PRO, created: at(10 * 24 * HOUR) }, "sub_new", "created"), at(10 * 24 * HOUR));
    expect(upgraded.result).to.equal("activated");
    expect(user.entitlement).to.include({ role: "pro", subscriptionId: "sub_new" });
    const deleted = user.apply(cmd.deleted({}, "sub_old"), at(10 * 24 * HOUR + 1000));
    expect(deleted.result).to.equal("superseded");
    expect(deleted.entitlement).to.equal(null);
    expect(user.entitlement).to.include({ role: "pro", subscriptionId: "sub_new" });
    expect(user.get("sub_old").status).to.equal("canceled");
  });

  it("cancel at period end: the role stays until deleted, then it ends", () => {
    const user = new User();
    user.apply(cmd.changed({ status: "active" }, SUB, "created"), at(0));
    expect(user.apply(cmd.changed({ status: "active", cancelAtPeriodEnd: true }), at(HOUR)).result).to.equal("updated");
    expect(user.get().cancelAtPeriodEnd).to.equal(true);
    expect(user.entitlement.role).to.equal("basic");
    const end = user.apply(cmd.deleted(), at(30 * 24 * HOUR));
    expect(end.result).to.equal("ended");
    expect(user.entitlement).to.deep.equal(NO_ENTITLEMENT);
  });

  it("an updated older than the last applied one → stale, nothing changes", () => {
    const user = new User();
    user.apply(cmd.changed({ status: "active", priceId: PRO }, SUB, "created"), at(10_000));
    const d = user.apply(cmd.changed({ status: "past_due", priceId: BASIC }), at(5_000));
    expect(d).to.include({ result: "stale", subscription: null, entitlement: null });
    expect(user.get()).to.include({ status: "active", priceId: PRO });
  });

  it("same second: the status further along wins the tie", () => {
    const user = new User();
    user.apply(cmd.changed({ status: "active" }, SUB, "created"), at(0));
    expect(user.apply(cmd.changed({ status: "incomplete" }, SUB, "created"), at(0)).result).to.equal("stale");
    expect(user.get().status).to.equal("active");
  });

  it("terminal statuses never come back", () => {
    const user = new User();
    user.apply(cmd.changed({ status: "active" }, SUB, "created"), at(0));
    user.apply(cmd.deleted(), at(1000));
    for (const command of [cmd.changed({ status: "active" }), cmd.paid("in_late"), cmd.checkout()]) {
      const d = user.apply(command, at(5000));
      expect(d).to.include({ result: "already_ended", subscription: null });
    }
    expect(user.get().status).to.equal("canceled");
    expect(user.entitlement.role).to.equal(null);
  });

  it("a deleted subscription with a status that is not final → not_canceled, nothing changes", () => {
    const user = new User([sub()]);
    expect(user.apply(cmd.deleted({ status: "active" }), at(0))).to.include({ result: "not_canceled", subscription: null });
  });

  it("an incomplete newer subscription is current (SPEC 8): it grants nothing until it is paid", () => {
    const user = new User();
    user.apply(cmd.changed({ status: "active" }, "sub_old", "created"), at(0));
    user.apply(cmd.changed({ status: "incomplete", priceId: PRO, created: at(1000) }, "sub_new", "created"), at(1000));
    expect(currentSubscription(user.subscriptions.values())?.id).to.equal("sub_new");
    expect(user.entitlement.role).to.equal(null);
    user.apply(cmd.paid("in_new", "sub_new", "subscription_create"), at(2000));
    expect(user.entitlement).to.include({ role: "pro", subscriptionId: "sub_new" });
  });

  it("a subscription known only from a Session or an invoice is never the current one", () => {
    const user = new User();
    user.apply(cmd.changed({ status: "active" }, "sub_old", "created"), at(0));
    user.apply(cmd.checkout("sub_new", UID), at(1000));
    user.apply(cmd.paid("in_new", "sub_new", "subscription_create"), at(1000));
    expect(user.entitlement).to.include({ role: "basic", subscriptionId: "sub_old" });
  });

  it("a price with no plans/{priceId} grants no role and alerts an admin", () => {
    const user = new User();
    const d = user.apply(cmd.changed({ status: "active", priceId: "price_unknown" }, SUB, "created"), at(0));
    expect(d.result).to.equal("linked");
    expect(user.entitlement).to.include({ role: null, subscriptionId: SUB });
    expect(d.notifications.map((n) => n.kind)).to.deep.equal(["admin_alert"]);
  });

  it("the role comes from plans/{priceId}: an upgrade in place changes it", () => {
    const user = new User();
    user.apply(cmd.changed({ status: "active" }, SUB, "created"), at(0));
    expect(user.apply(cmd.changed({ status: "active", priceId: PRO }), at(1000)).result).to.equal("updated");
    expect(user.entitlement.role).to.equal("pro");
    expect(user.get().role).to.equal("pro");
  });
});
