/**
 * Security-rules tests for firestore.rules (repo root).
 *
 * Run inside the Firestore emulator, e.g. from the repo root:
 *   node scripts/emulators.mjs exec --only firestore \
 *     "cd functions && npx mocha --import=tsx --timeout 60000 test/rules/rules.test.ts"
 *
 * FIRESTORE_EMULATOR_HOST must be set (emulators:exec does this). The tests use their own
 * project id so that their data and rules never touch the `demo-stripe-orders` project used by
 * the other emulator tests (the emulator keeps documents and rules per project id;
 * firebase.json's `singleProjectMode` only logs a warning for other project ids).
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { expect } from "chai";
import {
  assertFails,
  assertSucceeds,
  initializeTestEnvironment,
  type RulesTestContext,
  type RulesTestEnvironment,
} from "@firebase/rules-unit-testing";
import {
  Timestamp,
  collection,
  deleteDoc,
  doc,
  getDoc,
  getDocs,
  query,
  serverTimestamp,
  setDoc,
  updateDoc,
  where,
  setLogLevel,
  type DocumentData,
} from "firebase/firestore";

/** The Firestore handle a RulesTestContext hands out (usable with the modular API). */
type ClientDb = ReturnType<RulesTestContext["firestore"]>;

const PROJECT_ID = "demo-stripe-orders-rules";
const RULES_PATH = path.resolve(__dirname, "../../../firestore.rules");

const OWNER_UID = "alice";
const OTHER_UID = "bob";
const ADMIN_UID = "carol-admin";

const OWNER_ORDER_ID = "order-alice-1";
const OTHER_ORDER_ID = "order-bob-1";
const SKU = "sku-tshirt";

const BACKEND_COLLECTIONS = ["webhookEvents", "auditLog", "notifications", "deadLetters", "rateLimits"] as const;
const PLAN_ID = "price_pro_monthly";
const SUBSCRIPTION_ID = "sub_forged_by_client";
const BACKEND_DOC_ID = "seeded-1";

function emulatorHostAndPort(): { host: string; port: number } {
  const raw = process.env.FIRESTORE_EMULATOR_HOST;
  if (!raw) {
    throw new Error(
      "FIRESTORE_EMULATOR_HOST is not set: run these tests inside `firebase emulators:exec` " +
        "(node scripts/emulators.mjs exec ...) or export it for a running Firestore emulator.",
    );
  }
  const idx = raw.lastIndexOf(":");
  if (idx <= 0) {
    throw new Error(`FIRESTORE_EMULATOR_HOST must be host:port, got ${JSON.stringify(raw)}`);
  }
  let host = raw.slice(0, idx);
  if (host.startsWith("[") && host.endsWith("]")) {
    host = host.slice(1, -1);
  }
  const port = Number(raw.slice(idx + 1));
  if (!Number.isInteger(port) || port <= 0) {
    throw new Error(`FIRESTORE_EMULATOR_HOST has an invalid port: ${JSON.stringify(raw)}`);
  }
  return { host, port };
}

/** A fully valid client order payload for `uid`; tests override single fields. */
function validOrder(uid: string): DocumentData {
  return {
    userId: uid,
    items: [{ sku: SKU, qty: 2 }],
    amount: 2500,
    currency: "eur",
    status: "pending",
    createdAt: serverTimestamp(),
  };
}

let seq = 0;
function newOrderId(label: string): string {
  seq += 1;
  return `new-${label}-${seq}`;
}

