import { expect } from "chai";
import { translateSubscriptionEvent } from "../../src/subscriptions/translate";
import type { SubscriptionCommand, SubscriptionTranslation } from "../../src/subscriptions/commands";
import { isDocumentId } from "../../src/domain/ids";
import { asStripeEvent, checkoutSession, event, paymentIntent, type StripeEventEnvelope } from "../helpers/stripeFixtures";
import { invoice, subscription, subscriptionCheckoutSession } from "../helpers/subscriptionFixtures";

/** The edge of SPEC 8: Stripe subscription events of the pinned API version (and older shapes) → commands. */

const CUSTOMER = "cus_test_alice";
const SUB = "sub_test_1";
const PRICE = "price_basic";

function translate(type: string, object: Record<string, unknown>, created = 1_760_000_000): SubscriptionTranslation | null {
  return translateSubscriptionEvent(asStripeEvent(event(type, object, { created })));
}

function commandOf(t: SubscriptionTranslation | null): SubscriptionCommand {
  if (t === null || t.kind !== "command") throw new Error(`expected a command, got ${JSON.stringify(t)}`);
  return t.command;
}

describe("translateSubscriptionEvent: subscriptions", () => {
  for (const [type, kind, change] of [
    ["customer.subscription.created", "subscription_changed", "created"],
    ["customer.subscription.updated", "subscription_changed", "updated"],
    ["customer.subscription.paused", "subscription_changed", "paused"],
    ["customer.subscription.resumed", "subscription_changed", "resumed"],
    ["customer.subscription.deleted", "subscription_deleted", undefined],
    ["customer.subscription.trial_will_end", "trial_will_end", undefined],
  ] as const) {
    it(`${type} → ${kind}${change ? ` (${change})` : ""} with the object's state`, () => {
      const periodEnd = 1_762_000_000;
      const object = subscription({ id: SUB, customer: CUSTOMER, priceId: PRICE, status: "active", created: 1_759_000_000, currentPeriodEnd: periodEnd, cancelAtPeriodEnd: true, uid: "alice" });
      const command = commandOf(translate(type, object));
      expect(command).to.deep.include({ kind, customerId: CUSTOMER, subscriptionId: SUB, uidClaim: "alice" });
      if (change) expect(command).to.include({ change });
      if (!("state" in command)) throw new Error("no state");
      expect(command.state).to.deep.equal({
        status: "active",
        priceId: PRICE,
        currentPeriodEnd: new Date(periodEnd * 1000),
        cancelAtPeriodEnd: true,
        created: new Date(1_759_000_000 * 1000),
        trialEnd: null,
      });
    });
  }

  it("reads the period from the items (2025 shape), else from the subscription (older versions)", () => {
    const legacy = subscription({ id: SUB, customer: CUSTOMER, priceId: PRICE, currentPeriodEnd: 1_765_000_000, legacyPeriod: true });
    expect((legacy.items as { data: Record<string, unknown>[] }).data[0]).to.not.have.property("current_period_end");
    const command = commandOf(translate("customer.subscription.updated", legacy));
    expect(command.kind === "subscription_changed" && command.state.currentPeriodEnd?.getTime()).to.equal(1_765_000_000 * 1000);
  });

  it("an expanded customer object is read by its id", () => {
    const object = { ...subscription({ id: SUB, customer: CUSTOMER, priceId: PRICE }), customer: { id: CUSTOMER, object: "customer" } };
    expect(commandOf(translate("customer.subscription.updated", object)).customerId).to.equal(CUSTOMER);
  });

  for (const status of ["incomplete", "incomplete_expired", "trialing", "past_due", "canceled", "unpaid", "paused"]) {
    it(`keeps Stripe's status ${status}`, () => {
      const command = commandOf(translate("customer.subscription.updated", subscription({ id: SUB, customer: CUSTOMER, priceId: PRICE, status })));
      expect(command.kind === "subscription_changed" && command.state.status).to.equal(status);
    });
  }

  it("ignores an unknown status, an id that is not a subscription's, a price that cannot name a document, a missing customer", () => {
    const base = subscription({ id: SUB, customer: CUSTOMER, priceId: PRICE });
    expect(translate("customer.subscription.updated", { ...base, status: "someday" })).to.deep.include({ kind: "ignored" });
    expect(translate("customer.subscription.updated", { ...base, id: "sub_../../orders/x" })).to.deep.include({ kind: "ignored" });
    expect(translate("customer.subscription.updated", subscription({ id: SUB, customer: CUSTOMER, priceId: "a/b" }))).to.deep.include({ kind: "ignored" });
    expect(translate("customer.subscription.updated", { ...base, customer: "not-a-customer" })).to.deep.include({ kind: "ignored" });
    expect(translate("customer.subscription.updated", { ...base, customer: null })).to.deep.include({ kind: "ignored" });
  });
});

