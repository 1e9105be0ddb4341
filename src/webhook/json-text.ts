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
 * A token per remembered value (`#<number>`, numbers never reused): the patch cache finds the patches it
 * keeps by the token of their first remembered value.
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
function rememberedText(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const text = texts.get(value);
  if (text !== undefined) return text;
  if (Array.isArray(value) && value.length === 1 && typeof value[0] === "object" && value[0] !== null) {
    const inner = texts.get(value[0]);
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
    const text = rememberedText(op.value);
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

/**
 * A value as the patch cache compares it: a remembered value itself (its text cannot change), an array of
 * remembered values (a new array around them, as `prepend`/`append` and a container without `env` get:
 * compared element by element), or any other value's JSON text. Undefined for what JSON cannot hold.
 */
type ValueKey = object | string;

const isRemembered = (value: unknown): value is object =>
  typeof value === "object" && value !== null && texts.has(value);

function valueKey(value: unknown): ValueKey | undefined {
  if (isRemembered(value)) return value;
  if (Array.isArray(value) && value.length > 0 && value.every(isRemembered)) return value.slice();
  return JSON.stringify(value) as string | undefined;
}

/** Whether `value` has the key `key` stands for: then both have the same JSON text. */
function sameValue(key: ValueKey, value: unknown): boolean {
  // Text against text only: the string "5" is not the number 5.
  if (typeof key === "string") return !isRemembered(value) && JSON.stringify(value) === key;
  if (key === value) return true;
  if (!Array.isArray(key) || !Array.isArray(value) || key.length !== value.length) return false;
  for (let i = 0; i < key.length; i++) if (key[i] !== value[i]) return false;
  return true;
}

/** A patch whose base64 is kept: each operation's op, path and value key, all plain adds. */
interface KeptPatch {
  operations: ReadonlyArray<{ op: string; path: string; value: ValueKey }>;
  base64: string;
}

/** Whether `patch` is the kept one, operation by operation: then its JSON text, and base64, are the same. */
function isKept(kept: KeptPatch, patch: readonly JsonPatchOperation[]): boolean {
  if (kept.operations.length !== patch.length) return false;
  for (let i = 0; i < patch.length; i++) {
    const k = kept.operations[i] as KeptPatch["operations"][number];
    const op = patch[i] as unknown as Op;
    if (op.op !== k.op || op.path !== k.path || !isPlainAdd(op) || !sameValue(k.value, op.value))
      return false;
  }
  return true;
}

/**
 * The patch in the form it is kept, or undefined when it is not kept: an operation that is not a plain
 * add, more than PATCH_CACHE_MAX_OPERATIONS operations, or more than PATCH_CACHE_MAX_TEXT characters of
 * values that are not remembered (that text grows with the pod, a line per app container).
 */
function keptForm(patch: readonly JsonPatchOperation[], base64: string): KeptPatch | undefined {
  if (patch.length > PATCH_CACHE_MAX_OPERATIONS) return undefined;
  const operations: Array<{ op: string; path: string; value: ValueKey }> = [];
  let text = 0;
  for (const operation of patch) {
    const op = operation as unknown as Op;
    if (!isPlainAdd(op)) return undefined;
    const value = valueKey(op.value);
    if (value === undefined) return undefined;
    if (typeof value === "string") text += value.length;
    if (text > PATCH_CACHE_MAX_TEXT) return undefined;
    operations.push({ op: op.op as string, path: op.path as string, value });
  }
  return { operations, base64 };
}

/** The token of the patch's first remembered value (or array of them): kept patches are found by it. */
function anchorOf(patch: readonly JsonPatchOperation[]): string | undefined {
  for (const operation of patch) {
    const value = (operation as unknown as Op).value;
    const first = Array.isArray(value) ? value[0] : value;
    if (typeof first === "object" && first !== null) {
      const token = tokens.get(first);
      if (token !== undefined) return token;
    }
  }
  return undefined;
}

const PATCH_CACHE_MAX_OPERATIONS = 64;
export const PATCH_CACHE_MAX_TEXT = 4096;
/** Anchors kept (the most recent), and patches kept per anchor (pods of different shapes). */
const ANCHORS_KEPT = 64;
const PATCHES_PER_ANCHOR = 4;
const kept = new Map<string, KeptPatch[]>();

const encode = (patch: readonly JsonPatchOperation[]) => Buffer.from(encodePatch(patch)).toString("base64");

/**
 * The patch as the AdmissionReview carries it: base64 of its JSON text. Pods of the same shape for the
 * same identity version get the same patch, so the base64 is kept: by the patch's first remembered value,
 * up to PATCHES_PER_ANCHOR patches each for the last ANCHORS_KEPT of them, and a new patch that is one of
 * them operation by operation (the same op and path, the same remembered values, the same JSON text of
 * any other value) gets its base64 without being encoded. Patches without remembered values (a pod's own
 * resources) and large ones are encoded every time.
 */
export function patchBase64(patch: readonly JsonPatchOperation[]): string {
  const anchor = anchorOf(patch);
  if (anchor === undefined) return encode(patch);
  const list = kept.get(anchor);
  for (const candidate of list ?? []) if (isKept(candidate, patch)) return candidate.base64;
  const base64 = encode(patch);
  const form = keptForm(patch, base64);
  if (form === undefined) return base64;
  if (list === undefined) {
    if (kept.size >= ANCHORS_KEPT) kept.delete(kept.keys().next().value as string);
    kept.set(anchor, [form]);
  } else {
    if (list.length >= PATCHES_PER_ANCHOR) list.shift();
    list.push(form);
  }
  return base64;
}

/** What the patch cache holds (for tests and diagnostics): its patches and the most text one holds. */
export function patchCacheStats(): { entries: number; longestText: number } {
  let entries = 0;
  let longestText = 0;
  for (const list of kept.values()) {
    entries += list.length;
    for (const form of list) {
      let text = 0;
      for (const o of form.operations) if (typeof o.value === "string") text += o.value.length;
      longestText = Math.max(longestText, text);
    }
  }
  return { entries, longestText };
}
