// Output of the bench: the console table and a hand-built SVG of the latency distributions
// (top: CDF per scenario on a log scale; bottom: min–p50–p95–p99–max bars). No dependencies.

import { percentile } from "./common.mjs";

const COLUMNS = [
  ["scenario", (r) => r.name, "l"],
  ["K", (r) => r.instances, "r"],
  ["events", (r) => r.events, "r"],
  ["conc", (r) => r.concurrency, "r"],
  ["done", (r) => r.completed, "r"],
  ["p50 ms", (r) => fmt(r.p50_ms), "r"],
  ["p95 ms", (r) => fmt(r.p95_ms), "r"],
  ["max ms", (r) => fmt(r.max_ms), "r"],
  ["ok/s", (r) => fmt(r.throughput_per_s), "r"],
  ["non-2xx", (r) => r.non_2xx, "r"],
  ["200/409/500/other", (r) => (r.answers ? `${r.answers[200]}/${r.answers[409]}/${r.answers[500]}/${r.answers.other}` : "-"), "r"],
  ["tx/op", (r) => fmt(r.firestore_transactions?.per_op), "r"],
  ["retried", (r) => r.firestore_transactions?.retried_attempts ?? "-", "r"],
  ["conflicts", (r) => (r.firestore_transactions ? r.firestore_transactions.failed_precondition + r.firestore_transactions.already_exists : "-"), "r"],
  ["aborted", (r) => r.firestore_transactions?.aborted ?? "-", "r"],
  ["lock t/o", (r) => r.emulator_lock_timeouts ?? r.firestore_transactions?.lock_timeouts ?? "-", "r"],
  ["cpu ms/op emu+fn", (r) => cpuCell(r.cpu_ms_per_op), "r"],
  ["invariants", (r) => (r.skipped ? "-" : r.invariants_ok ? "ok" : "FAILED"), "l"],
  ["notes", notes, "l"],
];

function notes(r) {
  const out = [];
  if (r.skipped) out.push("skipped");
  if (r.timed_out) out.push(`timed out after ${r.budget_s} s`);
  if (!r.answers && r.outcomes && !r.skipped) out.push(Object.entries(r.outcomes).map(([k, v]) => `${v} ${k}`).join(", "));
  if (r.name === "crash" && !r.skipped) {
    out.push(`lost in flight ${r.lost_in_flight}, redelivered ${r.redelivered} in ${r.redelivery_rounds} round(s), ${r.still_unacknowledged} never acked, recovered in ${r.recover_s ?? "-"} s`);
  }
  return out.join("; ");
}

/** CPU per operation of the Firestore emulator + the K processes running the handler (servers, or workers for reserve phases). */
function cpuCell(cpu) {
  if (!cpu || cpu.emulator === null) return "-";
  return `${fmt(cpu.emulator)}+${fmt(cpu.handler ?? 0)}`;
}

function fmt(v) {
  if (v === null || v === undefined) return "-";
  return v >= 100 ? String(Math.round(v)) : v >= 1 ? v.toFixed(1) : v.toFixed(2);
}

