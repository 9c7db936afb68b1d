/**
 * Outside input (the client, Stripe metadata, an operator's console edit) may name a document only
 * once it is known to be a single, ordinary document id: "a/b" would address another collection,
 * "" or "." throw inside the SDK, and a throw inside a transaction or trigger repeats on every retry.
 */
const MAX_ID_BYTES = 1500;

export function isDocumentId(value: unknown): value is string {
  return (
    typeof value === "string" &&
    value.length > 0 &&
    !value.includes("/") &&
    value !== "." &&
    value !== ".." &&
    !/^__.*__$/.test(value) &&
    Buffer.byteLength(value) <= MAX_ID_BYTES
  );
}
