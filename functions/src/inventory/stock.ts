import { performance } from "node:perf_hooks";
import { createHash } from "node:crypto";
import { FieldValue, type DocumentReference, type DocumentSnapshot, type Firestore } from "firebase-admin/firestore";
import { countsToRewrite, productFromData, productRef, stockShardRef, type CountsToRewrite, type Product, type StockLevel } from "../collections/products";
import type { StockChange } from "../domain/orderMachine";
import { toCount } from "../collections/firestoreValues";
import { quantitiesBySku, type Order, type ShardHolding } from "../collections/orders";
import { isDocumentId } from "../domain/ids";
import type { TransactionLike } from "../concurrency/groupCommit";
import { lockKeys, LocksWanted, type LockScope } from "../concurrency/localLocks";

/**
 * Where each SKU's stock is read and written inside a transaction. Unsharded products: the product
 * document. Hot products split into N shards: ONE shard per order line, so concurrent orders for the
 * same product touch different documents instead of all contending on one.
 */
export interface StockPlan {
  /** The level the decision sees per SKU: the product's, or the sum of the shards its line uses. */
  levels: Map<string, StockLevel>;
  /** Where each SKU's changes go: the product document (one target, the whole line), or one or more shards. */
  targets: Map<string, StockTarget[]>;
  /** For sharded SKUs only: where the line's units are (recorded on the order so a release hits the same shards). */
  shards: Record<string, ShardHolding>;
}

export interface StockTarget {
  ref: DocumentReference;
  /** The line's units this document holds or gives; a whole-line change on one target ignores it. */
  units: number;
  /** A plain product's document (its `reservedSynced` moves with `reserved`), or a stock shard. */
  kind: "product" | "shard";
  /**
   * The change is right whatever else moved this document since it was read (a held reservation's own
   * units): written with an `exists` precondition instead of the version read, so it does not lose a
   * race to another movement of the same product.
   */
  versionFree?: boolean;
  /** A plain product's counts stored as text or fractions, as read: written as values (products.ts, countsToRewrite). */
  rewrite?: CountsToRewrite;
}

export interface StockRequest {
  /** Quantity per SKU. */
  quantities: ReadonlyMap<string, number>;
  /** Shards the order's units are in (reserved, or sold for a restock). */
  held?: Readonly<Record<string, ShardHolding>>;
  /**
   * True while the order is `reserved`: its units are reserved in its `held` shards, and, for a SKU
   * without one, in the product document (a product cannot be split into shards while anything is
   * reserved, see configureStockShards). Shards are only written by this backend, never below what
   * they have reserved (`distributeStockDelta`), so a held shard has at least the order's units in
   * `stock` and in `reserved`: consuming or releasing them needs no read.
   */
  reserved?: boolean;
  /** Spreads orders over shards deterministically (the order id). */
  key: string;
}

/** Shards an order's units are in, and whether they are its live reservation. */
export function stockRequestFor(order: Order): StockRequest {
  const held = heldShards(order);
  // A SKU that cannot name a document is never looked up: the decisions see no stock for it and refuse the line.
  const quantities = new Map([...quantitiesBySku(order.items)].filter(([sku]) => isDocumentId(sku)));
  return { quantities, key: order.id, reserved: order.status === "reserved", ...(held ? { held } : {}) };
}

/** The shards a line's units are in. Own keys only: a SKU named `constructor` or `toString` is no holding. */
function holdingOf(request: StockRequest, sku: string): ShardHolding | undefined {
  return request.held !== undefined && Object.hasOwn(request.held, sku) ? request.held[sku] : undefined;
}

/** The shards an order's units are in: set while reserved and after payment; nothing is held before or after a cancel. */
export function heldShards(order: { status: string; stockShards?: Record<string, ShardHolding> }): Record<string, ShardHolding> | undefined {
  return ["pending", "out_of_stock", "canceled"].includes(order.status) ? undefined : order.stockShards;
}

export function startShard(key: string, sku: string, shards: number): number {
  return createHash("sha1").update(`${key}/${sku}`).digest().readUInt32BE(0) % shards;
}

/** The plan of a decision that looks at no stock (see needsStock): nothing read, nowhere to write. */
export function noStock(): StockPlan {
  return { levels: new Map(), targets: new Map(), shards: {} };
}

