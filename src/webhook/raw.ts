/**
 * Read-only views of a raw pod (the JSON the API server sent). Nothing here copies or re-serialises the
 * pod: the mutation reads these views and emits JSON-Patch operations addressed at the original JSON, so
 * fields our code does not know (a newer API version's, a user's native sidecar's `restartPolicy`) are
 * never touched.
 */

import { printable } from "../lib/text.ts";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function objectAt(parent: unknown, key: string): JsonObject | undefined {
  if (!isObject(parent)) return undefined;
  const value = parent[key];
  return isObject(value) ? value : undefined;
}

export function arrayAt(parent: unknown, key: string): Json[] | undefined {
  if (!isObject(parent)) return undefined;
  const value = parent[key];
  return Array.isArray(value) ? value : undefined;
}

export function stringAt(parent: unknown, key: string): string | undefined {
  if (!isObject(parent)) return undefined;
  const value = parent[key];
  return typeof value === "string" ? value : undefined;
}

export type ContainerField = "containers" | "initContainers" | "ephemeralContainers";

/** One container of the pod, with where it sits in the raw JSON. */
export interface ContainerView {
  field: ContainerField;
  index: number;
  name: string;
  raw: JsonObject;
}

export function containersOf(pod: unknown, field: ContainerField): ContainerView[] {
  const list = arrayAt(objectAt(pod, "spec"), field) ?? [];
  const out: ContainerView[] = [];
  list.forEach((raw, index) => {
    if (isObject(raw)) out.push({ field, index, name: stringAt(raw, "name") ?? "", raw });
  });
  return out;
}

/** Every container a pod spec holds, in the order the kubelet knows them. */
export function allContainers(pod: unknown): ContainerView[] {
  return [
    ...containersOf(pod, "initContainers"),
    ...containersOf(pod, "containers"),
    ...containersOf(pod, "ephemeralContainers"),
  ];
}

const NO_ANNOTATIONS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * The pod's string-valued annotations, read-only. The API server only sends strings there, so this is
 * the pod's own object (a review reads it several times: no copy each time); a copy without the other
 * values only for a pod that has some.
 */
export function annotationsOf(pod: unknown): Readonly<Record<string, string>> {
  const raw = objectAt(objectAt(pod, "metadata"), "annotations");
  if (raw === undefined) return NO_ANNOTATIONS;
  let strings = true;
  for (const k in raw) if (typeof raw[k] !== "string") strings = false;
  if (strings) return raw as Record<string, string>;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) if (typeof v === "string") out[k] = v;
  return out;
}

export function volumesOf(pod: unknown): JsonObject[] {
  return (arrayAt(objectAt(pod, "spec"), "volumes") ?? []).filter(isObject);
}

/** The ServiceAccount a pod runs as: `serviceAccountName`, the deprecated `serviceAccount`, or `default`. */
export function serviceAccountOf(pod: unknown): string {
  const spec = objectAt(pod, "spec");
  return stringAt(spec, "serviceAccountName") || stringAt(spec, "serviceAccount") || "default";
}

/** `name`, or `generateName` + `*` for Deployment pods that have no name yet (for messages and logs). */
export function displayName(pod: unknown): string {
  const meta = objectAt(pod, "metadata");
  const name = stringAt(meta, "name");
  if (name) return name;
  const generate = stringAt(meta, "generateName");
  return generate ? `${generate}*` : "<unnamed>";
}

export function envNames(container: JsonObject): Set<string> {
  const names = new Set<string>();
  for (const e of arrayAt(container, "env") ?? []) {
    const name = stringAt(e, "name");
    if (name !== undefined) names.add(name);
  }
  return names;
}

/**
 * Echoes user input in messages without letting a huge value fill them or a control character forge lines
 * or escapes (src/lib/text.ts, printable): every pod-supplied string a refusal message quotes goes through
 * here or through `printable` itself (src/api/select.ts).
 */
export function truncate(value: string, max = 64): string {
  return printable(value, max);
}
