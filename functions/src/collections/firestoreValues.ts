import { Timestamp } from "firebase-admin/firestore";

/** Reads a Firestore Timestamp field as a Date; documents written by hand in the console may hold a Date-like value. */
export function toDate(value: unknown): Date {
  if (value instanceof Timestamp) return value.toDate();
  if (value instanceof Date) return value;
  if (typeof value === "string" || typeof value === "number") return new Date(value);
  throw new TypeError(`Expected a Firestore Timestamp, got ${typeof value}`);
}

export function toOptionalDate(value: unknown): Date | undefined {
  return value === undefined || value === null ? undefined : toDate(value);
}

/** Non-negative integer fields an operator may have typed into the console as doubles or strings. */
export function toCount(value: unknown): number {
  const n = typeof value === "string" ? Number(value) : value;
  return typeof n === "number" && Number.isFinite(n) ? Math.trunc(n) : 0;
}

/** Firestore rejects `undefined` field values; strip them before a write. */
export function withoutUndefined<T extends object>(value: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [key, v] of Object.entries(value) as [keyof T, T[keyof T]][]) {
    if (v !== undefined) out[key] = v;
  }
  return out;
}
