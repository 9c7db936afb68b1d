import { expect } from "chai";
import { getApps } from "firebase-admin/app";
import { getAuth } from "firebase-admin/auth";
import { db, eventually, functionsOrigin, PROJECT_ID, REGION, uniqueId } from "../helpers/emulator";
import { stripeId } from "../helpers/stripeFixtures";

/**
 * `createSubscriptionCheckout` and `createBillingPortalSession` through the Functions emulator, with
 * the local Stripe stand-in playing Stripe: the shopper pays the Session there, the stand-in delivers
 * the signed events, and the user ends up with the plan's role in Firestore and in their ID token claims.
 */

const ORIGIN = "http://localhost:5173";
const urls = { successUrl: `${ORIGIN}/welcome`, cancelUrl: `${ORIGIN}/plans` };

function standin(): string {
  return `http://127.0.0.1:${process.env.STRIPE_STANDIN_PORT ?? "12111"}`;
}

interface User {
  uid: string;
  token: string;
}

/** A new user signed up in the Auth emulator, with their ID token. */
async function signUp(): Promise<User> {
  const host = process.env.FIREBASE_AUTH_EMULATOR_HOST ?? "127.0.0.1:9099";
  const response = await fetch(`http://${host}/identitytoolkit.googleapis.com/v1/accounts:signUp?key=demo-key`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: `${uniqueId("subscriber")}@example.com`, password: "test-password-123", returnSecureToken: true }),
  });
  const body = (await response.json()) as { idToken?: string; localId?: string };
  if (!body.idToken || !body.localId) throw new Error(`Auth emulator sign-up failed: ${JSON.stringify(body)}`);
  return { uid: body.localId, token: body.idToken };
}

interface CallResult {
  status: number;
  result?: Record<string, unknown>;
  error?: { status: string; message: string; details?: Record<string, unknown> };
}

