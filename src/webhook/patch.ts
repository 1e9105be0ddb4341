import type { JsonPatchOperation } from "../kube/client.ts";
import { jsonPointerSegment } from "../kube/client.ts";

export type { JsonPatchOperation } from "../kube/client.ts";

/**
 * JSON Pointer paths (RFC 6901) built from segments, each escaped (`~` → `~0`, `/` → `~1`), so an
 * annotation key such as `agentid.io/injected` addresses one member and not a nested path.
 */
export function pointer(...segments: Array<string | number>): string {
  let out = "";
  for (const s of segments) {
    // Most segments (spec, containers, env) have nothing to escape: skip the two replacements for them.
    out += `/${typeof s === "number" || (!s.includes("~") && !s.includes("/")) ? s : jsonPointerSegment(s)}`;
  }
  return out;
}

// The helpers below take the parent's path as a pointer already built (`pointer(...)`, or a constant):
// a review builds the same few paths for every pod.

/** Adds `value` under `key` of the object at `parent`, creating the object when it does not exist. */
export function addMember(
  parent: string,
  parentExists: boolean,
  key: string,
  value: unknown,
): JsonPatchOperation {
  return parentExists
    ? { op: "add", path: `${parent}${pointer(key)}`, value }
    : { op: "add", path: parent, value: { [key]: value } };
}

/** Appends to the array at `path`, creating the array when it does not exist. */
export function append(path: string, exists: boolean, value: unknown): JsonPatchOperation {
  return exists ? { op: "add", path: `${path}/-`, value } : { op: "add", path, value: [value] };
}

/** Inserts at the front of the array at `path`, creating the array when it does not exist. */
export function prepend(path: string, exists: boolean, value: unknown): JsonPatchOperation {
  return exists ? { op: "add", path: `${path}/0`, value } : { op: "add", path, value: [value] };
}
