import { expect } from "chai";
import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";
import type { Notification, NotificationKind } from "../../src/collections/notifications";
import type { NotificationProvider } from "../../src/notifications/providers";
import { messageIdFor, smtpProvider, smtpProviderFromEnv, type RecipientLookup } from "../../src/notifications/smtpProvider";

/**
 * Integration tests of the SMTP notification provider against a real SMTP server (smtp-server)
 * listening on loopback. No sleeps: a send resolves only after the server answered the final
 * DATA reply, which it sends after the message is recorded below.
 */

// ---------------------------------------------------------------------------------------------
// Local SMTP server
// ---------------------------------------------------------------------------------------------

interface ReceivedMail {
  mailFrom: string;
  rcptTo: string[];
  raw: string;
  /** Lower-cased header name → unfolded value (last one wins). */
  headers: Map<string, string>;
  /** Decoded plain-text body. */
  body: string;
}

type ServerMode = "accept" | "reject_rcpt_550" | "reject_data_554";

const FROM = "Shop <orders@shop.example>";
const ADMIN = "ops@shop.example";
const USER_ADDRESS = "buyer@customer.example";
const NOW = new Date("2026-03-01T12:00:00.000Z");

let server: SMTPServer;
let port: number;
let mode: ServerMode = "accept";
let connections = 0;
let received: ReceivedMail[] = [];

function smtpError(message: string, responseCode: number): Error {
  return Object.assign(new Error(message), { responseCode });
}

function decodeBody(body: string, transferEncoding: string | undefined): string {
  const encoding = (transferEncoding ?? "7bit").toLowerCase();
  if (encoding === "quoted-printable") {
    const bytes = body.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/gi, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    return Buffer.from(bytes, "latin1").toString("utf8");
  }
  if (encoding === "base64") return Buffer.from(body.replace(/\s+/g, ""), "base64").toString("utf8");
  return body;
}

