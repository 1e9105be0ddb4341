import { SIDECAR_CONTAINER, TOKEN_AUDIENCE, TOKEN_VOLUME } from "../api/constants.ts";
import {
  allContainers,
  arrayAt,
  type ContainerView,
  containersOf,
  isObject,
  type JsonObject,
  objectAt,
  stringAt,
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
  | "BadAnnotation"
  | "EphemeralTargetsSidecar"
  | "ServiceAccountMismatch"
  | "IdentityNotFound"
  | "IdentityNotReady"
  | "BlueprintNotFound"
  | "BlueprintRefused"
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
}

/** Exchange audience, compared the way a person would read it: case and a trailing slash do not matter. */
export function isExchangeAudience(audience: string | undefined): boolean {
  if (audience === undefined) return false;
  return audience.trim().replace(/\/+$/, "").toLowerCase() === TOKEN_AUDIENCE.toLowerCase();
}

function where(c: ContainerView): string {
  const kind =
    c.field === "containers"
      ? "container"
      : c.field === "initContainers"
        ? "init container"
        : "ephemeral container";
  return `${kind} '${c.name}'`;
}

/** Secret names a volume reads, directly or through a projection. */
function secretsOfVolume(volume: JsonObject): string[] {
  const names: string[] = [];
  const direct = stringAt(objectAt(volume, "secret"), "secretName");
  if (direct !== undefined) names.push(direct);
  for (const source of arrayAt(objectAt(volume, "projected"), "sources") ?? []) {
    const name = stringAt(objectAt(source, "secret"), "name");
    if (name !== undefined) names.push(name);
  }
  return names;
}

function exchangeTokenSources(volume: JsonObject): boolean {
  return (arrayAt(objectAt(volume, "projected"), "sources") ?? []).some((source) =>
    isExchangeAudience(stringAt(objectAt(source, "serviceAccountToken"), "audience")),
  );
}

/** Secret names a container reads through its environment. */
function secretsOfEnv(container: JsonObject): string[] {
  const names: string[] = [];
  for (const e of arrayAt(container, "env") ?? []) {
    const name = stringAt(objectAt(objectAt(e, "valueFrom"), "secretKeyRef"), "name");
    if (name !== undefined) names.push(name);
  }
  for (const e of arrayAt(container, "envFrom") ?? []) {
    const name = stringAt(objectAt(e, "secretRef"), "name");
    if (name !== undefined) names.push(name);
  }
  return names;
}

function mountNames(container: JsonObject): string[] {
  return (arrayAt(container, "volumeMounts") ?? [])
    .map((m) => stringAt(m, "name"))
    .filter((n): n is string => n !== undefined);
}

function portsOf(container: JsonObject): JsonObject[] {
  return (arrayAt(container, "ports") ?? []).filter(isObject);
}

/** Checks for containers of any kind other than our sidecar; `containers` limits which ones. */
function containerRefusals(
  input: PodCheckInput,
  containers: ContainerView[],
  volumes: JsonObject[],
): Refusal[] {
  const out: Refusal[] = [];
  const secretVolumes = new Map<string, string>();
  for (const v of volumes) {
    const name = stringAt(v, "name");
    if (name === undefined) continue;
    const hit = secretsOfVolume(v).find((s) => input.secretNames.includes(s));
    if (hit !== undefined) secretVolumes.set(name, hit);
  }
  for (const c of containers) {
    if (c.name === SIDECAR_CONTAINER && input.injected && c.field !== "ephemeralContainers") continue;
    if (c.name === SIDECAR_CONTAINER) {
      out.push({
        reason: "ReservedName",
        message: `${where(c)}: the name ${SIDECAR_CONTAINER} is reserved for the sidecar agentid injects; rename the container`,
      });
    }
    for (const p of portsOf(c.raw)) {
      const hostPort = p.hostPort;
      if (typeof hostPort === "number" && hostPort !== 0) {
        out.push({
          reason: "HostPort",
          message: `${where(c)} asks for hostPort ${hostPort}; remove it (a host port would expose the pod beyond its own network namespace)`,
        });
      }
      if (p.containerPort === input.port && c.field !== "ephemeralContainers") {
        out.push({
          reason: "PortInUse",
          message: `${where(c)} uses port ${input.port}, which the agentid sidecar listens on; move the container to another port or set spec.sidecar.port on the AgentIdentity`,
        });
      }
    }
    for (const mount of mountNames(c.raw)) {
      if (mount === TOKEN_VOLUME) {
        out.push({
          reason: "TokenVolumeMount",
          message: `${where(c)} mounts the volume ${TOKEN_VOLUME}, which only the agentid sidecar may mount; remove the volumeMount and ask the sidecar (SIDECAR_URL) for tokens`,
        });
      }
      const secret = secretVolumes.get(mount);
      if (secret !== undefined) {
        out.push({
          reason: "CredentialSecret",
          message: `${where(c)} mounts volume '${mount}' with Secret ${secret}, the AgentIdentity's client secret, which only the agentid sidecar may read; remove the volumeMount`,
        });
      }
    }
    for (const secret of secretsOfEnv(c.raw)) {
      if (input.secretNames.includes(secret)) {
        out.push({
          reason: "CredentialSecret",
          message: `${where(c)} reads Secret ${secret}, the AgentIdentity's client secret, through its environment; only the agentid sidecar may read it, remove the reference`,
        });
      }
    }
    if (c.field === "ephemeralContainers" && stringAt(c.raw, "targetContainerName") === SIDECAR_CONTAINER) {
      out.push({
        reason: "EphemeralTargetsSidecar",
        message: `${where(c)} targets ${SIDECAR_CONTAINER}: it would share the sidecar's processes and could read its credential; target an app container instead`,
      });
    }
  }
  return out;
}

/** Every pod-side refusal of a pod being created (or re-invoked), in a stable order. */
export function podRefusals(input: PodCheckInput): Refusal[] {
  const spec = objectAt(input.pod, "spec");
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
  const volumes = volumesOf(input.pod);
  for (const v of volumes) {
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
        message: `volume '${name}' projects a service-account token for the audience ${TOKEN_AUDIENCE}, which only the agentid sidecar may hold; remove the volume and ask the sidecar (SIDECAR_URL) for tokens`,
      });
    }
  }
  out.push(...containerRefusals(input, allContainers(input.pod), volumes));
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
  const before = new Set(containersOf(oldPod, "ephemeralContainers").map((c) => c.name));
  const added = containersOf(pod, "ephemeralContainers").filter((c) => !before.has(c.name));
  return containerRefusals({ pod, port, secretNames, injected: true }, added, volumesOf(pod));
}

/** One message for several refusals, so the author can fix everything in one go. */
export function refusalMessage(refusals: readonly Refusal[]): string {
  return refusals.map((r) => r.message).join("; ");
}
