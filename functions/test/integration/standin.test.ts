import { expect } from "chai";
import http from "node:http";
import type { AddressInfo } from "node:net";
import Stripe from "stripe";
import { parseForm } from "../../standin/params";
import { startStandIn, type StandIn } from "../../standin/server";
import type { DeliveryAttempt } from "../../standin/webhooks";

/**
 * The real `stripe` client against the local Stripe stand-in, in process, and a local endpoint
 * that receives its webhooks and verifies them with `stripe.webhooks.constructEvent`. No emulator.
 */

const SECRET = "whsec_standin_integration_test";
const KEY = "sk_test_standin_integration";

let standIn: StandIn;
let stripe: Stripe;
let endpoint: http.Server;
/** Events that passed signature verification, in arrival order. */
let verified: Stripe.Event[] = [];
let rejectedSignatures = 0;
/** Event id → how many more deliveries of it the endpoint answers 500. */
const failures = new Map<string, number>();
let failNextOfType: { type: string; times: number } | null = null;

function readAll(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

describe("stand-in (the real stripe client against it, in process)", () => {
  before(async () => {
    endpoint = http.createServer((req, res) => {
      void readAll(req).then((raw) => {
        let event: Stripe.Event;
        try {
          event = stripe.webhooks.constructEvent(raw, req.headers["stripe-signature"] ?? "", SECRET);
        } catch {
          rejectedSignatures += 1;
          res.writeHead(400).end();
          return;
        }
        if (failNextOfType !== null && failNextOfType.type === event.type && !failures.has(event.id)) {
          failures.set(event.id, failNextOfType.times);
          failNextOfType = null;
        }
        const left = failures.get(event.id) ?? 0;
        if (left > 0) {
          failures.set(event.id, left - 1);
          res.writeHead(500).end("try again");
          return;
        }
        verified.push(event);
        res.writeHead(200, { "Content-Type": "application/json" }).end('{"received":true}');
      });
    });
    await new Promise<void>((resolve) => endpoint.listen(0, "127.0.0.1", resolve));
    const { port } = endpoint.address() as AddressInfo;
    standIn = await startStandIn({
      port: 0,
      webhookUrl: `http://127.0.0.1:${port}/stripeWebhook`,
      webhookSecret: SECRET,
      webhookRetryDelaysMs: [10, 20, 40],
    });
    stripe = new Stripe(KEY, { host: "127.0.0.1", port: standIn.port, protocol: "http" });
  });

  after(async () => {
    await standIn.close();
    await new Promise<void>((resolve) => endpoint.close(() => resolve()));
  });

  beforeEach(() => {
    failNextOfType = null;
  });

  /** The verified events about one object, once every delivery queued so far has ended. */
  async function eventsAbout(objectId: string): Promise<Stripe.Event[]> {
    await standIn.webhooksIdle();
    return verified.filter((e) => (e.data.object as { id?: string }).id === objectId);
  }

  async function control(method: string, path: string, body?: object): Promise<{ status: number; json: unknown }> {
    const res = await fetch(`${standIn.url}${path}`, {
      method,
      headers: { "Content-Type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: await res.json() };
  }

  async function rejection(promise: Promise<unknown>): Promise<Stripe.errors.StripeError> {
    try {
      await promise;
    } catch (err) {
      if (err instanceof Stripe.errors.StripeError) return err;
      throw err;
    }
    throw new Error("expected the Stripe call to fail");
  }

  async function newCustomer(email = "buyer@example.com"): Promise<Stripe.Customer> {
    return stripe.customers.create({ email, metadata: { uid: `uid_${Math.random().toString(36).slice(2)}` } });
  }

  describe("stand-in: form parameters", () => {
    it("parses Stripe's bracketed keys into nested objects and arrays", () => {
      const params = parseForm(
        "metadata[orderId]=o_1&line_items[0][price_data][unit_amount]=2000&line_items[0][quantity]=2&" +
          "line_items[1][price]=price_x&expand[]=a&expand[]=b&expand[2]=c&amount=100",
      );
      expect(params).to.deep.equal({
        metadata: { orderId: "o_1" },
        line_items: [{ price_data: { unit_amount: "2000" }, quantity: "2" }, { price: "price_x" }],
        expand: ["a", "b", "c"],
        amount: "100",
      });
    });
  });

  describe("stand-in: customers", () => {
    it("creates and retrieves a customer; an unknown one is resource_missing", async () => {
      const created = await stripe.customers.create({ email: "a@example.com", name: "Ada", metadata: { uid: "u_1" } });
      expect(created.id).to.match(/^cus_[A-Za-z0-9]{14}$/);
      expect(created).to.include({ object: "customer", email: "a@example.com", name: "Ada", livemode: false });
      expect(created.metadata).to.deep.equal({ uid: "u_1" });
      expect(created.lastResponse.requestId).to.match(/^req_/);

      const retrieved = await stripe.customers.retrieve(created.id);
      expect(retrieved.id).to.equal(created.id);
      expect((retrieved as Stripe.Customer).email).to.equal("a@example.com");

      const err = await rejection(stripe.customers.retrieve("cus_doesnotexist"));
      expect(err).to.be.instanceOf(Stripe.errors.StripeInvalidRequestError);
      expect(err.statusCode).to.equal(404);
      expect(err.code).to.equal("resource_missing");
    });
  });

  describe("stand-in: PaymentIntents", () => {
    it("creates a PaymentIntent with customer, metadata, amount and currency", async () => {
      const customer = await newCustomer();
      const pi = await stripe.paymentIntents.create({
        amount: 2500,
        currency: "EUR",
        customer: customer.id,
        metadata: { orderId: "order_create_1" },
        automatic_payment_methods: { enabled: true },
      });
      expect(pi.id).to.match(/^pi_[A-Za-z0-9]{24}$/);
      expect(pi.client_secret).to.match(new RegExp(`^${pi.id}_secret_[A-Za-z0-9]+$`));
      expect(pi).to.include({ object: "payment_intent", amount: 2500, currency: "eur", customer: customer.id, status: "requires_payment_method" });
      expect(pi.metadata).to.deep.equal({ orderId: "order_create_1" });
      expect(pi.automatic_payment_methods?.enabled).to.equal(true);
    });

    it("refuses what Stripe refuses: missing amount, unknown customer, unknown parameters", async () => {
      const missing = await rejection(stripe.paymentIntents.create({ currency: "usd" } as Stripe.PaymentIntentCreateParams));
      expect(missing).to.be.instanceOf(Stripe.errors.StripeInvalidRequestError);
      expect(missing).to.include({ code: "parameter_missing", param: "amount", statusCode: 400 });

      const noCustomer = await rejection(stripe.paymentIntents.create({ amount: 1000, currency: "usd", customer: "cus_nobody" }));
      expect(noCustomer).to.include({ code: "resource_missing", param: "customer" });

      const unknown = await rejection(stripe.paymentIntents.create({ amount: 1000, currency: "usd", capture_method: "manual" }));
      expect(unknown).to.include({ code: "parameter_unknown", param: "capture_method" });
    });

    it("honours Idempotency-Key: same key and parameters → the same PaymentIntent, other parameters → idempotency_error", async () => {
      const customer = await newCustomer();
      const key = `order_idem_${Date.now()}`;
      const params: Stripe.PaymentIntentCreateParams = { amount: 1800, currency: "usd", customer: customer.id, metadata: { orderId: "order_idem" } };
      const first = await stripe.paymentIntents.create(params, { idempotencyKey: key });
      const second = await stripe.paymentIntents.create(params, { idempotencyKey: key });
      expect(second.id).to.equal(first.id);
      expect(second.lastResponse.headers["idempotent-replayed"]).to.equal("true");
      const listed = await stripe.paymentIntents.list({ customer: customer.id });
      expect(listed.data.map((p) => p.id)).to.deep.equal([first.id]);

      const err = await rejection(stripe.paymentIntents.create({ ...params, amount: 1900 }, { idempotencyKey: key }));
      expect(err).to.be.instanceOf(Stripe.errors.StripeIdempotencyError);
      expect(err.statusCode).to.equal(400);
      expect(err.type).to.equal("StripeIdempotencyError");
      expect(err.rawType).to.equal("idempotency_error");
      expect((await stripe.paymentIntents.list({ customer: customer.id })).data).to.have.length(1);
    });

    it("lists PaymentIntents by customer, newest first", async () => {
      const a = await newCustomer();
      const b = await newCustomer();
      const a1 = await stripe.paymentIntents.create({ amount: 1000, currency: "usd", customer: a.id });
      const a2 = await stripe.paymentIntents.create({ amount: 2000, currency: "usd", customer: a.id });
      await stripe.paymentIntents.create({ amount: 3000, currency: "usd", customer: b.id });
      const listed = await stripe.paymentIntents.list({ customer: a.id });
      expect(listed.object).to.equal("list");
      expect(listed.has_more).to.equal(false);
      expect(listed.data.map((p) => p.id)).to.deep.equal([a2.id, a1.id]);
      const firstPage = await stripe.paymentIntents.list({ customer: a.id, limit: 1 });
      expect(firstPage.has_more).to.equal(true);
      expect(firstPage.data.map((p) => p.id)).to.deep.equal([a2.id]);
    });

    it("confirm with pm_card_visa succeeds and delivers signed charge.succeeded + payment_intent.succeeded", async () => {
      const customer = await newCustomer();
      const pi = await stripe.paymentIntents.create(
        { amount: 4200, currency: "usd", customer: customer.id, metadata: { orderId: "order_paid_1" } },
        { idempotencyKey: `confirm_${Date.now()}` },
      );
      const confirmed = await stripe.paymentIntents.confirm(pi.id, { payment_method: "pm_card_visa" });
      expect(confirmed).to.include({ status: "succeeded", amount_received: 4200 });
      expect(confirmed.latest_charge).to.match(/^ch_/);
      expect(confirmed.payment_method).to.match(/^pm_/);

      const events = await eventsAbout(pi.id);
      const chargeEvents = await eventsAbout(confirmed.latest_charge as string);
      expect(events.map((e) => e.type)).to.deep.equal(["payment_intent.succeeded"]);
      expect(chargeEvents.map((e) => e.type)).to.deep.equal(["charge.succeeded"]);
      expect(rejectedSignatures).to.equal(0);

      const event = events[0] as Stripe.PaymentIntentSucceededEvent;
      expect(event.id).to.match(/^evt_/);
      expect(event).to.include({ object: "event", api_version: Stripe.API_VERSION, livemode: false, pending_webhooks: 1 });
      expect(event.created).to.be.a("number").and.to.be.closeTo(Date.now() / 1000, 60);
      expect(event.request?.id).to.match(/^req_/);
      expect(event.data.object).to.include({ id: pi.id, status: "succeeded", amount_received: 4200 });
      expect(event.data.object.metadata).to.deep.equal({ orderId: "order_paid_1" });

      const charge = (chargeEvents[0] as Stripe.ChargeSucceededEvent).data.object;
      expect(charge).to.include({ payment_intent: pi.id, amount: 4200, amount_captured: 4200, paid: true, captured: true, status: "succeeded", currency: "usd" });
      expect(charge.metadata).to.deep.equal({ orderId: "order_paid_1" });
      expect((await stripe.charges.retrieve(charge.id)).payment_intent).to.equal(pi.id);

      const twice = await rejection(stripe.paymentIntents.confirm(pi.id, { payment_method: "pm_card_visa" }));
      expect(twice).to.include({ code: "payment_intent_unexpected_state", statusCode: 400 });
    });

    it("a PaymentIntent that asked for automatic payment methods with redirects needs return_url to confirm, as on Stripe", async () => {
      const pi = await stripe.paymentIntents.create({ amount: 1000, currency: "usd", automatic_payment_methods: { enabled: true } });
      const err = await rejection(stripe.paymentIntents.confirm(pi.id, { payment_method: "pm_card_visa" }));
      expect(err).to.include({ statusCode: 400, param: "return_url" });
      expect((await stripe.paymentIntents.retrieve(pi.id)).status).to.equal("requires_payment_method");
      const confirmed = await stripe.paymentIntents.confirm(pi.id, { payment_method: "pm_card_visa", return_url: "https://shop.example/back" });
      expect(confirmed.status).to.equal("succeeded");

      const noRedirects = await stripe.paymentIntents.create({
        amount: 1000,
        currency: "usd",
        automatic_payment_methods: { enabled: true, allow_redirects: "never" },
      });
      expect(noRedirects.automatic_payment_methods).to.deep.equal({ enabled: true, allow_redirects: "never" });
      expect((await stripe.paymentIntents.confirm(noRedirects.id, { payment_method: "pm_card_visa" })).status).to.equal("succeeded");
    });

    it("expands latest_charge on retrieve", async () => {
      const pi = await stripe.paymentIntents.create({ amount: 900, currency: "usd", payment_method: "pm_card_visa", confirm: true });
      const expanded = await stripe.paymentIntents.retrieve(pi.id, { expand: ["latest_charge"] });
      expect((expanded.latest_charge as Stripe.Charge).object).to.equal("charge");
      expect((expanded.latest_charge as Stripe.Charge).payment_intent).to.equal(pi.id);
    });

    it("confirm with pm_card_chargeDeclined answers a card error and delivers payment_intent.payment_failed", async () => {
      const pi = await stripe.paymentIntents.create({ amount: 1500, currency: "usd", metadata: { orderId: "order_declined_1" } });
      const err = await rejection(stripe.paymentIntents.confirm(pi.id, { payment_method: "pm_card_chargeDeclined" }));
      expect(err).to.be.instanceOf(Stripe.errors.StripeCardError);
      expect(err).to.include({ statusCode: 402, code: "card_declined", decline_code: "generic_decline" });
      expect(err.payment_intent?.id).to.equal(pi.id);
      expect(err.payment_intent?.status).to.equal("requires_payment_method");

      const after = await stripe.paymentIntents.retrieve(pi.id);
      expect(after.status).to.equal("requires_payment_method");
      expect(after.last_payment_error).to.include({ type: "card_error", code: "card_declined", decline_code: "generic_decline" });

      const events = await eventsAbout(pi.id);
      expect(events.map((e) => e.type)).to.deep.equal(["payment_intent.payment_failed"]);
      const failed = (events[0] as Stripe.PaymentIntentPaymentFailedEvent).data.object;
      expect(failed.last_payment_error).to.include({ code: "card_declined", decline_code: "generic_decline", message: "Your card was declined." });
      expect(failed.metadata).to.deep.equal({ orderId: "order_declined_1" });
      const chargeEvents = await eventsAbout(after.latest_charge as string);
      expect(chargeEvents.map((e) => e.type)).to.deep.equal(["charge.failed"]);
      expect((chargeEvents[0] as Stripe.ChargeFailedEvent).data.object).to.include({ paid: false, captured: false, status: "failed" });

      // The shopper may try again with another card, as on Stripe.
      const retried = await stripe.paymentIntents.confirm(pi.id, { payment_method: "pm_card_visa" });
      expect(retried.status).to.equal("succeeded");
    });

    it("cancel → canceled and payment_intent.canceled; a succeeded PaymentIntent cannot be canceled", async () => {
      const pi = await stripe.paymentIntents.create({ amount: 1200, currency: "usd", metadata: { orderId: "order_cancel_1" } });
      const canceled = await stripe.paymentIntents.cancel(pi.id, { cancellation_reason: "abandoned" });
      expect(canceled).to.include({ status: "canceled", cancellation_reason: "abandoned" });
      expect(canceled.canceled_at).to.be.a("number");
      const events = await eventsAbout(pi.id);
      expect(events.map((e) => e.type)).to.deep.equal(["payment_intent.canceled"]);

      const paid = await stripe.paymentIntents.create({ amount: 1200, currency: "usd", payment_method: "pm_card_visa", confirm: true });
      const err = await rejection(stripe.paymentIntents.cancel(paid.id));
      expect(err).to.include({ statusCode: 400, code: "payment_intent_unexpected_state" });
    });
  });

  describe("stand-in: Checkout Sessions", () => {
    it("payment mode: created open with its amount, completed by the shopper → paid, with its PaymentIntent's events", async () => {
      const customer = await newCustomer();
      const session = await stripe.checkout.sessions.create({
        mode: "payment",
        customer: customer.id,
        client_reference_id: "order_cs_1",
        metadata: { orderId: "order_cs_1" },
        payment_intent_data: { metadata: { orderId: "order_cs_1" } },
        line_items: [
          { price_data: { currency: "usd", unit_amount: 2000, product_data: { name: "T-shirt" } }, quantity: 2 },
          { price_data: { currency: "usd", unit_amount: 500, product_data: { name: "Sticker" } }, quantity: 1 },
        ],
        success_url: "https://shop.example/ok",
        cancel_url: "https://shop.example/cancel",
      });
      expect(session.id).to.match(/^cs_test_[A-Za-z0-9]{58}$/);
      expect(session).to.include({
        object: "checkout.session",
        mode: "payment",
        status: "open",
        payment_status: "unpaid",
        amount_total: 4500,
        currency: "usd",
        customer: customer.id,
        client_reference_id: "order_cs_1",
        payment_intent: null,
        success_url: "https://shop.example/ok",
        cancel_url: "https://shop.example/cancel",
      });
      expect(session.metadata).to.deep.equal({ orderId: "order_cs_1" });
      expect(session.url).to.equal(`${standIn.url}/__standin/pay/${session.id}`);
      expect((await stripe.checkout.sessions.retrieve(session.id)).id).to.equal(session.id);
      expect((await stripe.checkout.sessions.list({ customer: customer.id })).data.map((s) => s.id)).to.deep.equal([session.id]);

      const done = await control("POST", `/__standin/checkout/sessions/${session.id}/complete`, { payment_method: "pm_card_visa" });
      expect(done.status).to.equal(200);
      const completed = await stripe.checkout.sessions.retrieve(session.id);
      expect(completed).to.include({ status: "complete", payment_status: "paid" });
      const piId = completed.payment_intent as string;
      expect(piId).to.match(/^pi_/);
      const pi = await stripe.paymentIntents.retrieve(piId);
      expect(pi).to.include({ status: "succeeded", amount: 4500, currency: "usd", customer: customer.id });
      expect(pi.metadata).to.deep.equal({ orderId: "order_cs_1" });

      const sessionEvents = await eventsAbout(session.id);
      expect(sessionEvents.map((e) => e.type)).to.deep.equal(["checkout.session.completed"]);
      const completedEvent = (sessionEvents[0] as Stripe.CheckoutSessionCompletedEvent).data.object;
      expect(completedEvent).to.include({ payment_status: "paid", payment_intent: piId, amount_total: 4500, client_reference_id: "order_cs_1" });
      expect((await eventsAbout(piId)).map((e) => e.type)).to.deep.equal(["payment_intent.succeeded"]);
      expect((await eventsAbout(pi.latest_charge as string)).map((e) => e.type)).to.deep.equal(["charge.succeeded"]);

      const again = await control("POST", `/__standin/checkout/sessions/${session.id}/complete`, {});
      expect(again.status).to.equal(400);
    });

    it("payment mode refuses a price id it cannot know the amount of", async () => {
      const err = await rejection(
        stripe.checkout.sessions.create({ mode: "payment", line_items: [{ price: "price_unknown", quantity: 1 }], success_url: "https://shop.example/ok" }),
      );
      expect(err).to.include({ statusCode: 400, code: "resource_missing", param: "line_items[0][price]" });
    });

    it("expire → expired and checkout.session.expired; an expired Session can be neither expired nor paid", async () => {
      const session = await stripe.checkout.sessions.create({
        mode: "payment",
        client_reference_id: "order_cs_expire",
        line_items: [{ price_data: { currency: "usd", unit_amount: 1000, product_data: { name: "Mug" } }, quantity: 1 }],
        success_url: "https://shop.example/ok",
      });
      const expired = await stripe.checkout.sessions.expire(session.id);
      expect(expired.status).to.equal("expired");
      expect((await eventsAbout(session.id)).map((e) => e.type)).to.deep.equal(["checkout.session.expired"]);
      const twice = await rejection(stripe.checkout.sessions.expire(session.id));
      expect(twice.statusCode).to.equal(400);
      expect((await control("POST", `/__standin/checkout/sessions/${session.id}/complete`, {})).status).to.equal(400);
    });

    it("subscription mode: completion creates the active subscription and its paid first invoice in the 2025 shape", async () => {
      const customer = await newCustomer("subscriber@example.com");
      const session = await stripe.checkout.sessions.create({
        mode: "subscription",
        customer: customer.id,
        client_reference_id: "uid_sub_1",
        line_items: [{ price: "price_1PgafmB7WZ01zgkW6dKueIc5", quantity: 1 }],
        subscription_data: { metadata: { uid: "uid_sub_1" } },
        success_url: "https://shop.example/ok",
        cancel_url: "https://shop.example/cancel",
      });
      expect(session).to.include({ mode: "subscription", status: "open", subscription: null, customer: customer.id });

      const done = await control("POST", `/__standin/checkout/sessions/${session.id}/complete`, { payment_method: "pm_card_visa" });
      expect(done.status).to.equal(200);
      const completed = await stripe.checkout.sessions.retrieve(session.id);
      expect(completed).to.include({ status: "complete", payment_status: "paid" });
      const subId = completed.subscription as string;
      expect(subId).to.match(/^sub_/);

      const sub = await stripe.subscriptions.retrieve(subId);
      expect(sub).to.include({ status: "active", customer: customer.id, latest_invoice: completed.invoice });
      expect(sub.metadata).to.deep.equal({ uid: "uid_sub_1" });
      const item = sub.items.data[0] as Stripe.SubscriptionItem;
      expect(item.price.id).to.equal("price_1PgafmB7WZ01zgkW6dKueIc5");
      expect(item.current_period_end).to.be.greaterThan(item.current_period_start);

      const invoice = await stripe.invoices.retrieve(completed.invoice as string);
      expect(invoice).to.include({ status: "paid", billing_reason: "subscription_create", customer: customer.id });
      expect(invoice.parent?.subscription_details?.subscription).to.equal(subId);

      const subEvents = await eventsAbout(subId);
      expect(subEvents.map((e) => e.type)).to.deep.equal(["customer.subscription.created"]);
      const invoiceEvents = await eventsAbout(invoice.id as string);
      expect(invoiceEvents.map((e) => e.type)).to.deep.equal(["invoice.paid"]);
      const paidInvoice = (invoiceEvents[0] as Stripe.InvoicePaidEvent).data.object;
      expect(paidInvoice.parent?.subscription_details?.subscription).to.equal(subId);
      const sessionEvents = await eventsAbout(session.id);
      expect(sessionEvents.map((e) => e.type)).to.deep.equal(["checkout.session.completed"]);
      expect((sessionEvents[0] as Stripe.CheckoutSessionCompletedEvent).data.object).to.include({ mode: "subscription", subscription: subId });
      expect((await stripe.subscriptions.list({ customer: customer.id })).data.map((s) => s.id)).to.deep.equal([subId]);
    });
  });

  describe("stand-in: billing portal", () => {
    it("creates a portal session for a known customer only", async () => {
      const customer = await newCustomer();
      const portal = await stripe.billingPortal.sessions.create({ customer: customer.id, return_url: "https://shop.example/account" });
      expect(portal).to.include({ object: "billing_portal.session", customer: customer.id, return_url: "https://shop.example/account", livemode: false });
      expect(portal.url).to.match(new RegExp(`^${standIn.url}/__standin/portal/bps_`));
      const err = await rejection(stripe.billingPortal.sessions.create({ customer: "cus_nobody" }));
      expect(err).to.include({ statusCode: 404, code: "resource_missing", param: "customer" });
    });
  });

  describe("stand-in: what it does not serve, authentication and faults", () => {
    it("answers an unknown route 404 resource_missing, like Stripe", async () => {
      const err = await rejection(stripe.products.list());
      expect(err).to.be.instanceOf(Stripe.errors.StripeInvalidRequestError);
      expect(err).to.include({ statusCode: 404, code: "resource_missing" });
    });

    it("answers a request without an API key 401", async () => {
      const anonymous = new Stripe("", { host: "127.0.0.1", port: standIn.port, protocol: "http", authenticator: async () => undefined });
      const err = await rejection(anonymous.customers.create({ email: "x@example.com" }));
      expect(err).to.be.instanceOf(Stripe.errors.StripeAuthenticationError);
      expect(err.statusCode).to.equal(401);

      const live = new Stripe("sk_live_not_here", { host: "127.0.0.1", port: standIn.port, protocol: "http" });
      expect(await rejection(live.customers.create({}))).to.be.instanceOf(Stripe.errors.StripeAuthenticationError);
    });

    it("an injected fault answers 500 once, then the same call with the same key succeeds once", async () => {
      const customer = await newCustomer();
      const injected = await control("POST", "/__standin/faults", { method: "POST", path: "/v1/payment_intents", status: 500, times: 1 });
      expect(injected.status).to.equal(200);
      const noRetry = new Stripe(KEY, { host: "127.0.0.1", port: standIn.port, protocol: "http", maxNetworkRetries: 0 });
      const key = `fault_${Date.now()}`;
      const params: Stripe.PaymentIntentCreateParams = { amount: 3100, currency: "usd", customer: customer.id, metadata: { orderId: "order_fault" } };
      const err = await rejection(noRetry.paymentIntents.create(params, { idempotencyKey: key }));
      expect(err).to.be.instanceOf(Stripe.errors.StripeAPIError);
      expect(err.statusCode).to.equal(500);
      expect((await stripe.paymentIntents.list({ customer: customer.id })).data).to.have.length(0);

      const pi = await noRetry.paymentIntents.create(params, { idempotencyKey: key });
      expect(pi.lastResponse.headers["idempotent-replayed"]).to.equal(undefined);
      expect((await stripe.paymentIntents.list({ customer: customer.id })).data.map((p) => p.id)).to.deep.equal([pi.id]);
      expect((await control("GET", "/__standin/faults")).json).to.deep.equal([]);
    });
  });

  describe("stand-in: webhook delivery", () => {
    it("retries a delivery answered non-2xx and records every attempt", async () => {
      failNextOfType = { type: "payment_intent.canceled", times: 2 };
      const pi = await stripe.paymentIntents.create({ amount: 700, currency: "usd", metadata: { orderId: "order_retry" } });
      await stripe.paymentIntents.cancel(pi.id);
      const events = await eventsAbout(pi.id);
      expect(events.map((e) => e.type)).to.deep.equal(["payment_intent.canceled"]);

      const { json } = await control("GET", "/__standin/deliveries");
      const attempts = (json as DeliveryAttempt[]).filter((d) => d.objectId === pi.id);
      expect(attempts.map((a) => [a.type, a.attempt, a.status])).to.deep.equal([
        ["payment_intent.canceled", 1, 500],
        ["payment_intent.canceled", 2, 500],
        ["payment_intent.canceled", 3, 200],
      ]);
      expect(new Set(attempts.map((a) => a.eventId)).size).to.equal(1);
    });

    it("a replayed idempotent request delivers no second event", async () => {
      const pi = await stripe.paymentIntents.create({ amount: 800, currency: "usd" });
      const key = `confirm_once_${Date.now()}`;
      await stripe.paymentIntents.confirm(pi.id, { payment_method: "pm_card_visa" }, { idempotencyKey: key });
      const replay = await stripe.paymentIntents.confirm(pi.id, { payment_method: "pm_card_visa" }, { idempotencyKey: key });
      expect(replay.lastResponse.headers["idempotent-replayed"]).to.equal("true");
      expect((await eventsAbout(pi.id)).map((e) => e.type)).to.deep.equal(["payment_intent.succeeded"]);
    });
  });
});
