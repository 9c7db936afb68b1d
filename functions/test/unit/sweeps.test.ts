import { expect } from "chai";
import { logSweep, passOver, type SweepFailure } from "../../src/sweeps";

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

  it("logs one line per run under the sweep's message, at ERROR only when items were left", () => {
    const lines: Array<[string, string, object]> = [];
    const logger = { info: (m: string, f: object) => lines.push(["info", m, f]), error: (m: string, f: object) => lines.push(["error", m, f]) };
    const clean = { examined: 2, failures: [] };
    const left = { examined: 2, failures: [{ id: "order-1", error: "boom" }] };
    logSweep(logger, "abandoned reservation sweep", clean);
    logSweep(logger, "abandoned reservation sweep", left);
    expect(lines).to.deep.equal([
      ["info", "abandoned reservation sweep", clean],
      ["error", "abandoned reservation sweep", left],
    ]);
  });
});
