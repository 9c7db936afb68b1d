import Stripe from "stripe";
import { ConfigurationError } from "../errors";

/**
 * The API version every outbound call pins: the one stripe 23.1.0's types describe. Spelled out, so
 * that upgrading the package is a deliberate change here (the type check fails until it is made).
 */
export const STRIPE_API_VERSION = "2026-10-28.endive" as const;

export interface StripeClientOptions {
  /**
   * Retries inside one call. 0 for the callables: their caller retries with the same idempotency key,
   * and a hidden retry would only make an outage slower to report. Per request, `{ maxNetworkRetries }`
   * overrides it (the background trigger retries more).
   */
  maxNetworkRetries?: number;
  timeoutMs?: number;
}

/**
 * Builds the client for outbound Stripe calls. In the Functions emulator only (`FUNCTIONS_EMULATOR`
 * is "true"), `STRIPE_API_HOST`/`PORT`/`PROTOCOL` (functions/.env.local) point it at the local
 * stand-in; a deployed function ignores them and always talks to api.stripe.com.
 */
export function createStripeClient(secretKey: string, env: NodeJS.ProcessEnv = process.env, options: StripeClientOptions = {}): Stripe {
  if (!/^(sk|rk)_(test|live)_/.test(secretKey)) {
    throw new ConfigurationError(
      "STRIPE_SECRET_KEY is not a Stripe secret key (sk_test_… / sk_live_…): set it with " +
        "`firebase functions:secrets:set STRIPE_SECRET_KEY` (functions/.secret.local in the emulator).",
    );
  }
  return new Stripe(secretKey, {
    apiVersion: STRIPE_API_VERSION,
    maxNetworkRetries: options.maxNetworkRetries ?? 0,
    timeout: options.timeoutMs ?? 20_000,
    appInfo: { name: "stripe-orders" },
    telemetry: false,
    ...emulatorEndpoint(env),
  });
}

type Endpoint = { host?: string; port?: number; protocol?: "http" | "https" };

export function emulatorEndpoint(env: NodeJS.ProcessEnv): Endpoint {
  if (env.FUNCTIONS_EMULATOR !== "true") return {};
  const host = env.STRIPE_API_HOST?.trim();
  if (!host) return {};
  const endpoint: Endpoint = { host };
  const port = env.STRIPE_API_PORT?.trim();
  if (port) {
    const n = Number(port);
    if (!Number.isInteger(n) || n <= 0 || n > 65_535) throw new ConfigurationError(`STRIPE_API_PORT must be a TCP port, got ${JSON.stringify(port)}`);
    endpoint.port = n;
  }
  const protocol = env.STRIPE_API_PROTOCOL?.trim();
  if (protocol) {
    if (protocol !== "http" && protocol !== "https") throw new ConfigurationError(`STRIPE_API_PROTOCOL must be http or https, got ${JSON.stringify(protocol)}`);
    endpoint.protocol = protocol;
  }
  return endpoint;
}
