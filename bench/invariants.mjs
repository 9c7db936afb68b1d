// Invariant checks read back from Firestore after each scenario (SPEC §6, adapted to a bench where
// the notification trigger does not run: order_confirmed documents stay `queued`, only counted).
//
// Every check is scoped to the scenario's own documents: all its ids carry its tag (scenarioTag in
// common.mjs), and a document counts only if its id, or the order / event id it names, carries the tag.
// Documents of any other scenario (say, a late commit from a killed instance) are counted as `foreign`
// and reported, never checked or mixed in.
//
// `ctx.events`: Map eventId -> "applied" (some delivery got a 2xx) | "failed" (every delivery got a
// non-2xx answer) | "unknown" (no answer: timed out, or the instance died; may or may not have applied) |
// "unsent" (the phase budget ran out first). Only "applied" must, and "failed"/"unsent" must not,
// have a webhookEvents record; everything that did apply must be consistent.

const COLLECTIONS = ["orders", "products", "webhookEvents", "auditLog", "notifications", "deadLetters", "benchBaseline"];

/** Whether a document of `collection` belongs to the scenario tagged `tag`. */
function ours(collection, id, data, tag) {
  const has = (v) => typeof v === "string" && v.includes(tag);
  switch (collection) {
    case "auditLog":
      return has(data.eventId) || has(data.orderId);
    case "notifications":
      return has(id) || has(data.orderId) || has(data.eventId);
    default:
      return has(id);
  }
}

export async function readState(db, tag) {
  if (typeof tag !== "string" || tag.length < 6) throw new Error("readState needs the scenario's tag");
  const snaps = await Promise.all(COLLECTIONS.map((n) => db.collection(n).get()));
  const state = { foreign: {} };
  COLLECTIONS.forEach((n, i) => {
    const mine = snaps[i].docs.filter((d) => ours(n, d.id, d.data(), tag));
    state[n] = new Map(mine.map((d) => [d.id, d.data()]));
    if (snaps[i].size > mine.length) state.foreign[n] = snaps[i].size - mine.length;
  });
  // A sharded product's figures are its shards' sums (the aggregation trigger does not run in the bench).
  for (const [sku, product] of state.products) {
    if (!(Number(product.shards ?? 1) > 1)) continue;
    const shards = await db.collection("products").doc(sku).collection("stockShards").get();
    const sum = (field) => shards.docs.reduce((total, d) => total + Number(d.get(field) ?? 0), 0);
    const badShards = shards.docs
      .filter((d) => !(Number(d.get("stock")) >= Number(d.get("reserved")) && Number(d.get("reserved")) >= 0))
      .map((d) => `${d.id}: stock ${d.get("stock")}, reserved ${d.get("reserved")}`);
    state.products.set(sku, { ...product, stock: sum("stock"), reserved: sum("reserved"), badShards });
  }
  return state;
}

const millis = (t) => (t && typeof t.toMillis === "function" ? t.toMillis() : t instanceof Date ? t.getTime() : null);

/**
 * @param {object} ctx
 * @param {string} ctx.tag the scenario's tag: only its documents are read and checked
 * @param {Map<string, number>} [ctx.initialStock] sku -> stock before the scenario (reserved was 0)
 * @param {Map<string, string>} [ctx.events] eventId -> applied | failed | unknown | unsent
 * @param {Map<string, string>} [ctx.reservations] orderId -> reserved | out_of_stock | skipped | failed | unknown | unsent
 * @param {boolean} [ctx.baseline] check benchBaseline instead of the order pipeline
 * @param {{eventId: string, orderId: string, sku: string, qty: number}} [ctx.exactlyOnce]
 * @param {number} [ctx.processedResponses] 2xx answers whose body said `processed` (duplicates scenario)
 * @param {Map<string, string[]>} [ctx.payments] orderId -> the ids of the events that pay it: an order
 *   one of whose payments was acknowledged must be finalized, exactly once, by one of them
 * @param {boolean} [ctx.allAcknowledged] every event must have been acknowledged in the end (crash)
 * @param {boolean} [ctx.twins] each order is paid by two events (twins): exactly one finalizes it, the other is a no-op
 */
