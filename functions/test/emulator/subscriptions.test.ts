import { expect } from "chai";
import { getApps } from "firebase-admin/app";
import { getAuth } from "firebase-admin/auth";
import { Timestamp } from "firebase-admin/firestore";
import { webhookEventStatus } from "../../src/admin/eventStatus";
import { revokeExpiredGrace } from "../../src/subscriptions/grace";
import { countWhere, db, deliver, eventually, pastWindow, uniqueId, withTriggersPaused, type Delivery } from "../helpers/emulator";
import { stripeId, type StripeEventEnvelope } from "../helpers/stripeFixtures";
import { eventAt, firstPayment, invoice, subscription, subscriptionCheckoutSession } from "../helpers/subscriptionFixtures";

/**
 * SPEC 8 and issue 13 on the emulators: signed events through the real endpoint, the claim through the
 * Auth emulator, notifications through the real triggers. Every test owns its users, prices and ids.
 */

const HOUR_S = 3600;
const nowSeconds = () => Math.floor(Date.now() / 1000);

interface Subscriber {
  uid: string;
  customer: string;
}

function auth() {
  return getAuth(getApps()[0]);
}

/** A user in the Auth emulator (with another claim that must survive) whose customers/{uid} maps a Stripe customer. */
async function subscriber(): Promise<Subscriber> {
  db();
  const uid = uniqueId("subscriber");
  await auth().createUser({ uid, email: `${uid}@example.com` });
  await auth().setCustomUserClaims(uid, { beta: true });
  const customer = stripeId("cus");
  await db().collection("customers").doc(uid).set({ uid, stripeCustomerId: customer, createdAt: Timestamp.now() });
  return { uid, customer };
}

async function plan(role: string): Promise<string> {
  const priceId = stripeId("price");
  await db().collection("plans").doc(priceId).set({ role, active: true });
  return priceId;
}

async function entitlementOf(uid: string): Promise<{ role: string | null; subscriptionId: string | null; status: string | null; graceUntil: Date | null }> {
  const e = (await db().collection("customers").doc(uid).get()).get("entitlement") as Record<string, unknown> | undefined;
  return {
    role: (e?.role as string | null | undefined) ?? null,
    subscriptionId: (e?.subscriptionId as string | null | undefined) ?? null,
    status: (e?.status as string | null | undefined) ?? null,
    graceUntil: e?.graceUntil instanceof Timestamp ? e.graceUntil.toDate() : null,
  };
}

async function subscriptionDoc(uid: string, id: string): Promise<Record<string, unknown> | undefined> {
  return (await db().collection("customers").doc(uid).collection("subscriptions").doc(id).get()).data();
}

/** The Auth custom claim, read with the Admin SDK: it must mirror the entitlement (other claims kept). */
async function expectClaim(uid: string, role: string | null): Promise<void> {
  expect((await entitlementOf(uid)).role, "entitlement.role").to.equal(role);
  await eventually(`stripeRole of ${uid} to be ${role}`, async () => {
    const claims = (await auth().getUser(uid)).customClaims ?? {};
    return (claims.stripeRole ?? null) === role && claims.beta === true;
  });
}

async function processed(envelope: StripeEventEnvelope, result?: string): Promise<Delivery> {
  const response = await deliver(envelope);
  expect(response.status, JSON.stringify(response.body)).to.equal(200);
  expect(response.body).to.include({ received: true, eventId: envelope.id, status: "processed" });
  if (result !== undefined) expect(response.body.result, `${envelope.type} result`).to.equal(result);
  return response;
}

async function notificationsOf(uid: string, kind: string): Promise<Record<string, unknown>[]> {
  const snapshot = await db().collection("notifications").where("userId", "==", uid).where("kind", "==", kind).get();
  return snapshot.docs.map((d) => ({ id: d.id, ...d.data() }));
}

async function auditResults(eventId: string): Promise<string[]> {
  const snapshot = await db().collection("auditLog").where("eventId", "==", eventId).get();
  return snapshot.docs.map((d) => String(d.get("result")));
}

