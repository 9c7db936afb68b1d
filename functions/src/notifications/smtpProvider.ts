import { createHash } from "node:crypto";
import { createTransport, type SMTPSentMessageInfo, type SMTPTransportOptions, type Transporter } from "nodemailer";
import type { Notification, NotificationKind } from "../collections/notifications";
import type { NotificationProvider } from "./providers";

/** Resolves the e-mail address of a notification's user; `null` when there is none (permanent failure). */
export type RecipientLookup = (notification: Notification) => Promise<string | null>;

/** Connection settings of the SMTP relay (a subset of nodemailer's SMTP transport options). */
export interface SmtpTransportSettings {
  host: string;
  port: number;
  /** Implicit TLS from the first byte (usually port 465). Otherwise STARTTLS is used when offered. */
  secure?: boolean;
  auth?: { user: string; pass: string };
  /** Never upgrade with STARTTLS (local test servers only). */
  ignoreTLS?: boolean;
  /** Fail unless the connection is upgraded with STARTTLS. */
  requireTLS?: boolean;
  tls?: { rejectUnauthorized?: boolean; servername?: string };
  /** Milliseconds; the defaults below are shorter than nodemailer's so a hung relay cannot eat a function's budget. */
  connectionTimeout?: number;
  greetingTimeout?: number;
  socketTimeout?: number;
}

export interface SmtpProviderOptions {
  transport: SmtpTransportSettings;
  /** Envelope and header sender, e.g. `"Shop <orders@shop.example>"`. */
  from: string;
  /** Where `admin_alert` notifications go. */
  adminAddress: string;
  /** Address of the user a (non-admin) notification is for. */
  recipientFor: RecipientLookup;
}

/** A failure that retrying the same notification cannot fix (no address, or a 5xx refusal). */
export class PermanentDeliveryError extends Error {
  readonly permanent = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PermanentDeliveryError";
  }
}

export interface ComposedEmail {
  subject: string;
  text: string;
}

type SmtpTransporter = Transporter<SMTPSentMessageInfo, SMTPTransportOptions>;

const DEFAULT_TIMEOUTS = { connectionTimeout: 10_000, greetingTimeout: 10_000, socketTimeout: 30_000 } as const;
const MAX_DETAIL_LENGTH = 500;

/**
 * A notification provider that sends one plain-text e-mail per notification over SMTP. The
 * Message-ID is derived from the notification id, so a duplicate delivery of the same
 * notification carries the same Message-ID and can be recognised (and dropped) downstream.
 * The transporter is created on the first send, never at import time.
 */
export function smtpProvider(options: SmtpProviderOptions): NotificationProvider {
  const from = requireNonEmpty(options.from, "from");
  const adminAddress = requireNonEmpty(options.adminAddress, "adminAddress");
  const messageIdDomain = domainOf(from) ?? "stripe-orders.invalid";
  let transporter: SmtpTransporter | undefined;

  const getTransporter = (): SmtpTransporter => {
    if (transporter === undefined) transporter = createTransport(transportOptions(options.transport));
    return transporter;
  };

  return {
    name: "smtp",
    async send(notification) {
      const to = await recipientOf(notification, adminAddress, options.recipientFor);
      const { subject, text } = composeNotificationEmail(notification);
      let info: SMTPSentMessageInfo;
      try {
        info = await getTransporter().sendMail({
          from,
          to,
          subject,
          text,
          messageId: messageIdFor(notification.id, messageIdDomain),
          headers: { "X-Notification-Id": notification.id },
        });
      } catch (error) {
        throw withResponseCode(error);
      }
      // One recipient: nodemailer already rejects when it is refused; this guards a relay that answers oddly.
      if (info.accepted.length === 0) {
        throw new Error(`smtp relay accepted no recipient for notification ${notification.id}: ${info.response}`);
      }
    },
  };
}

