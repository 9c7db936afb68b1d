import type { Firestore } from "firebase-admin/firestore";
import { customerRef } from "../collections/customers";

/** The custom claim that mirrors `customers/{uid}.entitlement.role`; read it in rules as `request.auth.token.stripeRole`. */
export const ROLE_CLAIM = "stripeRole";

/** The part of the Admin Auth SDK the claim sync uses. */
export interface ClaimsAuth {
  getUser(uid: string): Promise<{ customClaims?: Record<string, unknown> }>;
  setCustomUserClaims(uid: string, claims: Record<string, unknown> | null): Promise<void>;
}

export interface ClaimsDeps {
  db: Firestore;
  auth: ClaimsAuth;
}

export type ClaimSync = "set" | "removed" | "unchanged" | "no_user";

/**
 * Makes the `stripeRole` claim match the customer document as it is NOW (Auth is not transactional, so
 * this runs after the commit, from the document's trigger, and is retried). Reading the document rather
 * than the trigger's copy makes late or reordered runs converge on the latest entitlement; an equal
 * claim is left alone; the user's other claims are kept.
 */
export async function syncRoleClaim(deps: ClaimsDeps, uid: string): Promise<ClaimSync> {
  const customer = (await customerRef(deps.db, uid).get()).data();
  const role = customer?.entitlement?.role ?? null;
  let claims: Record<string, unknown>;
  try {
    claims = { ...((await deps.auth.getUser(uid)).customClaims ?? {}) };
  } catch (error) {
    // A deleted Auth user has no claims to keep in step; retrying would never succeed.
    if ((error as { code?: unknown }).code === "auth/user-not-found") return "no_user";
    throw error;
  }
  const current = typeof claims[ROLE_CLAIM] === "string" ? claims[ROLE_CLAIM] : null;
  if (current === role) return "unchanged";
  if (role === null) delete claims[ROLE_CLAIM];
  else claims[ROLE_CLAIM] = role;
  await deps.auth.setCustomUserClaims(uid, claims);
  return role === null ? "removed" : "set";
}

/** The trigger's cheap filter: only a write that changes the role needs the Auth round trip. */
export function roleChanged(before: Record<string, unknown> | undefined, after: Record<string, unknown> | undefined): boolean {
  return roleOf(before) !== roleOf(after);
}

function roleOf(data: Record<string, unknown> | undefined): string | null {
  const entitlement = data?.entitlement;
  if (typeof entitlement !== "object" || entitlement === null) return null;
  const role = (entitlement as Record<string, unknown>).role;
  return typeof role === "string" ? role : null;
}
