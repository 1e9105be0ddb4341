import { SIDECAR_CONTAINER, TOKEN_AUDIENCE, TOKEN_VOLUME } from "../api/constants.ts";
import {
  arrayAt,
  type ContainerField,
  containersOf,
  isObject,
  type Json,
  type JsonObject,
  objectAt,
  stringAt,
  truncate,
  volumesOf,
} from "./raw.ts";

/**
 * The pod-side reasons to refuse a pod (pure). Each message says what to change. They exist because the
 * app container must never reach the sidecar's credential: not through the host's network or ports, not
 * through a shared process namespace (it could read the sidecar's environment and files under /proc), not
 * by projecting its own token for the exchange audience, not by mounting our token volume or the client
 * secret, and not by debugging the sidecar with an ephemeral container.
 */

export type RefusalReason =
  | "HostNetwork"
  | "HostPort"
  | "SharedProcessNamespace"
  | "HostPID"
  | "ExchangeTokenVolume"
  | "TokenVolumeMount"
  | "CredentialSecret"
  | "ReservedName"
  | "PortInUse"
  | "TooLarge"
  | "BadAnnotation"
  | "EphemeralTargetsSidecar"
  | "ServiceAccountMismatch"
  | "IdentityNotFound"
  | "IdentityNotReady"
  | "BlueprintNotFound"
  | "BlueprintRefused"
  // An API read (a cache miss, the re-check before a refusal) that did not finish in time (reads.ts).
  | "ApiServerTimeout"
  // The guard's (guard.ts): a raw exchange token, a pod that is not what the webhook injects, a sidecar's
  // image changed in place, exec or attach into the sidecar.
  | "ExchangeTokenRequest"
  | "NotInjected"
  | "SidecarImageChanged"
  | "SidecarExec";

export interface Refusal {
  reason: RefusalReason;
  message: string;
}

export interface PodCheckInput {
  pod: unknown;
  port: number;
  /** Secrets only the sidecar may read (a client secret). */
  secretNames: readonly string[];
  /** True when the pod already carries our sidecar (reinvocation): that container and volume are ours. */
  injected: boolean;
  /**
   * Where that sidecar sits (mutate.ts's findSidecar), when `injected`: only the container at this place is
   * skipped, another one that borrows the name is refused like any other.
   */
  sidecarAt?: { field: ContainerField; index: number };
}

/**
 * The most containers one list of a pod spec (containers, initContainers, ephemeralContainers) and the most
 * volumes a pod may have. Kubernetes sets no limit; real pods have a handful, rarely a few dozen. Far beyond
 * that, a pod only costs the webhook time and memory (every container is checked and patched), so it is
 * refused before anything else is looked at.
 */
export const MAX_CONTAINERS_PER_LIST = 250;
export const MAX_VOLUMES = 500;

/**
 * The most refusals one answer carries. A pod can be refused for every entry of every list (200,000 host
 * ports fit in a request), and each refusal is a line of the answer, the log and the Event: the walk stops
 * once there are more than this many, and the answer names these and says there are more.
 */
export const MAX_REFUSALS = 10;

/** Whether `out` holds more refusals than one answer shows: the walk may stop. */
function full(out: readonly Refusal[]): boolean {
  return out.length > MAX_REFUSALS;
}

/** At most MAX_REFUSALS refusals; when there were more, the last one says so. */
export function limitRefusals(refusals: readonly Refusal[]): readonly Refusal[] {
  if (refusals.length <= MAX_REFUSALS) return refusals;
  const kept = refusals.slice(0, MAX_REFUSALS);
  const last = kept[MAX_REFUSALS - 1] as Refusal;
  kept[MAX_REFUSALS - 1] = {
    ...last,
    message: `${last.message}; and more (at most ${MAX_REFUSALS} are named at once: fix these and try again)`,
  };
  return kept;
}

/** Exchange audience, compared the way a person would read it: case and a trailing slash do not matter. */
export function isExchangeAudience(audience: string | undefined): boolean {
  if (audience === undefined) return false;
  return audience.trim().replace(/\/+$/, "").toLowerCase() === TOKEN_AUDIENCE.toLowerCase();
}

function where(field: ContainerField, name: string): string {
  const kind =
    field === "containers"
      ? "container"
      : field === "initContainers"
        ? "init container"
        : "ephemeral container";
  return `${kind} '${truncate(name)}'`;
}

/** The first of `secretNames` a volume reads, directly or through a projection. */
function secretOfVolume(volume: JsonObject, secretNames: readonly string[]): string | undefined {
  const direct = stringAt(objectAt(volume, "secret"), "secretName");
  if (direct !== undefined && secretNames.includes(direct)) return direct;
  for (const source of arrayAt(objectAt(volume, "projected"), "sources") ?? []) {
    const name = stringAt(objectAt(source, "secret"), "name");
    if (name !== undefined && secretNames.includes(name)) return name;
  }
  return undefined;
}

