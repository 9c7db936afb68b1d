// The load loop: a fixed pool of workers that take the next item until the items run out or the
// phase's time budget is spent (then they stop sending and the phase keeps what completed).
// Hard limits: at most MAX_OPS items per phase, a per-operation timeout, and the budget.

import http from "node:http";
import { performance } from "node:perf_hooks";
import { LOOPBACK, percentile, round } from "./common.mjs";

export const MAX_OPS = 5_000;
export const MAX_CONCURRENCY = 200;

/**
 * POSTs `body` to http://127.0.0.1:{port}/ and resolves { status, body } (status 0 on a network
 * error or timeout; never rejects).
 */
export function post(agent, port, body, headers, timeoutMs) {
  return new Promise((resolve) => {
    let settled = false;
    const done = (value) => {
      if (!settled) {
        settled = true;
        resolve(value);
      }
    };
    const req = http.request(
      {
        host: LOOPBACK,
        port,
        path: "/",
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...headers },
      },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          let parsed = null;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString("utf8"));
          } catch {
            parsed = null;
          }
          done({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on("error", (error) => done({ status: 0, body: null, error: error.message }));
      },
    );
    req.setTimeout(timeoutMs, () => {
      req.destroy(new Error(`no answer within ${timeoutMs} ms`));
    });
    req.on("error", (error) => done({ status: 0, body: null, error: error.message, timeout: /no answer within/.test(error.message) }));
    req.end(body);
  });
}

/**
 * Runs `op(i)` for i in [0, total) with `concurrency` workers.
 * `op` resolves { ok, code, ... } (ok: 2xx / success) and may throw (counted as failed).
 * Returns per-item results, latencies, counts and whether the budget stopped the phase.
 */
export async function runLoad({ label, total, concurrency, budgetMs, opTimeoutMs, op, log = console.log }) {
  if (!Number.isInteger(total) || total < 0 || total > MAX_OPS) throw new Error(`${label}: ${total} operations is over the cap of ${MAX_OPS}`);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
    throw new Error(`${label}: concurrency ${concurrency} is outside 1..${MAX_CONCURRENCY}`);
  }
  const results = new Array(total).fill(null);
  /** Operations whose promise had not settled when we stopped waiting for them (client timeout). */
  const unsettled = new Set();
  let next = 0;
  let completed = 0;
  let ok = 0;
  let failed = 0;
  let inflight = 0;
  let timedOut = false;
  const start = performance.now();
  const deadline = start + budgetMs;

  const progress = () =>
    log(
      `  [${label}] ${completed}/${total} done (ok ${ok}, non-ok ${failed}), in flight ${inflight}, ` +
        `${((performance.now() - start) / 1000).toFixed(1)} s${timedOut ? " — budget spent, draining" : ""}`,
    );
  const ticker = setInterval(progress, 5_000);
  ticker.unref();

  async function worker() {
    for (;;) {
      if (next >= total) return;
      if (performance.now() >= deadline) {
        timedOut = true;
        return;
      }
      const i = next++;
      inflight++;
      const t0 = performance.now();
      const promise = Promise.resolve()
        .then(() => op(i))
        .then(
          (r) => r,
          (error) => ({ ok: false, code: errorCode(error), error: String(error?.message ?? error).slice(0, 300) }),
        );
      let timer;
      const guard = new Promise((resolve) => {
        timer = setTimeout(() => resolve({ ok: false, code: "client_timeout", timeout: true }), opTimeoutMs + 1_000);
      });
      const result = await Promise.race([promise, guard]);
      clearTimeout(timer);
      if (result.code === "client_timeout") {
        unsettled.add(promise);
        promise.finally(() => unsettled.delete(promise));
      }
      const ms = performance.now() - t0;
      inflight--;
      completed++;
      if (result.ok) ok++;
      else failed++;
      results[i] = { ...result, ms };
    }
  }

  await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(total, 1)) }, worker));
  clearInterval(ticker);
  const elapsedMs = performance.now() - start;
  const latencies = results.filter(Boolean).map((r) => r.ms).sort((a, b) => a - b);
  const codes = {};
  for (const r of results) if (r) codes[r.code] = (codes[r.code] ?? 0) + 1;
  return {
    label,
    total,
    concurrency,
    sent: next,
    completed,
    ok,
    failed,
    timedOut,
    elapsedMs,
    latencies,
    results,
    codes,
    unsettled,
    summary: summarize(latencies, ok, elapsedMs),
  };
}

export function summarize(latencies, ok, elapsedMs) {
  return {
    p50_ms: round(percentile(latencies, 50)),
    p95_ms: round(percentile(latencies, 95)),
    p99_ms: round(percentile(latencies, 99)),
    max_ms: round(latencies.length ? latencies[latencies.length - 1] : null),
    min_ms: round(latencies.length ? latencies[0] : null),
    throughput_per_s: elapsedMs > 0 ? round((ok / elapsedMs) * 1000, 2) : null,
  };
}

function errorCode(error) {
  if (typeof error?.code === "number") return `grpc_${error.code}`;
  if (typeof error?.code === "string") return error.code;
  return "error";
}

/** Waits for operations the load loop stopped waiting for, at most `capMs`. Returns how many are still open. */
export async function settle(unsettled, capMs) {
  if (unsettled.size === 0) return 0;
  let timer;
  await Promise.race([Promise.allSettled([...unsettled]), new Promise((r) => (timer = setTimeout(r, capMs)))]);
  clearTimeout(timer);
  return unsettled.size;
}
