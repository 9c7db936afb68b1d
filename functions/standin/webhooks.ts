import Stripe from "stripe";
import { newId } from "./ids";

/**
 * Events as Stripe renders them and their delivery as `stripe listen --forward-to` does it: signed
 * with Stripe's own test helper, POSTed after the API call has answered, retried on a non-2xx.
 */

export type EventType =
  | "charge.failed"
  | "charge.succeeded"
  | "checkout.session.completed"
  | "checkout.session.expired"
  | "customer.subscription.created"
  | "invoice.paid"
  | "payment_intent.canceled"
  | "payment_intent.payment_failed"
  | "payment_intent.succeeded";

export type StandInEvent = Extract<Stripe.Event, { type: EventType }>;
type EventObject<T extends EventType> = Extract<Stripe.Event, { type: T }>["data"]["object"];

export interface EventRequest {
  id: string | null;
  idempotency_key: string | null;
}

/** Pins `api_version` to the version the `stripe` package is generated for, as the project does. */
export const API_VERSION: string = Stripe.API_VERSION;

export function makeEvent<T extends EventType>(type: T, object: EventObject<T>, created: number, request: EventRequest): StandInEvent {
  const event = {
    id: newId.event(),
    object: "event" as const,
    api_version: API_VERSION,
    created,
    // A copy: the object as it was when the event happened, however it changes later.
    data: { object: structuredClone(object) },
    livemode: false,
    pending_webhooks: 1,
    request,
    type,
  };
  // TypeScript cannot narrow a generic `type` to its member of the union; `T` ties it to `object`.
  return event as StandInEvent;
}

export interface DeliveryAttempt {
  eventId: string;
  type: string;
  objectId: string;
  attempt: number;
  /** HTTP status the endpoint answered; null when it could not be reached. */
  status: number | null;
  error: string | null;
  at: string;
}

export interface WebhookOptions {
  url: string;
  secret: string;
  /** Waits before each retry; its length is the number of retries. */
  retryDelaysMs: readonly number[];
  timeoutMs: number;
  now: () => Date;
  log: (line: string, level: "info" | "warn") => void;
}

export class WebhookSender {
  private readonly attempts: DeliveryAttempt[] = [];
  private readonly pending = new Set<Promise<void>>();
  private readonly aborts = new Set<AbortController>();
  private closed = false;

  constructor(private readonly options: WebhookOptions) {}

  /** Delivers one API call's events one after the other, in the order given; calls run side by side. */
  enqueue(events: readonly StandInEvent[]): void {
    if (events.length === 0 || this.closed) return;
    const run = (async () => {
      for (const event of events) await this.deliver(event);
    })();
    this.pending.add(run);
    void run.finally(() => this.pending.delete(run));
  }

  deliveries(): readonly DeliveryAttempt[] {
    return this.attempts;
  }

  /** Resolves once every queued delivery has ended (delivered or out of retries). */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  close(): void {
    this.closed = true;
    for (const controller of this.aborts) controller.abort();
  }

  private async deliver(event: StandInEvent): Promise<void> {
    const payload = JSON.stringify(event, null, 2);
    const objectId = event.data.object.id;
    const retries = this.options.retryDelaysMs;
    for (let attempt = 1; attempt <= retries.length + 1 && !this.closed; attempt++) {
      if (attempt > 1) await this.wait(retries[attempt - 2] ?? 0);
      if (this.closed) return;
      const { status, error } = await this.post(payload);
      this.attempts.push({ eventId: event.id, type: event.type, objectId, attempt, status, error, at: this.options.now().toISOString() });
      const ok = status !== null && status >= 200 && status < 300;
      this.options.log(`${event.type} ${event.id} → ${status ?? error}${ok ? "" : ` (attempt ${attempt})`}`, "info");
      if (ok) return;
    }
    if (!this.closed) {
      this.options.log(`${event.type} ${event.id} not delivered to ${this.options.url} after ${retries.length + 1} attempts`, "warn");
    }
  }

  private async post(payload: string): Promise<{ status: number | null; error: string | null }> {
    const signature = Stripe.webhooks.generateTestHeaderString({
      payload,
      secret: this.options.secret,
      timestamp: Math.floor(this.options.now().getTime() / 1000),
    });
    const controller = new AbortController();
    this.aborts.add(controller);
    const timer = setTimeout(() => controller.abort(), this.options.timeoutMs);
    try {
      const res = await fetch(this.options.url, {
        method: "POST",
        headers: { "Content-Type": "application/json; charset=utf-8", "Stripe-Signature": signature, "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)" },
        body: payload,
        signal: controller.signal,
      });
      // Read the answer so that the connection is released.
      await res.arrayBuffer();
      return { status: res.status, error: null };
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : "";
      return { status: null, error: `${err instanceof Error ? err.message : String(err)}${cause}` };
    } finally {
      clearTimeout(timer);
      this.aborts.delete(controller);
    }
  }

  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      timer.unref();
    });
  }
}