/** `customer.subscription.updated` at second `created` for a subscription created at `s.created`. */
function updated(s: Subscriber & { created: number }, id: string, priceId: string, created: number, o: { status?: string; cancelAtPeriodEnd?: boolean } = {}) {
  return eventAt(
    "customer.subscription.updated",
    subscription({ id, customer: s.customer, priceId, status: o.status ?? "active", created: s.created, cancelAtPeriodEnd: o.cancelAtPeriodEnd }),
    created,
  );
}

/** A subscriber with an active subscription to `priceId`, activated by its first payment. */
async function activeSubscriber(role = "basic"): Promise<Subscriber & { priceId: string; subscriptionId: string; created: number }> {
  const s = await subscriber();
  const priceId = await plan(role);
  const created = nowSeconds() - 2 * HOUR_S;
  const { subscriptionId, events } = firstPayment({ customer: s.customer, priceId, uid: s.uid, created });
  await processed(events.created, "activated");
  await processed(events.paid, "already_active");
  await processed(events.checkout, "already_active");
  await expectClaim(s.uid, role);
  return { ...s, priceId, subscriptionId, created };
}

function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) return [items];
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

describe("subscriptions on the emulators (SPEC 8, issue 13)", () => {
  describe("seed incident: one first payment activated twice", () => {
    const kinds = ["checkout", "created", "paid"] as const;
    for (const order of permutations([...kinds])) {
      it(`${order.join(" → ")}: one activation, one subscription_activated delivered, the claim set`, async () => {
        const s = await subscriber();
        const priceId = await plan("basic");
        const { subscriptionId, events } = firstPayment({ customer: s.customer, priceId, uid: s.uid });
        const results: string[] = [];
        for (const kind of order) results.push(String((await processed(events[kind])).body.result));
        expect(results.filter((r) => r === "activated"), results.join(",")).to.have.length(1);
        for (const r of results) expect(r).to.be.oneOf(["activated", "already_active", "linked"]);
        expect(await entitlementOf(s.uid)).to.deep.equal({ role: "basic", subscriptionId, status: "active", graceUntil: null });
        await expectClaim(s.uid, "basic");
        const sent = await eventually("subscription_activated to be sent", async () => {
          const found = await notificationsOf(s.uid, "subscription_activated");
          return found.length === 1 && found[0].status === "sent" ? found : undefined;
        });
        expect(sent[0].id).to.equal(`subscription_activated:${subscriptionId}`);
        for (const kind of kinds) {
          expect(await countWhere("auditLog", "eventId", events[kind].id)).to.equal(1);
          expect((await db().collection("webhookEvents").doc(events[kind].id).get()).data()).to.include({ status: "processed", subscriptionId, orderId: null });
        }
      });
    }

    it("the three events delivered concurrently (twice each): one activation, copies answered duplicate", async () => {
      const s = await subscriber();
      const priceId = await plan("basic");
      const { subscriptionId, events } = firstPayment({ customer: s.customer, priceId, uid: s.uid });
      const all = [events.checkout, events.created, events.paid];
      const responses = await Promise.all([...all, ...all].map((e) => deliver(e)));
      expect(responses.map((r) => r.status)).to.deep.equal([200, 200, 200, 200, 200, 200]);
      expect(responses.filter((r) => r.body.status === "duplicate")).to.have.length(3);
      expect(responses.filter((r) => r.body.result === "activated")).to.have.length(1);
      expect(await entitlementOf(s.uid)).to.include({ role: "basic", subscriptionId, status: "active" });
      await expectClaim(s.uid, "basic");
      expect(await notificationsOf(s.uid, "subscription_activated")).to.have.length(1);
      for (const e of all) expect(await countWhere("auditLog", "eventId", e.id)).to.equal(1);
    });
  });

  describe("seed incident: metadata named another customer", () => {
    it("client_reference_id naming another user → rejected, 200, the victim unchanged, admin alert; a redelivery is a duplicate", async () => {
      const alice = await subscriber();
      const mallory = await subscriber();
      const priceId = await plan("pro");
      const subscriptionId = stripeId("sub");
      // Mallory pays with her own customer but writes Alice's uid into the session and the subscription.
      const checkout = eventAt("checkout.session.completed", subscriptionCheckoutSession({ customer: mallory.customer, subscriptionId, clientReferenceId: alice.uid }), nowSeconds());
      const created = eventAt("customer.subscription.created", subscription({ id: subscriptionId, customer: mallory.customer, priceId, uid: alice.uid }), nowSeconds());
      for (const e of [checkout, created]) {
        const response = await deliver(e);
        expect(response.status).to.equal(200);
        expect(response.body).to.deep.equal({ received: true, eventId: e.id, status: "rejected", result: "customer_mismatch" });
        expect(await auditResults(e.id)).to.deep.equal(["customer_mismatch"]);
        expect((await db().collection("notifications").doc(`admin_alert:${e.id}`).get()).get("kind")).to.equal("admin_alert");
      }
      expect(await subscriptionDoc(alice.uid, subscriptionId)).to.equal(undefined);
      expect(await subscriptionDoc(mallory.uid, subscriptionId)).to.equal(undefined);
      await expectClaim(alice.uid, null);
      await expectClaim(mallory.uid, null);
      expect((await deliver(checkout)).body).to.deep.equal({ received: true, eventId: checkout.id, status: "duplicate" });
      expect(await auditResults(checkout.id)).to.have.length(1);
    });

    it("a customer that maps to no user → rejected, 2xx (not retried), even when it claims a real uid", async () => {
      const alice = await subscriber();
      const priceId = await plan("basic");
      const stranger = stripeId("cus");
      const { events } = firstPayment({ customer: stranger, priceId, uid: alice.uid });
      for (const e of [events.checkout, events.created, events.paid]) {
        const response = await deliver(e);
        expect(response.status).to.equal(200);
        expect(response.body).to.include({ status: "rejected", result: "unknown_customer" });
        expect((await db().collection("deadLetters").doc(e.id).get()).exists, "no dead letter: nothing to retry").to.equal(false);
        expect((await db().collection("webhookEvents").doc(e.id).get()).data()).to.include({ status: "rejected", result: "unknown_customer" });
      }
      expect(await entitlementOf(alice.uid)).to.deep.equal({ role: null, subscriptionId: null, status: null, graceUntil: null });
      await expectClaim(alice.uid, null);
    });
  });

  describe("seed incident: a failed renewal cut access at once", () => {
    it("renewal failed → past_due with the role kept → paid within grace → active", async () => {
      const s = await activeSubscriber();
      const renewal = stripeId("in");
      const failedAt = nowSeconds() - HOUR_S;
      await processed(eventAt("invoice.payment_failed", invoice({ id: renewal, customer: s.customer, subscriptionId: s.subscriptionId, paid: false }), failedAt), "grace_started");
      await processed(updated(s, s.subscriptionId, s.priceId, failedAt, { status: "past_due" }), "updated");
      const graceUntil = new Date((failedAt + 24 * HOUR_S) * 1000);
      expect(await entitlementOf(s.uid)).to.deep.equal({ role: "basic", subscriptionId: s.subscriptionId, status: "past_due", graceUntil });
      await expectClaim(s.uid, "basic");

      await processed(eventAt("invoice.paid", invoice({ id: renewal, customer: s.customer, subscriptionId: s.subscriptionId }), failedAt + 600), "grace_cleared");
      await processed(updated(s, s.subscriptionId, s.priceId, failedAt + 600), "already_active");
      expect(await entitlementOf(s.uid)).to.deep.equal({ role: "basic", subscriptionId: s.subscriptionId, status: "active", graceUntil: null });
      expect((await subscriptionDoc(s.uid, s.subscriptionId))?.graceUntil).to.equal(null);
      await expectClaim(s.uid, "basic");
      expect(await notificationsOf(s.uid, "payment_failed")).to.have.length(1);
      // Nothing left for the job to take: the grace was cleared.
      await revokeExpiredGrace({ db: db(), now: () => new Date() }, new Date(Date.now() + 48 * HOUR_S * 1000));
      expect((await entitlementOf(s.uid)).role).to.equal("basic");
      await expectClaim(s.uid, "basic");
    });

    it("failed → the grace passes (clock) → role revoked, claim removed, grace_ended once", async () => {
      const s = await activeSubscriber();
      const renewal = stripeId("in");
      const failedAt = nowSeconds() - 60;
      await processed(eventAt("invoice.payment_failed", invoice({ id: renewal, customer: s.customer, subscriptionId: s.subscriptionId, paid: false }), failedAt), "grace_started");
      await processed(updated(s, s.subscriptionId, s.priceId, failedAt, { status: "past_due" }));
      await expectClaim(s.uid, "basic");

      const deps = { db: db(), now: () => new Date() };
      const before = new Date((failedAt + 23 * HOUR_S) * 1000);
      expect((await revokeExpiredGrace(deps, before)).revoked).to.equal(0);
      await expectClaim(s.uid, "basic");
      const after = new Date((failedAt + 25 * HOUR_S) * 1000);
      const report = await revokeExpiredGrace(deps, after);
      expect(report.revoked).to.be.at.least(1);
      expect(await entitlementOf(s.uid)).to.deep.equal({ role: null, subscriptionId: s.subscriptionId, status: "past_due", graceUntil: null });
      await expectClaim(s.uid, null);
      expect(await notificationsOf(s.uid, "grace_ended")).to.have.length(1);
      // A second run finds nothing to do. (A retry of the failure after the grace is the unit tests'
      // business: here the events' clock is the real one, still inside the grace.)
      await revokeExpiredGrace(deps, new Date((failedAt + 26 * HOUR_S) * 1000));
      expect((await entitlementOf(s.uid)).role).to.equal(null);
      expect(await notificationsOf(s.uid, "grace_ended")).to.have.length(1);
      const grace = await db().collection("auditLog").where("userId", "==", s.uid).where("action", "==", "grace_expiry").get();
      expect(grace.docs.map((d) => d.get("result"))).to.deep.equal(["grace_ended"]);
      await expectClaim(s.uid, null);
    });

    it("the revocation pages past users whose recomputation throws, reports them, and revokes the ones behind them", async () => {
      const window = pastWindow();
      // A full page (200) of users whose `createdAt` no converter can read (typed by hand in the
      // console): every run throws on them, and they come first.
      const broken = Array.from({ length: 200 }, () => uniqueId("uid"));
      const healthy = uniqueId("uid");
      const entitlement = (graceUntil: Date) => ({ role: "basic", subscriptionId: null, status: "past_due", graceUntil: Timestamp.fromDate(graceUntil) });
      // Paused: 201 claim syncs of users that do not exist would only crowd the Functions emulator.
      await withTriggersPaused(async () => {
        const batch = db().batch();
        broken.forEach((uid, i) => batch.create(db().collection("customers").doc(uid), { entitlement: entitlement(window.after(i)), createdAt: true }));
        batch.create(db().collection("customers").doc(healthy), { entitlement: entitlement(window.after(broken.length)) });
        await batch.commit();
        try {
          const report = await revokeExpiredGrace({ db: db(), now: () => window.after(60_000) }, window.after(60_000));
          expect(report.failures.map((f) => f.id)).to.deep.equal(broken);
          expect(report.revoked).to.be.at.least(1);
          expect(await entitlementOf(healthy)).to.deep.equal({ role: null, subscriptionId: null, status: null, graceUntil: null });
          expect((await entitlementOf(broken[0])).role).to.equal("basic");
        } finally {
          // Their grace stays passed in 2001 otherwise, ahead of every later run's users.
          const cleanup = db().batch();
          for (const uid of [...broken, healthy]) cleanup.delete(db().collection("customers").doc(uid));
          await cleanup.commit();
        }
      });
    });

    it("two failures of one invoice: the grace is not extended, payment_failed once", async () => {
      const s = await activeSubscriber();
      const renewal = stripeId("in");
      const first = nowSeconds() - 3 * HOUR_S;
      await processed(eventAt("invoice.payment_failed", invoice({ id: renewal, customer: s.customer, subscriptionId: s.subscriptionId, paid: false }), first), "grace_started");
      await processed(updated(s, s.subscriptionId, s.priceId, first, { status: "past_due" }));
      const graceUntil = (await subscriptionDoc(s.uid, s.subscriptionId))?.graceUntil as Timestamp;
      await processed(eventAt("invoice.payment_failed", invoice({ id: renewal, customer: s.customer, subscriptionId: s.subscriptionId, paid: false, attemptCount: 2 }), first + 2 * HOUR_S), "payment_failure_recorded");
      const sub = await subscriptionDoc(s.uid, s.subscriptionId);
      expect((sub?.graceUntil as Timestamp).toMillis()).to.equal(graceUntil.toMillis()).and.to.equal((first + 24 * HOUR_S) * 1000);
      expect((sub?.invoices as Record<string, { failures: number }>)[renewal].failures).to.equal(2);
      expect(await notificationsOf(s.uid, "payment_failed")).to.have.length(1);
      await expectClaim(s.uid, "basic");
    });
  });

  describe("seed incident: deleting the old subscription during an upgrade", () => {
    it("upgrade (new subscription active, old deleted) → the new plan's role is kept", async () => {
      const s = await activeSubscriber("basic");
      const pro = await plan("pro");
      const later = nowSeconds() - HOUR_S;
      const { subscriptionId: upgraded, events } = firstPayment({ customer: s.customer, priceId: pro, uid: s.uid, created: later });
      await processed(events.created, "activated");
      await processed(events.paid, "already_active");
      expect(await entitlementOf(s.uid)).to.include({ role: "pro", subscriptionId: upgraded });
      await expectClaim(s.uid, "pro");
      const deleted = eventAt("customer.subscription.deleted", subscription({ id: s.subscriptionId, customer: s.customer, priceId: s.priceId, status: "canceled", created: s.created }), later + 5);
      await processed(deleted, "superseded");
      expect(await entitlementOf(s.uid)).to.include({ role: "pro", subscriptionId: upgraded, status: "active" });
      expect((await subscriptionDoc(s.uid, s.subscriptionId))?.status).to.equal("canceled");
      await expectClaim(s.uid, "pro");
      const report = await webhookEventStatus(db(), deleted.id);
      expect(report.subscription).to.deep.equal({ id: s.subscriptionId, userId: s.uid, status: "canceled", priceId: s.priceId, role: "basic" });
      expect(report.webhookEvent).to.include({ result: "superseded", subscriptionId: s.subscriptionId });
    });
  });

  describe("the rest of issue 13's list", () => {
    it("trialing → active: one activation, the role throughout", async () => {
      const s = await subscriber();
      const priceId = await plan("basic");
      const id = stripeId("sub");
      const t = nowSeconds() - 14 * 24 * HOUR_S;
      const trial = subscription({ id, customer: s.customer, priceId, status: "trialing", created: t, trialEnd: t + 14 * 24 * HOUR_S });
      await processed(eventAt("customer.subscription.created", trial, t), "activated");
      expect(await entitlementOf(s.uid)).to.include({ role: "basic", status: "trialing" });
      await expectClaim(s.uid, "basic");
      await processed(eventAt("customer.subscription.trial_will_end", trial, t + 11 * 24 * HOUR_S), "trial_will_end");
      await processed(eventAt("customer.subscription.updated", subscription({ id, customer: s.customer, priceId, status: "active", created: t }), t + 14 * 24 * HOUR_S), "updated");
      expect(await entitlementOf(s.uid)).to.include({ role: "basic", status: "active" });
      await expectClaim(s.uid, "basic");
      expect(await notificationsOf(s.uid, "subscription_activated")).to.have.length(1);
      expect(await notificationsOf(s.uid, "trial_will_end")).to.have.length(1);
    });

    it("cancel at period end → the role until customer.subscription.deleted for the current one", async () => {
      const s = await activeSubscriber();
      const t = nowSeconds() - HOUR_S;
      await processed(updated(s, s.subscriptionId, s.priceId, t, { cancelAtPeriodEnd: true }), "updated");
      expect((await subscriptionDoc(s.uid, s.subscriptionId))?.cancelAtPeriodEnd).to.equal(true);
      await expectClaim(s.uid, "basic");
      const end = eventAt("customer.subscription.deleted", subscription({ id: s.subscriptionId, customer: s.customer, priceId: s.priceId, status: "canceled", created: s.created }), t + 60);
      await processed(end, "ended");
      expect(await entitlementOf(s.uid)).to.deep.equal({ role: null, subscriptionId: null, status: null, graceUntil: null });
      await expectClaim(s.uid, null);
      // Terminal: a late `updated` cannot bring it back.
      await processed(updated(s, s.subscriptionId, s.priceId, t + 120), "already_ended");
      await expectClaim(s.uid, null);
    });

    it("an `updated` older than the last applied one → stale, nothing changes", async () => {
      const s = await activeSubscriber();
      const t = nowSeconds() - HOUR_S;
      await processed(updated(s, s.subscriptionId, s.priceId, t, { cancelAtPeriodEnd: true }), "updated");
      const before = await subscriptionDoc(s.uid, s.subscriptionId);
      const old = updated(s, s.subscriptionId, s.priceId, t - 600, { status: "past_due" });
      await processed(old, "stale");
      expect(await subscriptionDoc(s.uid, s.subscriptionId)).to.deep.equal(before);
      expect(await auditResults(old.id)).to.deep.equal(["stale"]);
      await expectClaim(s.uid, "basic");
    });

    it("invoices from an endpoint on an older API version (top-level invoice.subscription) → still linked and applied", async () => {
      const s = await subscriber();
      const priceId = await plan("basic");
      const id = stripeId("sub");
      const t = nowSeconds() - 2 * HOUR_S;
      const paid = eventAt("invoice.paid", invoice({ customer: s.customer, subscriptionId: id, billingReason: "subscription_create", legacyShape: true }), t);
      await processed(paid, "linked");
      expect((await subscriptionDoc(s.uid, id))?.status).to.equal("active");
      await processed(eventAt("customer.subscription.created", subscription({ id, customer: s.customer, priceId, created: t, legacyPeriod: true }), t), "activated");
      await expectClaim(s.uid, "basic");
      const renewal = stripeId("in");
      await processed(eventAt("invoice.payment_failed", invoice({ id: renewal, customer: s.customer, subscriptionId: id, paid: false, legacyShape: true }), t + HOUR_S), "grace_started");
      expect((await subscriptionDoc(s.uid, id))?.currentPeriodEnd).to.be.instanceOf(Timestamp);
      expect((await db().collection("webhookEvents").doc(paid.id).get()).get("subscriptionId")).to.equal(id);
    });

    it("a duplicate delivery of a subscription event writes nothing", async () => {
      const s = await activeSubscriber();
      const e = updated(s, s.subscriptionId, s.priceId, nowSeconds() - 60, { cancelAtPeriodEnd: true });
      await processed(e, "updated");
      const sub = await subscriptionDoc(s.uid, s.subscriptionId);
      const again = await deliver(e);
      expect(again.body).to.deep.equal({ received: true, eventId: e.id, status: "duplicate" });
      expect(await subscriptionDoc(s.uid, s.subscriptionId)).to.deep.equal(sub);
      expect(await countWhere("auditLog", "eventId", e.id)).to.equal(1);
    });
  });
});