async function call(name: string, data: unknown, user: User | null): Promise<CallResult> {
  const response = await fetch(`${functionsOrigin()}/${PROJECT_ID}/${REGION}/${name}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(user ? { authorization: `Bearer ${user.token}` } : {}) },
    body: JSON.stringify({ data }),
  });
  return { status: response.status, ...((await response.json()) as Omit<CallResult, "status">) };
}

async function plan(role: string, active = true): Promise<string> {
  db();
  const priceId = stripeId("price");
  await db().collection("plans").doc(priceId).set({ role, active });
  return priceId;
}

const key = () => uniqueId("key").replace(/[^A-Za-z0-9_-]/g, "_");

async function pay(sessionId: string): Promise<void> {
  const response = await fetch(`${standin()}/__standin/checkout/sessions/${sessionId}/complete`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ payment_method: "pm_card_visa" }),
  });
  if (!response.ok) throw new Error(`stand-in refused to complete ${sessionId}: ${response.status} ${await response.text()}`);
}

describe("createSubscriptionCheckout / createBillingPortalSession (emulators + Stripe stand-in)", () => {
  it("sells a plan: a subscription Session for the user's customer, paid → role in Firestore and in the claim, once", async () => {
    const user = await signUp();
    const priceId = await plan("pro");
    const idempotencyKey = key();
    const first = await call("createSubscriptionCheckout", { priceId, idempotencyKey, ...urls }, user);
    expect(first.status, JSON.stringify(first.error)).to.equal(200);
    const sessionId = String(first.result?.checkoutSessionId);
    expect(sessionId).to.match(/^cs_test_/);
    expect(first.result?.url).to.be.a("string");
    // The same call again answers the same Session, and does not count as a new checkout.
    const again = await call("createSubscriptionCheckout", { priceId, idempotencyKey, ...urls }, user);
    expect(again.result).to.deep.equal(first.result);
    const stripeCustomerId = (await db().collection("customers").doc(user.uid).get()).get("stripeCustomerId");
    expect(stripeCustomerId).to.match(/^cus_/);

    const session = (await (await fetch(`${standin()}/v1/checkout/sessions/${sessionId}`, { headers: { authorization: "Bearer sk_test_emulator_only_not_a_real_key" } })).json()) as Record<string, unknown>;
    expect(session).to.include({ mode: "subscription", customer: stripeCustomerId, client_reference_id: user.uid });

    await pay(sessionId);
    const entitlement = await eventually("the entitlement to grant pro", async () => {
      const e = (await db().collection("customers").doc(user.uid).get()).get("entitlement") as Record<string, unknown> | undefined;
      return e?.role === "pro" ? e : undefined;
    });
    expect(entitlement).to.include({ status: "active" });
    await eventually("the stripeRole claim", async () => ((await getAuth(getApps()[0]).getUser(user.uid)).customClaims?.stripeRole === "pro" ? true : undefined));
    const activations = await db().collection("notifications").where("userId", "==", user.uid).where("kind", "==", "subscription_activated").get();
    expect(activations.size).to.equal(1);
    const deliveries = (await (await fetch(`${standin()}/__standin/deliveries`)).json()) as { type: string; status: number | null; objectId: string }[];
    const ours = deliveries.filter((d) => d.objectId === sessionId || d.objectId === entitlement.subscriptionId);
    expect(ours.map((d) => d.status)).to.not.include(500);

    // A current subscription that grants a role: no second one.
    const second = await call("createSubscriptionCheckout", { priceId, idempotencyKey: key(), ...urls }, user);
    expect([second.status, second.error?.status, second.error?.details?.reason]).to.deep.equal([400, "FAILED_PRECONDITION", "already_subscribed"]);

    const portal = await call("createBillingPortalSession", { returnUrl: `${ORIGIN}/account` }, user);
    expect(portal.status, JSON.stringify(portal.error)).to.equal(200);
    expect(portal.result?.url).to.be.a("string").and.to.have.length.greaterThan(0);
  });

  it("refuses: no sign-in, an inactive or unknown plan, a reused key, a foreign return URL", async () => {
    const user = await signUp();
    const priceId = await plan("basic");
    const anonymous = await call("createSubscriptionCheckout", { priceId, idempotencyKey: key(), ...urls }, null);
    expect([anonymous.status, anonymous.error?.status]).to.deep.equal([401, "UNAUTHENTICATED"]);
    const inactive = await call("createSubscriptionCheckout", { priceId: await plan("basic", false), idempotencyKey: key(), ...urls }, user);
    expect([inactive.status, inactive.error?.status, inactive.error?.details?.reason]).to.deep.equal([400, "INVALID_ARGUMENT", "unknown_plan"]);
    const unknown = await call("createSubscriptionCheckout", { priceId: stripeId("price"), idempotencyKey: key(), ...urls }, user);
    expect(unknown.error?.details?.reason).to.equal("unknown_plan");
    const foreign = await call("createSubscriptionCheckout", { priceId, idempotencyKey: key(), successUrl: "https://evil.example/x", cancelUrl: urls.cancelUrl }, user);
    expect(foreign.error?.details?.reason).to.equal("origin_not_allowed");
    const k = key();
    expect((await call("createSubscriptionCheckout", { priceId, idempotencyKey: k, ...urls }, user)).status).to.equal(200);
    const reused = await call("createSubscriptionCheckout", { priceId: await plan("pro"), idempotencyKey: k, ...urls }, user);
    expect([reused.status, reused.error?.status, reused.error?.details?.reason]).to.deep.equal([400, "FAILED_PRECONDITION", "key_reused"]);
    const portal = await call("createBillingPortalSession", { returnUrl: `${ORIGIN}/account`, extra: 1 }, user);
    expect(portal.error?.status).to.equal("INVALID_ARGUMENT");
    const noCustomer = await call("createBillingPortalSession", { returnUrl: `${ORIGIN}/account` }, await signUp());
    expect([noCustomer.error?.status, noCustomer.error?.details?.reason]).to.deep.equal(["FAILED_PRECONDITION", "no_customer"]);
  });

  it("shares the per-user rate limit: the sixth new checkout in a minute is resource-exhausted, a repeated key is not counted", async () => {
    const user = await signUp();
    const priceId = await plan("basic");
    const keys = Array.from({ length: 5 }, key);
    for (const k of keys) expect((await call("createSubscriptionCheckout", { priceId, idempotencyKey: k, ...urls }, user)).status).to.equal(200);
    expect((await call("createSubscriptionCheckout", { priceId, idempotencyKey: keys[0], ...urls }, user)).status).to.equal(200);
    const sixth = await call("createSubscriptionCheckout", { priceId, idempotencyKey: key(), ...urls }, user);
    expect([sixth.status, sixth.error?.status]).to.deep.equal([429, "RESOURCE_EXHAUSTED"]);
    const records = await db().collection("customers").doc(user.uid).collection("subscriptionCheckouts").count().get();
    expect(records.data().count).to.equal(5);
  });
});
