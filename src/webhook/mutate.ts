import { isDeepStrictEqual } from "node:util";
import { ANNOTATION_INJECTED, SIDECAR_CONTAINER, TOKEN_VOLUME } from "../api/constants.ts";
import { ANNOTATION_INIT_CONTAINERS, type Parsed, parseInitContainerNames } from "./annotations.ts";
import { appEnvFor, sidecarFor, sidecarResources, tokenVolumeFor } from "./memo.ts";
import { addMember, append, type JsonPatchOperation, prepend } from "./patch.ts";
import {
  annotationsOf,
  arrayAt,
  type ContainerField,
  type ContainerView,
  containersOf,
  isObject,
  type Json,
  type JsonObject,
  objectAt,
  stringAt,
} from "./raw.ts";
import { podRefusals, type Refusal } from "./refusals.ts";
import { sidecarContainer, sidecarDifferences, tokenVolume } from "./sidecar.ts";
import type { InjectionTarget, SidecarSettings } from "./types.ts";

// The rendering moved to sidecar.ts (shared with the guard's comparison); its importers keep this path.
export {
  POST_START_WAIT_SECONDS,
  probeCommand,
  sidecarCommand,
  sidecarContainer,
  TOKEN_PATH,
  tokenVolume,
} from "./sidecar.ts";

/**
 * The mutation (pure): a raw pod, the AgentIdentity it gets (already rendered into an InjectionTarget)
 * and the manager's sidecar settings → JSON-Patch operations, or the refusals. Operations address the
 * original JSON; the pod is never decoded into models and re-encoded, so every field we do not touch,
 * known to us or not, is kept byte for byte.
 */

export const SIDECAR_URL = "SIDECAR_URL";

export interface MutationInput {
  pod: unknown;
  target: InjectionTarget;
  settings: SidecarSettings;
}

export type Mutation =
  | {
      allowed: true;
      patch: JsonPatchOperation[];
      /** False when the pod carried our sidecar already (reinvocation, or a copy of an injected pod). */
      injectedNow: boolean;
      /** The value of `agentid.io/injected`. */
      injected: string;
    }
  | { allowed: false; refusals: Refusal[] };

export function injectedValue(target: InjectionTarget): string {
  return `${target.identity.name}@${target.identity.generation}`;
}

export function sidecarUrl(port: number): string {
  return `http://127.0.0.1:${port}`;
}

/** Our sidecar in the pod, if it is there (in either place it may have been injected). */
export function findSidecar(pod: unknown): ContainerView | undefined {
  const spec = objectAt(pod, "spec");
  for (const field of ["initContainers", "containers"] as const) {
    const list = arrayAt(spec, field) ?? [];
    for (let index = 0; index < list.length; index++) {
      const raw = list[index];
      if (isObject(raw) && raw.name === SIDECAR_CONTAINER)
        return { field, index, name: SIDECAR_CONTAINER, raw };
    }
  }
  return undefined;
}

/** Whether a container's environment has a variable of this name. */
function hasEnv(env: readonly Json[] | undefined, name: string): boolean {
  for (const e of env ?? []) if (stringAt(e, "name") === name) return true;
  return false;
}

/** No init container asks for SIDECAR_URL (no annotation): most pods; shared, never changed. */
const NO_INIT_CONTAINERS: Parsed<ReadonlySet<string>> = { ok: true, value: new Set() };

/**
 * Why a pod that carries `agentid.io/injected` and a container named agentid-sidecar is not what this
 * webhook injects, or undefined when it is. Compared as the guard compares (sidecar.ts,
 * sidecarDifferences): what decides what code runs in the sidecar and what it can read or reach (image,
 * command, arguments, environment, mounts, lifecycle hooks, probes, a looser securityContext, stdin or a
 * terminal), and the token volume's source; not the fields the API server defaults after a mutation. The
 * image is compared whole, tag included: for a pod that projects the token, the guard refuses another tag
 * anyway, and a client-secret pod may not pick another build of the sidecar either.
 */