export interface PlanOptions {
  /**
   * A document this transaction already read (the order), read again in the same call as the product
   * documents. If another instance changed it in between, an optimistic transaction fails that read
   * (ReadConflict, concurrency/optimistic.ts) and runs again before it commits. That is the race of a
   * payment's two events (`payment_intent.succeeded`, `charge.succeeded`) at two instances: without
   * it, the payment decided on the old order and its lost commit failed its whole group's shared commit
   * (docs/performance.md, ninth round). Not read when no product is (units held in shards): alone it
   * would cost a round trip. A real Firestore transaction sees the same version twice. Pass only a
   * document the transaction read: another would become one more thing its commit depends on.
   */
  readAgain?: DocumentReference;
}

/**
 * Reads, inside `tx`, the stock the decision needs and says where its changes go. A document read and
 * then written under a version guard is first taken in `scope` (or LocksWanted is thrown, see
 * runTransactionWithLocks), so requests of this instance queue for it instead of losing races to each
 * other; a held reservation's own units need no key (see heldVersionFree); a line that holds no shard
 * yet (a payment that came before its reservation, a restock) prefers a shard nobody in this instance is
 * using. New orders are reserved elsewhere, in batches (inventory/reservationBatch.ts).
 */
export async function planStock(tx: TransactionLike, db: Firestore, request: StockRequest, scope: LockScope, { readAgain }: PlanOptions = {}): Promise<StockPlan> {
  const plan: StockPlan = { levels: new Map(), targets: new Map(), shards: {} };
  const skus = [...request.quantities.keys()].sort();
  const toRead: string[] = [];
  for (const sku of skus) {
    const holding = holdingOf(request, sku);
    if (request.reserved === true && holding !== undefined) {
      // A lower bound, which is all that consuming or releasing this reservation needs: no read, just
      // increments of its own units. Shards are written only by this backend, never below what they
      // hold (see heldVersionFree; an operator's edit is spread by reconcileProduct, a locking transaction).
      const qty = request.quantities.get(sku) ?? 0;
      plan.levels.set(sku, { stock: qty, reserved: qty });
      plan.targets.set(sku, unitsByShard(holding, qty).map(({ shard, units }) => ({ ref: stockShardRef(db, sku, shard), units, kind: "shard" as const, versionFree: true })));
      plan.shards[sku] = holding;
    } else {
      toRead.push(sku);
    }
  }
  // One read of the product documents says which SKUs are sharded and gives the plain ones' levels.
  // A movement that is not a held reservation's decides on what is available, which operators edit
  // directly, so its commit is guarded by the version read and the product's key. A sharded product's
  // document is read but never written here.
  const counts = new Map<string, number>();
  if (toRead.length > 0) {
    const keyed: string[] = [];
    // Untyped references, so that the document read again can share the call.
    const refs = [...toRead.map((sku) => productRef(db, sku).withConverter(null)), ...(readAgain === undefined ? [] : [readAgain.withConverter(null)])];
    const snapshots = (await tx.getAll(...refs)).slice(0, toRead.length);
    for (const snapshot of snapshots) {
      const data = snapshot.data();
      // A product that does not exist gets no level and no target: the decision refuses or skips its line
      // (a held one goes to review).
      if (data === undefined) continue;
      const product = productFromData(snapshot.id, data);
      counts.set(product.sku, product.shards);
      if (product.shards > 1) {
        // A reservation is never held on the product document of a sharded product (configureStockShards
        // refuses to split while anything is reserved).
        if (request.reserved === true) throw new Error(`products/${product.sku} is split into shards, yet order ${request.key} holds its reservation on the product document`);
        continue;
      }
      // Counts to rewrite are written as values, which only the version read can guard.
      const rewrite = countsToRewrite(data);
      const rewrites = Object.keys(rewrite).length > 0;
      const versionFree = !rewrites && request.reserved === true && heldVersionFree(product);
      if (!versionFree) keyed.push(product.sku);
      plan.targets.set(product.sku, [{ ref: snapshot.ref, units: request.quantities.get(product.sku) ?? 0, kind: "product", versionFree, ...(rewrites ? { rewrite } : {}) }]);
      plan.levels.set(product.sku, { stock: product.stock, reserved: product.reserved });
    }
    scope.require(...keyed.map(lockKeys.product));
  }
  for (const sku of toRead.filter((s) => (counts.get(s) ?? 1) > 1)) {
    const chosen = await chooseShards(tx, db, scope, sku, counts.get(sku) as number, request);
    plan.levels.set(sku, chosen.level);
    plan.targets.set(sku, chosen.parts.map(({ ref, units }) => ({ ref, units, kind: "shard" as const })));
    plan.shards[sku] = chosen.parts.length === 1 ? chosen.parts[0].shard : Object.fromEntries(chosen.parts.map((p) => [String(p.shard), p.units]));
  }
  return plan;
}