function exchangeTokenSources(volume: JsonObject): boolean {
  for (const source of arrayAt(objectAt(volume, "projected"), "sources") ?? []) {
    if (isExchangeAudience(stringAt(objectAt(source, "serviceAccountToken"), "audience"))) return true;
  }
  return false;
}

/**
 * Volumes that read one of `secretNames` (volume name → Secret). Undefined when there are no such
 * Secrets (a workload-identity or managed-identity AgentIdentity): nothing to look for.
 */
function secretVolumesOf(
  volumes: readonly Json[],
  secretNames: readonly string[],
): Map<string, string> | undefined {
  if (secretNames.length === 0) return undefined;
  const out = new Map<string, string>();
  for (const v of volumes) {
    if (!isObject(v)) continue;
    const name = stringAt(v, "name");
    if (name === undefined) continue;
    const hit = secretOfVolume(v, secretNames);
    if (hit !== undefined) out.set(name, hit);
  }
  return out;
}

/**
 * The checks of one container other than our sidecar, appended to `out`. A review runs them for every
 * container of every pod, so they walk the raw JSON once and allocate nothing for a container that
 * passes (messages are built only for a refusal).
 */
function checkContainer(
  input: PodCheckInput,
  field: ContainerField,
  index: number,
  c: JsonObject,
  secretVolumes: Map<string, string> | undefined,
  out: Refusal[],
): void {
  const name = stringAt(c, "name") ?? "";
  const ours = input.injected && input.sidecarAt?.field === field && input.sidecarAt.index === index;
  if (ours) return;
  if (name === SIDECAR_CONTAINER) {
    out.push({
      reason: "ReservedName",
      message: `${where(field, name)}: the name ${SIDECAR_CONTAINER} is reserved for the sidecar agentid injects; rename the container`,
    });
  }
  for (const p of arrayAt(c, "ports") ?? []) {
    if (full(out)) return;
    if (!isObject(p)) continue;
    const hostPort = p.hostPort;
    if (typeof hostPort === "number" && hostPort !== 0) {
      out.push({
        reason: "HostPort",
        message: `${where(field, name)} asks for hostPort ${hostPort}; remove it (a host port would expose the pod beyond its own network namespace)`,
      });
    }
    if (p.containerPort === input.port && field !== "ephemeralContainers") {
      out.push({
        reason: "PortInUse",
        message: `${where(field, name)} uses port ${input.port}, which the agentid sidecar listens on; move the container to another port or set spec.sidecar.port on the AgentIdentity`,
      });
    }
  }
  for (const m of arrayAt(c, "volumeMounts") ?? []) {
    if (full(out)) return;
    const mount = stringAt(m, "name");
    if (mount === undefined) continue;
    if (mount === TOKEN_VOLUME) {
      out.push({
        reason: "TokenVolumeMount",
        message: `${where(field, name)} mounts the volume ${TOKEN_VOLUME}, which only the agentid sidecar may mount; remove the volumeMount and ask the sidecar (SIDECAR_URL) for tokens`,
      });
    }
    const secret = secretVolumes?.get(mount);
    if (secret !== undefined) {
      out.push({
        reason: "CredentialSecret",
        message: `${where(field, name)} mounts volume '${truncate(mount)}' with Secret ${secret}, the AgentIdentity's client secret, which only the agentid sidecar may read; remove the volumeMount`,
      });
    }
  }
  // Only the client secret's name matters here: without one there is nothing to find in the environment.
  if (input.secretNames.length > 0) {
    const readsSecret = (secret: string | undefined) => {
      if (secret === undefined || !input.secretNames.includes(secret)) return;
      out.push({
        reason: "CredentialSecret",
        message: `${where(field, name)} reads Secret ${secret}, the AgentIdentity's client secret, through its environment; only the agentid sidecar may read it, remove the reference`,
      });
    };
    for (const e of arrayAt(c, "env") ?? []) {
      if (full(out)) return;
      readsSecret(stringAt(objectAt(objectAt(e, "valueFrom"), "secretKeyRef"), "name"));
    }
    for (const e of arrayAt(c, "envFrom") ?? []) {
      if (full(out)) return;
      readsSecret(stringAt(objectAt(e, "secretRef"), "name"));
    }
  }
  if (field === "ephemeralContainers" && stringAt(c, "targetContainerName") === SIDECAR_CONTAINER) {
    out.push({
      reason: "EphemeralTargetsSidecar",
      message: `${where(field, name)} targets ${SIDECAR_CONTAINER}: it would share the sidecar's processes and could read its credential; target an app container instead`,
    });
  }
}