export function forgedInjection(
  pod: unknown,
  sidecar: JsonObject,
  target: InjectionTarget,
  settings: SidecarSettings,
): string | undefined {
  const wrong = sidecarDifferences(pod, sidecar, target, settings);
  if (target.projectedToken) {
    const volume = (arrayAt(objectAt(pod, "spec"), "volumes") ?? []).find(
      (v) => stringAt(v, "name") === TOKEN_VOLUME,
    );
    const expected = tokenVolume(target).projected as JsonObject;
    if (!isDeepStrictEqual(objectAt(volume, "projected")?.sources, expected.sources))
      wrong.push(`volume ${TOKEN_VOLUME}`);
  }
  if (wrong.length === 0) return undefined;
  // Field names only, never their values (an environment variable's value may be a secret). Who changed
  // the sidecar cannot be told from the pod: its author, or another mutating webhook that ran after ours
  // (proxy variables, CA-bundle mounts) before this reinvocation. Either way the change is refused, since
  // these fields decide what runs beside the token; the message says how to fix each case.
  return `the pod carries the annotation ${ANNOTATION_INJECTED} and a container ${SIDECAR_CONTAINER} whose ${wrong.join(", ")} ${wrong.length === 1 ? "differs" : "differ"} from what AgentIdentity ${target.identity.name} renders now. Either the pod's author wrote or changed that container, or another mutating webhook changed it after agentid injected it; agentid accepts no change to these fields, as they decide what runs beside the token. If another webhook did, exclude the container ${SIDECAR_CONTAINER} from it (for example with its container-name filter) or stop it adding those fields; if the pod's author did, remove the annotation and the container and let agentid inject the sidecar; if the AgentIdentity or the manager's sidecar image changed while the pod was being admitted, create the pod again`;
}

/** The port of an injected sidecar's listen address (Kestrel__Endpoints__Http__Url), if it has one. */
export function listenPortOf(sidecar: JsonObject): number | undefined {
  for (const e of arrayAt(sidecar, "env") ?? []) {
    if (stringAt(e, "name") !== "Kestrel__Endpoints__Http__Url") continue;
    const match = /:(\d+)\/?$/.exec(stringAt(e, "value") ?? "");
    return match ? Number(match[1]) : undefined;
  }
  return undefined;
}

/** The variables every app container gets: SIDECAR_URL first. */
function renderAppEnv(target: InjectionTarget, port: number): Array<{ name: string; value: string }> {
  return [
    { name: SIDECAR_URL, value: sidecarUrl(port) },
    ...target.appEnv.filter((e) => e.name !== SIDECAR_URL),
  ];
}

