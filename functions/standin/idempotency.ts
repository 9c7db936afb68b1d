import { ApiError } from "./errors";

/**
 * Stripe's idempotency: the first answer to a key is saved (success or failure of a request that
 * ran) and replayed for the same key and the same parameters; the same key with other parameters
 * or on another endpoint is refused with `idempotency_error`. Requests that fail validation, and
 * faults injected in front of the API, save nothing, as on Stripe.
 */

export interface SavedResponse {
  status: number;
  body: string;
  requestId: string;
}

interface Entry {
  endpoint: string;
  fingerprint: string;
  response: SavedResponse;
}

export const MAX_KEY_LENGTH = 255;

export type Lookup = { kind: "new" } | { kind: "replay"; response: SavedResponse };

export class IdempotencyKeys {
  private readonly entries = new Map<string, Entry>();

  lookup(key: string, endpoint: string, fingerprint: string): Lookup {
    if (key.length > MAX_KEY_LENGTH) {
      throw new ApiError(400, {
        type: "invalid_request_error",
        message: `Idempotency-Key must be at most ${MAX_KEY_LENGTH} characters long.`,
      });
    }
    const entry = this.entries.get(key);
    if (entry === undefined) return { kind: "new" };
    if (entry.endpoint !== endpoint) {
      throw new ApiError(400, {
        type: "idempotency_error",
        message:
          `Keys for idempotent requests can only be used for the same endpoint they were first used for ` +
          `('${entry.endpoint}' vs '${endpoint}'). Try using a key other than '${key}' if you meant to execute a different request.`,
      });
    }
    if (entry.fingerprint !== fingerprint) {
      throw new ApiError(400, {
        type: "idempotency_error",
        message:
          `Keys for idempotent requests can only be used with the same parameters they were first used with. ` +
          `Try using a key other than '${key}' if you meant to execute a different request.`,
      });
    }
    return { kind: "replay", response: entry.response };
  }

  save(key: string, endpoint: string, fingerprint: string, response: SavedResponse): void {
    this.entries.set(key, { endpoint, fingerprint, response });
  }
}
