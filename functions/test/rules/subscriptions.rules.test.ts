/**
 * Security rules of the subscription collections (SPEC 8): `plans/{priceId}` is the operator's and
 * readable by all; `customers/{uid}` and `customers/{uid}/subscriptions/{id}` are the backend's and
 * readable by their user only; nothing of it is client-writable, whatever claims the caller holds
 * (a `stripeRole` claim grants reading nothing more). Runs in the Firestore emulator with its own
 * project id, like rules.test.ts.
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { expect } from "chai";
import { assertFails, assertSucceeds, initializeTestEnvironment, type RulesTestContext, type RulesTestEnvironment } from "@firebase/rules-unit-testing";
import { collection, deleteDoc, doc, getDoc, getDocs, query, setDoc, setLogLevel, Timestamp, updateDoc, where } from "firebase/firestore";

const PROJECT_ID = "demo-stripe-orders-rules-subscriptions";
const RULES_PATH = path.resolve(__dirname, "../../../firestore.rules");
const ALICE = "alice";
const BOB = "bob";
const PRICE = "price_pro";

function emulator(): { host: string; port: number } {
  const raw = process.env.FIRESTORE_EMULATOR_HOST;
  if (!raw) throw new Error("FIRESTORE_EMULATOR_HOST is not set: run inside `node scripts/emulators.mjs exec ...`.");
  const i = raw.lastIndexOf(":");
  return { host: raw.slice(0, i), port: Number(raw.slice(i + 1)) };
}

describe("firestore.rules: plans, customers, subscriptions", () => {
  let env: RulesTestEnvironment;
  const signedOut = () => env.unauthenticatedContext().firestore();
  const alice = (claims: Record<string, unknown> = {}) => env.authenticatedContext(ALICE, claims).firestore();
  const bob = () => env.authenticatedContext(BOB).firestore();

  before(async () => {
    setLogLevel("error");
    const { host, port } = emulator();
    env = await initializeTestEnvironment({ projectId: PROJECT_ID, firestore: { host, port, rules: readFileSync(RULES_PATH, "utf8") } });
    await env.clearFirestore();
    await env.withSecurityRulesDisabled(async (ctx: RulesTestContext) => {
      const db = ctx.firestore();
      await setDoc(doc(db, "plans", PRICE), { role: "pro", active: true });
      for (const uid of [ALICE, BOB]) {
        await setDoc(doc(db, "customers", uid), {
          stripeCustomerId: `cus_${uid}`,
          entitlement: { role: "pro", subscriptionId: `sub_${uid}`, status: "active", graceUntil: null },
        });
        await setDoc(doc(db, "customers", uid, "subscriptions", `sub_${uid}`), {
          status: "active",
          priceId: PRICE,
          role: "pro",
          currentPeriodEnd: Timestamp.fromMillis(Date.UTC(2027, 0, 1)),
          cancelAtPeriodEnd: false,
          graceUntil: null,
          lastEventCreated: Timestamp.fromMillis(Date.UTC(2026, 0, 1)),
          updatedAt: Timestamp.fromMillis(Date.UTC(2026, 0, 1)),
        });
        await setDoc(doc(db, "customers", uid, "subscriptionCheckouts", "sc_1"), { uid, priceId: PRICE });
      }
    });
  });

  after(async () => {
    await env.cleanup();
  });

  it("anyone, even signed out, reads the plans for sale", async () => {
    const plan = await assertSucceeds(getDoc(doc(signedOut(), "plans", PRICE)));
    expect(plan.get("role")).to.equal("pro");
    await assertSucceeds(getDocs(collection(signedOut(), "plans")));
  });

  it("nobody writes a plan, not even a subscriber with a role claim or an admin claim", async () => {
    await assertFails(setDoc(doc(signedOut(), "plans", "price_free"), { role: "pro", active: true }));
    await assertFails(setDoc(doc(alice({ stripeRole: "pro", admin: true }), "plans", "price_free"), { role: "pro", active: true }));
    await assertFails(updateDoc(doc(alice(), "plans", PRICE), { role: "admin" }));
    await assertFails(deleteDoc(doc(alice(), "plans", PRICE)));
  });

  it("a user reads their own customer document and entitlement, nobody else's", async () => {
    const own = await assertSucceeds(getDoc(doc(alice(), "customers", ALICE)));
    expect(own.get("entitlement.role")).to.equal("pro");
    await assertFails(getDoc(doc(alice(), "customers", BOB)));
    await assertFails(getDoc(doc(signedOut(), "customers", ALICE)));
    await assertFails(getDocs(query(collection(alice(), "customers"), where("stripeCustomerId", "==", "cus_bob"))));
  });

  it("a user cannot grant themself a role, a customer or a subscription", async () => {
    await assertFails(updateDoc(doc(alice(), "customers", ALICE), { "entitlement.role": "enterprise" }));
    await assertFails(updateDoc(doc(alice({ stripeRole: "pro" }), "customers", ALICE), { stripeCustomerId: "cus_bob" }));
    await assertFails(setDoc(doc(bob(), "customers", "carol"), { stripeCustomerId: "cus_bob" }));
    await assertFails(setDoc(doc(alice(), "customers", ALICE, "subscriptions", "sub_free"), { status: "active", priceId: PRICE, role: "pro" }));
    await assertFails(updateDoc(doc(alice(), "customers", ALICE, "subscriptions", `sub_${ALICE}`), { status: "active", graceUntil: null }));
    await assertFails(deleteDoc(doc(alice(), "customers", ALICE, "subscriptions", `sub_${ALICE}`)));
  });

  it("a user reads and lists their own subscriptions, not another user's", async () => {
    await assertSucceeds(getDoc(doc(alice(), "customers", ALICE, "subscriptions", `sub_${ALICE}`)));
    const list = await assertSucceeds(getDocs(collection(alice(), "customers", ALICE, "subscriptions")));
    expect(list.docs.map((d) => d.id)).to.deep.equal([`sub_${ALICE}`]);
    await assertFails(getDoc(doc(alice({ stripeRole: "pro" }), "customers", BOB, "subscriptions", `sub_${BOB}`)));
    await assertFails(getDocs(collection(alice(), "customers", BOB, "subscriptions")));
  });

  it("the subscription checkout records are backend-only, even for their user", async () => {
    await assertFails(getDoc(doc(alice(), "customers", ALICE, "subscriptionCheckouts", "sc_1")));
    await assertFails(setDoc(doc(alice(), "customers", ALICE, "subscriptionCheckouts", "sc_2"), { uid: ALICE, priceId: PRICE }));
  });
});