/**
 * Configuration from the environment; `null` (use another provider) when SMTP_HOST is unset.
 *   SMTP_HOST    relay host name (required to enable SMTP)
 *   SMTP_PORT    port; default 465 when SMTP_SECURE is true, else 587
 *   SMTP_SECURE  "true"/"1" for implicit TLS (port 465); otherwise STARTTLS when the relay offers it
 *   SMTP_USER    login user (optional; no AUTH when unset)
 *   SMTP_PASS    login password (a secret: keep it in Secret Manager, required when SMTP_USER is set)
 *   SMTP_FROM    sender address, e.g. "Shop <orders@shop.example>" (required)
 *   ADMIN_EMAIL  recipient of admin_alert notifications (required)
 */
export function smtpProviderFromEnv(env: Record<string, string | undefined>, recipientFor: RecipientLookup): NotificationProvider | null {
  const host = env.SMTP_HOST?.trim();
  if (!host) return null;
  const secure = parseBoolean(env.SMTP_SECURE, "SMTP_SECURE");
  const port = env.SMTP_PORT?.trim() ? parsePort(env.SMTP_PORT.trim()) : secure ? 465 : 587;
  const user = env.SMTP_USER?.trim();
  const pass = env.SMTP_PASS;
  if (user && !pass) throw new Error("SMTP_PASS is required when SMTP_USER is set");
  const from = env.SMTP_FROM?.trim();
  if (!from) throw new Error("SMTP_FROM is required when SMTP_HOST is set");
  const adminAddress = env.ADMIN_EMAIL?.trim();
  if (!adminAddress) throw new Error("ADMIN_EMAIL is required when SMTP_HOST is set");
  return smtpProvider({
    transport: { host, port, secure, ...(user && pass ? { auth: { user, pass } } : {}) },
    from,
    adminAddress,
    recipientFor,
  });
}

/** Subject and plain-text body of a notification. Only the order id, event id and the (redacted) detail go in. */
export function composeNotificationEmail(notification: Notification): ComposedEmail {
  const order = oneLine(notification.orderId ?? "") || "(unknown order)";
  const detail = notification.detail === null ? null : redact(notification.detail);
  const reason = detail === null ? [] : [`Reason: ${detail}`];
  const kind: NotificationKind = notification.kind;
  switch (kind) {
    case "order_confirmed":
      return email(`Your order ${order} is confirmed`, [
        `Thank you. We received your payment and your order ${order} is confirmed.`,
        ...(detail === null ? [] : [detail]),
      ]);
    case "payment_failed":
      if (notification.orderId === null) {
        return email("A subscription payment failed", [
          "We could not take the payment for your subscription. Your access continues for a short grace period.",
          ...reason,
          "Please update your payment method to keep your subscription.",
        ]);
      }
      return email(`Payment for order ${order} failed`, [
        `We could not take the payment for your order ${order}. You have not been charged.`,
        ...reason,
        "You can try again with another payment method.",
      ]);
    case "order_canceled":
      return email(`Your order ${order} was canceled`, [`Your order ${order} was canceled.`, ...reason]);
    case "refund_issued":
      return email(`A refund was issued for order ${order}`, [
        `A refund was issued for your order ${order}. It can take a few days to appear on your statement.`,
        ...reason,
      ]);
    case "admin_alert":
      return email(`[stripe-orders] Admin alert: order ${order}`, [
        `Order: ${order}`,
        `Event: ${oneLine(notification.eventId ?? "") || "(none)"}`,
        `Notification: ${oneLine(notification.id)}`,
        `Detail: ${detail ?? "(none)"}`,
      ]);
    case "subscription_activated":
      return email("Your subscription is active", ["Thank you. Your subscription is active.", ...(detail === null ? [] : [detail])]);
    case "grace_ended":
      return email("Your subscription access has ended", [
        "We did not receive the payment for your subscription within the grace period, so its access has ended.",
        "Update your payment method to restore it.",
      ]);
    case "trial_will_end":
      return email("Your trial ends soon", ["Your free trial ends soon.", ...(detail === null ? [] : [detail])]);
    case "payment_action_required":
      return email("Please confirm your subscription payment", [
        "Your bank asks you to confirm the payment for your subscription.",
        ...reason,
      ]);
    default: {
      const unknown: never = kind;
      throw new PermanentDeliveryError(`no e-mail template for notification kind ${String(unknown)}`);
    }
  }
}

/**
 * `<n.{readable id}.{hash}@{domain}>`: the same notification always gets the same Message-ID. Characters
 * a Message-ID cannot hold (such as the ":" of our ids) become "."; the hash of the exact id keeps two
 * ids that differ only there apart.
 */
