import type { JsonPatchOperation } from "./patch.ts";

/**
 * JSON text of values rendered once and shared by many answers (the sidecar container and token volume
 * of one AgentIdentity version, memo.ts). Such a value is deep-frozen when it is remembered: a later
 * review can neither change what an earlier one answered nor what the next one gets, and its JSON text
 * stays true. The patch encoder splices the remembered text in instead of serialising the same 2 KB
 * container again for every pod; the output is byte for byte what JSON.stringify gives.
 */

const texts = new WeakMap<object, string>();
/** A number per remembered value, never reused: it stands for the value's text in a patch's outline. */
const ids = new WeakMap<object, number>();
let lastId = 0;

/** Freezes `value` and everything in it; returns it. */
export function deepFrozen<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFrozen(child);
  }
  return value;
}

/** Freezes `value` (deeply) and remembers its JSON text; returns it. */
export function remembered<T extends object>(value: T): T {
  deepFrozen(value);
  texts.set(value, JSON.stringify(value));
  ids.set(value, ++lastId);
  return value;
}

/** The remembered text of a value, or of a one-element array around one (`prepend`/`append` wrap the value when the pod has no such array yet). */
function rememberedText(value: unknown, outline: boolean): string | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const text = outline ? ids.get(value) : texts.get(value);
  if (text !== undefined) return outline ? `#${text}` : (text as string);
  if (Array.isArray(value) && value.length === 1 && typeof value[0] === "object" && value[0] !== null) {
    const inner = outline ? ids.get(value[0]) : texts.get(value[0]);
    if (inner !== undefined) return outline ? `[#${inner}]` : `[${inner}]`;
  }
  return undefined;
}

/**
 * JSON.stringify(patch) with the remembered values' text reused, or (outline) a short text that tells
 * patches apart: each remembered value as `#<its number>`, the rest as JSON (never starts with `#`).
 */
function encode(patch: readonly JsonPatchOperation[], outline: boolean): string {
  let out = "[";
  for (let i = 0; i < patch.length; i++) {
    const op = patch[i] as unknown as Record<string, unknown>;
    if (i > 0) out += ",";
    const text = rememberedText(op.value, outline);
    if (text === undefined) {
      out += JSON.stringify(op);
      continue;
    }
    const keys = Object.keys(op);
    if (outline && keys.length === 3 && keys[0] === "op" && keys[1] === "path" && keys[2] === "value") {
      // The common operation (op, path, value): its outline needs no key names.
      out += `(${JSON.stringify(op.op)}${JSON.stringify(op.path)}${text})`;
      continue;
    }
    // The keys JSON.stringify(op) would write, in the same order, with `value` replaced by its text.
    let body = "";
    for (const key of keys) {
      const v = op[key];
      if (v === undefined || typeof v === "function" || typeof v === "symbol") continue;
      body += `${body ? "," : ""}${JSON.stringify(key)}:${key === "value" ? text : JSON.stringify(v)}`;
    }
    out += `{${body}}`;
  }
  return `${out}]`;
}

/** JSON.stringify(patch), with the remembered values' text reused. */
export function encodePatch(patch: readonly JsonPatchOperation[]): string {
  return encode(patch, false);
}

const ENCODED_LIMIT = 256;
const encoded = new Map<string, string>();

/**
 * The patch as the AdmissionReview carries it: base64 of its JSON text. Pods of the same shape for the
 * same identity version get the same patch: the base64 is kept by the patch's outline (the most recent
 * ENCODED_LIMIT), so such a pod's answer costs the outline and one lookup. Patches without remembered
 * values (a pod's own resources) are encoded every time.
 */
export function patchBase64(patch: readonly JsonPatchOperation[]): string {
  if (!patch.some((op) => rememberedText((op as { value?: unknown }).value, true) !== undefined))
    return Buffer.from(encode(patch, false)).toString("base64");
  const outline = encode(patch, true);
  let base64 = encoded.get(outline);
  if (base64 === undefined) {
    base64 = Buffer.from(encode(patch, false)).toString("base64");
    if (encoded.size >= ENCODED_LIMIT) encoded.delete(encoded.keys().next().value as string);
    encoded.set(outline, base64);
  }
  return base64;
}