const CONTAINER_FIELDS: readonly ContainerField[] = ["initContainers", "containers", "ephemeralContainers"];

/** A refusal when one of the pod's lists is longer than any real pod needs (checked before the rest). */
function tooLarge(spec: JsonObject | undefined, fields: readonly ContainerField[]): Refusal | undefined {
  for (const field of fields) {
    const n = arrayAt(spec, field)?.length ?? 0;
    if (n > MAX_CONTAINERS_PER_LIST)
      return {
        reason: "TooLarge",
        message: `the pod has ${n} ${field}; agentid admits at most ${MAX_CONTAINERS_PER_LIST} per list, split the workload into several pods`,
      };
  }
  const volumes = arrayAt(spec, "volumes")?.length ?? 0;
  if (volumes > MAX_VOLUMES)
    return {
      reason: "TooLarge",
      message: `the pod has ${volumes} volumes; agentid admits at most ${MAX_VOLUMES}, split the workload into several pods`,
    };
  return undefined;
}

/** Every pod-side refusal of a pod being created (or re-invoked), in a stable order. */
export function podRefusals(input: PodCheckInput): Refusal[] {
  const spec = objectAt(input.pod, "spec");
  const large = tooLarge(spec, CONTAINER_FIELDS);
  if (large) return [large];
  const out: Refusal[] = [];
  if (spec?.hostNetwork === true) {
    out.push({
      reason: "HostNetwork",
      message:
        "the pod sets hostNetwork: true; the agentid sidecar listens on 127.0.0.1, which on the host network every process of the node could reach; remove hostNetwork",
    });
  }
  if (spec?.shareProcessNamespace === true) {
    out.push({
      reason: "SharedProcessNamespace",
      message:
        "the pod sets shareProcessNamespace: true; its containers could read the sidecar's environment and token; remove shareProcessNamespace",
    });
  }
  if (spec?.hostPID === true) {
    out.push({
      reason: "HostPID",
      message:
        "the pod sets hostPID: true; its containers would share the node's process namespace with the sidecar and could read its environment and token under /proc; remove hostPID",
    });
  }
  const volumes = arrayAt(spec, "volumes") ?? [];
  for (const v of volumes) {
    if (full(out)) break;
    if (!isObject(v)) continue;
    const name = stringAt(v, "name") ?? "";
    if (name === TOKEN_VOLUME && input.injected) continue;
    if (name === TOKEN_VOLUME) {
      out.push({
        reason: "ReservedName",
        message: `the volume name ${TOKEN_VOLUME} is reserved for the token agentid mounts into its sidecar; rename the volume`,
      });
    } else if (exchangeTokenSources(v)) {
      out.push({
        reason: "ExchangeTokenVolume",
        message: `volume '${truncate(name)}' projects a service-account token for the audience ${TOKEN_AUDIENCE}, which only the agentid sidecar may hold; remove the volume and ask the sidecar (SIDECAR_URL) for tokens`,
      });
    }
  }
  const secretVolumes = secretVolumesOf(volumes, input.secretNames);
  for (const field of CONTAINER_FIELDS) {
    const list = arrayAt(spec, field) ?? [];
    for (let i = 0; i < list.length && !full(out); i++) {
      const c = list[i];
      if (isObject(c)) checkContainer(input, field, i, c, secretVolumes, out);
    }
  }
  return out;
}

/**
 * An UPDATE of `pods/ephemeralcontainers` (`kubectl debug`): only the containers that were not there
 * before are judged, so a pod is never stuck because of something admitted earlier.
 */
export function ephemeralRefusals(
  pod: unknown,
  oldPod: unknown,
  port: number,
  secretNames: readonly string[],
): Refusal[] {
  const large = tooLarge(objectAt(pod, "spec"), ["ephemeralContainers"]);
  if (large) return [large];
  const before = new Set(containersOf(oldPod, "ephemeralContainers").map((c) => c.name));
  // No sidecar place: an ephemeral container is never ours, whatever its name.
  const input: PodCheckInput = { pod, port, secretNames, injected: true };
  const secretVolumes = secretVolumesOf(volumesOf(pod), secretNames);
  const out: Refusal[] = [];
  for (const c of containersOf(pod, "ephemeralContainers")) {
    if (full(out)) break;
    if (!before.has(c.name)) checkContainer(input, c.field, c.index, c.raw, secretVolumes, out);
  }
  return out;
}

/** One message for several refusals, so the author can fix everything in one go. */
export function refusalMessage(refusals: readonly Refusal[]): string {
  return refusals.map((r) => r.message).join("; ");
}