describe("translateSubscriptionEvent: invoices, both shapes", () => {
  for (const [type, kind] of [
    ["invoice.paid", "invoice_paid"],
    ["invoice.payment_failed", "invoice_payment_failed"],
    ["invoice.payment_action_required", "invoice_action_required"],
  ] as const) {
    for (const legacyShape of [false, true]) {
      it(`${type} (${legacyShape ? "older API: invoice.subscription" : "2025: invoice.parent.subscription_details.subscription"}) → ${kind}`, () => {
        const object = invoice({ id: "in_test_1", customer: CUSTOMER, subscriptionId: SUB, billingReason: "subscription_create", paid: type === "invoice.paid", legacyShape });
        if (legacyShape) expect(object).to.not.have.property("parent");
        else expect(object).to.not.have.property("subscription");
        expect(commandOf(translate(type, object))).to.deep.equal({ kind, customerId: CUSTOMER, subscriptionId: SUB, uidClaim: null, invoiceId: "in_test_1", billingReason: "subscription_create" });
      });
    }
  }

  it("the invoice's subscription metadata uid is a claim", () => {
    const object = invoice({ customer: CUSTOMER, subscriptionId: SUB, uid: "alice" });
    expect(commandOf(translate("invoice.paid", object)).uidClaim).to.equal("alice");
  });

  it("an invoice of no subscription (a one-off invoice) is ignored", () => {
    const object = { ...invoice({ customer: CUSTOMER, subscriptionId: SUB }), parent: null };
    expect(translate("invoice.paid", object)).to.deep.equal({ kind: "ignored", reason: "invoice belongs to no subscription" });
  });

  it("an expanded subscription under parent.subscription_details is read by its id", () => {
    const object = invoice({ customer: CUSTOMER, subscriptionId: SUB });
    (object.parent as { subscription_details: { subscription: unknown } }).subscription_details.subscription = { id: SUB, object: "subscription" };
    expect(commandOf(translate("invoice.payment_failed", object)).subscriptionId).to.equal(SUB);
  });
});

describe("translateSubscriptionEvent: Checkout Sessions and everything else", () => {
  it("checkout.session.completed in subscription mode links the session's subscription and customer; client_reference_id is a claim", () => {
    const object = subscriptionCheckoutSession({ id: "cs_test_1", customer: CUSTOMER, subscriptionId: SUB, clientReferenceId: "alice" });
    expect(commandOf(translate("checkout.session.completed", object))).to.deep.equal({
      kind: "checkout_completed",
      customerId: CUSTOMER,
      subscriptionId: SUB,
      uidClaim: "alice",
      checkoutSessionId: "cs_test_1",
    });
  });

  it("a session in subscription mode without a subscription or a customer is ignored", () => {
    expect(translate("checkout.session.completed", subscriptionCheckoutSession({ customer: CUSTOMER, subscriptionId: null }))).to.deep.include({ kind: "ignored" });
    expect(translate("checkout.session.completed", { ...subscriptionCheckoutSession({ customer: CUSTOMER, subscriptionId: SUB }), customer: null })).to.deep.include({ kind: "ignored" });
  });

  it("payment-mode sessions and every other event type are not subscription events (null: the order translator takes them)", () => {
    expect(translate("checkout.session.completed", checkoutSession({ amount: 1000, orderId: "order-1" }))).to.equal(null);
    expect(translate("checkout.session.completed", { ...checkoutSession({ amount: 1000, orderId: null }), mode: "setup" })).to.equal(null);
    expect(translate("payment_intent.succeeded", paymentIntent({ amount: 1000, orderId: "order-1" }))).to.equal(null);
    expect(translate("invoice.created", invoice({ customer: CUSTOMER, subscriptionId: SUB }))).to.equal(null);
    expect(translate("customer.subscription.pending_update_applied", subscription({ customer: CUSTOMER, priceId: PRICE }))).to.equal(null);
  });
});

