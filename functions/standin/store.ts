import type Stripe from "stripe";
import { newId } from "./ids";

/** What the stand-in remembers: everything in memory, gone when it stops (like a fresh test account). */

interface Row {
  id: string;
}

export class Table<T extends Row> {
  private readonly rows = new Map<string, T>();

  get(id: string): T | undefined {
    return this.rows.get(id);
  }

  put(row: T): T {
    this.rows.set(row.id, row);
    return row;
  }

  /** Newest first, as Stripe lists; `startingAfter` is the id of the last row of the previous page. */
  list(filter: (row: T) => boolean, limit: number, startingAfter: string | null): { data: T[]; hasMore: boolean } {
    const all = [...this.rows.values()].reverse().filter(filter);
    const start = startingAfter === null ? 0 : all.findIndex((row) => row.id === startingAfter) + 1;
    const data = all.slice(start, start + limit);
    return { data, hasMore: start + limit < all.length };
  }

  count(): number {
    return this.rows.size;
  }
}

/** Parameters a Session was created with that Stripe applies only when the shopper pays. */
export interface SessionExtras {
  lineItems: { price: Stripe.Price; quantity: number }[];
  paymentIntentData: { metadata: Stripe.Metadata; description: string | null; receiptEmail: string | null };
  subscriptionMetadata: Stripe.Metadata;
}

export class Store {
  readonly customers = new Table<Stripe.Customer>();
  readonly paymentIntents = new Table<Stripe.PaymentIntent>();
  readonly charges = new Table<Stripe.Charge>();
  readonly checkoutSessions = new Table<Stripe.Checkout.Session>();
  readonly sessionExtras = new Map<string, SessionExtras>();
  readonly prices = new Table<Stripe.Price>();
  readonly subscriptions = new Table<Stripe.Subscription>();
  readonly invoices = new Table<Stripe.Invoice>();
  readonly portalSessions = new Table<Stripe.BillingPortal.Session>();
  /** `pm_…` created from a test PaymentMethod → the test PaymentMethod (`pm_card_visa`). */
  readonly paymentMethods = new Map<string, string>();
  readonly portalConfiguration = newId.portalConfiguration();
  /** PaymentIntents created with `automatic_payment_methods[enabled]=true` that allow redirects: confirm needs `return_url`. */
  readonly redirectCapable = new Set<string>();

  /** The stored object an id names, for `expand[]`. */
  find(id: string): Row | undefined {
    const tables: Table<Row>[] = [
      this.customers,
      this.paymentIntents,
      this.charges,
      this.checkoutSessions,
      this.prices,
      this.subscriptions,
      this.invoices,
      this.portalSessions,
    ];
    for (const table of tables) {
      const row = table.get(id);
      if (row !== undefined) return row;
    }
    return undefined;
  }
}