describe("firestore.rules", () => {
  let testEnv: RulesTestEnvironment;

  const signedOut = (): ClientDb => testEnv.unauthenticatedContext().firestore();
  const owner = (): ClientDb => testEnv.authenticatedContext(OWNER_UID).firestore();
  const other = (): ClientDb => testEnv.authenticatedContext(OTHER_UID).firestore();
  const admin = (): ClientDb =>
    testEnv.authenticatedContext(ADMIN_UID, { admin: true }).firestore();
  /** The owner of the seeded order, additionally carrying an admin claim. */
  const ownerWithAdminClaim = (): ClientDb =>
    testEnv.authenticatedContext(OWNER_UID, { admin: true }).firestore();

  async function readWithoutRules(docPath: string): Promise<DocumentData | undefined> {
    let data: DocumentData | undefined;
    await testEnv.withSecurityRulesDisabled(async (ctx: RulesTestContext) => {
      const snap = await getDoc(doc(ctx.firestore(), docPath));
      data = snap.exists() ? snap.data() : undefined;
    });
    return data;
  }

  before(async () => {
    // Denied writes are expected here; the SDK would log each one as a warning.
    setLogLevel("error");
    const { host, port } = emulatorHostAndPort();
    testEnv = await initializeTestEnvironment({
      projectId: PROJECT_ID,
      firestore: { host, port, rules: readFileSync(RULES_PATH, "utf8") },
    });
    await testEnv.clearFirestore();
    await testEnv.withSecurityRulesDisabled(async (ctx: RulesTestContext) => {
      const db = ctx.firestore();
      const createdAt = Timestamp.fromMillis(Date.UTC(2026, 0, 1));
      await setDoc(doc(db, "products", SKU), {
        name: "T-shirt",
        stock: 10,
        reserved: 1,
        price: 1250,
        currency: "eur",
        active: true,
      });
      await setDoc(doc(db, "products", SKU, "stockShards", "0"), { stock: 5, reserved: 1 });
      await setDoc(doc(db, "orders", OWNER_ORDER_ID), {
        userId: OWNER_UID,
        items: [{ sku: SKU, qty: 1 }],
        amount: 1250,
        currency: "eur",
        status: "pending",
        createdAt,
      });
      await setDoc(doc(db, "orders", OTHER_ORDER_ID), {
        userId: OTHER_UID,
        items: [{ sku: SKU, qty: 1 }],
        amount: 1250,
        currency: "eur",
        status: "finalized",
        createdAt,
        paymentIntentId: "pi_123",
      });
      await setDoc(doc(db, "orders", OWNER_ORDER_ID, "private", "x"), { userId: OWNER_UID });
      for (const name of BACKEND_COLLECTIONS) {
        // Each backend doc references the owner, so "owner" here really is the data's owner.
        await setDoc(doc(db, name, BACKEND_DOC_ID), {
          userId: OWNER_UID,
          orderId: OWNER_ORDER_ID,
          status: "failed",
        });
      }
      await setDoc(doc(db, "users", OWNER_UID), { userId: OWNER_UID });
      await setDoc(doc(db, "plans", PLAN_ID), { role: "pro", active: true });
      for (const uid of [OWNER_UID, OTHER_UID]) {
        await setDoc(doc(db, "customers", uid), {
          stripeCustomerId: `cus_${uid}`,
          entitlement: { role: "pro", subscriptionId: `sub_${uid}_1`, status: "active", graceUntil: null },
        });
        await setDoc(doc(db, "customers", uid, "subscriptions", `sub_${uid}_1`), { status: "active", priceId: PLAN_ID, role: "pro" });
        await setDoc(doc(db, "customers", uid, "private", "x"), { note: "not for clients" });
      }
    });
  });

  after(async () => {
    if (testEnv) {
      await testEnv.clearFirestore();
      await testEnv.cleanup();
    }
  });

  it("loads the rules file from the repo root", () => {
    const rules = readFileSync(RULES_PATH, "utf8");
    expect(rules).to.match(/service cloud\.firestore/);
    expect(rules).to.include("match /orders/{orderId}");
  });

  describe("products", () => {
    it("signed-out user can read a product", async () => {
      const snap = await assertSucceeds(getDoc(doc(signedOut(), "products", SKU)));
      expect(snap.get("stock")).to.equal(10);
    });

    it("signed-out user can list products", async () => {
      const snap = await assertSucceeds(getDocs(collection(signedOut(), "products")));
      expect(snap.docs.map((d) => d.id)).to.include(SKU);
    });

    it("signed-in user can read a product", async () => {
      await assertSucceeds(getDoc(doc(owner(), "products", SKU)));
    });

    it("signed-out user can read a product's price, currency and active flag", async () => {
      const snap = await assertSucceeds(getDoc(doc(signedOut(), "products", SKU)));
      expect(snap.data()).to.include({ price: 1250, currency: "eur", active: true });
    });

    it("signed-in user cannot change a product's price", async () => {
      await assertFails(updateDoc(doc(owner(), "products", SKU), { price: 1 }));
    });

    it("signed-in user cannot deactivate a product", async () => {
      await assertFails(updateDoc(doc(owner(), "products", SKU), { active: false }));
    });

    it("signed-out user can read a stock shard", async () => {
      const snap = await assertSucceeds(
        getDoc(doc(signedOut(), "products", SKU, "stockShards", "0")),
      );
      expect(snap.get("stock")).to.equal(5);
    });

    it("signed-out user can list stock shards", async () => {
      await assertSucceeds(getDocs(collection(signedOut(), "products", SKU, "stockShards")));
    });

    it("signed-out user cannot create a product", async () => {
      await assertFails(
        setDoc(doc(signedOut(), "products", "sku-new"), { name: "x", stock: 1, reserved: 0 }),
      );
    });

    it("signed-in user cannot create a product", async () => {
      await assertFails(
        setDoc(doc(owner(), "products", "sku-new"), { name: "x", stock: 1, reserved: 0 }),
      );
    });

    it("signed-in user cannot update product stock", async () => {
      await assertFails(updateDoc(doc(owner(), "products", SKU), { stock: 1000 }));
    });

    it("user with admin claim cannot update product stock", async () => {
      await assertFails(updateDoc(doc(admin(), "products", SKU), { stock: 1000 }));
    });

    it("user with admin claim cannot delete a product", async () => {
      await assertFails(deleteDoc(doc(admin(), "products", SKU)));
    });

    it("signed-in user cannot write a stock shard", async () => {
      await assertFails(
        setDoc(doc(owner(), "products", SKU, "stockShards", "0"), { stock: 99, reserved: 0 }),
      );
    });

    it("user with admin claim cannot write a stock shard", async () => {
      await assertFails(
        setDoc(doc(admin(), "products", SKU, "stockShards", "1"), { stock: 99, reserved: 0 }),
      );
    });

    it("seeded product is unchanged after the denied writes", async () => {
      const data = await readWithoutRules(`products/${SKU}`);
      expect(data).to.include({ stock: 10, reserved: 1 });
    });
  });

  describe("orders: read", () => {
    it("signed-out user cannot read an order", async () => {
      await assertFails(getDoc(doc(signedOut(), "orders", OWNER_ORDER_ID)));
    });

    it("another user cannot read the order", async () => {
      await assertFails(getDoc(doc(other(), "orders", OWNER_ORDER_ID)));
    });

    it("owner can read their order", async () => {
      const snap = await assertSucceeds(getDoc(doc(owner(), "orders", OWNER_ORDER_ID)));
      expect(snap.get("userId")).to.equal(OWNER_UID);
    });

    it("user with admin claim cannot read someone else's order", async () => {
      await assertFails(getDoc(doc(admin(), "orders", OWNER_ORDER_ID)));
    });

    it("owner can list their orders with a userId filter", async () => {
      const snap = await assertSucceeds(
        getDocs(query(collection(owner(), "orders"), where("userId", "==", OWNER_UID))),
      );
      expect(snap.docs.map((d) => d.id)).to.include(OWNER_ORDER_ID);
      expect(snap.docs.every((d) => d.get("userId") === OWNER_UID)).to.equal(true);
    });

    it("signed-in user cannot list all orders", async () => {
      await assertFails(getDocs(collection(owner(), "orders")));
    });

    it("signed-in user cannot list another user's orders", async () => {
      await assertFails(
        getDocs(query(collection(owner(), "orders"), where("userId", "==", OTHER_UID))),
      );
    });

    it("user with admin claim cannot list all orders", async () => {
      await assertFails(getDocs(collection(admin(), "orders")));
    });

    it("signed-out user cannot list orders", async () => {
      await assertFails(getDocs(collection(signedOut(), "orders")));
    });

    it("owner cannot read a subcollection of their order", async () => {
      await assertFails(getDoc(doc(owner(), "orders", OWNER_ORDER_ID, "private", "x")));
    });
  });

  describe("orders: create (only the createCheckout callable creates orders)", () => {
    it("signed-in user cannot create even a well-formed pending order for themself", async () => {
      const id = newOrderId("valid");
      await assertFails(setDoc(doc(owner(), "orders", id), validOrder(OWNER_UID)));
      expect(await readWithoutRules(`orders/${id}`)).to.equal(undefined);
    });

    it("signed-in user cannot create a three-hoodies-for-one-cent order", async () => {
      await assertFails(
        setDoc(doc(owner(), "orders", newOrderId("cheap")), { ...validOrder(OWNER_UID), items: [{ sku: SKU, qty: 3 }], amount: 1 }),
      );
    });

    it("signed-out user cannot create an order", async () => {
      await assertFails(
        setDoc(doc(signedOut(), "orders", newOrderId("anon")), validOrder(OWNER_UID)),
      );
    });

    it("cannot create an order for another uid", async () => {
      await assertFails(
        setDoc(doc(owner(), "orders", newOrderId("foreign")), validOrder(OTHER_UID)),
      );
    });

    it("user with admin claim cannot create an order", async () => {
      await assertFails(
        setDoc(doc(admin(), "orders", newOrderId("admin")), validOrder(ADMIN_UID)),
      );
    });

    it("cannot create a checkout-shaped order with a derived id", async () => {
      await assertFails(
        setDoc(doc(owner(), "orders", `co_${"0".repeat(64)}`), {
          ...validOrder(OWNER_UID),
          checkout: { idempotencyKey: "key-12345678", ui: "payment_intent", lines: [] },
        }),
      );
    });

    it("cannot overwrite an existing order by creating it again", async () => {
      await assertFails(setDoc(doc(owner(), "orders", OWNER_ORDER_ID), validOrder(OWNER_UID)));
    });

    it("the denied checkout-shaped create left no document behind", async () => {
      expect(await readWithoutRules(`orders/co_${"0".repeat(64)}`)).to.equal(undefined);
    });
  });

  describe("orders: update and delete", () => {
    it("owner cannot update their order's status", async () => {
      await assertFails(
        updateDoc(doc(owner(), "orders", OWNER_ORDER_ID), { status: "finalized" }),
      );
    });

    it("owner cannot set a backend field on their order", async () => {
      await assertFails(
        updateDoc(doc(owner(), "orders", OWNER_ORDER_ID), { paymentIntentId: "pi_fake" }),
      );
    });

    it("owner cannot rewrite their order with identical client fields", async () => {
      await assertFails(
        setDoc(doc(owner(), "orders", OWNER_ORDER_ID), { amount: 1250 }, { merge: true }),
      );
    });

    it("owner cannot delete their order", async () => {
      await assertFails(deleteDoc(doc(owner(), "orders", OWNER_ORDER_ID)));
    });

    it("another user cannot update the order", async () => {
      await assertFails(updateDoc(doc(other(), "orders", OWNER_ORDER_ID), { status: "cancelled" }));
    });

    it("another user cannot delete the order", async () => {
      await assertFails(deleteDoc(doc(other(), "orders", OWNER_ORDER_ID)));
    });

    it("user with admin claim cannot update an order", async () => {
      await assertFails(updateDoc(doc(admin(), "orders", OTHER_ORDER_ID), { status: "refunded" }));
    });

    it("user with admin claim cannot delete an order", async () => {
      await assertFails(deleteDoc(doc(admin(), "orders", OTHER_ORDER_ID)));
    });

    it("signed-out user cannot delete an order", async () => {
      await assertFails(deleteDoc(doc(signedOut(), "orders", OWNER_ORDER_ID)));
    });

    it("seeded orders are unchanged after the denied writes", async () => {
      expect(await readWithoutRules(`orders/${OWNER_ORDER_ID}`)).to.include({
        userId: OWNER_UID,
        status: "pending",
        amount: 1250,
      });
      const otherOrder = await readWithoutRules(`orders/${OTHER_ORDER_ID}`);
      expect(otherOrder).to.include({ status: "finalized", paymentIntentId: "pi_123" });
    });
  });

  describe("customers (backend-written, read by their user)", () => {
    it("user can read their own customers/{uid}", async () => {
      const snap = await assertSucceeds(getDoc(doc(owner(), "customers", OWNER_UID)));
      expect(snap.get("stripeCustomerId")).to.equal(`cus_${OWNER_UID}`);
      expect(snap.get("entitlement.role")).to.equal("pro");
    });

    it("user cannot read another user's customers document", async () => {
      await assertFails(getDoc(doc(owner(), "customers", OTHER_UID)));
    });

    it("signed-out user cannot read a customers document", async () => {
      await assertFails(getDoc(doc(signedOut(), "customers", OWNER_UID)));
    });

    it("user with admin claim cannot read someone else's customers document", async () => {
      await assertFails(getDoc(doc(admin(), "customers", OWNER_UID)));
    });

    it("user cannot list customers", async () => {
      await assertFails(getDocs(collection(owner(), "customers")));
    });

    it("user cannot write their own customers document (no self-granted role or customer)", async () => {
      await assertFails(updateDoc(doc(owner(), "customers", OWNER_UID), { "entitlement.role": "admin" }));
      await assertFails(setDoc(doc(owner(), "customers", OWNER_UID), { stripeCustomerId: "cus_someone_else" }));
      await assertFails(deleteDoc(doc(owner(), "customers", OWNER_UID)));
      await assertFails(setDoc(doc(other(), "customers", "new-user"), { stripeCustomerId: "cus_x" }));
    });

    it("user can read and list their own subscriptions", async () => {
      await assertSucceeds(getDoc(doc(owner(), "customers", OWNER_UID, "subscriptions", `sub_${OWNER_UID}_1`)));
      const snap = await assertSucceeds(getDocs(collection(owner(), "customers", OWNER_UID, "subscriptions")));
      expect(snap.docs.map((d) => d.id)).to.deep.equal([`sub_${OWNER_UID}_1`]);
    });

    it("user cannot read another user's subscriptions", async () => {
      await assertFails(getDoc(doc(owner(), "customers", OTHER_UID, "subscriptions", `sub_${OTHER_UID}_1`)));
      await assertFails(getDocs(collection(owner(), "customers", OTHER_UID, "subscriptions")));
    });

    it("user cannot write a subscription", async () => {
      await assertFails(setDoc(doc(owner(), "customers", OWNER_UID, "subscriptions", SUBSCRIPTION_ID), { status: "active", role: "pro" }));
      await assertFails(updateDoc(doc(owner(), "customers", OWNER_UID, "subscriptions", `sub_${OWNER_UID}_1`), { status: "active" }));
    });

    it("user cannot read another subcollection of their customers document", async () => {
      await assertFails(getDoc(doc(owner(), "customers", OWNER_UID, "private", "x")));
    });

    it("seeded customers are unchanged after the denied writes", async () => {
      expect(await readWithoutRules(`customers/${OWNER_UID}`)).to.deep.include({ stripeCustomerId: `cus_${OWNER_UID}` });
      expect((await readWithoutRules(`customers/${OWNER_UID}`))?.entitlement).to.include({ role: "pro" });
      expect(await readWithoutRules("customers/new-user")).to.equal(undefined);
      expect(await readWithoutRules(`customers/${OWNER_UID}/subscriptions/${SUBSCRIPTION_ID}`)).to.equal(undefined);
    });
  });

  describe("plans (operator-owned, readable by anyone)", () => {
    it("signed-out user can read and list plans", async () => {
      const snap = await assertSucceeds(getDoc(doc(signedOut(), "plans", PLAN_ID)));
      expect(snap.data()).to.deep.equal({ role: "pro", active: true });
      await assertSucceeds(getDocs(collection(signedOut(), "plans")));
    });

    it("no one writes a plan through the client SDK", async () => {
      await assertFails(setDoc(doc(owner(), "plans", "price_free_admin"), { role: "admin", active: true }));
      await assertFails(updateDoc(doc(admin(), "plans", PLAN_ID), { role: "admin" }));
      await assertFails(deleteDoc(doc(admin(), "plans", PLAN_ID)));
    });
  });

  for (const name of BACKEND_COLLECTIONS) {
    describe(`${name} (backend only)`, () => {
      it("signed-out user cannot read", async () => {
        await assertFails(getDoc(doc(signedOut(), name, BACKEND_DOC_ID)));
      });

      it("owner of the referenced order cannot read", async () => {
        await assertFails(getDoc(doc(owner(), name, BACKEND_DOC_ID)));
      });

      it("owner cannot list with a userId filter", async () => {
        await assertFails(
          getDocs(query(collection(owner(), name), where("userId", "==", OWNER_UID))),
        );
      });

      it("user with admin claim cannot read", async () => {
        await assertFails(getDoc(doc(admin(), name, BACKEND_DOC_ID)));
      });

      it("owner with admin claim cannot read", async () => {
        await assertFails(getDoc(doc(ownerWithAdminClaim(), name, BACKEND_DOC_ID)));
      });

      it("user with admin claim cannot list", async () => {
        await assertFails(getDocs(collection(admin(), name)));
      });

      it("owner cannot create", async () => {
        await assertFails(
          setDoc(doc(owner(), name, "client-created"), { userId: OWNER_UID, status: "failed" }),
        );
      });

      it("user with admin claim cannot create", async () => {
        await assertFails(
          setDoc(doc(admin(), name, "admin-created"), { userId: OWNER_UID, status: "failed" }),
        );
      });

      it("owner cannot update", async () => {
        await assertFails(updateDoc(doc(owner(), name, BACKEND_DOC_ID), { status: "resolved" }));
      });

      it("user with admin claim cannot update", async () => {
        await assertFails(updateDoc(doc(admin(), name, BACKEND_DOC_ID), { status: "resolved" }));
      });

      it("owner cannot delete", async () => {
        await assertFails(deleteDoc(doc(owner(), name, BACKEND_DOC_ID)));
      });

      it("user with admin claim cannot delete", async () => {
        await assertFails(deleteDoc(doc(admin(), name, BACKEND_DOC_ID)));
      });

      it("seeded document is unchanged after the denied writes", async () => {
        expect(await readWithoutRules(`${name}/${BACKEND_DOC_ID}`)).to.include({
          userId: OWNER_UID,
          status: "failed",
        });
        expect(await readWithoutRules(`${name}/client-created`)).to.equal(undefined);
        expect(await readWithoutRules(`${name}/admin-created`)).to.equal(undefined);
      });
    });
  }

  describe("unlisted collections (deny by default)", () => {
    it("user cannot read a users/{uid} doc keyed by their own uid", async () => {
      await assertFails(getDoc(doc(owner(), "users", OWNER_UID)));
    });

    it("user cannot write a users/{uid} doc keyed by their own uid", async () => {
      await assertFails(setDoc(doc(owner(), "users", OWNER_UID), { userId: OWNER_UID }));
    });

    it("user with admin claim cannot write an arbitrary collection", async () => {
      await assertFails(setDoc(doc(admin(), "config", "stripe"), { secret: "x" }));
    });

    it("signed-out user cannot read an arbitrary collection", async () => {
      await assertFails(getDocs(collection(signedOut(), "config")));
    });
  });
});