function parseMail(raw: string, mailFrom: string, rcptTo: string[]): ReceivedMail {
  const split = raw.indexOf("\r\n\r\n");
  const head = split === -1 ? raw : raw.slice(0, split);
  const rawBody = split === -1 ? "" : raw.slice(split + 4);
  const headers = new Map<string, string>();
  for (const line of head.replace(/\r\n[ \t]+/g, " ").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  const body = decodeBody(rawBody, headers.get("content-transfer-encoding")).replace(/\r\n/g, "\n");
  return { mailFrom, rcptTo, raw, headers, body };
}

before(async () => {
  server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onConnect(_session, callback) {
      connections += 1;
      callback();
    },
    onRcptTo(_address, _session, callback) {
      if (mode === "reject_rcpt_550") return callback(smtpError("5.1.1 Mailbox does not exist", 550));
      return callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        if (mode === "reject_data_554") return callback(smtpError("5.7.1 Message refused by policy", 554));
        const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : "";
        const rcptTo = session.envelope.rcptTo.map((r) => r.address);
        received.push(parseMail(Buffer.concat(chunks).toString("utf8"), mailFrom, rcptTo));
        return callback();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  port = (server.server.address() as AddressInfo).port;
});

after(async () => {
  if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  mode = "accept";
  received = [];
});

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

function notification(kind: NotificationKind, overrides: Partial<Notification> = {}): Notification {
  return {
    id: `${kind}:ord_42`,
    kind,
    orderId: "ord_42",
    userId: kind === "admin_alert" ? null : "user_7",
    eventId: "evt_1",
    detail: null,
    status: "sending",
    attempts: 1,
    createdAt: NOW,
    ...overrides,
  };
}

interface LookupSpy {
  lookup: RecipientLookup;
  calls: Notification[];
}

function lookupReturning(address: string | null): LookupSpy {
  const calls: Notification[] = [];
  return {
    calls,
    lookup: async (n) => {
      calls.push(n);
      return address;
    },
  };
}

function provider(lookup: RecipientLookup): NotificationProvider {
  return smtpProvider({
    transport: { host: "127.0.0.1", port, secure: false, ignoreTLS: true },
    from: FROM,
    adminAddress: ADMIN,
    recipientFor: lookup,
  });
}

async function rejection(promise: Promise<unknown>): Promise<Error & { responseCode?: number; permanent?: boolean }> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(Error);
    return error as Error & { responseCode?: number; permanent?: boolean };
  }
  expect.fail("expected the send to reject");
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe("smtpProvider (real SMTP server on loopback)", () => {
  it("delivers an order_confirmed mail to the user's address with subject, body and deterministic ids", async () => {
    const spy = lookupReturning(USER_ADDRESS);
    const sent = notification("order_confirmed");

    await provider(spy.lookup).send(sent);

    expect(spy.calls).to.have.length(1);
    expect(spy.calls[0]!.id).to.equal("order_confirmed:ord_42");
    expect(received).to.have.length(1);
    const mail = received[0]!;
    expect(mail.mailFrom).to.equal("orders@shop.example");
    expect(mail.rcptTo).to.deep.equal([USER_ADDRESS]);
    expect(mail.headers.get("to")).to.equal(USER_ADDRESS);
    expect(mail.headers.get("from")).to.equal(FROM);
    expect(mail.headers.get("subject")).to.equal("Your order ord_42 is confirmed");
    expect(mail.headers.get("x-notification-id")).to.equal("order_confirmed:ord_42");
    expect(mail.headers.get("message-id")).to.equal(messageIdFor("order_confirmed:ord_42", "shop.example"));
    expect(mail.headers.get("message-id")).to.match(/^<n\.order_confirmed\.ord_42\.[0-9a-f]{16}@shop\.example>$/);
    expect(mail.headers.get("content-type")).to.match(/^text\/plain/);
    expect(mail.body).to.include("your order ord_42 is confirmed");
  });

  it("gives a duplicate send of the same notification the same Message-ID", async () => {
    const p = provider(lookupReturning(USER_ADDRESS).lookup);
    const sent = notification("refund_issued", { id: "refund_issued:ord_42:2000", detail: "requested_by_customer" });

    await p.send(sent);
    await p.send(sent);

    expect(received).to.have.length(2);
    const [first, second] = received;
    expect(first!.headers.get("message-id")).to.equal(second!.headers.get("message-id"));
    expect(first!.headers.get("x-notification-id")).to.equal("refund_issued:ord_42:2000");
    expect(first!.headers.get("subject")).to.equal("A refund was issued for order ord_42");
    expect(first!.body).to.include("Reason: requested_by_customer");
    expect(messageIdFor("a:b", "x.example")).to.not.equal(messageIdFor("a.b", "x.example"));
  });

  it("sends admin_alert to the admin address without looking up a user, with secrets and card numbers redacted", async () => {
    const spy = lookupReturning(USER_ADDRESS);
    const alert = notification("admin_alert", {
      id: "admin_alert:evt_9",
      eventId: "evt_9",
      detail: "dead-lettered after 5 attempts: key sk_live_abc123XYZ card 4242 4242 4242 4242 at 1767225600000",
    });

    await provider(spy.lookup).send(alert);

    expect(spy.calls).to.have.length(0);
    expect(received).to.have.length(1);
    const mail = received[0]!;
    expect(mail.rcptTo).to.deep.equal([ADMIN]);
    expect(mail.headers.get("to")).to.equal(ADMIN);
    expect(mail.headers.get("subject")).to.equal("[stripe-orders] Admin alert: order ord_42");
    expect(mail.headers.get("x-notification-id")).to.equal("admin_alert:evt_9");
    expect(mail.body).to.include("Event: evt_9");
    expect(mail.body).to.include("dead-lettered after 5 attempts");
    expect(mail.body).to.include("[redacted]");
    expect(mail.body).to.include("1767225600000"); // not a card number (fails Luhn), kept
    expect(mail.raw).to.not.include("sk_live_abc123XYZ");
    expect(mail.raw).to.not.include("4242 4242 4242 4242");
  });

  it("rejects with the SMTP code when the server refuses the recipient (550), and nothing is received", async () => {
    mode = "reject_rcpt_550";

    const error = await rejection(provider(lookupReturning(USER_ADDRESS).lookup).send(notification("payment_failed", { detail: "card_declined" })));

    expect(error.message).to.include("550");
    expect(error.responseCode).to.equal(550);
    expect(error.permanent).to.equal(true);
    expect(received).to.have.length(0);
  });

  it("rejects with the SMTP code when the server refuses the message data (554), and nothing is received", async () => {
    mode = "reject_data_554";

    const error = await rejection(provider(lookupReturning(USER_ADDRESS).lookup).send(notification("order_canceled", { detail: "expired" })));

    expect(error.message).to.include("554");
    expect(error.message).to.include("refused by policy");
    expect(error.responseCode).to.equal(554);
    expect(received).to.have.length(0);
  });

  it("rejects an unknown recipient without connecting to the server", async () => {
    const spy = lookupReturning(null);
    const p = provider(spy.lookup);
    const before = connections;

    const error = await rejection(p.send(notification("order_confirmed", { userId: "user_without_email" })));

    expect(error.message).to.include("recipient unknown");
    expect(error.message).to.include("user_without_email");
    expect(error.permanent).to.equal(true);
    expect(spy.calls).to.have.length(1);
    expect(connections).to.equal(before);
    expect(received).to.have.length(0);

    // The same provider still works, and that send is the only connection made since.
    await provider(lookupReturning(USER_ADDRESS).lookup).send(notification("order_confirmed"));
    expect(connections).to.equal(before + 1);
    expect(received).to.have.length(1);
  });
});

describe("smtpProviderFromEnv", () => {
  const lookup = lookupReturning(USER_ADDRESS).lookup;

  it("returns null when SMTP_HOST is unset or empty", () => {
    expect(smtpProviderFromEnv({}, lookup)).to.equal(null);
    expect(smtpProviderFromEnv({ SMTP_HOST: "", SMTP_FROM: FROM, ADMIN_EMAIL: ADMIN }, lookup)).to.equal(null);
  });

  it("refuses an incomplete configuration once SMTP_HOST is set", () => {
    expect(() => smtpProviderFromEnv({ SMTP_HOST: "127.0.0.1", ADMIN_EMAIL: ADMIN }, lookup)).to.throw("SMTP_FROM");
    expect(() => smtpProviderFromEnv({ SMTP_HOST: "127.0.0.1", SMTP_FROM: FROM }, lookup)).to.throw("ADMIN_EMAIL");
    expect(() => smtpProviderFromEnv({ SMTP_HOST: "127.0.0.1", SMTP_PORT: "nope", SMTP_FROM: FROM, ADMIN_EMAIL: ADMIN }, lookup)).to.throw("SMTP_PORT");
    expect(() => smtpProviderFromEnv({ SMTP_HOST: "127.0.0.1", SMTP_USER: "u", SMTP_FROM: FROM, ADMIN_EMAIL: ADMIN }, lookup)).to.throw("SMTP_PASS");
  });

  it("builds a working provider from SMTP_HOST, SMTP_PORT, SMTP_SECURE, SMTP_FROM and ADMIN_EMAIL", async () => {
    const p = smtpProviderFromEnv(
      { SMTP_HOST: "127.0.0.1", SMTP_PORT: String(port), SMTP_SECURE: "false", SMTP_FROM: FROM, ADMIN_EMAIL: ADMIN },
      lookup,
    );
    expect(p).to.not.equal(null);
    expect(p!.name).to.equal("smtp");

    await p!.send(notification("admin_alert", { id: "admin_alert:evt_env", eventId: "evt_env", detail: "from env" }));

    expect(received).to.have.length(1);
    expect(received[0]!.rcptTo).to.deep.equal([ADMIN]);
    expect(received[0]!.headers.get("x-notification-id")).to.equal("admin_alert:evt_env");
  });
});
