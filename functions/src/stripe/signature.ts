import Stripe from "stripe";
import { isDocumentId } from "../domain/ids";
import { ConfigurationError, NotAnEventError, SignatureError } from "../errors";
import { MAX_TIMESTAMP_SECONDS } from "./fields";

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

/**
 * Stripe's event ids are short; documents named after an event add a prefix to it
 * (`payment_action_required:{id}`), so the id must leave room under Firestore's 1500-byte id limit.
 */
const MAX_EVENT_ID_BYTES = 255;


/**
 * The envelope's id names documents and its fields fill the webhookEvents record, inside the event's
 * transaction: a value Firestore refuses there (an undefined `livemode`, an id naming a path) would
 * fail that transaction on every redelivery, so it is refused here: a 400, nothing written.
 */
function assertIsEvent(value: unknown): asserts value is Stripe.Event {
  const v = (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>;
  const data = v.data as Record<string, unknown> | undefined;
  const ok =
    v.object === "event" &&
    typeof v.type === "string" &&
    // Seconds since the epoch, stored as a Timestamp, which ends with the year 9999.
    Number.isSafeInteger(v.created) &&
    (v.created as number) >= 0 &&
    (v.created as number) <= MAX_TIMESTAMP_SECONDS &&
    typeof v.livemode === "boolean" &&
    typeof data === "object" &&
    data !== null &&
    typeof data.object === "object" &&
    data.object !== null;
  if (!ok) {
    throw new NotAnEventError(
      'The signed body is not a Stripe event: expected {"object": "event", "id", "type", "created", "livemode": true|false, "data": {"object": {...}}}.',
    );
  }
  if (!isDocumentId(v.id) || Buffer.byteLength(v.id) > MAX_EVENT_ID_BYTES) {
    throw new NotAnEventError(
      `The signed body is not a Stripe event: its id ${JSON.stringify(v.id)} is not a Stripe event id ` +
        `(a non-empty string of at most ${MAX_EVENT_ID_BYTES} bytes without "/", like "evt_...").`,
    );
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
