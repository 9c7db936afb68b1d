import type Stripe from "stripe";
import type { EventMeta } from "../domain/commands";
import { eventMeta, translateEvent } from "../stripe/translate";
import { applyEvent, type ApplyOutcome, type PipelineDeps } from "../webhook/applyEvent";
import { applySubscriptionEvent, type SubscriptionPipelineDeps } from "./apply";
import { translateSubscriptionEvent } from "./translate";

export type VerifiedEventDeps = PipelineDeps & Pick<SubscriptionPipelineDeps, "subscriptionOptions">;

/**
 * One verified event → its one transaction: a subscription event goes to the subscription pipeline,
 * anything else to the order pipeline. Used by the webhook delivery and by the dead-letter replay, so
 * both treat an event alike.
 */
export function applyVerifiedEvent(deps: VerifiedEventDeps, event: Stripe.Event, receivedAt: Date, options: { replay?: boolean } = {}): Promise<ApplyOutcome> {
  const meta: EventMeta = eventMeta(event);
  const subscription = translateSubscriptionEvent(event);
  if (subscription === null) return applyEvent(deps, meta, translateEvent(event), receivedAt, options);
  if (subscription.kind === "ignored") return applyEvent(deps, meta, { kind: "ignored", reason: subscription.reason, orderId: null }, receivedAt, options);
  return applySubscriptionEvent(deps, meta, subscription.command, receivedAt, options);
}