/*
 * A signed event's object is only JSON: the SDK's types are not checked at run time. A throw in the
 * translation, or an undefined / NaN / unwritable Date in what it returns, fails the event's
 * transaction on every redelivery (500, then a dead letter). Each field the translation reads is
 * replaced by every kind of wrong value; the translation must answer, and answer with something a
 * document can hold.
 */
describe("translateSubscriptionEvent: malformed objects never throw and never yield unusable values", () => {
  /** JSON that is not the field's type; `{ toString: 1, valueOf: 1 }` throws when anything makes it a string. */
  const BAD_VALUES: readonly (readonly [string, unknown])[] = [
    ["missing", undefined],
    ["null", null],
    ["a number", 42],
    ["a negative number", -1],
    ["a number beyond any Date", 1e300],
    ["true", true],
    ["an empty string", ""],
    ["a blank string", "   "],
    ["a path", "a/b"],
    ["a reserved id", "__x__"],
    ["a long string", "x".repeat(2000)],
    ["an array", ["sub_test_1"]],
    ["an empty object", {}],
    ["an object with a numeric id", { id: 5 }],
    ["an object with a path id", { id: "a/b" }],
    ["an object that cannot become a string", { toString: 1, valueOf: 1 }],
  ];

  /** Timestamp.fromDate refuses Dates outside 0001-01-01..9999-12-31. */
  const FIRESTORE_MAX_MS = 253_402_300_799_999;
  const FIRESTORE_MIN_MS = -62_135_596_800_000;

  /** Every path under `value` that no Firestore document could hold or that is not a value at all. */
  function unusableValues(value: unknown, path = "$"): string[] {
    if (value === undefined) return [`${path} is undefined`];
    if (value === null || typeof value === "string" || typeof value === "boolean") return [];
    if (typeof value === "number") return Number.isFinite(value) ? [] : [`${path} is ${value}`];
    if (value instanceof Date) {
      const t = value.getTime();
      return Number.isFinite(t) && t >= FIRESTORE_MIN_MS && t <= FIRESTORE_MAX_MS ? [] : [`${path} is a Date Firestore cannot store (${t})`];
    }
    if (Array.isArray(value)) return value.flatMap((v, i) => unusableValues(v, `${path}[${i}]`));
    if (typeof value === "object") return Object.entries(value).flatMap(([k, v]) => unusableValues(v, `${path}.${k}`));
    return [`${path} is a ${typeof value}`];
  }

  const stringOrNull = (v: unknown) => v === null || typeof v === "string";
  const dateOrNull = (v: unknown) => v === null || v instanceof Date;

  /** The command's own contract (commands.ts): every id may name a document, every field has its type. */
  function shapeErrors(command: SubscriptionCommand): string[] {
    const errors: string[] = [];
    const check = (ok: boolean, what: string) => {
      if (!ok) errors.push(what);
    };
    check(isDocumentId(command.customerId) && /^cus_/.test(command.customerId), `customerId ${JSON.stringify(command.customerId)}`);
    check(isDocumentId(command.subscriptionId) && /^sub_/.test(command.subscriptionId), `subscriptionId ${JSON.stringify(command.subscriptionId)}`);
    check(stringOrNull(command.uidClaim), `uidClaim ${JSON.stringify(command.uidClaim)}`);
    switch (command.kind) {
      case "checkout_completed":
        check(isDocumentId(command.checkoutSessionId), `checkoutSessionId ${JSON.stringify(command.checkoutSessionId)}`);
        break;
      case "invoice_paid":
      case "invoice_payment_failed":
      case "invoice_action_required":
        check(isDocumentId(command.invoiceId), `invoiceId ${JSON.stringify(command.invoiceId)}`);
        check(stringOrNull(command.billingReason), `billingReason ${JSON.stringify(command.billingReason)}`);
        break;
      default: {
        const s = command.state;
        check(typeof s.status === "string", `state.status ${JSON.stringify(s.status)}`);
        check(isDocumentId(s.priceId), `state.priceId ${JSON.stringify(s.priceId)}`);
        check(dateOrNull(s.currentPeriodEnd), "state.currentPeriodEnd");
        check(typeof s.cancelAtPeriodEnd === "boolean", `state.cancelAtPeriodEnd ${JSON.stringify(s.cancelAtPeriodEnd)}`);
        check(s.created instanceof Date, "state.created");
        check(dateOrNull(s.trialEnd), "state.trialEnd");
      }
    }
    return errors;
  }

  type Expected = "command" | "ignored" | "null";

  /** Translates without letting a throw escape: a throw is the defect, reported as the outcome. */
  function outcomeOf(envelope: StripeEventEnvelope, label: string): Expected {
    let t: SubscriptionTranslation | null | undefined;
    try {
      t = translateSubscriptionEvent(asStripeEvent(envelope));
    } catch (error) {
      throw new Error(`${label}: threw ${String(error)}`);
    }
    expect(t, label).to.not.equal(undefined);
    expect(unusableValues(t), label).to.deep.equal([]);
    if (t === null || t === undefined) return "null";
    if (t.kind === "ignored") {
      expect(t.reason, label).to.be.a("string").and.not.equal("");
      return "ignored";
    }
    expect(shapeErrors(t.command), label).to.deep.equal([]);
    return "command";
  }

  /** A JSON copy of `base` with the field at `path` set to `value` (removed when undefined). */
  function withField(base: Record<string, unknown>, path: readonly (string | number)[], value: unknown): Record<string, unknown> {
    const copy = JSON.parse(JSON.stringify(base)) as Record<string, unknown>;
    let parent: Record<string | number, unknown> = copy;
    for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
    const last = path[path.length - 1];
    if (value === undefined && !Array.isArray(parent)) delete parent[last];
    else parent[last] = value;
    return copy;
  }

  interface FieldCase {
    path: readonly (string | number)[];
    /** Labels of BAD_VALUES that are usable after all (a legitimately absent field, a time of 42 s). */
    usable?: readonly string[];
    /** The outcome for every other value. */
    otherwise: Expected;
  }

  const ABSENT = ["missing", "null"];
  /** A Stripe time: absent is allowed; 42 s is a time; nothing else is. */
  const TIME: Pick<FieldCase, "usable" | "otherwise"> = { usable: [...ABSENT, "a number"], otherwise: "ignored" };

  const SUBSCRIPTION_TYPES = [
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.deleted",
    "customer.subscription.trial_will_end",
  ];
  const INVOICE_TYPES = ["invoice.paid", "invoice.payment_failed", "invoice.payment_action_required"];

  const groups: { name: string; types: readonly string[]; base: () => Record<string, unknown>; fields: readonly FieldCase[] }[] = [
    {
      name: "subscription (2025 shape)",
      types: SUBSCRIPTION_TYPES,
      base: () => subscription({ id: SUB, customer: CUSTOMER, priceId: PRICE, status: "trialing", created: 1_759_000_000, trialEnd: 1_761_000_000, uid: "alice" }),
      fields: [
        { path: ["id"], otherwise: "ignored" },
        { path: ["customer"], otherwise: "ignored" },
        { path: ["status"], otherwise: "ignored" },
        { path: ["items"], otherwise: "ignored" },
        { path: ["items", "data"], otherwise: "ignored" },
        { path: ["items", "data", 0], otherwise: "ignored" },
        { path: ["items", "data", 0, "price"], otherwise: "ignored" },
        { path: ["items", "data", 0, "price", "id"], otherwise: "ignored" },
        { path: ["items", "data", 0, "current_period_end"], ...TIME },
        { path: ["created"], ...TIME },
        { path: ["trial_end"], ...TIME },
        { path: ["cancel_at_period_end"], usable: [...ABSENT, "true"], otherwise: "ignored" },
        { path: ["metadata"], otherwise: "command" },
        { path: ["metadata", "uid"], otherwise: "command" },
      ],
    },
    {
      name: "subscription (older API: period on the subscription)",
      types: SUBSCRIPTION_TYPES,
      base: () => subscription({ id: SUB, customer: CUSTOMER, priceId: PRICE, legacyPeriod: true }),
      fields: [{ path: ["current_period_end"], ...TIME }],
    },
    {
      name: "invoice (2025 shape)",
      types: INVOICE_TYPES,
      base: () => invoice({ id: "in_test_1", customer: CUSTOMER, subscriptionId: SUB, uid: "alice" }),
      fields: [
        { path: ["id"], otherwise: "ignored" },
        { path: ["customer"], otherwise: "ignored" },
        { path: ["parent"], otherwise: "ignored" },
        { path: ["parent", "subscription_details"], otherwise: "ignored" },
        { path: ["parent", "subscription_details", "subscription"], otherwise: "ignored" },
        { path: ["parent", "subscription_details", "metadata"], otherwise: "command" },
        { path: ["billing_reason"], otherwise: "command" },
      ],
    },
    {
      name: "invoice (older API: invoice.subscription)",
      types: INVOICE_TYPES,
      base: () => invoice({ id: "in_test_1", customer: CUSTOMER, subscriptionId: SUB, legacyShape: true }),
      fields: [{ path: ["subscription"], otherwise: "ignored" }],
    },
    {
      name: "Checkout Session in subscription mode",
      types: ["checkout.session.completed"],
      base: () => subscriptionCheckoutSession({ id: "cs_test_1", customer: CUSTOMER, subscriptionId: SUB, clientReferenceId: "alice" }),
      fields: [
        { path: ["id"], otherwise: "ignored" },
        { path: ["customer"], otherwise: "ignored" },
        { path: ["subscription"], otherwise: "ignored" },
        { path: ["client_reference_id"], otherwise: "command" },
        { path: ["metadata"], otherwise: "command" },
        // Not "subscription": the order translator's business, as before.
        { path: ["mode"], otherwise: "null" },
      ],
    },
  ];

  for (const group of groups) {
    for (const field of group.fields) {
      const usable = field.usable ?? [];
      const expectation = usable.length > 0 ? `a command when ${usable.join(" / ")}, else ${field.otherwise}` : field.otherwise;
      it(`${group.name}: ${field.path.join(".")} of any type → ${expectation}`, () => {
        for (const type of group.types) {
          expect(outcomeOf(event(type, group.base()), `${type} well-formed`)).to.equal("command");
          for (const [label, value] of BAD_VALUES) {
            const want = usable.includes(label) ? "command" : field.otherwise;
            expect(outcomeOf(event(type, withField(group.base(), field.path, value)), `${type} with ${field.path.join(".")} ${label}`)).to.equal(want);
          }
        }
      });
    }
  }

  it("an event whose data.object is missing or not an object is ignored (never handed on: the order translator would throw on it)", () => {
    for (const type of [...SUBSCRIPTION_TYPES, ...INVOICE_TYPES, "checkout.session.completed"]) {
      for (const [label, value] of BAD_VALUES.filter(([, v]) => typeof v !== "object" || v === null || Array.isArray(v))) {
        const envelope = event(type, {});
        (envelope.data as { object: unknown }).object = value;
        expect(outcomeOf(envelope, `${type} with data.object ${label}`)).to.equal("ignored");
      }
    }
  });

  it("the reason of an ignored event names the unusable field", () => {
    const sub = () => subscription({ id: SUB, customer: CUSTOMER, priceId: PRICE });
    const inv = () => invoice({ id: "in_test_1", customer: CUSTOMER, subscriptionId: SUB });
    const session = () => subscriptionCheckoutSession({ id: "cs_test_1", customer: CUSTOMER, subscriptionId: SUB });
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ["customer.subscription.updated", withField(sub(), ["id"], 42), /\bid\b/],
      ["customer.subscription.updated", withField(sub(), ["status"], 42), /status/],
      ["customer.subscription.updated", withField(sub(), ["items", "data"], "abc"), /items\.data\[0\]\.price\.id/],
      ["customer.subscription.updated", withField(sub(), ["items", "data", 0, "current_period_end"], "soon"), /items\.data\[0\]\.current_period_end/],
      ["customer.subscription.updated", withField(subscription({ id: SUB, customer: CUSTOMER, priceId: PRICE, legacyPeriod: true }), ["current_period_end"], 1e300), /current_period_end/],
      ["customer.subscription.updated", withField(sub(), ["created"], "yesterday"), /created/],
      ["customer.subscription.trial_will_end", withField(sub(), ["trial_end"], -1), /trial_end/],
      ["customer.subscription.deleted", withField(sub(), ["cancel_at_period_end"], "yes"), /cancel_at_period_end/],
      ["customer.subscription.updated", withField(sub(), ["customer"], { id: 5 }), /customer/],
      ["invoice.paid", withField(inv(), ["id"], { toString: 1, valueOf: 1 }), /invoice id/],
      ["invoice.paid", withField(inv(), ["parent", "subscription_details", "subscription"], 42), /subscription/],
      ["invoice.payment_failed", withField(inv(), ["customer"], []), /customer/],
      ["checkout.session.completed", withField(session(), ["id"], { toString: 1, valueOf: 1 }), /checkout session id/],
      ["checkout.session.completed", withField(session(), ["subscription"], { id: "a/b" }), /subscription/],
    ];
    for (const [type, object, field] of cases) {
      const t = translate(type, object);
      expect(t, `${type} ${field.source}`).to.have.property("kind", "ignored");
      expect(t && t.kind === "ignored" ? t.reason : "", `${type} ${field.source}`).to.match(field);
    }
    const envelope = event("invoice.paid", {});
    (envelope.data as { object: unknown }).object = null;
    expect(translateSubscriptionEvent(asStripeEvent(envelope))).to.deep.equal({ kind: "ignored", reason: "invoice.paid: the object's object is missing or malformed" });
  });

  it("absent optional fields keep their defaults; an unusable billing_reason or claim is no reason to lose the event", () => {
    const sub = subscription({ id: SUB, customer: CUSTOMER, priceId: PRICE, trialEnd: 1_761_000_000 });
    const bare = withField(withField(withField(withField(sub, ["created"], undefined), ["trial_end"], null), ["cancel_at_period_end"], undefined), ["items", "data", 0, "current_period_end"], undefined);
    const state = commandOf(translate("customer.subscription.updated", bare));
    if (!("state" in state)) throw new Error("no state");
    expect(state.state).to.deep.include({ currentPeriodEnd: null, cancelAtPeriodEnd: false, created: new Date(0), trialEnd: null });

    const inv = invoice({ id: "in_test_1", customer: CUSTOMER, subscriptionId: SUB, uid: "alice" });
    expect(commandOf(translate("invoice.paid", withField(inv, ["billing_reason"], { toString: 1, valueOf: 1 })))).to.include({ billingReason: null, uidClaim: "alice" });
    expect(commandOf(translate("invoice.paid", withField(inv, ["parent", "subscription_details", "metadata"], "alice"))).uidClaim).to.equal(null);
    expect(commandOf(translate("invoice.paid", withField(inv, ["parent", "subscription_details", "metadata", "uid"], 42))).uidClaim).to.equal(null);
  });

  it("a claim that could not name a document stays a claim: it never names one, and it then matches no user (customer_mismatch)", () => {
    const object = subscription({ id: SUB, customer: CUSTOMER, priceId: PRICE, uid: "a/b" });
    expect(commandOf(translate("customer.subscription.updated", object)).uidClaim).to.equal("a/b");
  });
});
