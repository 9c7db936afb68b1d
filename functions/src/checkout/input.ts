import type { OrderLine } from "../collections/orders";
import { CHECKOUT_UIS, type CheckoutUi } from "../collections/checkoutOrders";
import { invalidInput } from "./errors";

/** The edge of `createCheckout`: what the client sent, checked before it names any document. */

export const MAX_CHECKOUT_LINES = 20;
export const MAX_QTY_PER_LINE = 999;
const SKU = /^[A-Za-z0-9_-]{1,100}$/;
const IDEMPOTENCY_KEY = /^[A-Za-z0-9_-]{8,255}$/;
const MAX_URL_LENGTH = 2048;

export interface CheckoutInput {
  items: OrderLine[];
  idempotencyKey: string;
  ui: CheckoutUi;
  /** Only with ui `checkout_session`. */
  successUrl?: string;
  cancelUrl?: string;
}

const TOP_LEVEL_KEYS = new Set(["items", "idempotencyKey", "ui", "successUrl", "cancelUrl"]);
const LINE_KEYS = new Set(["sku", "qty"]);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `CHECKOUT_ALLOWED_ORIGINS`: comma-separated origins (scheme://host[:port]); anything else is a configuration error. */
export function parseAllowedOrigins(raw: string): string[] {
  return raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => {
      const url = new URL(s);
      if ((url.protocol !== "https:" && url.protocol !== "http:") || url.origin !== s.replace(/\/$/, "")) {
        throw new TypeError(`CHECKOUT_ALLOWED_ORIGINS entry ${JSON.stringify(s)} is not an origin like https://shop.example.com`);
      }
      return url.origin;
    });
}

export function parseIdempotencyKey(value: unknown): string {
  if (typeof value !== "string" || !IDEMPOTENCY_KEY.test(value)) {
    throw invalidInput("bad_idempotency_key", "idempotencyKey must be 8 to 255 characters of A-Z, a-z, 0-9, _ and - (e.g. a UUID generated once per purchase attempt).");
  }
  return value;
}

/** A success or cancel URL Stripe redirects the shopper to: only to an origin this shop allows. */
export function parseReturnUrl(value: unknown, field: string, allowedOrigins: readonly string[]): string {
  if (typeof value !== "string" || value.length === 0 || value.length > MAX_URL_LENGTH) {
    throw invalidInput("bad_url", `${field} must be an absolute URL of at most ${MAX_URL_LENGTH} characters.`, { field });
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalidInput("bad_url", `${field} is not an absolute URL.`, { field });
  }
  if (!allowedOrigins.includes(url.origin)) {
    throw invalidInput("origin_not_allowed", `${field} must start with one of the allowed origins (CHECKOUT_ALLOWED_ORIGINS); ${url.origin} is not one.`, { field });
  }
  return value;
}

function parseLine(value: unknown, index: number): OrderLine {
  const field = `items[${index}]`;
  if (!isRecord(value)) throw invalidInput("bad_line", `${field} must be an object {sku, qty}.`, { field });
  const extra = Object.keys(value).filter((k) => !LINE_KEYS.has(k));
  if (extra.length > 0) throw invalidInput("unknown_field", `${field} has unknown fields ${extra.join(", ")}: a line is {sku, qty}; prices come from the products.`, { field });
  const { sku, qty } = value;
  if (typeof sku !== "string" || !SKU.test(sku)) {
    throw invalidInput("bad_sku", `${field}.sku must be 1 to 100 characters of A-Z, a-z, 0-9, _ and -.`, { field: `${field}.sku` });
  }
  if (typeof qty !== "number" || !Number.isInteger(qty) || qty < 1 || qty > MAX_QTY_PER_LINE) {
    throw invalidInput("bad_qty", `${field}.qty must be a whole number from 1 to ${MAX_QTY_PER_LINE}.`, { field: `${field}.qty` });
  }
  return { sku, qty };
}

/** Validates the callable's `data`; throws `invalid_input` (→ invalid-argument) naming the first problem. */
export function parseCheckoutInput(data: unknown, allowedOrigins: readonly string[]): CheckoutInput {
  if (!isRecord(data)) throw invalidInput("bad_request", "Send {items: [{sku, qty}], idempotencyKey, ui?}.");
  const extra = Object.keys(data).filter((k) => !TOP_LEVEL_KEYS.has(k));
  if (extra.length > 0) {
    throw invalidInput("unknown_field", `Unknown fields ${extra.join(", ")}: send {items, idempotencyKey, ui?, successUrl?, cancelUrl?}; the server computes the amount.`);
  }
  const { items } = data;
  if (!Array.isArray(items) || items.length === 0) throw invalidInput("no_lines", "items must list at least one {sku, qty}.", { field: "items" });
  if (items.length > MAX_CHECKOUT_LINES) throw invalidInput("too_many_lines", `items may list at most ${MAX_CHECKOUT_LINES} lines.`, { field: "items" });
  const lines = items.map(parseLine);
  const idempotencyKey = parseIdempotencyKey(data.idempotencyKey);
  const ui = data.ui ?? "payment_intent";
  if (!(CHECKOUT_UIS as readonly unknown[]).includes(ui)) throw invalidInput("bad_ui", `ui must be one of ${CHECKOUT_UIS.join(", ")}.`, { field: "ui" });
  if (ui === "payment_intent") {
    if (data.successUrl !== undefined || data.cancelUrl !== undefined) {
      throw invalidInput("unexpected_url", "successUrl and cancelUrl are for ui checkout_session only.");
    }
    return { items: lines, idempotencyKey, ui };
  }
  return {
    items: lines,
    idempotencyKey,
    ui: "checkout_session",
    successUrl: parseReturnUrl(data.successUrl, "successUrl", allowedOrigins),
    cancelUrl: parseReturnUrl(data.cancelUrl, "cancelUrl", allowedOrigins),
  };
}
