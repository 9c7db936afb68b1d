import { FieldValue, type DocumentReference, type DocumentSnapshot, type Firestore } from "firebase-admin/firestore";
import { orderRef, quantitiesBySku, type Order, type ShardHolding } from "../collections/orders";
import { countsToRewrite, productRef, stockShardRef, type Product, type StockLevel } from "../collections/products";
import { toCount } from "../collections/firestoreValues";
import { DEFAULT_OPTIMISTIC, directReader, isConflict, OptimisticTransaction, ReadConflict, sameVersion, servedFirst, type OptimisticOptions, type TransactionLike } from "../concurrency/optimistic";
import { isFirestoreFailing } from "../errors";
import { decideReservation, type ReservationDecision } from "../domain/reservation";
import { isDocumentId } from "../domain/ids";
import { queueNotifications, withShards, writeAudit } from "../webhook/applyEvent";

export type ReservationOutcome = "reserved" | "out_of_stock" | "canceled" | "skipped" | "missing";

export interface ReservationBatchOptions {
  /**
   * Orders one transaction reserves at most. 1 turns batching off: every order is its own transaction,
   * run at once beside the others (the bench's knob).
   */
  maxOrders: number;
  /**
   * Writes one commit carries at most (Firestore takes 500). A batch whose orders would write more is
   * split in halves before anything is committed.
   */
  maxWrites: number;
  optimistic: OptimisticOptions;
  /** Draws each product's order of preference among its shards (see ShardView); tests pass a fixed one. */
  random?: () => number;
}

export const DEFAULT_RESERVATION_BATCH: ReservationBatchOptions = { maxOrders: 100, maxWrites: 450, optimistic: DEFAULT_OPTIMISTIC };

/**
 * Lost races after which a batch decides again on a fresh read, before it splits: each one needs a
 * document it was guarded on to have been written since the last read (checkout stores each order's
 * PaymentIntent id once), so a burst's writes are ridden out in a few reads and commits.
 */
const MAX_REDECISIONS = 4;

/** Thrown by a batch's body, before anything is committed, when its orders would write more than a commit carries. */
class TooManyWrites extends Error {}

/** A stock document a batch reads and may write: a plain product's, or one shard of a sharded product. */
export interface StockSlot {
  ref: DocumentReference;
  kind: "product" | "shard";
  /** The shard's number (0 for a product document). */
  shard: number;
  /** stock − reserved as read. */
  available: number;
  /** Units the batch reserves in it. */
  taken: number;
  /** A plain product's `reserved` stored as text or a fraction, as read: written as a value (products.ts, countsToRewrite). */
  reservedAsRead?: number;
}

/** What the batch decided for one order: its decision and, for each sharded line, the shards holding its units. */
export interface PlannedReservation {
  order: Order;
  now: Date;
  decision: ReservationDecision;
  holdings: Record<string, ShardHolding>;
}

/**
 * Decides a batch of pending orders one after the other, in the order given (first come, first served),
 * each on the units the ones before it left in `slots` (mutated: `taken`). Pure.
 */
export function planReservations(orders: ReadonlyArray<{ order: Order; now: Date }>, slots: ReadonlyMap<string, StockSlot[]>): PlannedReservation[] {
  const free = (list: readonly StockSlot[]) => list.reduce((sum, s) => sum + s.available - s.taken, 0);
  return orders.map(({ order, now }) => {
    const levels = new Map<string, StockLevel>();
    for (const sku of quantitiesBySku(order.items).keys()) {
      const list = slots.get(sku);
      if (list !== undefined) levels.set(sku, { stock: free(list), reserved: 0 });
    }
    const decision = decideReservation(order, levels, now);
    const holdings: Record<string, ShardHolding> = {};
    if (decision.kind === "apply") {
      for (const change of decision.stockChanges) {
        const holding = take(slots.get(change.sku) as StockSlot[], change.reserved);
        if (holding !== null) holdings[change.sku] = holding;
      }
    }
    return { order, now, decision, holdings };
  });
}

/**
 * Takes `qty` units from a SKU's slots, which hold them together (the decision checked): from the first
 * slot that holds them all, else from the fewest that do (most units first). The holding names the shard,
 * or each shard's share; null for a plain product, whose document holds the units.
 */