export async function checkInvariants(db, ctx) {
  const s = await readState(db, ctx.tag);
  const checks = [];
  const check = (name, ok, detail = "") => checks.push({ name, ok: Boolean(ok), detail: ok ? "" : detail });
  const events = ctx.events ?? new Map();

  if (ctx.baseline) {
    const missing = [...events].filter(([id, st]) => st === "applied" && !s.benchBaseline.has(id));
    const extra = [...events].filter(([id, st]) => (st === "failed" || st === "unsent") && s.benchBaseline.has(id));
    const strangers = [...s.benchBaseline.keys()].filter((id) => !events.has(id));
    check("baseline: one document per acknowledged event", missing.length === 0, `${missing.length} acknowledged events have no document`);
    check("baseline: no document for a failed or unsent event", extra.length === 0, `${extra.length} failed/unsent events have a document`);
    check("baseline: no document for an unknown event", strangers.length === 0, `${strangers.length} unexpected documents`);
    return finish(checks, s);
  }

  // 1. One webhookEvents doc per distinct event that was acknowledged; none for one that failed.
  const missingEvents = [...events].filter(([id, st]) => st === "applied" && !s.webhookEvents.has(id)).map(([id]) => id);
  const eventsOfFailures = [...events].filter(([id, st]) => (st === "failed" || st === "unsent") && s.webhookEvents.has(id)).map(([id]) => id);
  const strangerEvents = [...s.webhookEvents.keys()].filter((id) => !events.has(id));
  check("webhookEvents: one per acknowledged event", missingEvents.length === 0, `${missingEvents.length} acknowledged events without record, e.g. ${missingEvents[0]}`);
  check("webhookEvents: none for a non-2xx or unsent event", eventsOfFailures.length === 0, `${eventsOfFailures.length} failed/unsent events have a record, e.g. ${eventsOfFailures[0]}`);
  check("webhookEvents: none for an event the bench did not send", strangerEvents.length === 0, `${strangerEvents.length} unexpected records`);

  // 2. Exactly one auditLog entry per applied event id (duplicates add none).
  const auditByEvent = new Map();
  const reserveAuditByOrder = new Map();
  for (const entry of s.auditLog.values()) {
    if (typeof entry.eventId === "string") auditByEvent.set(entry.eventId, (auditByEvent.get(entry.eventId) ?? 0) + 1);
    else if (entry.action === "reserve_stock") reserveAuditByOrder.set(entry.orderId, (reserveAuditByOrder.get(entry.orderId) ?? 0) + 1);
  }
  const appliedIds = [...s.webhookEvents].filter(([, r]) => r.status === "processed" || r.status === "rejected").map(([id]) => id);
  const auditWrong = appliedIds.filter((id) => auditByEvent.get(id) !== 1);
  const auditOrphans = [...auditByEvent.keys()].filter((id) => !s.webhookEvents.has(id));
  check("auditLog: exactly one entry per applied event", auditWrong.length === 0, `${auditWrong.length} events with ≠1 entry, e.g. ${auditWrong[0]} (${auditByEvent.get(auditWrong[0]) ?? 0})`);
  check("auditLog: no entry for an event without a webhookEvents record", auditOrphans.length === 0, `${auditOrphans.length} orphan entries`);

  // Reservations: one audit entry per reservation decision, never two for one order.
  const reservedOnce = [...reserveAuditByOrder].filter(([, n]) => n > 1);
  const decided = [...s.orders].filter(([, o]) => (o.statusHistory ?? []).some((h) => h.from === "pending" && (h.to === "reserved" || h.to === "out_of_stock") && !h.eventId));
  check("reservation: at most one reserve_stock audit per order", reservedOnce.length === 0, `${reservedOnce.length} orders reserved more than once`);
  check(
    "reservation: one reserve_stock audit per reservation decision",
    [...reserveAuditByOrder.values()].reduce((a, b) => a + b, 0) === decided.length,
    `${[...reserveAuditByOrder.values()].reduce((a, b) => a + b, 0)} audit entries for ${decided.length} decisions`,
  );
  if (ctx.reservations) {
    const wrong = [];
    for (const [orderId, outcome] of ctx.reservations) {
      const order = s.orders.get(orderId);
      const history = order?.statusHistory ?? [];
      const wasReserved = history.some((h) => h.from === "pending" && h.to === "reserved");
      if (outcome === "reserved" && !wasReserved) wrong.push(`${orderId}: reserve said reserved, order never was`);
      if ((outcome === "failed" || outcome === "unsent") && history.some((h) => h.from === "pending" && !h.eventId)) {
        wrong.push(`${orderId}: reserve ${outcome} but the order was reserved`);
      }
    }
    check("reservation: order state matches what reserveStockForOrder answered", wrong.length === 0, `${wrong.length} mismatches, e.g. ${wrong[0]}`);
  }

  // 3. Stock: never negative, stock + sold = initial, reserved = units of reserved orders; one finalization per order.
  const sold = new Map();
  const held = new Map();
  let finalizedTwice = 0;
  const finalized = [];
  for (const [id, order] of s.orders) {
    const finals = (order.statusHistory ?? []).filter((h) => h.to === "finalized").length;
    if (finals > 1) finalizedTwice++;
    const counts = order.status === "finalized" ? sold : order.status === "reserved" ? held : null;
    if (order.status === "finalized") finalized.push([id, order]);
    if (counts) for (const line of order.items ?? []) counts.set(line.sku, (counts.get(line.sku) ?? 0) + line.qty);
  }
  check("orders: at most one finalization per order", finalizedTwice === 0, `${finalizedTwice} orders finalized more than once`);
  const stockProblems = [];
  for (const [sku, initial] of ctx.initialStock ?? new Map()) {
    const p = s.products.get(sku);
    if (!p) {
      stockProblems.push(`${sku}: product missing`);
      continue;
    }
    if (p.stock < 0 || p.reserved < 0) stockProblems.push(`${sku}: negative (stock ${p.stock}, reserved ${p.reserved})`);
    for (const shard of p.badShards ?? []) stockProblems.push(`${sku} shard ${shard} (needs 0 ≤ reserved ≤ stock)`);
    if (p.stock + (sold.get(sku) ?? 0) !== initial) stockProblems.push(`${sku}: stock ${p.stock} + sold ${sold.get(sku) ?? 0} ≠ initial ${initial}`);
    if (p.reserved !== (held.get(sku) ?? 0)) stockProblems.push(`${sku}: reserved ${p.reserved} ≠ units of reserved orders ${held.get(sku) ?? 0}`);
  }
  check("stock: ≥ 0 (and every shard 0 ≤ reserved ≤ stock), stock + sold = initial, reserved = units held", stockProblems.length === 0, `${stockProblems.length} products wrong, e.g. ${stockProblems[0]}`);

  // 4. One order_confirmed notification per finalized order (queued: the delivery trigger is not running).
  const confirmations = [...s.notifications].filter(([, n]) => n.kind === "order_confirmed");
  const confirmedOrders = new Map();
  for (const [, n] of confirmations) confirmedOrders.set(n.orderId, (confirmedOrders.get(n.orderId) ?? 0) + 1);
  const unconfirmed = finalized.filter(([id]) => confirmedOrders.get(id) !== 1);
  check(
    "notifications: exactly one order_confirmed per finalized order",
    unconfirmed.length === 0 && confirmations.length === finalized.length,
    `${confirmations.length} order_confirmed for ${finalized.length} finalized orders (${unconfirmed.length} without exactly one)`,
  );
  const badLinks = finalized.filter(([, o]) => s.webhookEvents.get(o.webhookEventId)?.result !== "finalized");
  check("orders: every finalized order names the event that finalized it", badLinks.length === 0, `${badLinks.length} finalized orders without a matching webhookEvents record`);

  // Every order whose payment was acknowledged is finalized, once, at one finalizedAt, by one of its own events.
  if (ctx.payments) {
    const wrong = [];
    let expected = 0;
    for (const [orderId, eventIds] of ctx.payments) {
      if (!eventIds.some((id) => events.get(id) === "applied")) continue;
      expected++;
      const order = s.orders.get(orderId);
      const finals = (order?.statusHistory ?? []).filter((h) => h.to === "finalized");
      if (order?.status !== "finalized") wrong.push(`${orderId}: status ${order?.status}`);
      else if (finals.length !== 1) wrong.push(`${orderId}: ${finals.length} finalizations`);
      else if (millis(order.finalizedAt) === null || millis(order.finalizedAt) !== millis(finals[0].at)) wrong.push(`${orderId}: finalizedAt is not the one finalization's time`);
      else if (!eventIds.includes(order.webhookEventId) || finals[0].eventId !== order.webhookEventId) wrong.push(`${orderId}: finalized by ${order.webhookEventId}, not by one of its payments`);
    }
    check(`payments: each of the ${expected} paid orders finalized exactly once (finalizedAt set once, by one of its events)`, wrong.length === 0, `${wrong.length} wrong, e.g. ${wrong[0]}`);
  }
  if (ctx.twins && ctx.payments) {
    const wrong = [];
    for (const [orderId, eventIds] of ctx.payments) {
      const records = eventIds.map((id) => s.webhookEvents.get(id)).filter(Boolean);
      const finalizing = records.filter((r) => r.result === "finalized").length;
      if (records.length > 0 && finalizing !== 1) wrong.push(`${orderId}: ${finalizing} of its ${records.length} recorded events say finalized`);
      if (records.length === 2 && !records.some((r) => r.result === "already_finalized")) wrong.push(`${orderId}: the second event is not a no-op (${records.map((r) => r.result).join(", ")})`);
    }
    check("twins: exactly one of the two events finalizes each order, the other is already_finalized", wrong.length === 0, `${wrong.length} orders wrong, e.g. ${wrong[0]}`);
  }
  if (ctx.allAcknowledged) {
    const left = [...events].filter(([, st]) => st !== "applied");
    check("every event acknowledged (2xx) in the end", left.length === 0, `${left.length} events never got a 2xx, e.g. ${left[0]?.[0]} (${left[0]?.[1]})`);
  }

  // Duplicates: exactly one effect once the event is recorded, and none while it is not (every delivery
  // failed: Stripe redelivers later; that is a liveness miss, counted as non-2xx, not a double effect).
  if (ctx.exactlyOnce) {
    const { eventId, orderId, sku, qty, initial, unanswered = 0 } = ctx.exactlyOnce;
    const order = s.orders.get(orderId);
    const product = s.products.get(sku);
    const audit = auditByEvent.get(eventId) ?? 0;
    const notes = confirmedOrders.get(orderId) ?? 0;
    const recorded = s.webhookEvents.has(eventId);
    const acknowledged = events.get(eventId) === "applied";
    // The one delivery that applied answers `processed`, unless its answer was lost (then the others say duplicate).
    const processedOk = ctx.processedResponses === 1 || (ctx.processedResponses === 0 && unanswered > 0);
    const effect = recorded
      ? s.webhookEvents.size === 1 &&
        audit === 1 &&
        order?.status === "finalized" &&
        (order.statusHistory ?? []).filter((h) => h.to === "finalized").length === 1 &&
        product?.stock === initial - qty &&
        product?.reserved === 0 &&
        notes === 1 &&
        confirmations.length === 1 &&
        processedOk
      : !acknowledged &&
        s.webhookEvents.size === 0 &&
        audit === 0 &&
        order?.status === "reserved" &&
        product?.stock === initial &&
        product?.reserved === qty &&
        notes === 0 &&
        confirmations.length === 0 &&
        ctx.processedResponses === 0;
    check(
      recorded ? "duplicates: exactly one effect" : "duplicates: no effect (no delivery applied)",
      effect,
      `webhookEvents ${s.webhookEvents.size}, audit ${audit}, order ${order?.status}, stock ${product?.stock} (initial ${initial}), ` +
        `reserved ${product?.reserved}, notifications ${notes}, 'processed' answers ${ctx.processedResponses}, acknowledged ${acknowledged}`,
    );
  }
  return finish(checks, s);
}

function finish(checks, s) {
  return {
    ok: checks.every((c) => c.ok),
    checks,
    foreign: Object.keys(s.foreign).length ? s.foreign : undefined,
    counts: {
      orders: s.orders.size,
      finalized: [...s.orders.values()].filter((o) => o.status === "finalized").length,
      webhookEvents: s.webhookEvents.size,
      auditLog: s.auditLog.size,
      notifications: s.notifications.size,
      deadLetters: s.deadLetters.size,
      benchBaseline: s.benchBaseline.size,
    },
  };
}
