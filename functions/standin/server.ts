import http from "node:http";
import type { AddressInfo } from "node:net";
import { completeCheckoutSession, findRoute, type Context, type Result } from "./api";
import { ApiError, invalidRequest, type StripeErrorBody } from "./errors";
import { newId } from "./ids";
import { IdempotencyKeys } from "./idempotency";
import { canonical, optStringList, parseForm, type Params } from "./params";
import { Store } from "./store";
import { API_VERSION, WebhookSender, type DeliveryAttempt } from "./webhooks";

/**
 * A local test-mode stand-in for the parts of Stripe's API this project calls, for the emulators
 * and tests, where Stripe cannot be reached. It is a test double, not a Stripe implementation:
 * what it does not serve answers 404 like an unknown Stripe route.
 */

export interface StandInOptions {
  port: number;
  host?: string;
  webhookUrl: string;
  webhookSecret: string;
  /** The clock for `created` timestamps and webhook signatures. */
  now?: () => Date;
  /** Waits before each webhook retry (default 0.5 s, 1 s, 2 s, 4 s). */
  webhookRetryDelaysMs?: readonly number[];
  webhookTimeoutMs?: number;
  log?: (line: string, level: LogLevel) => void;
}

/** "warn": something a developer should see even when the stand-in is quiet. */
export type LogLevel = "info" | "warn";

export interface StandIn {
  url: string;
  port: number;
  store: Store;
  deliveries(): readonly DeliveryAttempt[];
  /** Resolves once every webhook delivery queued so far has ended. */
  webhooksIdle(): Promise<void>;
  close(): Promise<void>;
}