export function table(rows) {
  const cells = rows.map((r) => COLUMNS.map(([, get]) => String(get(r) ?? "")));
  const widths = COLUMNS.map(([h], i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (values) => values.map((v, i) => (COLUMNS[i][2] === "r" ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join("  ").trimEnd();
  return [line(COLUMNS.map(([h]) => h)), widths.map((w) => "-".repeat(w)).join("  "), ...cells.map(line)].join("\n");
}

const PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#b279a2", "#72b7b2", "#9d755d", "#eeca3b"];

function esc(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** @param {{name: string, latencies: number[], timed_out?: boolean}[]} series latencies ascending, ms */
export function latencySvg(series, { title = "stripeWebhook bench: latency per scenario", subtitle = "" } = {}) {
  const data = series.filter((s) => s.latencies.length > 0);
  const W = 960;
  const M = { left: 150, right: 30, top: 60 };
  const cdfH = 300;
  const rowH = 34;
  const barsTop = M.top + cdfH + 70;
  const H = barsTop + Math.max(1, data.length) * rowH + 60;
  const plotW = W - M.left - M.right;
  const all = data.flatMap((s) => [s.latencies[0], s.latencies[s.latencies.length - 1]]).filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.max(0.1, Math.min(...(all.length ? all : [1])))));
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...(all.length ? all : [10])))));
  const x = (ms) => M.left + ((Math.log10(Math.max(ms, 10 ** lo)) - lo) / (hi - lo)) * plotW;
  const yCdf = (f) => M.top + cdfH - f * cdfH;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${esc(title)}</text>`);
  if (subtitle) out.push(`<text x="${W / 2}" y="42" text-anchor="middle" fill="#555">${esc(subtitle)}</text>`);

  // Grid: decades and 2x/5x minor lines, shared by both panels.
  for (let d = lo; d <= hi; d++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** d;
      if (Math.log10(v) > hi + 1e-9) continue;
      const gx = x(v);
      const major = m === 1;
      out.push(`<line x1="${gx.toFixed(1)}" y1="${M.top}" x2="${gx.toFixed(1)}" y2="${H - 50}" stroke="${major ? "#ccc" : "#eee"}"/>`);
      if (major || hi - lo <= 3) {
        const label = v >= 1000 ? `${v / 1000} s` : `${v} ms`;
        out.push(`<text x="${gx.toFixed(1)}" y="${M.top + cdfH + 18}" text-anchor="middle" fill="#333">${esc(label)}</text>`);
        out.push(`<text x="${gx.toFixed(1)}" y="${H - 34}" text-anchor="middle" fill="#333">${esc(label)}</text>`);
      }
    }
  }
  // CDF panel.
  out.push(`<text x="${M.left - 10}" y="${M.top - 8}" text-anchor="end" font-weight="bold">CDF</text>`);
  for (const f of [0, 0.25, 0.5, 0.75, 0.95, 1]) {
    out.push(`<line x1="${M.left}" y1="${yCdf(f)}" x2="${W - M.right}" y2="${yCdf(f)}" stroke="${f === 0.95 ? "#e8b0b0" : "#eee"}"/>`);
    out.push(`<text x="${M.left - 6}" y="${yCdf(f) + 4}" text-anchor="end" fill="#333">${Math.round(f * 100)}%</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${plotW}" height="${cdfH}" fill="none" stroke="#888"/>`);
  data.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const n = s.latencies.length;
    const step = Math.max(1, Math.floor(n / 400));
    const pts = [];
    for (let k = 0; k < n; k += step) pts.push(`${x(s.latencies[k]).toFixed(1)},${yCdf((k + 1) / n).toFixed(1)}`);
    pts.push(`${x(s.latencies[n - 1]).toFixed(1)},${yCdf(1).toFixed(1)}`);
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.join(" ")}"/>`);
    // Legend inside the CDF panel, top left.
    const ly = M.top + 16 + i * 16;
    out.push(`<line x1="${M.left + 10}" y1="${ly - 4}" x2="${M.left + 30}" y2="${ly - 4}" stroke="${color}" stroke-width="3"/>`);
    out.push(`<text x="${M.left + 36}" y="${ly}" fill="#222">${esc(s.name)} (n=${n}${s.timed_out ? ", timed out" : ""})</text>`);
  });
  out.push(`<text x="${M.left + plotW / 2}" y="${M.top + cdfH + 36}" text-anchor="middle" fill="#333">request latency (log scale)</text>`);

  // Percentile bars: whisker min–max, box p50–p95, ticks at p50 and p99.
  out.push(`<text x="${M.left}" y="${barsTop - 14}" font-weight="bold">Percentiles</text>`);
  out.push(`<text x="${M.left + 80}" y="${barsTop - 14}" fill="#555">whiskers min–max · box p50–p95 · solid tick p50 · dashed tick p99</text>`);
  data.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const cy = barsTop + i * rowH + rowH / 2;
    const L = s.latencies;
    const [mn, p50, p95, p99, mx] = [L[0], percentile(L, 50), percentile(L, 95), percentile(L, 99), L[L.length - 1]];
    out.push(`<text x="${M.left - 10}" y="${cy + 4}" text-anchor="end" fill="#222">${esc(s.name)}</text>`);
    out.push(`<line x1="${x(mn).toFixed(1)}" y1="${cy}" x2="${x(mx).toFixed(1)}" y2="${cy}" stroke="${color}" stroke-width="1.5"/>`);
    for (const v of [mn, mx]) out.push(`<line x1="${x(v).toFixed(1)}" y1="${cy - 6}" x2="${x(v).toFixed(1)}" y2="${cy + 6}" stroke="${color}" stroke-width="1.5"/>`);
    out.push(`<rect x="${x(p50).toFixed(1)}" y="${cy - 9}" width="${Math.max(2, x(p95) - x(p50)).toFixed(1)}" height="18" fill="${color}" fill-opacity="0.35" stroke="${color}"/>`);
    out.push(`<line x1="${x(p50).toFixed(1)}" y1="${cy - 11}" x2="${x(p50).toFixed(1)}" y2="${cy + 11}" stroke="#111" stroke-width="2"/>`);
    out.push(`<line x1="${x(p99).toFixed(1)}" y1="${cy - 7}" x2="${x(p99).toFixed(1)}" y2="${cy + 7}" stroke="#111" stroke-dasharray="2,2"/>`);
    const label = `p50 ${fmt(p50)} · p95 ${fmt(p95)} · max ${fmt(mx)} ms`;
    const lx = Math.min(x(mx) + 8, W - M.right - 4);
    out.push(`<text x="${lx.toFixed(1)}" y="${cy - 10}" text-anchor="${x(mx) + 8 > W - 230 ? "end" : "start"}" fill="#444" font-size="10">${esc(label)}</text>`);
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
