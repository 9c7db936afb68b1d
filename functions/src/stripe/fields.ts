/**
 * Reading the fields of a signed Stripe event's object. The event is Stripe's, but its object is only
 * JSON: the types Stripe's SDK declares are not checked at run time, and a throw while translating it
 * (or a value Firestore refuses later) would fail the event's transaction on every redelivery. So every
 * field is read as unknown, by these (pure).
 */

/** The last second a Firestore Timestamp holds (9999-12-31T23:59:59Z), as Unix seconds. */
export const MAX_TIMESTAMP_SECONDS = 253_402_300_799;

/** An object's fields; null for anything else (an array included). */
export function recordOf(value: unknown): Record<string, unknown> | null {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

/** A non-empty string, trimmed; null for anything else. */
export function nonEmpty(value: unknown): string | null {
  return typeof value === "string" && value.trim().length > 0 ? value.trim() : null;
}

export function textOf(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}

/** An id given as a string or as an expanded object. */
export function idOf(value: unknown): string | null {
  const record = recordOf(value);
  return nonEmpty(record === null ? value : record.id);
}

/** The reason an event is ignored for a field it cannot be applied without. */
export function malformedReason(type: string, field: string): string {
  return `${type}: the object's ${field} is missing or malformed`;
}
