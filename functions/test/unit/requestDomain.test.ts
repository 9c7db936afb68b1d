import { expect } from "chai";
// The runtime's mechanism, recreated here as functions-framework does it for every request.
import * as domain from "node:domain";
import { inPlace, outsideRequestDomain, type StartCall } from "../../src/concurrency/requestDomain";

type Domain = domain.Domain;

const activeDomain = (): Domain | null => (process as NodeJS.Process & { domain?: Domain | null }).domain ?? null;

/** Runs `work` as functions-framework runs a request: inside a fresh domain, from a tick. */
function inRequest<T>(work: (request: Domain) => Promise<T>): Promise<T> {
  const request = domain.create();
  return new Promise<T>((resolve, reject) => {
    request.on("error", reject);
    request.run(() => process.nextTick(() => work(request).then(resolve, reject)));
  });
}

/** The domain a callback scheduled by the started call runs in: what the client's internals would see. */
const domainOfScheduledWork = (start: StartCall) => start(() => new Promise<Domain | null>((resolve) => setImmediate(() => resolve(activeDomain()))));

describe("outsideRequestDomain (the transaction layer's Firestore calls)", () => {
  it("starts the call outside the request's domain, so what the call schedules carries none", async () => {
    const seen = await inRequest(async (request) => {
      expect(activeDomain()).to.equal(request);
      return { during: outsideRequestDomain(() => activeDomain()), scheduled: await domainOfScheduledWork(outsideRequestDomain) };
    });
    expect(seen.during).to.equal(null);
    expect(seen.scheduled).to.equal(null);
  });

  it("leaves the caller in its request's domain, before and after awaiting the call", async () => {
    const seen = await inRequest(async (request) => {
      const pending = domainOfScheduledWork(outsideRequestDomain);
      const right = activeDomain() === request;
      await pending;
      return { right, afterAwait: activeDomain() === request };
    });
    expect(seen).to.deep.equal({ right: true, afterAwait: true });
  });

  it("enters the request's domain again when the call throws, and the error reaches the caller", async () => {
    const seen = await inRequest(async (request) => {
      let caught: unknown = null;
      try {
        outsideRequestDomain(() => {
          throw new Error("refused");
        });
      } catch (error) {
        caught = error;
      }
      return { message: caught instanceof Error ? caught.message : null, back: activeDomain() === request };
    });
    expect(seen).to.deep.equal({ message: "refused", back: true });
  });

  it("returns what the call returns, and outside any domain simply runs it", async () => {
    expect(activeDomain()).to.equal(null);
    expect(outsideRequestDomain(() => 42)).to.equal(42);
    expect(await domainOfScheduledWork(outsideRequestDomain)).to.equal(null);
    expect(activeDomain()).to.equal(null);
  });

  it("in place (the bench's knob off), the call and what it schedules stay in the request's domain", async () => {
    const seen = await inRequest(async (request) => ({ scheduled: (await domainOfScheduledWork(inPlace)) === request }));
    expect(seen.scheduled).to.equal(true);
  });
});
