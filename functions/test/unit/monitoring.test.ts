import { expect } from "chai";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as functions from "../../src/index";

/** The alert policies that name functions by their Cloud Run service: the function's name in lower case. */
describe("monitoring: the sweep timeout policy", () => {
  it("watches the Cloud Run service of every scheduled function, and nothing else", () => {
    const policy = JSON.parse(readFileSync(join(__dirname, "..", "..", "..", "monitoring", "policies", "stripe-sweep-timeout.json"), "utf8")) as {
      conditions: Array<{ conditionThreshold: { filter: string } }>;
    };
    const filter = policy.conditions[0].conditionThreshold.filter;
    const watched = /service_name=one_of\(([^)]*)\)/.exec(filter)?.[1].split(",").map((name) => name.trim().replace(/^"|"$/g, ""));
    const scheduled = Object.entries(functions)
      .filter(([, fn]) => (fn as { __endpoint?: { scheduleTrigger?: unknown } }).__endpoint?.scheduleTrigger !== undefined)
      .map(([name]) => name.toLowerCase());

    expect(scheduled).to.have.length(3);
    expect(watched?.sort()).to.deep.equal(scheduled.sort());
    expect(filter).to.include('metric.label.response_code="504"');
  });
});
