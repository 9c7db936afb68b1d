import { expect } from "chai";
import type { DecodedIdToken } from "firebase-admin/auth";
import type { Firestore } from "firebase-admin/firestore";
import { HttpsError } from "firebase-functions/v2/https";
import { replayWebhookEventCallable } from "../../src/admin/callables";
import { TransientError } from "../../src/errors";
import { DEFAULT_DELIVERY_OPTIONS, deliverNotification } from "../../src/notifications/deliver";
import { logProvider } from "../../src/notifications/providers";
import { invoke, reservationDeps, unavailableOnce, webhookDeps } from "../helpers/inProcess";
import { reserveStockForOrder } from "../../src/reservation";
import { AlreadyReplayedError, replayDeadLetter } from "../../src/webhook/replay";
import {
  countWhere,
  createOrder,
  db,
  deliver,
  eventually,
  footprint,
  type Footprint,
  orderData,
  post,
  productData,
  reservedOrder,
  seedProduct,
  withTriggersPaused,
  uniqueId,
  waitForOrderStatus,
  webhookSecret,
} from "../helpers/emulator";
import { event, paymentIntent, signatureHeader, stripeId } from "../helpers/stripeFixtures";

/** The core path of SPEC sections 1, 5 and 6, through HTTP on the Functions emulator. */

function paymentSucceeded(orderId: string, amount: number) {
  return event("payment_intent.succeeded", paymentIntent({ amount, orderId }));
}

/** The request of a signed-in operator with the `admin: true` claim, as the callable receives it. */
function adminRequest(eventId: string) {
  const token: DecodedIdToken = { admin: true, aud: "demo", auth_time: 0, exp: 0, iat: 0, iss: "", sub: "ops", uid: "ops", firebase: { identities: {}, sign_in_provider: "custom" } };
  return { auth: { uid: "ops", token, rawToken: "" }, data: { eventId } };
}

/** What a promise settled with: its value, or the error it rejected with. */
function settled(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => value,
    (error: unknown) => error,
  );
}

/**
 * `real`, with `hook` run and awaited just before its first `runTransaction` starts: in the webhook
 * handler, between a copy's failed apply and the transaction that counts its failure.
 */
function beforeFirstRunTransaction(real: Firestore, hook: () => Promise<unknown>): Firestore {
  let fired = false;
  const runTransaction: Firestore["runTransaction"] = async (updateFunction, options) => {
    if (!fired) {
      fired = true;
      await hook();
    }
    return real.runTransaction(updateFunction, options);
  };
  return new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === "runTransaction") return runTransaction;
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

async function confirmedNotifications(orderId: string) {
  const snapshot = await db().collection("notifications").where("orderId", "==", orderId).where("kind", "==", "order_confirmed").get();
  return snapshot.docs.map((d) => d.data());
}