export function mutatePod(input: MutationInput): Mutation {
  const { pod, target, settings } = input;
  const annotations = annotationsOf(pod);
  const existing = findSidecar(pod);
  // Ours only when we also left our mark; a container that merely borrows the name is refused below.
  const marked = existing !== undefined && annotations[ANNOTATION_INJECTED] !== undefined;
  // The mark is the pod author's to write too: a pod that arrives with it must carry exactly the sidecar
  // and token volume this webhook renders (as on reinvocation), or it is refused, never trusted.
  const forged = marked ? forgedInjection(pod, existing.raw, target, settings) : undefined;
  if (forged) return { allowed: false, refusals: [{ reason: "ReservedName", message: forged }] };
  const injected = marked;
  // On reinvocation the sidecar listens where it was told to at injection, whatever the identity says now.
  const port = injected ? (listenPortOf(existing.raw) ?? target.port) : target.port;
  const refusals = podRefusals({
    pod,
    port,
    secretNames: target.secretNames,
    injected,
    sidecarAt: injected ? existing : undefined,
  });
  // A pod over the size cap is answered by that refusal alone: nothing after it may walk its lists (the
  // API server's own limits, e.g. 256 KiB of annotations, are checked only after mutating admission).
  if (refusals[0]?.reason === "TooLarge") return { allowed: false, refusals };
  const resources = sidecarResources(settings, target, annotations);
  if (!resources.ok) refusals.push({ reason: "BadAnnotation", message: resources.message });
  const initWanted =
    annotations[ANNOTATION_INIT_CONTAINERS] === undefined
      ? NO_INIT_CONTAINERS
      : parseInitContainerNames(
          annotations,
          new Set(
            containersOf(pod, "initContainers")
              .map((c) => c.name)
              .filter((n) => n !== SIDECAR_CONTAINER),
          ),
        );
  if (!initWanted.ok) refusals.push({ reason: "BadAnnotation", message: initWanted.message });
  const sidecarIsNative = injected ? existing.field === "initContainers" : settings.native;
  if (initWanted.ok && initWanted.value.size > 0 && !sidecarIsNative) {
    refusals.push({
      reason: "BadAnnotation",
      message:
        "init containers cannot reach the sidecar on this cluster (no native sidecars: init containers run before it); remove the init container names from the annotation agentid.io/sidecar-url-init-containers",
    });
  }
  if (refusals.length > 0 || !resources.ok || !initWanted.ok) return { allowed: false, refusals };

  const patch: JsonPatchOperation[] = [];
  // Environment first, at the original indices: the sidecar's insertion below shifts them.
  const appEnv = appEnvFor(target, port, renderAppEnv);
  // The receivers in the pod's order (the init containers the annotation names, then the app's
  // containers), read in place: a review does this for every pod.
  const spec = objectAt(pod, "spec");
  if (initWanted.value.size > 0) {
    const list = arrayAt(spec, "initContainers") ?? [];
    for (let i = 0; i < list.length; i++) {
      const c = list[i];
      if (isObject(c) && initWanted.value.has(stringAt(c, "name") ?? ""))
        addEnv(patch, appEnv, "initContainers", i, c);
    }
  }
  const containers = arrayAt(spec, "containers") ?? [];
  for (let i = 0; i < containers.length; i++) {
    const c = containers[i];
    if (isObject(c) && c.name !== SIDECAR_CONTAINER) addEnv(patch, appEnv, "containers", i, c);
  }
  const value = injected
    ? (annotations[ANNOTATION_INJECTED] ?? injectedValue(target))
    : injectedValue(target);
  if (!injected) {
    if (target.projectedToken) {
      const volume = tokenVolumeFor(target, tokenVolume);
      patch.push(append("/spec/volumes", arrayAt(spec, "volumes") !== undefined, volume));
    }
    const sidecar = sidecarFor(target, settings, resources.value, sidecarContainer);
    if (settings.native) {
      patch.push(prepend("/spec/initContainers", arrayAt(spec, "initContainers") !== undefined, sidecar));
    } else {
      patch.push(prepend("/spec/containers", arrayAt(spec, "containers") !== undefined, sidecar));
    }
    const hasAnnotations = objectAt(objectAt(pod, "metadata"), "annotations") !== undefined;
    patch.push(addMember("/metadata/annotations", hasAnnotations, ANNOTATION_INJECTED, value));
  }
  return { allowed: true, patch, injectedNow: !injected, injected: value };
}

/**
 * `/spec/<field>/<index>/env`, and the same with `/-`: made once per field and index (the lists are
 * capped before the mutation, refusals.ts), so every pod gets the same flat strings, which the patch
 * cache compares by reference instead of flattening a new string per operation.
 */
const envPaths: Partial<Record<ContainerField, [string[], string[]]>> = {};
function envPath(field: ContainerField, index: number, append: boolean): string {
  let byField = envPaths[field];
  if (!byField) {
    byField = [[], []];
    envPaths[field] = byField;
  }
  const list = byField[append ? 1 : 0];
  let path = list[index];
  if (path === undefined) {
    path = `/spec/${field}/${index}/env${append ? "/-" : ""}`;
    list[index] = path;
  }
  return path;
}

/** Appends to `patch` the variables of `appEnv` that `container` does not set already. */
function addEnv(
  patch: JsonPatchOperation[],
  appEnv: ReadonlyArray<{ name: string; value: string }>,
  field: ContainerField,
  index: number,
  container: JsonObject,
): void {
  const env = arrayAt(container, "env");
  if (env === undefined) {
    if (appEnv.length > 0)
      patch.push({ op: "add", path: envPath(field, index, false), value: appEnv.slice() });
  } else {
    for (const e of appEnv)
      if (!hasEnv(env, e.name)) patch.push({ op: "add", path: envPath(field, index, true), value: e });
  }
}

/** Names of the things injection adds, for readers of a pod (e.g. tests, `kubectl`). */
export const INJECTED_NAMES = { container: SIDECAR_CONTAINER, volume: TOKEN_VOLUME } as const;
