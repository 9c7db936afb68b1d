/**
 * The project's own vocabulary for what a payment event means. Stripe objects are translated into
 * these at the edge (stripe/translate.ts); nothing below that edge sees a Stripe type.
 */

/** How to find the order an event is about. */
export type OrderRef =
  | { by: "orderId"; orderId: string }
  | { by: "paymentIntent"; paymentIntentId: string };

/** The identifiers of the Stripe payment an event claims; checked against what the order stored. */
export interface PaymentIds {
  paymentIntentId: string | null;
  checkoutSessionId: string | null;
}

export type Command =
  | ({ kind: "payment_succeeded"; amount: number; currency: string } & PaymentIds)
  /** A Checkout Session completed without the money yet (delayed methods): it now holds the order. */
  | ({ kind: "checkout_awaiting_payment"; amount: number; currency: string } & PaymentIds)
  | ({ kind: "payment_failed"; code: string | null; message: string | null } & PaymentIds)
  | ({ kind: "payment_canceled"; reason: string | null } & PaymentIds)
  /** `amountRefunded` is the charge's cumulative total, never a per-event delta. */
  | ({ kind: "refund_updated"; chargeAmount: number; amountRefunded: number; currency: string } & PaymentIds)
  | ({ kind: "dispute_opened"; disputeId: string; amount: number; currency: string; disputeStatus: string } & PaymentIds)
  | ({ kind: "dispute_closed"; disputeId: string; amount: number; currency: string; disputeStatus: string } & PaymentIds);

export type CommandKind = Command["kind"];

/** The envelope facts the pipeline needs about any verified event. */
export interface EventMeta {
  id: string;
  type: string;
  /** Stripe's `created`, one-second resolution: a tie-breaker only, never an ordering guarantee. */
  created: Date;
  livemode: boolean;
}

export type Translation =
  | { kind: "command"; ref: OrderRef; command: Command }
  | { kind: "ignored"; reason: string; orderId: string | null };
