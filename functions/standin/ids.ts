import { randomBytes } from "node:crypto";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** Base62 text like the random part of Stripe's ids. */
export function randomToken(length: number): string {
  const bytes = randomBytes(length);
  let out = "";
  for (const byte of bytes) out += ALPHABET[byte % ALPHABET.length];
  return out;
}

/** Ids shaped like Stripe's: `pi_3Pgaf…` (24 characters), `cus_QXg1o8vcGmoR32` (14), `cs_test_a1…` (58). */
export const newId = {
  customer: () => `cus_${randomToken(14)}`,
  paymentIntent: () => `pi_${randomToken(24)}`,
  charge: () => `ch_${randomToken(24)}`,
  paymentMethod: () => `pm_${randomToken(24)}`,
  balanceTransaction: () => `txn_${randomToken(24)}`,
  checkoutSession: () => `cs_test_${randomToken(58)}`,
  subscription: () => `sub_${randomToken(24)}`,
  subscriptionItem: () => `si_${randomToken(14)}`,
  invoice: () => `in_${randomToken(24)}`,
  invoiceLine: () => `il_${randomToken(24)}`,
  product: () => `prod_${randomToken(14)}`,
  price: () => `price_${randomToken(24)}`,
  portalSession: () => `bps_${randomToken(24)}`,
  portalConfiguration: () => `bpc_${randomToken(24)}`,
  event: () => `evt_${randomToken(24)}`,
  request: () => `req_${randomToken(14)}`,
  clientSecret: (ownerId: string) => `${ownerId}_secret_${randomToken(25)}`,
};
