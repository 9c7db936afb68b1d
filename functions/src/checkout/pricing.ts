import type { PricedLine } from "../collections/checkoutOrders";
import type { OrderLine } from "../collections/orders";
import type { Product } from "../collections/products";
import { invalidInput } from "./errors";

/**
 * The amount of a checkout, from the product documents only (SPEC 7: the client never defines it).
 * Pure: the products are read by the caller.
 */

/** Stripe's largest charge for most currencies (8 digits of minor units); a larger sum is refused here, not by Stripe. */
export const MAX_AMOUNT = 99_999_999;

export interface PricedOrder {
  amount: number;
  currency: string;
  lines: PricedLine[];
}

export function priceOrder(items: readonly OrderLine[], products: ReadonlyMap<string, Product | undefined>): PricedOrder {
  const lines: PricedLine[] = [];
  let currency: string | null = null;
  let amount = 0;
  for (const { sku, qty } of items) {
    const product = products.get(sku);
    if (product === undefined) throw invalidInput("unknown_sku", `There is no product ${sku}.`, { sku });
    if (!product.active) throw invalidInput("inactive_sku", `${sku} is not for sale any more.`, { sku });
    if (product.price === undefined || product.currency === undefined) {
      throw invalidInput("unpriced_sku", `${sku} has no price and cannot be sold.`, { sku });
    }
    if (currency !== null && product.currency !== currency) {
      throw invalidInput("mixed_currency", `One checkout is paid in one currency: ${sku} is priced in ${product.currency}, earlier lines in ${currency}.`, { sku });
    }
    currency = product.currency;
    amount += product.price * qty;
    if (amount > MAX_AMOUNT) throw invalidInput("amount_too_large", `The total exceeds the largest payment (${MAX_AMOUNT} minor units); split the order.`);
    lines.push({ sku, qty, unitAmount: product.price, name: product.name });
  }
  if (currency === null) throw invalidInput("no_lines", "items must list at least one {sku, qty}.");
  return { amount, currency, lines };
}
