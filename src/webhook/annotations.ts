import { truncate } from "./raw.ts";
import { MAX_CONTAINERS_PER_LIST } from "./refusals.ts";
import type { ResourceList, Resources } from "./types.ts";

/**
 * Per-pod settings a pod's author may give by annotation, parsed and checked (pure). A bad value refuses
 * the pod with a message naming the annotation, rather than injecting something the author did not ask for.
 */

export const ANNOTATION_PREFIX = "agentid.io/";
/** Resource annotations: `agentid.io/sidecar-cpu-request` etc.; an empty value omits the field. */
export const RESOURCE_ANNOTATIONS = {
  "sidecar-cpu-request": ["requests", "cpu"],
  "sidecar-cpu-limit": ["limits", "cpu"],
  "sidecar-memory-request": ["requests", "memory"],
  "sidecar-memory-limit": ["limits", "memory"],
} as const satisfies Record<string, readonly ["requests" | "limits", string]>;

export { truncate };

/** Comma-separated names of init containers that also get SIDECAR_URL (they run after a native sidecar). */
export const ANNOTATION_INIT_CONTAINERS = "agentid.io/sidecar-url-init-containers";

/** A Kubernetes quantity without a sign (resource.Quantity's grammar: digits, decimal, suffix or exponent). */
const QUANTITY = /^(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?$/;

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

/**
 * The sidecar's resources: the manager's defaults, overridden key by key by the AgentIdentity, then by
 * the pod's annotations. An empty annotation value removes the field (a namespace without quota may
 * want no CPU limit).
 */
export function resolveResources(
  defaults: Resources,
  identity: Resources | undefined,
  annotations: Record<string, string>,
): Parsed<Resources> {
  const out: { requests: ResourceList; limits: ResourceList } = {
    requests: { ...defaults.requests, ...identity?.requests },
    limits: { ...defaults.limits, ...identity?.limits },
  };
  for (const [suffix, [kind, resource]] of Object.entries(RESOURCE_ANNOTATIONS)) {
    const key = `${ANNOTATION_PREFIX}${suffix}`;
    const value = annotations[key];
    if (value === undefined) continue;
    const trimmed = value.trim();
    if (trimmed === "") {
      delete out[kind][resource];
      continue;
    }
    if (!QUANTITY.test(trimmed)) {
      return {
        ok: false,
        message: `annotation ${key}: '${truncate(value)}' is not a Kubernetes quantity (for example 50m or 128Mi); fix it, or set it to "" to leave the field out`,
      };
    }
    out[kind][resource] = trimmed;
  }
  for (const resource of ["cpu", "memory"] as const) {
    const request = out.requests[resource];
    const limit = out.limits[resource];
    if (request !== undefined && limit !== undefined && quantityValue(request) > quantityValue(limit)) {
      return {
        ok: false,
        message: `the sidecar's ${resource} request ${request} is above its limit ${limit}; lower the request or raise the limit (annotations ${ANNOTATION_PREFIX}sidecar-${resource}-request / -limit)`,
      };
    }
  }
  const result: Resources = {};
  if (Object.keys(out.requests).length > 0) result.requests = out.requests;
  if (Object.keys(out.limits).length > 0) result.limits = out.limits;
  return { ok: true, value: result };
}

const SUFFIX: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** The numeric value of a quantity that matched QUANTITY (precise enough to compare request and limit). */
export function quantityValue(q: string): number {
  const match = /^(\d+(?:\.\d*)?|\.\d+)(.*)$/.exec(q);
  if (!match) return Number.NaN;
  const base = Number(match[1]);
  const suffix = match[2] ?? "";
  if (suffix === "") return base;
  if (/^[eE]/.test(suffix)) return base * 10 ** Number(suffix.slice(1));
  return base * (SUFFIX[suffix] ?? Number.NaN);
}

/**
 * The most names the init-containers annotation may list: as many as a pod may have init containers
 * (refusals.ts, MAX_CONTAINERS_PER_LIST). Checked before the names are looked up, so that a huge value
 * (mutating admission runs before the API server's 256 KiB annotation limit) costs no more than its split.
 */
export const MAX_INIT_CONTAINER_NAMES = MAX_CONTAINERS_PER_LIST;
/** How many unknown names a refusal repeats; the rest are counted. */
const MAX_NAMES_SHOWN = 10;

/** Names listed in the init-containers annotation, each of which must be an init container of the pod. */
export function parseInitContainerNames(
  annotations: Record<string, string>,
  initNames: ReadonlySet<string>,
): Parsed<Set<string>> {
  const value = annotations[ANNOTATION_INIT_CONTAINERS];
  if (value === undefined || value.trim() === "") return { ok: true, value: new Set() };
  const names = value
    .split(",")
    .map((n) => n.trim())
    .filter((n) => n !== "");
  if (names.length > MAX_INIT_CONTAINER_NAMES) {
    return {
      ok: false,
      message: `annotation ${ANNOTATION_INIT_CONTAINERS} lists ${names.length} names; agentid accepts at most ${MAX_INIT_CONTAINER_NAMES}, list only the init containers that need SIDECAR_URL`,
    };
  }
  const unknown = names.filter((n) => !initNames.has(n));
  if (unknown.length > 0) {
    const shown = unknown.slice(0, MAX_NAMES_SHOWN).map((n) => `'${truncate(n)}'`);
    if (unknown.length > MAX_NAMES_SHOWN) shown.push(`${unknown.length - MAX_NAMES_SHOWN} more`);
    return {
      ok: false,
      message: `annotation ${ANNOTATION_INIT_CONTAINERS} names ${shown.join(", ")}, which ${unknown.length === 1 ? "is not an init container" : "are not init containers"} of this pod; list init container names separated by commas`,
    };
  }
  return { ok: true, value: new Set(names) };
}