describe("stripeWebhook on the emulators: the core path", () => {
  it("reserves on create, finalizes once on payment, and answers a redelivery as a duplicate", async () => {
    const { sku, orderId, amount } = await reservedOrder(50, 3);
    expect(await productData(sku)).to.deep.equal({ stock: 50, reserved: 3 });

    const paid = paymentSucceeded(orderId, amount);
    const first = await deliver(paid);
    expect(first.status).to.equal(200);
    expect(first.body).to.deep.equal({ received: true, eventId: paid.id, status: "processed", result: "finalized" });
    const second = await deliver(paid);
    expect(second.status).to.equal(200);
    expect(second.body).to.deep.equal({ received: true, eventId: paid.id, status: "duplicate" });

    expect(await productData(sku)).to.deep.equal({ stock: 47, reserved: 0 });
    const order = await orderData(orderId);
    expect(order.status).to.equal("finalized");
    expect(order.webhookEventId).to.equal(paid.id);
    expect(order.paymentIntentId).to.equal((paid.data.object as { id: string }).id);
    expect((order.statusHistory as { to: string }[]).map((h) => h.to)).to.deep.equal(["reserved", "finalized"]);

    const record = (await db().collection("webhookEvents").doc(paid.id).get()).data();
    expect(record).to.include({ type: "payment_intent.succeeded", status: "processed", result: "finalized", orderId, livemode: false });
    expect(record?.expireAt.toMillis()).to.be.greaterThan(Date.now() + 29 * 86_400_000);
    expect(await countWhere("auditLog", "eventId", paid.id)).to.equal(1);

    const sent = await eventually("order_confirmed to be sent", async () => {
      const found = await confirmedNotifications(orderId);
      return found.length === 1 && found[0].status === "sent" ? found : undefined;
    });
    expect(sent[0]).to.include({ attempts: 1, userId: "user-1", eventId: paid.id });
    expect(await confirmedNotifications(orderId)).to.have.length(1);
  });

  it("applies five concurrent deliveries of one event exactly once", async () => {
    const { sku, orderId, amount } = await reservedOrder(20, 2);
    const paid = paymentSucceeded(orderId, amount);
    const responses = await Promise.all(Array.from({ length: 5 }, () => deliver(paid)));

    expect(responses.map((r) => r.status)).to.deep.equal([200, 200, 200, 200, 200]);
    const statuses = responses.map((r) => r.body.status).sort();
    expect(statuses).to.deep.equal(["duplicate", "duplicate", "duplicate", "duplicate", "processed"]);
    expect(await productData(sku)).to.deep.equal({ stock: 18, reserved: 0 });
    expect(await countWhere("auditLog", "eventId", paid.id)).to.equal(1);
    expect(await countWhere("notifications", "orderId", orderId)).to.equal(1);
  });

  it("answers sequential retries as duplicates without writing anything", async () => {
    const { sku, orderId, amount } = await reservedOrder(10, 1);
    const paid = paymentSucceeded(orderId, amount);
    expect((await deliver(paid)).body.status).to.equal("processed");
    const scope = { eventIds: [paid.id], orderIds: [orderId], skus: [sku] };
    const before = await footprint(scope);
    for (let retry = 0; retry < 3; retry++) {
      const response = await deliver(paid);
      expect(response.status).to.equal(200);
      expect(response.body.status).to.equal("duplicate");
    }
    expect(await footprint(scope)).to.deep.equal(before);
    expect(await productData(sku)).to.deep.equal({ stock: 9, reserved: 0 });
  });

  it("finalizes a payment that arrives before the reservation trigger, which then does nothing", async () => {
    const sku = uniqueId("sku");
    const orderId = uniqueId("order");
    await seedProduct(sku, 50);
    await withTriggersPaused(async () => {
      await createOrder({ id: orderId, items: [{ sku, qty: 3 }], amount: 900 });
      const response = await deliver(paymentSucceeded(orderId, 900));
      expect(response.body).to.include({ status: "processed", result: "finalized" });
    });
    expect(await productData(sku)).to.deep.equal({ stock: 47, reserved: 0 });
    // The trigger's late run (the same handler the deployed trigger calls) must leave everything as it is.
    const outcome = await reserveStockForOrder(reservationDeps(db()), orderId);
    expect(outcome).to.equal("skipped");
    expect(await productData(sku)).to.deep.equal({ stock: 47, reserved: 0 });
    expect((await orderData(orderId)).status).to.equal("finalized");
    // Its confirmation was queued while triggers were paused: deliver it with the trigger's handler.
    const delivered: string[] = [];
    const provider = logProvider((_message, fields) => delivered.push(String(fields.notification_id)));
    expect(await deliverNotification({ db: db(), now: () => new Date(), provider, options: DEFAULT_DELIVERY_OPTIONS }, `order_confirmed:${orderId}`)).to.equal("sent");
    expect(delivered).to.deep.equal([`order_confirmed:${orderId}`]);
  });

  it("marks an order out_of_stock when a line cannot be reserved, without touching stock", async () => {
    const sku = uniqueId("sku");
    const orderId = uniqueId("order");
    await seedProduct(sku, 2);
    await createOrder({ id: orderId, items: [{ sku, qty: 3 }], amount: 900 });
    await waitForOrderStatus(orderId, "out_of_stock");
    expect(await productData(sku)).to.deep.equal({ stock: 2, reserved: 0 });
  });

  it("acknowledges an unhandled event type as ignored and records only webhookEvents", async () => {
    const ignored = event("customer.created", { id: stripeId("cus"), object: "customer", metadata: {} });
    const response = await deliver(ignored);
    expect(response.status).to.equal(200);
    expect(response.body).to.include({ received: true, eventId: ignored.id, status: "ignored" });
    const after = await footprint({ eventIds: [ignored.id] });
    expect(after.events[ignored.id]).to.deep.include({ deadLetter: null, auditEntries: [], notifications: [] });
    expect(after.events[ignored.id].webhookEvent).to.include({ type: "customer.created", status: "ignored", orderId: null });
  });

  describe("requests that must be refused without any write (SPEC section 5)", () => {
    // Each request is about this test's own reserved order: had it been applied, the order, its product,
    // its audit entries and notifications, and the event's records would show it.
    let payload: string;
    let scope: { eventIds: string[]; orderIds: string[]; skus: string[] };
    let before: Footprint;
    const fakeEventId = uniqueId("evt_fake");

    beforeEach(async () => {
      const { sku, orderId } = await reservedOrder(10, 1, 100);
      const paid = paymentSucceeded(orderId, 100);
      payload = JSON.stringify(paid);
      scope = { eventIds: [paid.id, fakeEventId], orderIds: [orderId], skus: [sku] };
      before = await footprint(scope);
    });

    const cases: { name: string; status: number; code: string | null; send: () => Promise<{ status: number; body: Record<string, unknown> }> }[] = [
      { name: "a missing Stripe-Signature header", status: 400, code: "signature_invalid", send: () => post(payload, {}) },
      {
        name: "a tampered body",
        status: 400,
        code: "signature_invalid",
        send: () => post(payload.replace('"amount":100', '"amount":1'), { "stripe-signature": signatureHeader(payload, webhookSecret()) }),
      },
      {
        name: "a wrong secret",
        status: 400,
        code: "signature_invalid",
        send: () => post(payload, { "stripe-signature": signatureHeader(payload, "whsec_not_the_configured_secret") }),
      },
      {
        name: "a stale timestamp (older than 300 s)",
        status: 400,
        code: "signature_invalid",
        send: () => post(payload, { "stripe-signature": signatureHeader(payload, webhookSecret(), Math.floor(Date.now() / 1000) - 301) }),
      },
      {
        name: "a signed body that is not JSON",
        status: 400,
        code: "not_a_stripe_event",
        send: () =>
          post("not json at all", { "content-type": "text/plain", "stripe-signature": signatureHeader("not json at all", webhookSecret()) }),
      },
      {
        // The Functions runtime's JSON body parser refuses it before the handler runs: still 400, still no write.
        name: "a signed body that is not JSON but claims to be",
        status: 400,
        code: null,
        send: () => post("{not json", { "stripe-signature": signatureHeader("{not json", webhookSecret()) }),
      },
      {
        name: "signed JSON that is not a Stripe event",
        status: 400,
        code: "not_a_stripe_event",
        send: () => {
          const body = JSON.stringify({ hello: "world", id: fakeEventId });
          return post(body, { "stripe-signature": signatureHeader(body, webhookSecret()) });
        },
      },
      { name: "a GET", status: 405, code: "method_not_allowed", send: () => post("", {}, "GET") },
    ];

    for (const c of cases) {
      it(`answers ${c.status} to ${c.name}`, async () => {
        const response = await c.send();
        expect(response.status).to.equal(c.status);
        if (c.code !== null) {
          const error = response.body.error as { code: string; message: string };
          expect(error.code).to.equal(c.code);
          expect(error.message).to.be.a("string").and.have.length.greaterThan(20);
        }
        expect(await footprint(scope)).to.deep.equal(before);
      });
    }
  });
});

