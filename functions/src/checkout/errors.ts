import Stripe from "stripe";
import { HttpsError, type FunctionsErrorCode } from "firebase-functions/v2/https";
import { AppError, grpcCodeOf } from "../errors";

/**
 * The errors the checkout callables raise on purpose, and the ONE place that turns any thrown value
 * into the callable's answer (`toHttpsError`). The code is what a client app branches on; the
 * message says what to change; `details.reason` is stable for logs and tests.
 */

export type CheckoutErrorKind =
  /** No Firebase Auth user on the call. */
  | "not_signed_in"
  /** The input itself is wrong (shape, SKU, quantity, currency mix, URL): fix the request. */
  | "invalid_input"
  /** This idempotency key already names an order with other contents: use a new key. */
  | "key_reused"
  /** The request is fine but the state does not allow it (e.g. a subscription already grants a role). */
  | "not_allowed_now"
  /** Too many new checkouts by this user in the window. */
  | "rate_limited";

const CODE_OF: Record<CheckoutErrorKind, FunctionsErrorCode> = {
  not_signed_in: "unauthenticated",
  invalid_input: "invalid-argument",
  key_reused: "failed-precondition",
  not_allowed_now: "failed-precondition",
  rate_limited: "resource-exhausted",
};

export class CheckoutError extends Error {
  constructor(
    readonly kind: CheckoutErrorKind,
    message: string,
    readonly details: { reason: string } & Record<string, string | number | boolean | null> = { reason: kind },
  ) {
    super(message);
    this.name = "CheckoutError";
  }
}

export const invalidInput = (reason: string, message: string, extra: Record<string, string | number> = {}) =>
  new CheckoutError("invalid_input", message, { reason, ...extra });

// gRPC codes of Firestore failures a retry with the same key can get past.
const GRPC_RETRYABLE = new Set([4 /* DEADLINE_EXCEEDED */, 8 /* RESOURCE_EXHAUSTED */, 10 /* ABORTED */, 14 /* UNAVAILABLE */]);

export type ErrorLog = (message: string, fields: Record<string, unknown>) => void;

/**
 * Any thrown value → the callable's HttpsError. Stripe unreachable, 5xx, 409 or 429, and Firestore
 * trouble are `unavailable`: calling again with the same idempotency key completes the same order
 * (nothing is doubled). Anything else unexpected is `internal`, logged with its cause, and says nothing
 * about internals to the client.
 */
export function toHttpsError(error: unknown, log: ErrorLog): HttpsError {
  if (error instanceof HttpsError) return error;
  if (error instanceof CheckoutError) return new HttpsError(CODE_OF[error.kind], error.message, error.details);
  if (error instanceof Stripe.errors.StripeError) {
    const fields = { type: error.type, code: error.code ?? null, statusCode: error.statusCode ?? null, requestId: error.requestId ?? null, detail: error.message };
    if (
      error instanceof Stripe.errors.StripeConnectionError ||
      error instanceof Stripe.errors.StripeAPIError ||
      error instanceof Stripe.errors.StripeRateLimitError
    ) {
      log("Stripe unavailable during checkout; the client may retry with the same key", fields);
      return new HttpsError("unavailable", "The payment provider is unavailable. Try again with the same idempotencyKey.", { reason: "stripe_unavailable" });
    }
    // Authentication, permission, invalid request or an idempotency conflict: our own request is wrong.
    log("Stripe refused a checkout request", fields);
    return new HttpsError("internal", "The payment could not be set up.", { reason: "stripe_refused" });
  }
  const grpc = grpcCodeOf(error);
  if (grpc !== null && GRPC_RETRYABLE.has(grpc)) {
    log("Firestore unavailable during checkout; the client may retry with the same key", { grpc, detail: String(error) });
    return new HttpsError("unavailable", "The order store is busy. Try again with the same idempotencyKey.", { reason: "store_unavailable" });
  }
  log("Unexpected checkout failure", {
    kind: error instanceof AppError ? error.code : null,
    detail: error instanceof Error ? error.message : String(error),
    stack: error instanceof Error ? (error.stack ?? null) : null,
  });
  return new HttpsError("internal", "Checkout failed unexpectedly.", { reason: "internal" });
}

/**
 * A callable that needs a signed-in user: `run` gets the uid; every error leaves through `toHttpsError`.
 * `what` completes "Sign in first: … needs a Firebase Auth user."
 */
export async function signedInCallable<T>(request: { auth?: { uid?: string } | null }, log: ErrorLog, what: string, run: (uid: string) => Promise<T>): Promise<T> {
  try {
    const uid = request.auth?.uid;
    if (!uid) throw new CheckoutError("not_signed_in", `Sign in first: ${what} needs a Firebase Auth user.`);
    return await run(uid);
  } catch (error) {
    throw toHttpsError(error, log);
  }
}
