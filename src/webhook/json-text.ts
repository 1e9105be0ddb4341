import type { JsonPatchOperation } from "./patch.ts";

/**
 * JSON text of values rendered once and shared by many answers (the sidecar container and token volume
 * of one AgentIdentity version, memo.ts). Such a value is deep-frozen when it is remembered: a later
 * review can neither change what an earlier one answered nor what the next one gets, and its JSON text
 * stays true. The patch encoder splices the remembered text in instead of serialising the same 2 KB
 * container again for every pod; the output is byte for byte what JSON.stringify gives.
 */

const texts = new WeakMap<object, string>();
/**
 * A token per remembered value (`#<number>`, numbers never reused): it stands for the value's text in a
 * patch's outline. Kept as a string, so an outline takes no formatting.
 */
const tokens = new WeakMap<object, string>();
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
  tokens.set(value, `#${++lastId}`);
  return value;
}

/** The remembered text of a value, or of a one-element array around one (`prepend`/`append` wrap the value when the pod has no such array yet). */
function rememberedText(value: unknown, outline: boolean): string | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const text = outline ? tokens.get(value) : texts.get(value);
  if (text !== undefined) return text;
  if (Array.isArray(value) && value.length === 1 && typeof value[0] === "object" && value[0] !== null) {
    const inner = outline ? tokens.get(value[0]) : texts.get(value[0]);
    if (inner !== undefined) return `[${inner}]`;
  }
  return undefined;
}

type Op = Record<string, unknown>;

/** Whether the operation has exactly the members op, path and value, in that order (all of ours). */
function isPlainAdd(op: Op): boolean {
  let i = 0;
  for (const key in op) {
    if (key !== (i === 0 ? "op" : i === 1 ? "path" : "value")) return false;
    i++;
  }
  return i === 3 && typeof op.op === "string" && typeof op.path === "string";
}

/** JSON.stringify(patch) with the remembered values' text reused. */
export function encodePatch(patch: readonly JsonPatchOperation[]): string {
  let out = "[";
  for (let i = 0; i < patch.length; i++) {
    const op = patch[i] as unknown as Op;
    if (i > 0) out += ",";
    const text = rememberedText(op.value, false);
    if (text === undefined) {
      out += JSON.stringify(op);
    } else if (isPlainAdd(op)) {
      out += `{"op":${JSON.stringify(op.op)},"path":${JSON.stringify(op.path)},"value":${text}}`;
    } else {
      // The keys JSON.stringify(op) would write, in the same order, with `value` replaced by its text.
      let body = "";
      for (const key of Object.keys(op)) {
        const v = op[key];
        if (v === undefined || typeof v === "function" || typeof v === "symbol") continue;
        body += `${body ? "," : ""}${JSON.stringify(key)}:${key === "value" ? text : JSON.stringify(v)}`;
      }
      out += `{${body}}`;
    }
  }
  return `${out}]`;
}

/** A string an outline can hold as it is: no space, newline or quote, so nothing in it needs marking. */
const PLAIN = /^[\w/~.-]*$/;
const plain = (s: string) => (PLAIN.test(s) ? s : JSON.stringify(s));

/**
 * A short text that tells patches apart, or undefined when the patch holds no remembered value (nothing
 * to gain from keeping it). One line per operation: `op path value`, the op and path as they are when
 * they are plain (they always are: the webhook builds them) and as JSON strings otherwise, the value as
 * its remembered token or its JSON (which never holds a raw newline); an operation of another shape as
 * its JSON (starting with `{`, which neither form does).
 */
function outlineOf(patch: readonly JsonPatchOperation[]): string | undefined {
  let out = "";
  let anyRemembered = false;
  for (const operation of patch) {
    const op = operation as unknown as Op;
    const token = rememberedText(op.value, true);
    if (token !== undefined) anyRemembered = true;
    if (!isPlainAdd(op)) out += `${JSON.stringify(op)}\n`;
    else
      out += `${plain(op.op as string)} ${plain(op.path as string)} ${token ?? JSON.stringify(op.value)}\n`;
  }
  return anyRemembered ? out : undefined;
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
  const outline = outlineOf(patch);
  if (outline === undefined) return Buffer.from(encodePatch(patch)).toString("base64");
  let base64 = encoded.get(outline);
  if (base64 === undefined) {
    base64 = Buffer.from(encodePatch(patch)).toString("base64");
    if (encoded.size >= ENCODED_LIMIT) encoded.delete(encoded.keys().next().value as string);
    encoded.set(outline, base64);
  }
  return base64;
}