export function take(slots: readonly StockSlot[], qty: number): ShardHolding | null {
  const free = (s: StockSlot) => s.available - s.taken;
  const whole = slots.find((s) => free(s) >= qty);
  if (whole !== undefined) {
    whole.taken += qty;
    return whole.kind === "product" ? null : whole.shard;
  }
  const split: Record<string, number> = {};
  let remaining = qty;
  for (const slot of [...slots].sort((a, b) => free(b) - free(a) || a.shard - b.shard)) {
    const units = Math.min(free(slot), remaining);
    if (units <= 0) break;
    slot.taken += units;
    split[String(slot.shard)] = units;
    remaining -= units;
  }
  if (remaining > 0) throw new Error(`take(): ${qty} units asked of slots that hold ${qty - remaining}`);
  return split;
}

/**
 * What one instance last saw of a sharded product: its own order of preference among the shards (a
 * random permutation drawn once) and the units it last read, less what it took, in each.
 */
export interface ShardView {
  order: number[];
  available: Map<number, number>;
}

/**
 * The first shards in the view's order that, as last seen, hold `demand` units, skipping those seen
 * empty; a shard not seen yet counts as holding all of it. Pure.
 */
export function preferredShards(view: ShardView, demand: number): number[] {
  const picked: number[] = [];
  let covered = 0;
  for (const shard of view.order) {
    if (covered >= demand) break;
    const seen = view.available.get(shard);
    if (seen === 0) continue;
    picked.push(shard);
    covered += seen ?? demand;
  }
  return picked;
}

/**
 * Shards a batch reads next when those it preferred turned out short, before it reads them all: other
 * instances drain shards this one has not looked at lately, and a few more usually hold the rest. A
 * refusal still rests on a read of every shard.
 */
export const PROBE_SHARDS = 4;

/** The next `count` shards in the view's order that this run has not read and that were not seen empty. Pure. */
export function nextShards(view: ShardView, read: readonly number[], count: number): number[] {
  return view.order.filter((shard) => !read.includes(shard) && view.available.get(shard) !== 0).slice(0, count);
}

/** A random order of 0..n-1 (Fisher–Yates). */
export function shuffled(n: number, random: () => number = Math.random): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

interface Waiting {
  orderId: string;
  resolve: (outcome: ReservationOutcome) => void;
  reject: (error: unknown) => void;
}

/** What a run says of each order: its outcome, or its failure. */
type Settlement = ReservationOutcome | { error: unknown };

/** A shard's units as a committed run left them, for the instance's view (ShardView). */
interface ShardLeft {
  sku: string;
  shard: number;
  available: number;
}

/**
 * The reservation trigger's transactions of ONE function instance, batched. Order ids that arrive while
 * a batch is in flight are reserved together by the next one, in ONE optimistic transaction: one read of
 * the orders, one of their products, one of the shards they need, one commit. The orders are decided one
 * after the other in arrival order (planReservations), so the first buyer gets the unit.
 *
 * A sharded (hot) product's units come from as few shards as the batch needs, taken in this instance's
 * own order of preference (ShardView): instances work on different shards, so their commits rarely
 * depend on one document, and a batch reads a few shards instead of one per order. When those turn out
 * short (other instances drained them) it reads a few more (PROBE_SHARDS), and if those are short too,
 * all of the product's shards. A refusal rests on that read (a shard read but not written
 * does not guard the commit): at worst it misses a unit released a moment earlier, as if the buyer had
 * come a moment earlier. Every write is guarded by the version it was decided on (OptimisticTransaction),
 * so a batch that lost a race (checkout storing a PaymentIntent's id on one of its orders, a payment,
 * another instance's sale) decides again on a fresh read of those documents, and commits again.
 *
 * A batch that fails for any other reason than Firestore failing for everyone (or would write more than
 * a commit carries) is not allowed to fail its neighbours: its halves run again one after the other,
 * down to single orders, so only an order that fails alone fails (its trigger is retried).
 */
