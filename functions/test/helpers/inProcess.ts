import type { Firestore, Transaction } from "firebase-admin/firestore";
import { LocalLocks } from "../../src/concurrency/localLocks";
import { createWebhookHandler, type WebhookDeps } from "../../src/webhook/handler";
import { webhookSecret } from "./emulator";
import { event, signatureHeader } from "./stripeFixtures";

/**
 * The webhook handler called in this process, as one function instance runs it: for fault injection
 * and for what happens between concurrent requests of one instance. Deliveries that share `deps`
 * share its LocalLocks, as requests of one instance do.
 */

export function webhookDeps(database: Firestore): WebhookDeps {
  return {
    db: database,
    now: () => new Date(),
    locks: new LocalLocks(),
    options: { restockOnRefund: true, webhookEventTtlDays: 30 },
    failure: { maxDeliveryAttempts: 5 },
    webhookSecrets: () => [webhookSecret()],
    logDelivery: () => undefined,
  };
}

/** Fault injection at the dependency boundary: the first `runTransaction` fails as Firestore does when unavailable. */
export function unavailableOnce(real: Firestore): Firestore {
  let failed = false;
  return new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === "runTransaction" && !failed) {
        failed = true;
        return () => Promise.reject(Object.assign(new Error("14 UNAVAILABLE: injected outage"), { code: 14 }));
      }
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

export async function invoke(deps: WebhookDeps, envelope: ReturnType<typeof event>) {
  const payload = JSON.stringify(envelope);
  let status = 0;
  let body: unknown = null;
  const res = {
    status(code: number) {
      status = code;
      return res;
    },
    set() {
      return res;
    },
    json(value: unknown) {
      body = value;
    },
  };
  await createWebhookHandler(deps)(
    { method: "POST", rawBody: Buffer.from(payload), headers: { "stripe-signature": signatureHeader(payload, webhookSecret()) } },
    res,
  );
  return { status, body: body as Record<string, unknown> };
}


/**
 * Counts the transactions run through `real` (`count`), and the runs of their bodies (`attempts`): a body
 * run more often than its transaction was started was retried after Firestore aborted it, which is how
 * the emulator breaks a lock wait (after seconds).
 */
export function countingTransactions(real: Firestore): { db: Firestore; count: () => number; attempts: () => number } {
  let count = 0;
  let attempts = 0;
  const db = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === "runTransaction") {
        return <T>(body: (tx: Transaction) => Promise<T>, options?: Parameters<Firestore["runTransaction"]>[1]) => {
          count += 1;
          return target.runTransaction((tx) => {
            attempts += 1;
            return body(tx);
          }, options);
        };
      }
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { db, count: () => count, attempts: () => attempts };
}
