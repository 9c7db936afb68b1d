import Stripe from "stripe";
import { ConfigurationError, NotAnEventError, SignatureError } from "../errors";

/** Stripe's recommended tolerance between the signed timestamp and now. */
export const SIGNATURE_TOLERANCE_SECONDS = 300;

export interface VerifiedEvent {
  event: Stripe.Event;
  /** The exact bytes Stripe signed, as text: what a dead letter keeps for replay. */
  rawBody: string;
}

/**
 * `STRIPE_WEBHOOK_SECRET` may hold several secrets separated by commas while one is rolled
 * (Stripe signs with the old and the new endpoint secret for a while).
 */
export function parseWebhookSecrets(raw: string | undefined): string[] {
  const secrets = (raw ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (secrets.length === 0) {
    throw new ConfigurationError(
      "STRIPE_WEBHOOK_SECRET is empty: set it with `firebase functions:secrets:set STRIPE_WEBHOOK_SECRET` " +
        "(or in functions/.secret.local for the emulator) to the endpoint's signing secret (whsec_...).",
    );
  }
  return secrets;
}

/**
 * Verifies the `Stripe-Signature` header against the raw body with Stripe's own implementation and
 * returns the event. Throws SignatureError (answer 400, write nothing) or NotAnEventError.
 */
export function verifyStripeEvent(
  rawBody: Buffer | undefined,
  signatureHeader: string | string[] | undefined,
  secrets: readonly string[],
  now: Date,
  toleranceSeconds = SIGNATURE_TOLERANCE_SECONDS,
): VerifiedEvent {
  if (signatureHeader === undefined || signatureHeader === "") {
    throw new SignatureError(
      "Missing Stripe-Signature header. Webhooks must come from Stripe or `stripe listen --forward-to <this URL>`.",
    );
  }
  if (Array.isArray(signatureHeader)) {
    throw new SignatureError("Several Stripe-Signature headers were sent; Stripe sends exactly one.");
  }
  if (rawBody === undefined || rawBody.length === 0) {
    throw new SignatureError("Empty request body: the signature covers the raw body, which must be forwarded unchanged.");
  }
  // Stripe compares `receivedAt` with Date.now(): milliseconds.
  const receivedAt = now.getTime();
  let lastError: unknown = null;
  for (const secret of secrets) {
    try {
      const event = Stripe.webhooks.constructEvent(rawBody, signatureHeader, secret, toleranceSeconds, undefined, receivedAt);
      assertIsEvent(event);
      return { event, rawBody: rawBody.toString("utf8") };
    } catch (error) {
      if (error instanceof Stripe.errors.StripeSignatureVerificationError) {
        lastError = error;
        continue;
      }
      if (error instanceof NotAnEventError) throw error;
      // The signature matched but the body is not JSON: Stripe's parser threw after verification.
      throw new NotAnEventError(`The signed body is not JSON: ${errorMessage(error)}`);
    }
  }
  throw new SignatureError(
    `${errorMessage(lastError)} Check that STRIPE_WEBHOOK_SECRET holds this endpoint's signing secret ` +
      `(the whsec_... shown by the Dashboard or by \`stripe listen\`), that the body reaches the function unmodified, ` +
      `and that the sender's clock is within ${toleranceSeconds} s.`,
  );
}

function assertIsEvent(value: unknown): asserts value is Stripe.Event {
  const v = (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>;
  const data = v.data as Record<string, unknown> | undefined;
  const ok =
    v.object === "event" &&
    typeof v.id === "string" &&
    v.id.length > 0 &&
    typeof v.type === "string" &&
    typeof v.created === "number" &&
    typeof data === "object" &&
    data !== null &&
    typeof data.object === "object" &&
    data.object !== null;
  if (!ok) {
    throw new NotAnEventError(
      'The signed body is not a Stripe event: expected {"object": "event", "id", "type", "created", "data": {"object": {...}}}.',
    );
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