/**
 * Whether a reservation held on this plain product's document may be consumed or released with
 * increments that do not depend on the version read, like one held in shards (`StockTarget.versionFree`):
 * when the read shows `stock` ≥ `reserved` and `reserved` = `reservedSynced` (nobody but this backend
 * moved it, so it counts exactly the orders holding units). From such a state, every movement of this
 * backend moves only its own units and keeps both true, so this reservation's units are in place
 * whatever the others commit meanwhile. Guarded by the version, payments of one product lost races to
 * each other across instances (most of the K = 3 spread conflicts, docs/performance.md) though none
 * changed what another decided.
 *
 * The document is still read, because operators edit plain products in the console. A product cut
 * below what is reserved, or whose `reserved` an operator edited, is no such state: the payment is
 * decided on the read, guarded by its version and under the product's key, as every movement was
 * before, so a payment decided after another's sale committed sees it. An edit that lands while a held
 * payment of the product is in flight (between its read and its commit) is not seen (contract deviation
 * 11): a deletion fails the commit and the next run sees it; a cut of `stock` lets the sale take its
 * reserved units anyway, so `stock` can end below `reserved`, and below zero by up to the cut.
 */
function heldVersionFree(product: Product): boolean {
  return product.stock >= product.reserved && (product.reservedSynced ?? 0) === product.reserved;
}

/** A line's units per shard: a single shard holds them all; a split names each shard's share. */
export function unitsByShard(holding: ShardHolding, qty: number): Array<{ shard: number; units: number }> {
  if (typeof holding === "number") return [{ shard: holding, units: qty }];
  return Object.entries(holding)
    .map(([shard, units]) => ({ shard: Number(shard), units }))
    .sort((a, b) => a.shard - b.shard);
}

interface ShardChoice {
  shard: number;
  level: StockLevel;
  ref: DocumentReference;
}

/** Where a sharded line goes: one shard in the common case, several when no single one holds it. */
interface ShardPlan {
  /** What the decision sees: the sum of the parts' levels. */
  level: StockLevel;
  parts: Array<{ shard: number; ref: DocumentReference; units: number }>;
}

/** How many shards a line that holds none tries inside its transaction after a lock-free read said they fit. */
const CANDIDATES_TRIED = 3;

/**
 * The shards a sharded SKU's change goes to: those the order holds units in; else, probing from a
 * per-order start, one shard with enough available units; else, when the shards only hold the line
 * together, the fewest that do, each giving what it has.
 *
 * The transaction reads as few shards as it can, each one a round trip and, once written, a guard its
 * commit depends on: the first one nobody here holds and this instance last saw with enough units; if
 * there is none, or that one is short, a lock-free read of all the others (one consistent snapshot)
 * finds candidates, and only those are read in the transaction. Only the chosen shards are held.
 *
 * When that snapshot shows too few units in all shards together, the decision is taken on it without
 * locking every shard (a payment then goes to review): that writes no stock, so it can never oversell;
 * at worst it misses a unit released in the same few milliseconds. Locking all shards instead would
 * make every sale of the product wait for every such decision.
 */