interface Fault {
  method: string;
  path: string;
  status: number;
  remaining: number;
}

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const MAX_BODY_BYTES = 1024 * 1024;

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(invalidRequest("Request body too large.", { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function toJson(value: object): JsonObject {
  return JSON.parse(JSON.stringify(value)) as JsonObject;
}

function isJsonObject(value: Json | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `expand[]=latest_charge`, `expand[]=data.customer`: ids replaced by the objects they name. */
function expand(value: JsonObject, path: string[], store: Store, full: string): void {
  if (value.object === "list" && path[0] === "data" && Array.isArray(value.data)) {
    for (const item of value.data) if (isJsonObject(item)) expand(item, path.slice(1), store, full);
    return;
  }
  const [field, ...rest] = path;
  if (field === undefined || !(field in value)) {
    throw invalidRequest(`This property cannot be expanded (${full}).`, { param: "expand" });
  }
  const current = value[field];
  if (current === null) return;
  if (typeof current === "string") {
    const found = store.find(current);
    if (found === undefined) throw invalidRequest(`This property cannot be expanded (${full}).`, { param: "expand" });
    value[field] = toJson(found);
  }
  const child = value[field];
  if (rest.length > 0 && isJsonObject(child)) expand(child, rest, store, full);
}

function render(body: object, params: Params, store: Store): JsonObject {
  const json = toJson(body);
  for (const path of optStringList(params, "expand")) expand(json, path.split("."), store, path);
  return json;
}

/** Stripe accepts the secret key as Bearer token or as the user of HTTP Basic auth (`curl -u sk_test_…:`). */
function apiKey(req: http.IncomingMessage): string | null {
  const header = req.headers.authorization ?? "";
  const bearer = /^Bearer\s+(\S+)$/i.exec(header);
  if (bearer) return bearer[1] ?? null;
  const basic = /^Basic\s+(\S+)$/i.exec(header);
  if (basic) return Buffer.from(basic[1] ?? "", "base64").toString("utf8").split(":")[0] || null;
  return null;
}

function authError(key: string | null): ApiError | null {
  if (key === null) {
    return new ApiError(401, {
      type: "invalid_request_error",
      message:
        "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth " +
        "(e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details.",
    });
  }
  if (!/^(sk|rk)_test_\S+$/.test(key)) {
    return new ApiError(401, {
      type: "invalid_request_error",
      message: `Invalid API Key provided: ${key.slice(0, 8)}${"*".repeat(Math.max(0, key.length - 12))}${key.slice(-4)} (the local Stripe stand-in accepts test-mode secret keys, sk_test_…, only)`,
    });
  }
  return null;
}

function header(req: http.IncomingMessage, name: string): string | null {
  const v = req.headers[name.toLowerCase()];
  return typeof v === "string" && v !== "" ? v : null;
}

export async function startStandIn(options: StandInOptions): Promise<StandIn> {
  const host = options.host ?? "127.0.0.1";
  const now = options.now ?? (() => new Date());
  const log = options.log ?? (() => undefined);
  const store = new Store();
  const keys = new IdempotencyKeys();
  const faults: Fault[] = [];
  const webhooks = new WebhookSender({
    url: options.webhookUrl,
    secret: options.webhookSecret,
    retryDelaysMs: options.webhookRetryDelaysMs ?? [500, 1000, 2000, 4000],
    timeoutMs: options.webhookTimeoutMs ?? 30_000,
    now,
    log: (line, level) => log(`webhook ${line}`, level),
  });
  let baseUrl = "";

  const send = (res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body), ...headers });
    res.end(body);
  };
  const errorText = (body: StripeErrorBody) => JSON.stringify({ error: body }, null, 2);

  const takeFault = (method: string, path: string): Fault | null => {
    const fault = faults.find((f) => f.remaining > 0 && f.method === method && (f.path === path || (f.path.endsWith("*") && path.startsWith(f.path.slice(0, -1)))));
    if (fault === undefined) return null;
    fault.remaining -= 1;
    return fault;
  };

  const context = (requestId: string, idempotencyKey: string | null): Context => ({
    store,
    now: () => Math.floor(now().getTime() / 1000),
    baseUrl,
    request: { id: requestId, idempotency_key: idempotencyKey },
  });

  async function handleApi(req: http.IncomingMessage, res: http.ServerResponse, method: string, url: URL, requestId: string) {
    const common = { "Request-Id": requestId, "Stripe-Version": API_VERSION };
    const fault = takeFault(method, url.pathname);
    if (fault !== null) {
      log(`${method} ${url.pathname} → injected ${fault.status}`, "info");
      return send(res, fault.status, errorText({ type: "api_error", message: `Injected fault (local Stripe stand-in): ${method} ${fault.path} answers ${fault.status}.` }), common);
    }
    const authFailure = authError(apiKey(req));
    if (authFailure !== null) return send(res, authFailure.status, errorText(authFailure.body), common);

    const route = findRoute(method, url.pathname);
    if (route === null) {
      throw invalidRequest(`Unrecognized request URL (${method}: ${url.pathname}). The local Stripe stand-in serves only the routes this project calls; see functions/standin/README.md.`, {
        code: "resource_missing",
        status: 404,
      });
    }
    const params = parseForm(method === "POST" ? await readBody(req) : url.search.slice(1));
    const idempotencyKey = method === "POST" ? header(req, "idempotency-key") : null;
    const endpoint = `${method} ${url.pathname}`;
    const fingerprint = canonical(params);
    const headers: Record<string, string> = { ...common, ...(idempotencyKey === null ? {} : { "Idempotency-Key": idempotencyKey }) };
    if (idempotencyKey !== null) {
      const found = keys.lookup(idempotencyKey, endpoint, fingerprint);
      if (found.kind === "replay") {
        log(`${endpoint} → replayed ${found.response.status} (Idempotency-Key ${idempotencyKey})`, "info");
        return send(res, found.response.status, found.response.body, { ...headers, "Idempotent-Replayed": "true", "Original-Request": found.response.requestId });
      }
    }
    const result: Result = route.handler(context(requestId, idempotencyKey), params, route.pathParams);
    const text = JSON.stringify(result.status === 200 ? render(result.body, params, store) : toJson(result.body), null, 2);
    if (idempotencyKey !== null) keys.save(idempotencyKey, endpoint, fingerprint, { status: result.status, body: text, requestId });
    log(`${endpoint} → ${result.status}${result.events.length > 0 ? ` (${result.events.map((e) => e.type).join(", ")})` : ""}`, "info");
    res.once("finish", () => webhooks.enqueue(result.events));
    send(res, result.status, text, headers);
  }

  async function handleControl(req: http.IncomingMessage, res: http.ServerResponse, method: string, url: URL, requestId: string) {
    const path = url.pathname;
    const headers = { "Request-Id": requestId };
    const jsonBody = async (): Promise<JsonObject> => {
      const text = await readBody(req);
      if (text.trim() === "") return {};
      let parsed: Json;
      try {
        parsed = JSON.parse(text) as Json;
      } catch {
        throw invalidRequest("The body of a /__standin/ request must be JSON.");
      }
      if (!isJsonObject(parsed)) throw invalidRequest("The body of a /__standin/ request must be a JSON object.");
      return parsed;
    };

    if (method === "GET" && path === "/__standin/health") return send(res, 200, JSON.stringify({ ok: true, apiVersion: API_VERSION }), headers);
    if (method === "GET" && path === "/__standin/deliveries") return send(res, 200, JSON.stringify(webhooks.deliveries(), null, 2), headers);
    if (path === "/__standin/faults") {
      if (method === "GET") return send(res, 200, JSON.stringify(faults.filter((f) => f.remaining > 0), null, 2), headers);
      if (method === "DELETE") {
        faults.length = 0;
        return send(res, 200, JSON.stringify([]), headers);
      }
      if (method === "POST") {
        const b = await jsonBody();
        const faultMethod = typeof b.method === "string" ? b.method.toUpperCase() : null;
        const faultPath = typeof b.path === "string" && b.path.startsWith("/v1/") ? b.path : null;
        const status = b.status === undefined ? 500 : b.status;
        const times = b.times === undefined ? 1 : b.times;
        if (faultMethod === null || faultPath === null || typeof status !== "number" || !Number.isInteger(status) || status < 400 || status > 599 || typeof times !== "number" || !Number.isInteger(times) || times < 1) {
          throw invalidRequest('A fault is { "method": "POST", "path": "/v1/…" (a trailing * matches a prefix), "status": 400–599 (default 500), "times": ≥ 1 (default 1) }.');
        }
        const fault: Fault = { method: faultMethod, path: faultPath, status, remaining: times };
        faults.push(fault);
        return send(res, 200, JSON.stringify(fault), headers);
      }
    }
    const complete = /^\/__standin\/checkout\/sessions\/([^/]+)\/complete$/.exec(path);
    if (method === "POST" && complete !== null) {
      const b = await jsonBody();
      const paymentMethod = b.payment_method === undefined ? "pm_card_visa" : b.payment_method;
      if (typeof paymentMethod !== "string") throw invalidRequest("payment_method must be a string such as pm_card_visa.", { param: "payment_method" });
      const result = completeCheckoutSession(context(requestId, null), decodeURIComponent(complete[1] ?? ""), paymentMethod);
      log(`complete ${complete[1]} → ${result.status}${result.events.length > 0 ? ` (${result.events.map((e) => e.type).join(", ")})` : ""}`, "info");
      res.once("finish", () => webhooks.enqueue(result.events));
      return send(res, result.status, JSON.stringify(toJson(result.body), null, 2), headers);
    }
    const page = /^\/__standin\/(pay|portal)\/([^/]+)$/.exec(path);
    if (method === "GET" && page !== null) {
      const text =
        page[1] === "pay"
          ? `Local Stripe stand-in: Checkout Session ${page[2]}.\nPay it as a shopper would with:\n  curl -X POST ${baseUrl}/__standin/checkout/sessions/${page[2]}/complete -H 'Content-Type: application/json' -d '{"payment_method":"pm_card_visa"}'\n`
          : `Local Stripe stand-in: billing portal session ${page[2]} (no portal is served locally).\n`;
      res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8", ...headers });
      return void res.end(text);
    }
    throw invalidRequest(`Unrecognized stand-in control route (${method}: ${path}).`, { code: "resource_missing", status: 404 });
  }

  const server = http.createServer((req, res) => {
    const requestId = newId.request();
    const method = (req.method ?? "GET").toUpperCase();
    const url = new URL(req.url ?? "/", "http://stand-in");
    const handler = url.pathname.startsWith("/__standin/") ? handleControl : handleApi;
    handler(req, res, method, url, requestId).catch((err: unknown) => {
      const apiError =
        err instanceof ApiError
          ? err
          : new ApiError(500, { type: "api_error", message: `Local Stripe stand-in failed: ${err instanceof Error ? err.message : String(err)}` });
      if (!(err instanceof ApiError)) log(`${method} ${url.pathname} → 500 ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`, "warn");
      else log(`${method} ${url.pathname} → ${apiError.status} ${apiError.body.message}`, "info");
      if (res.headersSent) return void res.end();
      send(res, apiError.status, errorText(apiError.body), { "Request-Id": requestId, "Stripe-Version": API_VERSION });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  baseUrl = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;

  return {
    url: baseUrl,
    port,
    store,
    deliveries: () => webhooks.deliveries(),
    webhooksIdle: () => webhooks.idle(),
    close: async () => {
      webhooks.close();
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}
