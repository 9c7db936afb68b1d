/**
 * Starts a Firestore call for the transaction layer: `() => db.getAll(...)`, `() => batch.commit()`.
 * The call's promise resolves or rejects in the caller as usual; what changes is only where the client's
 * own work runs.
 */
export type StartCall = <T>(call: () => T) => T;

/** The part of the active Node `domain` this module uses; `process.domain` is read without importing the deprecated `domain` module. */
interface ActiveDomain {
  enter(): void;
  exit(): void;
}

/**
 * Starts `call` outside the domain the runtime runs the request in, and enters that domain again before
 * returning, so that everything after it (the caller's `await` included) runs in the request's domain
 * as before.
 *
 * Why: functions-framework, the runtime of v2 functions in production and in the bench, runs every
 * request inside a Node `domain`, so that an exception thrown later by anything the request started is
 * answered on that request. Every promise and tick created while a domain is active is paired with it:
 * the domain is recorded on it, a destroy hook registered, and the domain entered and exited around each
 * of its callbacks. The Firestore client's gRPC stream creates about 23 of them for every document it
 * reads, so a payment that reads five documents made 70 % of its async resources inside the client.
 * Started outside the domain, the call's own resources are not paired. Measured in the bench at K = 3
 * (docs/performance.md, eleventh round): the function servers' CPU per payment fell by 6–10 %.
 *
 * What it changes: an exception thrown asynchronously inside the client (not a rejected call, which
 * still rejects in the caller) reaches the process's `uncaughtException` handler instead of the domain of
 * the request that started the call: functions-framework then answers its latest request 500 and exits,
 * so the instance restarts and Stripe redelivers what was in flight (the bench's crash scenario). Before,
 * that request alone was answered 500 (in a group commit, only its leader, whatever member the call was
 * for) and the instance went on with the client in whatever state the exception left it.
 * Outside a domain (tests, the bench's reservation workers, a runtime without domains) `call` simply runs.
 */
export const outsideRequestDomain: StartCall = (call) => {
  const active = (process as NodeJS.Process & { domain?: ActiveDomain | null }).domain;
  if (active === undefined || active === null) return call();
  active.exit();
  try {
    return call();
  } finally {
    active.enter();
  }
};

/** Starts `call` where the caller is (the knob's "off": for comparison in the bench). */
export const inPlace: StartCall = (call) => call();