async function chooseShards(tx: TransactionLike, db: Firestore, scope: LockScope, sku: string, n: number, request: StockRequest): Promise<ShardPlan> {
  // A shared snapshot must have been read after this attempt began choosing: never older than this
  // attempt's reads of these shards. Before it has read any, a snapshot in flight will do (a rerun after
  // finding one stale only joins a newer one, see sharedReadWasStale).
  const choosing = performance.now();
  const qty = request.quantities.get(sku) ?? 0;
  const key = (shard: number) => lockKeys.shard(sku, shard);
  const toChoice = (shard: number, snapshot: DocumentSnapshot): ShardChoice => ({
    shard,
    ref: snapshot.ref,
    level: { stock: toCount(snapshot.get("stock")), reserved: toCount(snapshot.get("reserved")) },
  });
  const available = (choice: ShardChoice) => Math.max(0, choice.level.stock - choice.level.reserved);
  const fits = (choice: ShardChoice) => available(choice) >= qty;
  // What this instance last saw of each shard steers which one is tried first: a shard it saw short is
  // not read in the transaction again (a wasted read, and a guard other instances' sales would fail),
  // until a snapshot shows it has units again. A sale or a stock change is decided only on this
  // transaction's own reads; a refusal may rest on a snapshot.
  const note = (choice: ShardChoice) => scope.noteHint(key(choice.shard), available(choice));
  const seemsToFit = (shard: number) => (scope.hint(key(shard)) ?? qty) >= qty;
  // A shard another request here holds may be about to change: its snapshot figures are no hint.
  const fromSnapshot = (shard: number, choice: ShardChoice): ShardChoice => {
    if (!scope.heldByOther(key(shard))) note(choice);
    return choice;
  };
  const read = async (shards: number[]): Promise<ShardChoice[]> => {
    const choices = (await tx.getAll(...shards.map((shard) => stockShardRef(db, sku, shard)))).map((snapshot, i) => toChoice(shards[i], snapshot));
    choices.forEach((choice) => note(choice));
    return choices;
  };
  const whole = (choice: ShardChoice): ShardPlan => ({ level: choice.level, parts: [{ shard: choice.shard, ref: choice.ref, units: qty }] });
  const held = holdingOf(request, sku);
  if (held !== undefined) {
    const units = unitsByShard(held, qty);
    scope.require(...units.map(({ shard }) => key(shard)));
    const choices = await read(units.map(({ shard }) => shard));
    return {
      level: sumLevels(choices.map((c) => c.level)),
      parts: choices.map((c, i) => ({ shard: c.shard, ref: c.ref, units: units[i].units })),
    };
  }
  const start = startShard(request.key, sku, n);
  const probe = Array.from({ length: n }, (_, i) => (start + i) % n);
  const tried: ShardChoice[] = [];
  // Reads one shard this request holds. It keeps the key even if the shard is short: the read holds
  // the document in Firestore until commit, and nobody here should write it before then.
  const attempt = async (shard: number): Promise<ShardChoice | null> => {
    const [choice] = await read([shard]);
    tried.push(choice);
    scope.noteHint(key(shard), available(choice) - (fits(choice) ? qty : 0));
    return fits(choice) ? choice : null;
  };

  // Keys of this SKU held from an earlier attempt (or waited for) and not read now are let go.
  const choose = (plan: ShardPlan): ShardPlan => {
    for (const shard of probe) if (!tried.some((t) => t.shard === shard)) scope.release(key(shard));
    return plan;
  };

  const preferred = probe.find((shard) => seemsToFit(shard) && scope.tryAcquire(key(shard)));
  if (preferred !== undefined) {
    const choice = await attempt(preferred);
    if (choice !== null) return choose(whole(choice));
  }
  const others = probe.filter((shard) => shard !== preferred);
  // Requests of this instance that need the same snapshot at once share one read: when a product sells
  // out, every refusal needs it. A shared snapshot is at most one round trip older than an own one,
  // which a refusal already allows for.
  const snapshotKey = `shards:${sku}/${n}`;
  // In shard order, not this request's probe order: the requests that share it probe from other starts.
  const readAll = () => db.getAll(...Array.from({ length: n }, (_, shard) => stockShardRef(db, sku, shard)));
  const snapshot = await scope.sharedRead(snapshotKey, readAll, tried.length > 0 ? choosing : -Infinity);
  const unlocked = others.map((shard) => fromSnapshot(shard, toChoice(shard, snapshot[shard])));
  const candidates = unlocked.filter(fits).map((c) => c.shard);
  const busy: number[] = [];
  for (const shard of candidates) {
    if (tried.length > CANDIDATES_TRIED) break;
    if (!scope.tryAcquire(key(shard))) {
      busy.push(shard);
      continue;
    }
    const choice = await attempt(shard);
    if (choice !== null) return choose(whole(choice));
  }
  // Units are left only in shards other requests here are writing: wait for one, then run again.
  if (busy.length > 0) throw new LocksWanted([key(busy[0])]);
  // The snapshot showed units that other instances took before this transaction read them (or more
  // candidates than it tries): run again on a new snapshot.
  if (candidates.length > 0) {
    scope.sharedReadWasStale(snapshotKey);
    throw new LocksWanted([]);
  }
  const split = await splitLine(sku, qty, tried, unlocked, read, scope, () => scope.sharedReadWasStale(snapshotKey));
  if (split !== null) return choose(split);
  // Only a snapshot without enough units in all shards together refuses. The plan's target is a shard
  // read in this transaction, as every target is (a restock of a line with no held shard comes this way).
  if (tried.length > 0) return choose(whole(tried[0]));
  const target = unlocked.find((c) => !scope.heldByOther(key(c.shard))) ?? unlocked[0];
  scope.require(key(target.shard));
  const [fresh] = await read([target.shard]);
  tried.push(fresh);
  return choose(whole(fresh));
}

/**
 * No single shard holds the line: take it from the fewest shards that do together (most available
 * first), read in the transaction. Null when even all of them together are short on the snapshot.
 */
