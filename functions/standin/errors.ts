/**
 * Stripe's error shape: `{ error: { type, code?, message, param?, ... } }` with the HTTP status Stripe
 * uses for it, so the real `stripe` client raises the same error classes it would against Stripe.
 */

export type StripeErrorType = "api_error" | "card_error" | "idempotency_error" | "invalid_request_error";

export interface StripeErrorBody {
  type: StripeErrorType;
  message: string;
  code?: string;
  param?: string;
  decline_code?: string;
  charge?: string;
  doc_url?: string;
  /** JSON copies of the objects a card error names (Stripe embeds them). */
  payment_intent?: object;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: StripeErrorBody,
  ) {
    super(body.message);
    this.name = "ApiError";
  }
}

export function invalidRequest(message: string, extra: { code?: string; param?: string; status?: number } = {}): ApiError {
  const { status = 400, ...rest } = extra;
  return new ApiError(status, { type: "invalid_request_error", message, ...rest });
}

export function missingParam(param: string): ApiError {
  return invalidRequest(`Missing required param: ${param}.`, { code: "parameter_missing", param });
}

export function invalidParam(param: string, message: string): ApiError {
  return invalidRequest(message, { code: "parameter_invalid_empty", param });
}

export function noSuch(kind: string, id: string, param = "id"): ApiError {
  return invalidRequest(`No such ${kind}: '${id}'`, { code: "resource_missing", param, status: 404 });
}

export function unexpectedState(message: string): ApiError {
  return invalidRequest(message, { code: "payment_intent_unexpected_state" });
}
