import { expect } from "chai";
import type { Firestore } from "firebase-admin/firestore";
import { DEFAULT_DELIVERY_OPTIONS, redriveNotifications } from "../../src/notifications/deliver";
import { budgetOf, passOver, runSweep, SWEEP_BUDGET_MS, SWEEP_TIMEOUT_SECONDS, type SweepFailure } from "../../src/sweeps";

describe("sweeps: an item that throws is passed over, Firestore failing is not", () => {
  it("records an item's error by id and goes on", () => {
    const failures: SweepFailure[] = [];
    passOver(failures, "order-1", new Error("5 NOT_FOUND: no entity to update"));
    passOver(failures, "order-2", "not an Error");
    expect(failures).to.deep.equal([
      { id: "order-1", error: "5 NOT_FOUND: no entity to update" },
      { id: "order-2", error: "not an Error" },
    ]);
  });

  for (const [code, name] of [
    [4, "DEADLINE_EXCEEDED"],
    [8, "RESOURCE_EXHAUSTED"],
    [14, "UNAVAILABLE"],
  ] as const) {
    it(`rethrows Firestore's ${name} (${code}): every item would fail, so the run fails as a whole`, () => {
      const failures: SweepFailure[] = [];
      const error = Object.assign(new Error(`${code} ${name}`), { code });
      expect(() => passOver(failures, "order-1", error)).to.throw(error);
      expect(failures).to.deep.equal([]);
    });
  }

  it("logs one line per run under the sweep's message: INFO when clean, WARNING when cut short, ERROR when items were left or the run failed (rethrown)", async () => {
    const lines: Array<[string, string, object]> = [];
    const line = (level: string) => (m: string, f: object) => void lines.push([level, m, f]);
    const logger = { info: line("info"), warn: line("warn"), error: line("error") };
    const clean = { examined: 2, failures: [], complete: true };
    const cutShort = { examined: 2, failures: [], complete: false };
    const left = { examined: 2, failures: [{ id: "order-1", error: "boom" }], complete: false };
    const unavailable = Object.assign(new Error("14 UNAVAILABLE"), { code: 14 });
    expect(await runSweep(logger, "abandoned reservation sweep", async () => clean)).to.equal(clean);
    expect(await runSweep(logger, "abandoned reservation sweep", async () => cutShort)).to.equal(cutShort);
    expect(await runSweep(logger, "abandoned reservation sweep", async () => left)).to.equal(left);
    const failed = await runSweep(logger, "abandoned reservation sweep", () => Promise.reject(unavailable)).then(
      () => null,
      (error: unknown) => error,
    );
    expect(failed).to.equal(unavailable);
    expect(lines).to.deep.equal([
      ["info", "abandoned reservation sweep", clean],
      ["warn", "abandoned reservation sweep", cutShort],
      ["error", "abandoned reservation sweep", left],
      ["error", "abandoned reservation sweep", { error: "14 UNAVAILABLE" }],
    ]);
  });
});

describe("sweeps: a run's budget ends it within the function's timeout", () => {
  it("is spent once its time has passed on the clock it was given", () => {
    let now = 1_000;
    const budget = budgetOf(150, () => now);
    expect(budget.spent()).to.equal(false);
    now = 1_149;
    expect(budget.spent()).to.equal(false);
    now = 1_150;
    expect(budget.spent()).to.equal(true);
  });

  it("leaves room for the slowest item, a notification's send, and a minute of slow Firestore calls before the timeout", () => {
    expect(SWEEP_BUDGET_MS + DEFAULT_DELIVERY_OPTIONS.sendTimeoutMs + 60_000).to.be.at.most(SWEEP_TIMEOUT_SECONDS * 1000);
  });
});

describe("sweeps: the notification re-drive fails as a whole when Firestore does", () => {
  /** A Firestore whose notification queries fail: the failed kind's with `failedKind`, the stuck kind's with `stuckKind` (null: it finds nothing). */
  function failingQueries(failedKind: Error | null, stuckKind: Error | null): Firestore {
    const query = (error: Error | null) => {
      const q = {
        where: () => q,
        orderBy: () => q,
        limit: () => q,
        startAfter: () => q,
        get: () => (error === null ? Promise.resolve({ docs: [], size: 0 }) : Promise.reject(error)),
      };
      return q;
    };
    return { collection: () => ({ where: (_field: string, _op: string, status: string) => query(status === "failed" ? failedKind : stuckKind) }) } as unknown as Firestore;
  }
  const deps = (db: Firestore) => ({ db, now: () => new Date("2026-12-08T00:00:00Z"), provider: { name: "unused", send: () => Promise.reject(new Error("unused")) }, options: DEFAULT_DELIVERY_OPTIONS });
  const redrive = (db: Firestore) =>
    redriveNotifications(deps(db)).then(
      () => null,
      (error: unknown) => error,
    );
  const unavailable = Object.assign(new Error("14 UNAVAILABLE: connection reset"), { code: 14 });
  const deadline = Object.assign(new Error("4 DEADLINE_EXCEEDED: deadline exceeded"), { code: 4 });

  it("rethrows the one query's error when one kind's query fails", async () => {
    expect(await redrive(failingQueries(null, unavailable))).to.equal(unavailable);
    expect(await redrive(failingQueries(deadline, null))).to.equal(deadline);
  });

  it("names both causes, and which query each came from, when both kinds' queries fail; the run's line carries them", async () => {
    const error = await redrive(failingQueries(unavailable, deadline));

    expect(error).to.be.instanceOf(AggregateError);
    const [first, second] = (error as AggregateError).errors;
    expect(first).to.equal(unavailable);
    expect(second).to.equal(deadline);
    const message = "Both re-drive queries failed: failed notifications: 14 UNAVAILABLE: connection reset; stuck notifications: 4 DEADLINE_EXCEEDED: deadline exceeded";
    expect((error as AggregateError).message).to.equal(message);

    const lines: Array<[string, object]> = [];
    const logger = { info: () => undefined, warn: () => undefined, error: (_m: string, fields: object) => void lines.push(["error", fields]) };
    const run = await runSweep(logger, "notification re-drive", () => redriveNotifications(deps(failingQueries(unavailable, deadline)))).then(
      () => null,
      (e: unknown) => e,
    );
    expect(run).to.be.instanceOf(AggregateError);
    expect(lines).to.deep.equal([["error", { error: message }]]);
  });
});