async function splitLine(
  sku: string,
  qty: number,
  tried: ShardChoice[],
  unlocked: ShardChoice[],
  read: (shards: number[]) => Promise<ShardChoice[]>,
  scope: LockScope,
  snapshotWasStale: () => void,
): Promise<ShardPlan | null> {
  const available = (c: ShardChoice) => Math.max(0, c.level.stock - c.level.reserved);
  const seen = [...tried, ...unlocked].filter((c) => available(c) > 0).sort((a, b) => available(b) - available(a) || a.shard - b.shard);
  const picked: number[] = [];
  let covered = 0;
  for (const c of seen) {
    if (covered >= qty) break;
    picked.push(c.shard);
    covered += available(c);
  }
  if (covered < qty) return null;
  const keys = picked.map((shard) => lockKeys.shard(sku, shard));
  const free = keys.filter((k) => scope.tryAcquire(k));
  if (free.length < keys.length) throw new LocksWanted(keys.filter((k) => !scope.holds(k)));
  const fresh = new Map(tried.map((c) => [c.shard, c]));
  const unread = picked.filter((shard) => !fresh.has(shard));
  for (const c of unread.length > 0 ? await read(unread) : []) fresh.set(c.shard, c);
  const parts: ShardPlan["parts"] = [];
  let remaining = qty;
  for (const shard of picked) {
    const c = fresh.get(shard) as ShardChoice;
    const units = Math.min(available(c), remaining);
    if (units > 0) parts.push({ shard, ref: c.ref, units });
    remaining -= units;
  }
  // Other instances took units between the snapshot and these reads: decide again on a new snapshot.
  if (remaining > 0) {
    snapshotWasStale();
    throw new LocksWanted([]);
  }
  // Tried shards that give nothing are read (and so stay held until commit) but carry no share.
  tried.push(...unread.map((shard) => fresh.get(shard) as ShardChoice));
  return { level: sumLevels(parts.map((p) => (fresh.get(p.shard) as ShardChoice).level)), parts };
}

function sumLevels(levels: readonly StockLevel[]): StockLevel {
  return levels.reduce((sum, l) => ({ stock: sum.stock + l.stock, reserved: sum.reserved + l.reserved }), { stock: 0, reserved: 0 });
}

/**
 * Applies signed deltas where the plan read them; the decision has already checked that none goes below
 * zero. A line split over several shards moves each shard's own share.
 */
export function writeStockChanges(tx: TransactionLike, plan: StockPlan, changes: readonly StockChange[]): void {
  // The values written so far to counts that are rewritten, should two changes move one document.
  const rewritten = new Map<StockTarget, CountsToRewrite>();
  for (const change of changes) {
    const targets = plan.targets.get(change.sku);
    if (targets === undefined) throw new Error(`No stock location planned for ${change.sku}`);
    // A holding that names no shard (an empty map) would drop the change instead of writing it.
    if (targets.length === 0 && (change.stock !== 0 || change.reserved !== 0)) throw new Error(`No stock shard planned for a change of ${change.sku}`);
    const stockShares = shares(change.stock, targets);
    const reservedShares = shares(change.reserved, targets);
    targets.forEach((target, i) => {
      const update: Record<string, FieldValue | number> = {};
      const values = target.rewrite === undefined ? undefined : (rewritten.get(target) ?? { ...target.rewrite });
      if (values !== undefined) rewritten.set(target, values);
      const move = (field: "stock" | "reserved", delta: number) => {
        const value = values?.[field];
        if (values === undefined || value === undefined) return FieldValue.increment(delta);
        values[field] = value + delta;
        return values[field];
      };
      if (stockShares[i] !== 0) update.stock = move("stock", stockShares[i]);
      if (reservedShares[i] !== 0) update.reserved = move("reserved", reservedShares[i]);
      if (reservedShares[i] !== 0 && target.kind === "product") update.reservedSynced = FieldValue.increment(reservedShares[i]);
      if (Object.keys(update).length === 0) return;
      tx.update(target.ref, update, ...(target.versionFree === true ? [{ exists: true }] : []));
    });
  }
}

/** Splits a signed delta over targets, each taking at most its units; one target takes it all. */
function shares(delta: number, targets: readonly StockTarget[]): number[] {
  if (targets.length === 1) return [delta];
  let remaining = Math.abs(delta);
  const parts = targets.map((target) => {
    const part = Math.min(remaining, target.units);
    remaining -= part;
    return Math.sign(delta) * part;
  });
  // The shards hold fewer units than the change moves: the rest would be lost, not written.
  if (remaining > 0) throw new Error(`A change of ${delta} units is more than its shards hold (${targets.map((t) => t.units).join(" + ")})`);
  return parts;
}