describe("stripeWebhook on the emulators: parked events and replays", () => {
  /** Delivers `paid`, whose order does not exist, until the 5th failure parks it (MAX_DELIVERY_ATTEMPTS). */
  async function parked(paid: ReturnType<typeof paymentSucceeded>): Promise<void> {
    const statuses: number[] = [];
    for (let attempt = 1; attempt <= 5; attempt++) statuses.push((await invoke(webhookDeps(db()), paid)).status);
    expect(statuses).to.deep.equal([409, 409, 409, 409, 200]);
    expect((await db().collection("webhookEvents").doc(paid.id).get()).get("result")).to.equal("dead_lettered");
  }

  it("refuses to replay a replayed dead letter once its webhookEvents record has expired, instead of deciding the event again", async () => {
    const { sku, orderId, amount } = await reservedOrder(10, 2, 800);
    const paid = paymentSucceeded(orderId, amount);
    expect((await invoke(webhookDeps(unavailableOnce(db())), paid)).status).to.equal(500);
    expect(await replayDeadLetter(webhookDeps(db()), paid.id)).to.include({ status: "processed", result: "finalized", orderId });
    // While the record lives, replaying the resolved letter again is the duplicate it is.
    expect((await replayDeadLetter(webhookDeps(db()), paid.id)).status).to.equal("duplicate");
    // The TTL policy deletes the record WEBHOOK_EVENT_TTL_DAYS later; the resolved letter stays.
    await db().collection("webhookEvents").doc(paid.id).delete();
    const scope = { eventIds: [paid.id], orderIds: [orderId], skus: [sku] };
    const before = await footprint(scope);

    expect(await settled(replayDeadLetter(webhookDeps(db()), paid.id))).to.be.instanceOf(AlreadyReplayedError);
    const answer = await settled(replayWebhookEventCallable(webhookDeps(db()), adminRequest(paid.id)));
    expect(answer).to.be.instanceOf(HttpsError);
    expect((answer as HttpsError).code).to.equal("failed-precondition");

    expect(await footprint(scope)).to.deep.equal(before);
    expect((await db().collection("deadLetters").doc(paid.id).get()).get("status")).to.equal("replayed");
    expect(await countWhere("auditLog", "eventId", paid.id)).to.equal(1);
    expect(await productData(sku)).to.deep.equal({ stock: 8, reserved: 0 });
  });

  it("fails a replay whose commit collides with another deterministic document, instead of answering duplicate: the event stays parked", async () => {
    const sku = uniqueId("sku");
    const orderId = uniqueId("order");
    const paid = paymentSucceeded(orderId, 700);
    await parked(paid);
    await seedProduct(sku, 10);
    await createOrder({ id: orderId, items: [{ sku, qty: 1 }], amount: 700 });
    await waitForOrderStatus(orderId, "reserved");
    // A document the replay's commit creates already exists (written by hand here): the commit fails with
    // ALREADY_EXISTS although no copy of the event was applied. `sent`, so the delivery trigger leaves it.
    const at = new Date();
    await db()
      .collection("notifications")
      .doc(`order_confirmed:${orderId}`)
      .create({ kind: "order_confirmed", orderId, userId: "user-1", eventId: null, detail: null, status: "sent", attempts: 1, createdAt: at, sentAt: at });
    const scope = { eventIds: [paid.id], orderIds: [orderId], skus: [sku] };
    const before = await footprint(scope);

    expect(await settled(replayDeadLetter(webhookDeps(db()), paid.id))).to.be.instanceOf(TransientError);

    expect(await footprint(scope)).to.deep.equal(before);
    expect((await db().collection("webhookEvents").doc(paid.id).get()).data()).to.include({ status: "rejected", result: "dead_lettered" });
    expect((await db().collection("deadLetters").doc(paid.id).get()).data()).to.include({ attempts: 5, status: "dead", retryable: false });
    expect((await orderData(orderId)).status).to.equal("reserved");
    expect(await productData(sku)).to.deep.equal({ stock: 10, reserved: 1 });
    expect(await countWhere("auditLog", "eventId", paid.id)).to.equal(0);
  });

  it("answers a failed copy that raced another instance's past the attempt limit as parked, and leaves the parked dead letter as it is", async () => {
    const missing = uniqueId("missing-order");
    const paid = paymentSucceeded(missing, 500);
    const statuses: number[] = [];
    for (let attempt = 1; attempt <= 4; attempt++) statuses.push((await invoke(webhookDeps(db()), paid)).status);
    expect(statuses).to.deep.equal([409, 409, 409, 409]);

    // Two instances fail the event at once: this copy finds no order, and before its failure is counted
    // the other instance's copy counts the 5th attempt and parks the event.
    const other: { status: number; body: Record<string, unknown> }[] = [];
    const racing = beforeFirstRunTransaction(db(), async () => other.push(await invoke(webhookDeps(db()), paid)));
    const late = await invoke(webhookDeps(racing), paid);

    expect(other.map((r) => [r.status, r.body.result])).to.deep.equal([[200, "dead_lettered"]]);
    expect([late.status, late.body]).to.deep.equal([200, { received: true, eventId: paid.id, status: "rejected", result: "dead_lettered" }]);
    expect((await db().collection("deadLetters").doc(paid.id).get()).data()).to.include({ attempts: 5, status: "dead", retryable: false, orderId: missing });
    expect((await db().collection("webhookEvents").doc(paid.id).get()).data()).to.include({ status: "rejected", result: "dead_lettered", orderId: missing });
    expect(await countWhere("notifications", "eventId", paid.id)).to.equal(1);
    expect(await countWhere("auditLog", "eventId", paid.id)).to.equal(0);
  });
});
