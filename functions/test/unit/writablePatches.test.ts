import { Firestore } from "@google-cloud/firestore";
import { expect } from "chai";
import { orderConverter, orderFromData, type Order, type OrderStatus, type ShardHolding } from "../../src/collections/orders";
import type { StockLevel } from "../../src/collections/products";
import type { Command, CommandKind } from "../../src/domain/commands";
import { decide } from "../../src/domain/orderMachine";
import { decideReservation } from "../../src/domain/reservation";
import { withShards } from "../../src/webhook/applyEvent";
import { prng } from "../helpers/prng";

/**
 * Every patch the decisions produce must be writable by Firestore: a write it refuses answers the
 * delivery 500 forever (Stripe retries for three days, then the money is never recorded). Random event
 * sequences (disputes, refunds, deleted products, split shards, retries with new sessions) go through
 * `decide`, the real converter and the SDK's own write validation. No emulator: a WriteBatch validates
 * synchronously and is never committed.
 */

const firestore = new Firestore({ projectId: "demo-writable-patches" });
const NOW = new Date("2026-03-01T12:00:00.000Z");

const KINDS: CommandKind[] = ["payment_succeeded", "checkout_awaiting_payment", "payment_failed", "payment_canceled", "refund_updated", "dispute_opened", "dispute_closed"];

function randomCommand(rand: () => number, amount: number, attempt: number): Command {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  // Attempts are numbered: a later attempt is a new session and PaymentIntent, as a customer's retry is.
  const n = rand() < 0.7 ? attempt : attempt + 1;
  const ids = { paymentIntentId: pick([`pi_${n}`, null]), checkoutSessionId: pick([`cs_${n}`, null]) };
  const kind = pick(KINDS);
  switch (kind) {
    case "payment_succeeded":
    case "checkout_awaiting_payment":
      return { kind, amount, currency: "usd", ...ids };
    case "payment_failed":
      return { kind, code: pick(["card_declined", null]), message: pick(["declined", null]), ...ids };
    case "payment_canceled":
      return { kind, reason: pick(["abandoned", null]), ...ids };
    case "refund_updated":
      return { kind, chargeAmount: amount, amountRefunded: pick([0, amount / 4, amount / 2, amount]), currency: "usd", ...ids };
    case "dispute_opened":
    case "dispute_closed":
      return { kind, disputeId: pick(["dp_1", "dp_2"]), amount, currency: "usd", disputeStatus: pick(["needs_response", "won", "lost"]), ...ids };
  }
}

/** Stores a patch as Firestore would and reads the order back through the real converter. */
function store(data: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  return { ...data, ...patch };
}

describe("order patches are writable by Firestore (random sequences through decide and the real converter)", () => {
  const SEQUENCES = 300;
  const STEPS = 30;

  it(`${SEQUENCES} seeded sequences of ${STEPS} events`, () => {
    const ref = firestore.collection("orders").doc("o1");
    const seen = new Set<string>();
    for (let seed = 1; seed <= SEQUENCES; seed++) {
      const rand = prng(seed);
      const sku = "sku_a";
      let data: Record<string, unknown> = orderConverter.toFirestore({
        id: "o1",
        userId: "u1",
        items: [{ sku, qty: 2 }],
        amount: 2000,
        currency: "usd",
        status: "pending" as OrderStatus,
        createdAt: NOW,
        ...(rand() < 0.5 ? { paymentIntentId: "pi_1" } : {}),
      } as Order) as Record<string, unknown>;
      let attempt = 1;
      const trace: string[] = [];
      for (let step = 0; step < STEPS; step++) {
        const order = orderFromData("o1", data);
        // The product may have been deleted (a discontinued product) at any point.
        const stock = new Map<string, StockLevel>(rand() < 0.2 ? [] : [[sku, { stock: Math.floor(rand() * 4), reserved: Math.floor(rand() * 3) }]]);
        // Some movements land on a line split over shards.
        const shards: Record<string, ShardHolding> = rand() < 0.3 ? { [sku]: rand() < 0.5 ? 3 : { "1": 1, "4": 1 } } : {};
        let patch: Record<string, unknown> | null;
        let moves: boolean;
        if (rand() < 0.15) {
          const r = decideReservation(order, stock, NOW);
          patch = r.kind === "apply" ? r.orderPatch : null;
          moves = r.kind === "apply" && r.stockChanges.length > 0;
          trace.push(`reserve→${r.kind === "apply" ? r.result : "skip"}`);
        } else {
          const command = randomCommand(rand, order.amount, attempt);
          if (command.kind === "payment_failed" || command.kind === "payment_canceled") attempt += 1;
          const d = decide({ order, stock, command, event: { id: `evt_${seed}_${step}`, type: command.kind, created: NOW, livemode: false }, now: NOW, options: { restockOnRefund: rand() < 0.5 } });
          patch = d.kind === "apply" ? d.orderPatch : null;
          moves = d.kind === "apply" && d.stockChanges.length > 0;
          trace.push(`${command.kind}→${d.kind === "apply" ? d.result : "defer"}`);
          if (d.kind === "apply") seen.add(d.result);
        }
        if (patch === null) continue;
        const written = withShards(patch, order, shards, moves) as Record<string, unknown>;
        // The SDK's own validation: throws for undefined anywhere, unsupported values, bad field paths.
        expect(() => firestore.batch().update(ref, written), `seed ${seed}: ${trace.join(" | ")}`).to.not.throw();
        data = store(data, written);
        expect(() => orderFromData("o1", data), `seed ${seed}: ${trace.join(" | ")}`).to.not.throw();
      }
    }
    // The generator reaches the paths that used to write what Firestore refuses.
    for (const result of ["finalized", "refunded", "partially_refunded", "disputed", "dispute_won", "duplicate_payment", "needs_review"]) {
      expect([...seen], result).to.include(result);
    }
  });
});