export class ReservationBatches {
  private queue: Waiting[] = [];
  private running = false;
  private readonly views = new Map<string, ShardView>();
  /**
   * For the bench and the tests: batches started and their orders, body runs, commits and lost races,
   * runs `redecided` at once on a fresh read after a lost race, `splits` (a batch that failed, or would
   * write too much, run again as two halves), and the shard reads its runs asked for (calls, documents,
   * reads of a few more shards after the preferred ones were short, and reads of all of a product's
   * shards), served or not.
   */
  readonly stats = { batches: 0, orders: 0, runs: 0, commits: 0, conflicts: 0, redecided: 0, splits: 0, shardReads: 0, shardsRead: 0, probes: 0, fullReads: 0 };

  constructor(
    private readonly db: Firestore,
    private readonly now: () => Date,
    private readonly options: ReservationBatchOptions = DEFAULT_RESERVATION_BATCH,
  ) {
    if (!Number.isInteger(options.maxOrders) || options.maxOrders < 1) throw new RangeError("maxOrders must be a whole number ≥ 1");
    if (!Number.isInteger(options.maxWrites) || options.maxWrites < 10) throw new RangeError("maxWrites must be a whole number ≥ 10");
  }

  /** Reserves every line of a `pending` order or marks it `out_of_stock`; anything else is left as it is. */
  reserve(orderId: string): Promise<ReservationOutcome> {
    if (this.options.maxOrders === 1) return this.reserveAlone(orderId);
    return new Promise((resolve, reject) => {
      this.queue.push({ orderId, resolve, reject });
      if (this.running) return;
      this.running = true;
      // The order ids of one burst arrive in the same turn of the event loop: let them gather first.
      setImmediate(() => void this.drain());
    });
  }

