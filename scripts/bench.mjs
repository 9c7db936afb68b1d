#!/usr/bin/env node
// `npm run bench`: runs bench/run.mjs with the Firestore emulator up, through
// `node scripts/emulators.mjs exec --only firestore` (which finds Java and the emulator, and stops
// them when the command ends). The webhook handler itself is served by @google-cloud/functions-framework
// inside the bench (not the Functions emulator).
//
//   node scripts/bench.mjs [--quick]      --quick: 50 events per scenario, 30 s phase budget
//
// Env knobs are passed through to bench/run.mjs and the instances it forks (BENCH_INSTANCES, default
// 1,3; BENCH_SCENARIOS; BENCH_EVENTS; BENCH_TWINS_ORDERS; BENCH_PHASE_BUDGET_S; BENCH_OP_TIMEOUT_S;
// BENCH_TOTAL_BUDGET_S; BENCH_GROUP_COMMIT=off; BENCH_LOCAL_LOCKS=off; see bench/run.mjs).
// BENCH_PORT_WAIT_S (default 120): how long to wait for the emulator ports when another emulator run
// (e.g. `npm test`) holds them. A watchdog interrupts the whole run after BENCH_WATCHDOG_S (default: the
// run's total budget + 110 s, i.e. 570 s for the default two instance counts) so it always stops by
// itself. Node built-ins only.

import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Ports `firebase emulators:exec --only firestore` binds (firebase.json + the Firestore websocket). */
function emulatorPorts() {
  const ports = [];
  try {
    const config = JSON.parse(fs.readFileSync(path.join(ROOT, "firebase.json"), "utf8")).emulators ?? {};
    for (const key of ["firestore", "hub", "logging"]) if (config[key]?.port) ports.push(Number(config[key].port));
  } catch {
    ports.push(8080, 4400, 4500);
  }
  ports.push(9150);
  return ports;
}

function portFree(port) {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once("error", () => resolve(false));
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(true)));
  });
}

async function waitForPorts(ports, waitMs) {
  const until = Date.now() + waitMs;
  let announced = false;
  for (;;) {
    const busy = [];
    for (const port of ports) if (!(await portFree(port))) busy.push(port);
    if (busy.length === 0) return true;
    if (Date.now() > until) {
      process.stderr.write(
        `[bench] Port(s) ${busy.join(", ")} are still in use after ${waitMs / 1000} s: another emulator run is up ` +
          "(e.g. `npm test` or `npm start`). Stop it, or wait for it, then run `npm run bench` again.\n",
      );
      return false;
    }
    if (!announced) {
      process.stderr.write(`[bench] Port(s) ${busy.join(", ")} in use (another emulator run?); waiting up to ${waitMs / 1000} s...\n`);
      announced = true;
    }
    await new Promise((r) => setTimeout(r, 2_000));
  }
}

async function main(argv) {
  const env = { ...process.env, BENCH_OWNS_EMULATOR: "1" };
  // The Admin SDK's auth library would otherwise probe the GCE metadata server (169.254.169.254) for
  // credentials it never needs against the emulator; the bench only talks to loopback.
  env.METADATA_SERVER_DETECTION ??= "none";
  if (argv.includes("--quick")) {
    env.BENCH_EVENTS ??= "50";
    env.BENCH_PHASE_BUDGET_S ??= "30";
  }
  // The bench must start its own emulator: one reused from elsewhere would be wiped between scenarios.
  delete env.FIRESTORE_EMULATOR_HOST;
  const waitMs = Number(process.env.BENCH_PORT_WAIT_S ?? 120) * 1000;
  if (!(await waitForPorts(emulatorPorts(), waitMs))) return 1;

  const child = spawn(process.execPath, [path.join(ROOT, "scripts", "emulators.mjs"), "exec", "--only", "firestore", "node bench/run.mjs"], {
    cwd: ROOT,
    env,
    stdio: "inherit",
  });
  // bench/run.mjs's default total budget is 60 s + 200 s per instance count; it stops itself 90 s after it.
  const instanceCounts = String(env.BENCH_INSTANCES || "1,3").split(",").filter((s) => s.trim()).length;
  const totalBudgetS = Number(env.BENCH_TOTAL_BUDGET_S || 60 + 200 * Math.max(1, instanceCounts));
  const watchdogMs = Number(process.env.BENCH_WATCHDOG_S ?? totalBudgetS + 110) * 1000;
  let interrupted = false;
  const watchdog = setTimeout(() => {
    interrupted = true;
    process.stderr.write(`[bench] Still running after ${watchdogMs / 1000} s: interrupting (the emulator is stopped cleanly).\n`);
    child.kill("SIGINT");
  }, watchdogMs);
  // Ctrl-C reaches the child through the terminal's process group; just do not die before it.
  const ignore = () => {};
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, ignore);
  const forward = (signal) => () => child.kill(signal);
  process.on("SIGTERM", forward("SIGTERM"));
  process.on("SIGHUP", forward("SIGHUP"));

  const code = await new Promise((resolve) => child.once("close", (c, signal) => resolve(c ?? (signal ? 130 : 1))));
  clearTimeout(watchdog);
  return interrupted && code === 0 ? 1 : code;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`[bench] ${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
