import { ANNOTATION_PREFIX, type Parsed, RESOURCE_ANNOTATIONS, resolveResources } from "./annotations.ts";
import { deepFrozen, remembered } from "./json-text.ts";
import type { InjectionTarget, Resources, SidecarSettings } from "./types.ts";

/**
 * The per-identity part of a mutation, rendered once: the sidecar's resources, container and token
 * volume depend on the InjectionTarget (one version of an AgentIdentity and its blueprint), the manager's
 * settings and the resources, never on the pod, unless the pod overrides its resources by annotation
 * (then they are rendered for that pod). Only frozen targets and settings are memoised (the target
 * cache of target.ts and `sidecarSettings` freeze theirs), keyed by the objects themselves: a new
 * version of the identity is a new target, and what nobody holds any more is collected with it. What is
 * memoised is frozen too (json-text.ts), so a review can never change what the next one gets.
 */

const RESOURCE_KEYS = Object.keys(RESOURCE_ANNOTATIONS).map((suffix) => `${ANNOTATION_PREFIX}${suffix}`);

const resourcesMemo = new WeakMap<InjectionTarget, WeakMap<SidecarSettings, Parsed<Resources>>>();
const containerMemo = new WeakMap<
  Resources,
  { target: InjectionTarget; settings: SidecarSettings; container: Record<string, unknown> }
>();
const volumeMemo = new WeakMap<InjectionTarget, Record<string, unknown>>();
const appEnvMemo = new WeakMap<InjectionTarget, ReadonlyArray<{ name: string; value: string }>>();

const memoisable = (target: InjectionTarget, settings?: SidecarSettings) =>
  Object.isFrozen(target) && (settings === undefined || Object.isFrozen(settings));

/** Whether the pod overrides the sidecar's resources (a loop: no closure per review). */
function hasResourceAnnotation(annotations: Record<string, string>): boolean {
  for (const key of RESOURCE_KEYS) if (annotations[key] !== undefined) return true;
  return false;
}

/** resolveResources for this pod; the same frozen object for every pod without resource annotations. */
export function sidecarResources(
  settings: SidecarSettings,
  target: InjectionTarget,
  annotations: Record<string, string>,
): Parsed<Resources> {
  if (!memoisable(target, settings) || hasResourceAnnotation(annotations))
    return resolveResources(settings.defaultResources, target.resources, annotations);
  let bySettings = resourcesMemo.get(target);
  if (!bySettings) {
    bySettings = new WeakMap();
    resourcesMemo.set(target, bySettings);
  }
  let parsed = bySettings.get(settings);
  if (!parsed) {
    parsed = resolveResources(settings.defaultResources, target.resources, {});
    if (parsed.ok) parsed = { ok: true, value: remembered(parsed.value) };
    bySettings.set(settings, parsed);
  }
  return parsed;
}

/**
 * The renderers below take their inputs as arguments (a module function, not a closure per review). The
 * sidecar container `render` makes for this target, settings and resources: once while the
 * resources are the memoised ones (sidecarResources above), afresh for a pod's own.
 */
export function sidecarFor(
  target: InjectionTarget,
  settings: SidecarSettings,
  resources: Resources,
  render: (
    target: InjectionTarget,
    settings: SidecarSettings,
    resources: Resources,
  ) => Record<string, unknown>,
): Record<string, unknown> {
  if (!memoisable(target, settings) || !Object.isFrozen(resources))
    return render(target, settings, resources);
  const hit = containerMemo.get(resources);
  if (hit && hit.target === target && hit.settings === settings) return hit.container;
  const container = remembered(render(target, settings, resources));
  containerMemo.set(resources, { target, settings, container });
  return container;
}

/** The token volume `render` makes, once per frozen target. */
export function tokenVolumeFor(
  target: InjectionTarget,
  render: (target: InjectionTarget) => Record<string, unknown>,
): Record<string, unknown> {
  if (!memoisable(target)) return render(target);
  let volume = volumeMemo.get(target);
  if (!volume) {
    volume = remembered(render(target));
    volumeMemo.set(target, volume);
  }
  return volume;
}

/**
 * The variables every app container gets (SIDECAR_URL first), once per frozen target while the sidecar
 * listens on the target's port (a reinvoked pod keeps the port it was injected with: rendered afresh).
 * Each entry's JSON text is remembered.
 */
export function appEnvFor(
  target: InjectionTarget,
  port: number,
  render: (target: InjectionTarget, port: number) => Array<{ name: string; value: string }>,
): ReadonlyArray<{ name: string; value: string }> {
  if (!memoisable(target) || port !== target.port) return render(target, port);
  let env = appEnvMemo.get(target);
  if (!env) {
    env = deepFrozen(render(target, port).map((e) => remembered(e)));
    appEnvMemo.set(target, env);
  }
  return env;
}