  /** Batching off: the order is its own transaction at once, beside the instance's others. */
  private async reserveAlone(orderId: string): Promise<ReservationOutcome> {
    this.stats.batches++;
    this.stats.orders++;
    const settled = new Map<string, Settlement>();
    await this.run([orderId], settled);
    return settle(settled.get(orderId));
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.options.maxOrders);
        this.stats.batches++;
        this.stats.orders += batch.length;
        const settled = new Map<string, Settlement>();
        const ids = [...new Set(batch.map((w) => w.orderId))];
        try {
          await this.run(ids, settled);
        } catch (error) {
          // Only the lock-free read after a lost race gets here (Firestore failing): what is not settled fails.
          for (const id of ids) if (!settled.has(id)) settled.set(id, { error });
        }
        for (const w of batch) {
          try {
            w.resolve(settle(settled.get(w.orderId)));
          } catch (error) {
            w.reject(error);
          }
        }
      }
    } finally {
      this.running = false;
    }
  }

  /**
   * Reserves `ids` in one optimistic transaction. A commit that lost a race reads again, without a lock,
   * everything the run read, in one call, and decides again at once on it when something it was guarded
   * on moved: a write that changed nothing it decided on (checkout storing the PaymentIntent's id on an
   * order) costs one read and one commit, not a run of read rounds (MAX_REDECISIONS). A race
   * lost once more than that, one whose read finds nothing moved, or any other failure than Firestore
   * failing for everyone, runs the two halves one after the other on fresh reads, so a failing order
   * fails alone and the first arrivals still come first.
   */
  private async run(ids: readonly string[], settled: Map<string, Settlement>): Promise<void> {
    let served: Map<string, DocumentSnapshot> | undefined;
    for (let attempt = 1; ; attempt++) {
      const tx = new OptimisticTransaction(servedFirst(served, directReader(this.db, this.options.optimistic.startCall)), this.db.batch());
      let failure: unknown;
      try {
        const { outcomes, left } = await this.reserveAll(tx, ids);
        if (tx.writeCount > 0) {
          const batch = this.db.batch();
          tx.applyTo(batch);
          await this.options.optimistic.startCall(() => batch.commit());
          this.stats.commits++;
        }
        for (const { sku, shard, available } of left) this.views.get(sku)?.available.set(shard, available);
        for (const [id, outcome] of outcomes) settled.set(id, outcome);
        return;
      } catch (error) {
        failure = error;
      }
      const conflict = failure instanceof ReadConflict || isConflict(failure);
      if (conflict) this.stats.conflicts++;
      if (ids.length === 1) {
        if (conflict && attempt < this.options.optimistic.maxAttempts) {
          await new Promise((resolve) => setTimeout(resolve, Math.random() * this.options.optimistic.backoffMs * attempt));
          continue;
        }
        settled.set(ids[0], { error: failure });
        return;
      }
      // Every order of the batch would fail alone as well: each trigger is retried, as it would be alone.
      if (isFirestoreFailing(failure)) {
        for (const id of ids) settled.set(id, { error: failure });
        return;
      }
      if (conflict && attempt <= MAX_REDECISIONS) {
        // Everything the run read, again, in one call: the run decides again on it without a round trip of its own.
        const fresh = await this.options.optimistic.startCall(() => this.db.getAll(...tx.readRefs()));
        const now = new Map(fresh.map((snapshot) => [snapshot.ref.path, snapshot]));
        // Nothing it was guarded on moved (a document it creates appeared, say): deciding again would not help.
        if (tx.guards().some((g) => !sameVersion(g.updateTime, now.get(g.ref.path)?.updateTime ?? null))) {
          served = now;
          this.stats.redecided++;
          continue;
        }
      }
      this.stats.splits++;
      const half = Math.ceil(ids.length / 2);
      await this.run(ids.slice(0, half), settled);
      await this.run(ids.slice(half), settled);
      return;
    }
  }

  private async reserveAll(tx: TransactionLike, ids: readonly string[]): Promise<{ outcomes: Map<string, ReservationOutcome>; left: ShardLeft[] }> {
    this.stats.runs++;
    const outcomes = new Map<string, ReservationOutcome>();
    const left: ShardLeft[] = [];
    const pending: Order[] = [];
    (await tx.getAll(...ids.map((id) => orderRef(this.db, id)))).forEach((snapshot, i) => {
      const order = snapshot.data();
      // A payment may have arrived first, or the trigger is redelivered: the order is no longer ours to reserve.
      if (order === undefined) outcomes.set(ids[i], "missing");
      else if (order.status !== "pending") outcomes.set(ids[i], "skipped");
      else pending.push(order);
    });
    if (pending.length === 0) return { outcomes, left };

    const slots = await this.readStock(tx, pending);
    const planned = planReservations(pending.map((order) => ({ order, now: this.now() })), slots);
    const writes = planned.reduce((sum, p) => sum + (p.decision.kind === "apply" ? 2 + (p.decision.adminAlert === null ? 0 : 1) : 0), 0) + [...slots.values()].flat().filter((slot) => slot.taken > 0).length;
    if (writes > this.options.maxWrites && ids.length > 1) throw new TooManyWrites(`${ids.length} orders would write ${writes} documents`);
    for (const { order, now, decision, holdings } of planned) {
      if (decision.kind === "skip") {
        outcomes.set(order.id, "skipped");
        continue;
      }
      tx.update(orderRef(this.db, order.id), withShards(decision.orderPatch, order, holdings, decision.stockChanges.length > 0));
      writeAudit(tx, this.db, decision.audit);
      if (decision.adminAlert !== null) {
        queueNotifications(tx, this.db, [{ id: `admin_alert:order:${order.id}`, kind: "admin_alert", orderId: order.id, userId: null, eventId: null, detail: decision.adminAlert }], now);
      }
      outcomes.set(order.id, decision.result);
    }
    for (const [sku, list] of slots) {
      for (const slot of list) {
        if (slot.kind === "shard") left.push({ sku, shard: slot.shard, available: slot.available - slot.taken });
        if (slot.taken === 0) continue;
        const update: Record<string, FieldValue | number> = { reserved: slot.reservedAsRead === undefined ? FieldValue.increment(slot.taken) : slot.reservedAsRead + slot.taken };
        if (slot.kind === "product") update.reservedSynced = FieldValue.increment(slot.taken);
        tx.update(slot.ref, update);
      }
    }
    return { outcomes, left };
  }

  /**
   * The stock the orders' lines draw on, per SKU: a plain product's document, or the shards of a sharded
   * one that this instance prefers and that, as last seen, hold the batch's demand (when those turn out
   * short, PROBE_SHARDS more, then all of them). A SKU that cannot name a document, or names no product,
   * gets no slot: the decision refuses its line.
   */
  private async readStock(tx: TransactionLike, orders: readonly Order[]): Promise<Map<string, StockSlot[]>> {
    const demand = new Map<string, number>();
    for (const order of orders) {
      // Only lines the decision could reserve: a line of 0 or less must not make the demand look covered.
      for (const [sku, qty] of quantitiesBySku(order.items)) if (isDocumentId(sku) && Number.isInteger(qty) && qty > 0) demand.set(sku, (demand.get(sku) ?? 0) + qty);
    }
    const slots = new Map<string, StockSlot[]>();
    const sharded: Product[] = [];
    const products = await tx.getAll(...[...demand.keys()].sort().map((sku) => productRef(this.db, sku)));
    for (const snapshot of products) {
      const product = snapshot.data();
      if (product === undefined) continue;
      if (product.shards > 1) sharded.push(product);
      else {
        const { reserved: reservedAsRead } = countsToRewrite({ reserved: snapshot.get("reserved") });
        slots.set(product.sku, [{ ref: snapshot.ref, kind: "product", shard: 0, available: Math.max(0, product.stock - product.reserved), taken: 0, ...(reservedAsRead === undefined ? {} : { reservedAsRead }) }]);
      }
    }
    if (sharded.length === 0) return slots;
    const short = <W extends { product: Product }>(wanted: readonly W[]): W[] =>
      wanted.filter(({ product }) => (slots.get(product.sku) ?? []).reduce((sum, s) => sum + s.available, 0) < (demand.get(product.sku) ?? 0));
    const first = sharded.map((product) => ({ product, shards: preferredShards(this.view(product), demand.get(product.sku) ?? 0) }));
    await this.readShards(tx, first, slots);
    // Measured at K = 3 and 6 (docs/performance.md, thirteenth round): a few more shards, then all.
    const probe = short(first).map(({ product, shards }) => ({ product, before: shards, shards: nextShards(this.view(product), shards, PROBE_SHARDS) }));
    if (probe.some(({ shards }) => shards.length > 0)) {
      this.stats.probes++;
      await this.readShards(tx, probe, slots);
    }
    const rest = short(probe).map(({ product, before, shards }) => ({ product, shards: this.view(product).order.filter((s) => !before.includes(s) && !shards.includes(s)) }));
    if (rest.some(({ shards }) => shards.length > 0)) {
      this.stats.fullReads++;
      await this.readShards(tx, rest, slots);
    }
    for (const product of sharded) {
      const order = this.view(product).order;
      (slots.get(product.sku) as StockSlot[]).sort((a, b) => order.indexOf(a.shard) - order.indexOf(b.shard));
    }
    return slots;
  }

  private async readShards(tx: TransactionLike, wanted: ReadonlyArray<{ product: Product; shards: readonly number[] }>, slots: Map<string, StockSlot[]>): Promise<void> {
    const refs = wanted.flatMap(({ product, shards }) => shards.map((shard) => stockShardRef(this.db, product.sku, shard)));
    if (refs.length === 0) return;
    this.stats.shardReads++;
    this.stats.shardsRead += refs.length;
    const snapshots = await tx.getAll(...refs);
    let i = 0;
    for (const { product, shards } of wanted) {
      const view = this.view(product);
      const list = slots.get(product.sku) ?? [];
      for (const shard of shards) {
        const slot = shardSlot(snapshots[i++], shard);
        view.available.set(shard, slot.available);
        list.push(slot);
      }
      slots.set(product.sku, list);
    }
  }

  private view(product: Product): ShardView {
    let view = this.views.get(product.sku);
    if (view === undefined || view.order.length !== product.shards) {
      view = { order: shuffled(product.shards, this.options.random), available: new Map() };
      this.views.set(product.sku, view);
    }
    return view;
  }
}

function shardSlot(snapshot: DocumentSnapshot, shard: number): StockSlot {
  // A missing shard holds nothing; it is read, so a reservation is never written into it.
  const available = snapshot.exists ? Math.max(0, toCount(snapshot.get("stock")) - toCount(snapshot.get("reserved"))) : 0;
  return { ref: snapshot.ref, kind: "shard", shard, available, taken: 0 };
}

/** The outcome a run settled for an order; every order of a run is settled, so a missing one is a bug said as such. */
function settle(settlement: Settlement | undefined): ReservationOutcome {
  if (settlement === undefined) throw new Error("a reservation batch left an order without an outcome");
  if (typeof settlement === "string") return settlement;
  throw settlement.error;
}
