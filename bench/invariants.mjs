// Invariant checks read back from Firestore after each scenario (SPEC §6, adapted to a bench where
// the notification trigger does not run: order_confirmed documents stay `queued`, only counted).
//
// `ctx.events`: Map eventId -> "applied" (some delivery got a 2xx) | "failed" (every delivery got a
// non-2xx answer) | "unknown" (a delivery timed out on the client: may or may not have applied) |
// "unsent" (the phase budget ran out first). Only "applied" must, and "failed"/"unsent" must not,
// have a webhookEvents record; everything that did apply must be consistent.

export async function readState(db) {
  const names = ["orders", "products", "webhookEvents", "auditLog", "notifications", "deadLetters", "benchBaseline"];
  const snaps = await Promise.all(names.map((n) => db.collection(n).get()));
  const state = {};
  names.forEach((n, i) => {
    state[n] = new Map(snaps[i].docs.map((d) => [d.id, d.data()]));
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

/**
 * @param {object} ctx
 * @param {Map<string, number>} [ctx.initialStock] sku -> stock before the scenario (reserved was 0)
 * @param {Map<string, string>} [ctx.events] eventId -> applied | failed | unknown | unsent
 * @param {Map<string, string>} [ctx.reservations] orderId -> reserved | out_of_stock | skipped | failed | unknown | unsent
 * @param {boolean} [ctx.baseline] check benchBaseline instead of the order pipeline
 * @param {{eventId: string, orderId: string, sku: string, qty: number}} [ctx.exactlyOnce]
 * @param {number} [ctx.processedResponses] 2xx answers whose body said `processed` (duplicates scenario)
 */
export async function checkInvariants(db, ctx) {
  const s = await readState(db);
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

  // Duplicates: exactly one effect.
  if (ctx.exactlyOnce) {
    const { eventId, orderId, sku, qty, initial } = ctx.exactlyOnce;
    const order = s.orders.get(orderId);
    const product = s.products.get(sku);
    const audit = auditByEvent.get(eventId) ?? 0;
    const notes = confirmedOrders.get(orderId) ?? 0;
    const effect =
      s.webhookEvents.size === 1 &&
      s.webhookEvents.has(eventId) &&
      audit === 1 &&
      order?.status === "finalized" &&
      (order.statusHistory ?? []).filter((h) => h.to === "finalized").length === 1 &&
      product?.stock === initial - qty &&
      product?.reserved === 0 &&
      notes === 1 &&
      confirmations.length === 1 &&
      ctx.processedResponses === 1;
    check(
      "duplicates: exactly one effect",
      effect,
      `webhookEvents ${s.webhookEvents.size}, audit ${audit}, order ${order?.status}, stock ${product?.stock}/${initial - qty}, ` +
        `reserved ${product?.reserved}, notifications ${notes}, 'processed' answers ${ctx.processedResponses}`,
    );
  }
  return finish(checks, s);
}

function finish(checks, s) {
  return {
    ok: checks.every((c) => c.ok),
    checks,
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
