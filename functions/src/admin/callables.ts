import { HttpsError, type CallableRequest } from "firebase-functions/v2/https";
import type { DeadLetterStatus } from "../collections/deadLetters";
import { AlreadyReplayedError, replayDeadLetter, NoDeadLetterError, type ReplayOutcome } from "../webhook/replay";
import type { PipelineDeps } from "../webhook/applyEvent";
import type { VerifiedEventDeps } from "../subscriptions/dispatch";
import { listDeadLetters, webhookEventStatus, type EventStatusReport, type Json } from "./eventStatus";

/**
 * Admin callables: Firebase Auth required, with the custom claim `admin: true`
 * (set it with the Admin SDK: `getAuth().setCustomUserClaims(uid, { admin: true })`).
 */

type AdminRequest = Pick<CallableRequest<unknown>, "auth" | "data">;

export function requireAdmin(request: AdminRequest): void {
  if (!request.auth) throw new HttpsError("unauthenticated", "Sign in with an account that has the admin claim.");
  if (request.auth.token.admin !== true) {
    throw new HttpsError("permission-denied", "This account has no `admin: true` custom claim.");
  }
}

function field(data: unknown, name: string): unknown {
  return typeof data === "object" && data !== null ? (data as Record<string, unknown>)[name] : undefined;
}

export function eventIdFrom(data: unknown): string {
  const eventId = field(data, "eventId");
  if (typeof eventId !== "string" || !/^evt_[A-Za-z0-9_]{1,250}$/.test(eventId)) {
    throw new HttpsError("invalid-argument", 'Pass {eventId: "evt_..."}, the id of a Stripe event.');
  }
  return eventId;
}

export async function webhookEventStatusCallable(deps: PipelineDeps, request: AdminRequest): Promise<EventStatusReport> {
  requireAdmin(request);
  return webhookEventStatus(deps.db, eventIdFrom(request.data));
}

export async function replayWebhookEventCallable(deps: VerifiedEventDeps, request: AdminRequest): Promise<ReplayOutcome> {
  requireAdmin(request);
  const eventId = eventIdFrom(request.data);
  try {
    return await replayDeadLetter(deps, eventId);
  } catch (error) {
    if (error instanceof NoDeadLetterError) throw new HttpsError("not-found", error.message);
    if (error instanceof AlreadyReplayedError) throw new HttpsError("failed-precondition", error.message);
    throw error;
  }
}

const LISTABLE: readonly DeadLetterStatus[] = ["retrying", "dead", "replayed"];

export async function listDeadLettersCallable(deps: PipelineDeps, request: AdminRequest): Promise<{ deadLetters: Json[] }> {
  requireAdmin(request);
  const status = field(request.data, "status") ?? "dead";
  const limit = field(request.data, "limit") ?? 50;
  if (typeof status !== "string" || !(LISTABLE as readonly string[]).includes(status)) {
    throw new HttpsError("invalid-argument", `status must be one of ${LISTABLE.join(", ")}.`);
  }
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 || limit > 500) {
    throw new HttpsError("invalid-argument", "limit must be an integer from 1 to 500.");
  }
  return { deadLetters: await listDeadLetters(deps.db, status as DeadLetterStatus, limit) };
}
