import { invalidRequest, missingParam } from "./errors";

/**
 * Request parameters as Stripe receives them: form-encoded with bracketed keys
 * (`metadata[orderId]=x`, `line_items[0][price_data][unit_amount]=2000`, `expand[]=customer`),
 * parsed into nested objects and arrays of strings. Values stay strings, as on the wire; the
 * readers below convert and validate them with Stripe's error messages.
 */

export type ParamValue = string | Params | ParamValue[];
export interface Params {
  [key: string]: ParamValue;
}

/** `a[b][0][]` → ["a", "b", "0", ""]; null when the brackets do not balance. */
function keyPath(key: string): string[] | null {
  const open = key.indexOf("[");
  if (open === -1) return [key];
  const segments = [key.slice(0, open)];
  const rest = key.slice(open);
  const re = /\[([^\[\]]*)\]/gy;
  let consumed = 0;
  for (let m = re.exec(rest); m !== null; m = re.exec(rest)) {
    segments.push(m[1] ?? "");
    consumed = re.lastIndex;
  }
  return consumed === rest.length && segments[0] !== "" ? segments : null;
}

function isParams(value: ParamValue | undefined): value is Params {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function childContainer(nextSegment: string): Params | ParamValue[] {
  return nextSegment === "" || /^\d+$/.test(nextSegment) ? [] : {};
}

function assign(root: Params, path: string[], value: string, rawKey: string): void {
  let container: Params | ParamValue[] = root;
  for (let i = 0; i < path.length; i++) {
    const segment = path[i] as string;
    const last = i === path.length - 1;
    const next: Params | ParamValue[] | string = last ? value : childContainer(path[i + 1] as string);
    if (Array.isArray(container)) {
      const index: number = segment === "" ? container.length : Number(segment);
      const existing = container[index];
      if (last) container[index] = next;
      else if (existing === undefined || typeof existing === "string") container[index] = next;
      const child: ParamValue | undefined = container[index];
      if (!last) {
        if (typeof child === "string" || child === undefined) throw invalidRequest(`Invalid parameter: ${rawKey}`);
        container = child;
      }
    } else {
      const existing: ParamValue | undefined = container[segment];
      if (last) {
        container[segment] = next;
      } else {
        if (existing === undefined || typeof existing === "string") container[segment] = next;
        const child: ParamValue | undefined = container[segment];
        if (typeof child === "string" || child === undefined) throw invalidRequest(`Invalid parameter: ${rawKey}`);
        container = child;
      }
    }
  }
}

export function parseForm(body: string): Params {
  const root: Params = {};
  for (const [key, value] of new URLSearchParams(body)) {
    const path = keyPath(key);
    if (path === null) throw invalidRequest(`Invalid parameter name: ${key}`);
    assign(root, path, value, key);
  }
  return root;
}

/** A stable text of the parameters, to compare the requests that reuse an idempotency key. */
export function canonical(value: ParamValue): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? "null" : canonical(v))).join(",")}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k] as ParamValue)}`).join(",")}}`;
}

// ---------------------------------------------------------------------------------------------
// Readers. `name` is the full parameter name as Stripe reports it (`line_items[0][quantity]`).
// ---------------------------------------------------------------------------------------------

export function optString(params: Params, key: string, name = key): string | null {
  const v = params[key];
  if (v === undefined || v === "") return null;
  if (typeof v !== "string") throw invalidRequest(`Invalid string: ${name}`, { param: name });
  return v;
}

export function reqString(params: Params, key: string, name = key): string {
  const v = optString(params, key, name);
  if (v === null) throw missingParam(name);
  return v;
}

export function optInt(params: Params, key: string, name = key): number | null {
  const v = optString(params, key, name);
  if (v === null) return null;
  if (!/^-?\d+$/.test(v) || !Number.isSafeInteger(Number(v))) {
    throw invalidRequest(`Invalid integer: ${v}`, { code: "parameter_invalid_integer", param: name });
  }
  return Number(v);
}

export function reqInt(params: Params, key: string, name = key): number {
  const v = optInt(params, key, name);
  if (v === null) throw missingParam(name);
  return v;
}

export function optBool(params: Params, key: string, name = key): boolean | null {
  const v = optString(params, key, name);
  if (v === null) return null;
  if (v !== "true" && v !== "false") throw invalidRequest(`Invalid boolean: ${v}`, { param: name });
  return v === "true";
}

export function optObject(params: Params, key: string, name = key): Params | null {
  const v = params[key];
  if (v === undefined || v === "") return null;
  if (!isParams(v)) throw invalidRequest(`Invalid object: ${name}`, { param: name });
  return v;
}

/** Stripe accepts arrays both as `a[]=x` and as `a[0]=x`. */
export function optList(params: Params, key: string, name = key): ParamValue[] | null {
  const v = params[key];
  if (v === undefined || v === "") return null;
  if (!Array.isArray(v)) throw invalidRequest(`Invalid array: ${name}`, { param: name });
  return v.filter((item) => item !== undefined);
}

export function optStringList(params: Params, key: string, name = key): string[] {
  const list = optList(params, key, name) ?? [];
  return list.map((item, i) => {
    if (typeof item !== "string") throw invalidRequest(`Invalid string: ${name}[${i}]`, { param: `${name}[${i}]` });
    return item;
  });
}

export function objectList(params: Params, key: string, name = key): Params[] {
  const list = optList(params, key, name) ?? [];
  return list.map((item, i) => {
    if (!isParams(item)) throw invalidRequest(`Invalid object: ${name}[${i}]`, { param: `${name}[${i}]` });
    return item;
  });
}

export function oneOf<T extends string>(value: string, allowed: readonly T[], name: string): T {
  const found = allowed.find((a) => a === value);
  if (found === undefined) {
    throw invalidRequest(`Invalid ${name}: must be one of ${allowed.join(", ")}`, { code: "parameter_invalid_string", param: name });
  }
  return found;
}

/** Metadata: string values; an empty value unsets the key, as on Stripe. */
export function metadataParam(params: Params, key = "metadata", name = key): Record<string, string> | null {
  const v = optObject(params, key, name);
  if (v === null) return null;
  const out: Record<string, string> = {};
  for (const [k, value] of Object.entries(v)) {
    if (typeof value !== "string") throw invalidRequest(`Invalid metadata value for ${name}[${k}]`, { param: `${name}[${k}]` });
    if (k.length > 40) throw invalidRequest(`Metadata keys can have up to 40 characters: ${name}[${k}]`, { param: `${name}[${k}]` });
    if (value.length > 500) throw invalidRequest(`Metadata values can have up to 500 characters: ${name}[${k}]`, { param: `${name}[${k}]` });
    if (value !== "") out[k] = value;
  }
  return out;
}

/**
 * A parameter the stand-in does not implement is refused rather than ignored: silently dropping,
 * say, `capture_method=manual` would answer with behaviour Stripe would not have.
 */
export function knownKeysOnly(params: Params, allowed: readonly string[], prefix = ""): void {
  for (const key of Object.keys(params)) {
    if (key === "expand" && prefix === "") continue;
    if (!allowed.includes(key)) {
      const name = prefix === "" ? key : `${prefix}[${key}]`;
      throw invalidRequest(
        `Received unknown parameter: ${name} (the local Stripe stand-in does not implement it; Stripe may accept it)`,
        { code: "parameter_unknown", param: name },
      );
    }
  }
}
