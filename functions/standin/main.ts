import fs from "node:fs";
import path from "node:path";
import { startStandIn, type StandIn } from "./server";

/**
 * `node --import tsx functions/standin/main.ts`: the stand-in on 127.0.0.1:12111 for the emulators.
 * Env: STRIPE_STANDIN_PORT, STRIPE_STANDIN_HOST, STRIPE_STANDIN_WEBHOOK_URL,
 * STRIPE_STANDIN_WEBHOOK_SECRET (default: the first STRIPE_WEBHOOK_SECRET in functions/.secret.local).
 */

const DEFAULT_PORT = 12111;
const DEFAULT_WEBHOOK_URL = "http://127.0.0.1:5001/demo-stripe-orders/us-central1/stripeWebhook";
const SECRET_FILE = path.resolve(__dirname, "..", ".secret.local");

function fail(message: string): never {
  process.stderr.write(`[stripe-standin] ${message}\n`);
  process.exit(1);
}

/** The emulator's webhook secret; it may hold several, comma-separated, while one is rolled. */
function secretFromFile(): string | null {
  let text: string;
  try {
    text = fs.readFileSync(SECRET_FILE, "utf8");
  } catch {
    return null;
  }
  const line = /^\s*STRIPE_WEBHOOK_SECRET\s*=\s*(.*)$/m.exec(text)?.[1] ?? "";
  const first = line.trim().replace(/^["']|["']$/g, "").split(",")[0]?.trim() ?? "";
  return first === "" ? null : first;
}

async function main(): Promise<void> {
  const portText = process.env.STRIPE_STANDIN_PORT ?? String(DEFAULT_PORT);
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`STRIPE_STANDIN_PORT=${portText} is not a port number.`);
  const host = process.env.STRIPE_STANDIN_HOST ?? "127.0.0.1";
  const webhookUrl = process.env.STRIPE_STANDIN_WEBHOOK_URL ?? DEFAULT_WEBHOOK_URL;
  const webhookSecret = process.env.STRIPE_STANDIN_WEBHOOK_SECRET ?? secretFromFile();
  if (webhookSecret === null) {
    fail(`No webhook secret: set STRIPE_STANDIN_WEBHOOK_SECRET or STRIPE_WEBHOOK_SECRET in ${SECRET_FILE}.`);
  }
  // Quiet (emulators:exec, tests): only what went wrong; otherwise every request and delivery.
  const quiet = process.env.STRIPE_STANDIN_QUIET === "1";
  let standIn: StandIn;
  try {
    standIn = await startStandIn({
      port,
      host,
      webhookUrl,
      webhookSecret,
      log: (line, level) => {
        if (level === "warn") process.stderr.write(`[stripe-standin] ${line}\n`);
        else if (!quiet) process.stdout.write(`[stripe-standin] ${line}\n`);
      },
    });
  } catch (err) {
    const code = err instanceof Error && "code" in err ? err.code : null;
    if (code === "EADDRINUSE") fail(`Port ${port} on ${host} is already in use: stop whatever listens there, or set STRIPE_STANDIN_PORT.`);
    throw err;
  }
  process.stdout.write(`[stripe-standin] Stripe test-mode stand-in on ${standIn.url}, webhooks to ${webhookUrl}\n`);
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    standIn.close().then(
      () => process.exit(signal === "SIGINT" ? 130 : 0),
      () => process.exit(1),
    );
  };
  const supervised = process.env.STRIPE_STANDIN_EXIT_WITH_STDIN === "1";
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    // Under scripts/emulators.mjs a Ctrl-C reaches us too; the script stops us once the emulators
    // are down, so that webhooks keep flowing while they shut down.
    process.on(signal, () => (supervised && signal === "SIGINT" ? undefined : stop(signal)));
  }
  if (supervised) {
    // The script's end closes our stdin, however it ended (even kill -9): no orphan.
    process.stdin.on("end", () => stop("SIGTERM"));
    process.stdin.on("error", () => stop("SIGTERM"));
    process.stdin.resume();
  }
}

main().catch((err: unknown) => fail(err instanceof Error ? (err.stack ?? err.message) : String(err)));
