import { expect } from "chai";
import { ORDER_STATUSES, type Order, type OrderLine } from "../../src/collections/orders";
import type { StockLevel } from "../../src/collections/products";
import { decideReservation, type ReservationDecision } from "../../src/domain/reservation";

/** domain/reservation.ts: the `orders/{orderId}` create trigger reserves every line or none (SPEC §3). */

const NOW = new Date("2026-03-01T12:00:00.000Z");

function order(items: OrderLine[], o: Partial<Order> = {}): Order {
  return { id: "ord_r", userId: "user_1", items, amount: 1000, currency: "usd", status: "pending", createdAt: NOW, ...o };
}

function stockOf(entries: Record<string, StockLevel>): Map<string, StockLevel> {
  return new Map(Object.entries(entries));
}

function asApplied(d: ReservationDecision): Extract<ReservationDecision, { kind: "apply" }> {
  if (d.kind !== "apply") throw new Error(`expected apply, got skip: ${d.reason}`);
  return d;
}

describe("decideReservation", () => {
  it("reserves every line when all are available", () => {
    const d = asApplied(
      decideReservation(
        order([
          { sku: "a", qty: 2 },
          { sku: "b", qty: 1 },
        ]),
        stockOf({ a: { stock: 5, reserved: 3 }, b: { stock: 1, reserved: 0 } }),
        NOW,
      ),
    );
    expect(d.result).to.equal("reserved");
    expect(d.stockChanges).to.deep.equal([
      { sku: "a", stock: 0, reserved: 2 },
      { sku: "b", stock: 0, reserved: 1 },
    ]);
    expect(d.orderPatch).to.deep.equal({
      status: "reserved",
      statusHistory: [{ from: "pending", to: "reserved", at: NOW, eventId: null, reason: "stock reserved" }],
      updatedAt: NOW,
      reservedAt: NOW,
    });
    expect(d.audit).to.deep.equal({
      eventId: null,
      eventType: null,
      orderId: "ord_r",
      action: "reserve_stock",
      result: "reserved",
      reason: "stock reserved",
      before: "pending",
      after: "reserved",
      at: NOW,
    });
  });

  it("reserves nothing when one line is short (available = stock − reserved) → out_of_stock", () => {
    const d = asApplied(
      decideReservation(
        order([
          { sku: "a", qty: 2 },
          { sku: "b", qty: 2 },
        ]),
        stockOf({ a: { stock: 5, reserved: 0 }, b: { stock: 5, reserved: 4 } }),
        NOW,
      ),
    );
    expect(d.result).to.equal("out_of_stock");
    expect(d.stockChanges).to.deep.equal([]);
    expect(d.orderPatch.status).to.equal("out_of_stock");
    expect(d.orderPatch.reservedAt).to.equal(undefined);
    expect(d.orderPatch.statusHistory).to.deep.equal([{ from: "pending", to: "out_of_stock", at: NOW, eventId: null, reason: "insufficient stock for b" }]);
    expect(d.audit).to.include({ result: "out_of_stock", before: "pending", after: "out_of_stock", reason: "insufficient stock for b" });
  });

  it("exactly the available quantity is enough", () => {
    const d = asApplied(decideReservation(order([{ sku: "a", qty: 3 }]), stockOf({ a: { stock: 5, reserved: 2 } }), NOW));
    expect(d.result).to.equal("reserved");
    expect(d.stockChanges).to.deep.equal([{ sku: "a", stock: 0, reserved: 3 }]);
  });

  it("a missing product → out_of_stock naming the SKU", () => {
    const d = asApplied(
      decideReservation(
        order([
          { sku: "a", qty: 1 },
          { sku: "ghost", qty: 1 },
        ]),
        stockOf({ a: { stock: 5, reserved: 0 } }),
        NOW,
      ),
    );
    expect(d.result).to.equal("out_of_stock");
    expect(d.stockChanges).to.deep.equal([]);
    expect(d.audit.reason).to.equal("insufficient stock for ghost");
  });

  it("one SKU on several lines is summed: 2 + 2 does not fit in 3, fits in 4 with one change", () => {
    const items: OrderLine[] = [
      { sku: "a", qty: 2 },
      { sku: "b", qty: 1 },
      { sku: "a", qty: 2 },
    ];
    const short = asApplied(decideReservation(order(items), stockOf({ a: { stock: 3, reserved: 0 }, b: { stock: 1, reserved: 0 } }), NOW));
    expect(short.result).to.equal("out_of_stock");
    expect(short.stockChanges).to.deep.equal([]);
    const fits = asApplied(decideReservation(order(items), stockOf({ a: { stock: 4, reserved: 0 }, b: { stock: 1, reserved: 0 } }), NOW));
    expect(fits.result).to.equal("reserved");
    expect(fits.stockChanges).to.deep.equal([
      { sku: "a", stock: 0, reserved: 4 },
      { sku: "b", stock: 0, reserved: 1 },
    ]);
  });

  const invalid: [string, OrderLine[]][] = [
    ["no lines", []],
    ["a zero quantity", [{ sku: "a", qty: 0 }]],
    ["a negative quantity", [{ sku: "a", qty: -1 }]],
    ["a fractional quantity", [{ sku: "a", qty: 1.5 }]],
  ];
  for (const [name, items] of invalid) {
    it(`an order with ${name} → out_of_stock, nothing reserved`, () => {
      const d = asApplied(decideReservation(order(items), stockOf({ a: { stock: 100, reserved: 0 } }), NOW));
      expect(d.result).to.equal("out_of_stock");
      expect(d.stockChanges).to.deep.equal([]);
      expect(d.audit.reason).to.equal("order has no valid lines");
    });
  }

  for (const status of ORDER_STATUSES.filter((s) => s !== "pending")) {
    it(`skips an order that is ${status} (a payment came first, or the trigger was redelivered)`, () => {
      const d = decideReservation(order([{ sku: "a", qty: 1 }], { status }), stockOf({ a: { stock: 10, reserved: 0 } }), NOW);
      expect(d).to.deep.equal({ kind: "skip", reason: `order is ${status}` });
    });
  }

  it("appends to an existing statusHistory", () => {
    const prior = { from: "pending" as const, to: "pending" as const, at: NOW, eventId: "evt_x", reason: "imported" };
    const d = asApplied(decideReservation(order([{ sku: "a", qty: 1 }], { statusHistory: [prior] }), stockOf({ a: { stock: 1, reserved: 0 } }), NOW));
    expect(d.orderPatch.statusHistory).to.have.length(2);
    expect(d.orderPatch.statusHistory?.[0]).to.deep.equal(prior);
  });
});