export function messageIdFor(notificationId: string, domain: string): string {
  const readable = notificationId.replace(/[^A-Za-z0-9_-]+/g, ".").replace(/^\.+|\.+$/g, "").slice(0, 64).replace(/\.+$/, "");
  const hash = createHash("sha256").update(notificationId).digest("hex").slice(0, 16);
  return `<n.${readable ? `${readable}.` : ""}${hash}@${domain}>`;
}

async function recipientOf(notification: Notification, adminAddress: string, lookup: RecipientLookup): Promise<string> {
  if (notification.kind === "admin_alert") return adminAddress;
  const address = (await lookup(notification))?.trim();
  if (!address) {
    throw new PermanentDeliveryError(
      `recipient unknown: no e-mail address for user ${notification.userId ?? "(none)"} of notification ${notification.id}`,
    );
  }
  return address;
}

function transportOptions(settings: SmtpTransportSettings): SMTPTransportOptions {
  return {
    ...DEFAULT_TIMEOUTS,
    host: settings.host,
    port: settings.port,
    secure: settings.secure ?? false,
    ...(settings.auth ? { auth: { user: settings.auth.user, pass: settings.auth.pass } } : {}),
    ...(settings.ignoreTLS !== undefined ? { ignoreTLS: settings.ignoreTLS } : {}),
    ...(settings.requireTLS !== undefined ? { requireTLS: settings.requireTLS } : {}),
    ...(settings.tls ? { tls: { ...settings.tls } } : {}),
    ...(settings.connectionTimeout !== undefined ? { connectionTimeout: settings.connectionTimeout } : {}),
    ...(settings.greetingTimeout !== undefined ? { greetingTimeout: settings.greetingTimeout } : {}),
    ...(settings.socketTimeout !== undefined ? { socketTimeout: settings.socketTimeout } : {}),
  };
}

/** Makes sure a refused send reports the SMTP reply code in its message (nodemailer appends the reply already). */
function withResponseCode(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const code = (error as { responseCode?: unknown }).responseCode;
  if (typeof code !== "number" || error.message.includes(String(code))) return error;
  const wrapped = new Error(`SMTP ${code}: ${error.message}`, { cause: error });
  Object.assign(wrapped, { responseCode: code, permanent: (error as { permanent?: unknown }).permanent });
  return wrapped;
}

function email(subject: string, lines: string[]): ComposedEmail {
  return { subject, text: `${lines.join("\n\n")}\n` };
}

/** Keeps a detail short and free of anything that looks like a card number or a Stripe secret. */
function redact(detail: string): string {
  const cleaned = oneLine(detail)
    .replace(/\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]+/g, "[redacted]")
    .replace(/\bwhsec_[A-Za-z0-9]+/g, "[redacted]")
    .replace(/\b(?:\d[ -]?){12,18}\d\b/g, (run) => (luhnValid(run.replace(/\D/g, "")) ? "[redacted]" : run));
  return cleaned.length > MAX_DETAIL_LENGTH ? `${cleaned.slice(0, MAX_DETAIL_LENGTH)}...` : cleaned;
}

function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i += 1) {
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return sum % 10 === 0;
}

function oneLine(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/[\u0000-\u001f\u007f]+/g, " ").trim();
}

function domainOf(address: string): string | null {
  const match = /@([A-Za-z0-9.-]+)>?\s*$/.exec(address);
  return match ? match[1]!.toLowerCase() : null;
}

function requireNonEmpty(value: string, name: string): string {
  const trimmed = value.trim();
  if (!trimmed) throw new Error(`smtpProvider: ${name} is required`);
  return trimmed;
}

function parseBoolean(value: string | undefined, name: string): boolean {
  const v = value?.trim().toLowerCase();
  if (v === undefined || v === "" || v === "false" || v === "0" || v === "no") return false;
  if (v === "true" || v === "1" || v === "yes") return true;
  throw new Error(`${name} must be true or false, got ${JSON.stringify(value)}`);
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`SMTP_PORT must be a port number, got ${JSON.stringify(value)}`);
  return port;
}
