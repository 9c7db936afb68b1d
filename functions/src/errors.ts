/**
 * The small set of errors the backend raises on purpose. Each one knows how the webhook endpoint
 * must answer it; `httpStatusOf` is the only place that maps errors to HTTP statuses.
 */

export type ErrorCode =
  | "method_not_allowed"
  | "signature_invalid"
  | "not_a_stripe_event"
  | "deferred"
  | "transient"
  | "misconfigured";

export abstract class AppError extends Error {
  abstract readonly code: ErrorCode;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class MethodNotAllowedError extends AppError {
  readonly code = "method_not_allowed" as const;
}

/** Missing, malformed, stale or wrongly signed `Stripe-Signature`, or a tampered body. */
export class SignatureError extends AppError {
  readonly code = "signature_invalid" as const;
}

/** Correctly signed, but the body is not a Stripe event envelope. */
export class NotAnEventError extends AppError {
  readonly code = "not_a_stripe_event" as const;
}

/**
 * The event cannot be applied yet (its order does not exist yet, or it refers to a state the order
 * has not reached, e.g. a refund before the payment). Answered non-2xx so Stripe redelivers it;
 * counted in `deadLetters` and parked after a bounded number of attempts.
 */
export class DeferredError extends AppError {
  readonly code = "deferred" as const;
  constructor(
    message: string,
    readonly reason: string,
    readonly orderId: string | null = null,
  ) {
    super(message);
  }
}

/** Firestore unavailable, deadline exceeded, contention that outlived the transaction retries. */
export class TransientError extends AppError {
  readonly code = "transient" as const;
}

/** The deployment itself is wrong (e.g. no webhook secret configured). */
export class ConfigurationError extends AppError {
  readonly code = "misconfigured" as const;
}

const STATUS: Record<ErrorCode, number> = {
  method_not_allowed: 405,
  signature_invalid: 400,
  not_a_stripe_event: 400,
  deferred: 409,
  transient: 500,
  misconfigured: 500,
};

export function httpStatusOf(error: AppError): number {
  return STATUS[error.code];
}

/**
 * Turns any thrown value into an AppError. Anything unexpected (Firestore UNAVAILABLE, ABORTED after
 * the transaction's own retries, DEADLINE_EXCEEDED, a bug) is transient: answered 500 so Stripe
 * redelivers, and counted in deadLetters so an operator sees it.
 */
export function classify(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const code = grpcCodeOf(error);
  const message = error instanceof Error ? error.message : String(error);
  return new TransientError(code === null ? message : `${message} (gRPC code ${code})`, { cause: error });
}

export function grpcCodeOf(error: unknown): number | null {
  if (typeof error === "object" && error !== null && "code" in error) {
    const code = (error as { code: unknown }).code;
    if (typeof code === "number") return code;
  }
  return null;
}

/**
 * Firestore itself failing (unavailable, overloaded, too slow), for every document alike: whatever ran
 * into it would fail the same way for its neighbours, so it fails as a whole and is retried.
 */
export function isFirestoreFailing(error: unknown): boolean {
  const code = grpcCodeOf(error);
  return code === 4 /* DEADLINE_EXCEEDED */ || code === 8 /* RESOURCE_EXHAUSTED */ || code === 14 /* UNAVAILABLE */;
}

export const GRPC_ALREADY_EXISTS = 6;
export const GRPC_FAILED_PRECONDITION = 9;
