import { isDeepStrictEqual } from "node:util";
import { ANNOTATION_INJECTED, SIDECAR_CONTAINER, TOKEN_AUDIENCE, TOKEN_VOLUME } from "../api/constants.ts";
import type { AgentIdentity } from "../api/types.ts";
import { findSidecar, listenPortOf } from "./mutate.ts";
import {
  allContainers,
  annotationsOf,
  arrayAt,
  type ContainerView,
  containersOf,
  type JsonObject,
  objectAt,
  stringAt,
  truncate,
  volumesOf,
} from "./raw.ts";
import { isExchangeAudience, podRefusals, type Refusal } from "./refusals.ts";
import { sidecarDifferences, tokenVolume } from "./sidecar.ts";
import type { InjectionTarget, SidecarSettings } from "./types.ts";

export { sidecarDifferences };

/**
 * The guard's decisions (pure). A ServiceAccount token for the exchange audience, of a ServiceAccount an
 * AgentIdentity binds, acts as the blueprint and so as every agent of it; the only holder meant to have
 * one is the sidecar the mutating webhook rendered (plus the kubelet that mints it for the pod, and the
 * manager's own verification). These functions decide the four ways a namespace user could get one
 * otherwise: a TokenRequest, a pod of their own (or a copy of an injected one) that projects the token, a
 * pod UPDATE that swaps the sidecar's image, and exec/attach into the sidecar. Who binds what is looked up
 * by the caller (guard-review.ts); the API server's matchConditions send only these requests
 * (charts/agentid/templates/webhook.yaml).
 */

/** Where the API server sends the guard's reviews (the ValidatingWebhookConfiguration). */
export const GUARD_PATH = "/validate-agentid-guard";

const KUBELET_GROUP = "system:nodes";

export function isKubelet(user: string, groups: readonly string[]): boolean {
  return groups.includes(KUBELET_GROUP) && user.startsWith("system:node:");
}

// ---- which ServiceAccounts an AgentIdentity binds ----

/**
 * Whether `identity` binds ServiceAccount `serviceAccount` of `namespace`: Entra trusts that account's
 * tokens while any credential for it stands, which is longer than `spec.serviceAccountName` names it. So
 * also the account the operator recorded in status (`status.serviceAccount`: after a rename, until the next
 * reconcile) and the subject of the federated credential it wrote or asked for
 * (`status.federatedCredential.subject`, `system:serviceaccount:<namespace>:<name>` as
 * serviceAccountSubject in src/operator/federation.ts writes it; it stays while the credential may still
 * stand, an identity being deleted included).
 */
export function bindsServiceAccount(
  identity: Pick<AgentIdentity, "metadata" | "spec" | "status">,
  namespace: string,
  serviceAccount: string,
): boolean {
  if (identity.metadata.namespace !== namespace) return false;
  return (
    identity.spec.serviceAccountName === serviceAccount ||
    identity.status?.serviceAccount === serviceAccount ||
    identity.status?.federatedCredential?.subject === `system:serviceaccount:${namespace}:${serviceAccount}`
  );
}

// ---- serviceaccounts/token ----

export interface TokenRequestInput {
  namespace: string;
  serviceAccount: string;
  audiences: readonly string[];
  user: string;
  groups: readonly string[];
  /** Users that may mint the token anyway: the manager itself (verification). */
  trustedUsers: readonly string[];
}

/** Whether the request is one the guard must look at (the binding lookup comes after). */
export function tokenRequestNeedsBinding(input: TokenRequestInput): boolean {
  if (!input.audiences.some(isExchangeAudience)) return false;
  if (isKubelet(input.user, input.groups)) return false;
  return !input.trustedUsers.includes(input.user);
}

export function tokenRequestRefusal(input: TokenRequestInput, boundBy: string): Refusal {
  return {
    reason: "ExchangeTokenRequest",
    message: `a TokenRequest for ServiceAccount ${truncate(input.serviceAccount, 253)} with the audience ${TOKEN_AUDIENCE} is refused: AgentIdentity ${boundBy} binds this ServiceAccount, and such a token acts as every agent of its blueprint; only the agentid sidecar may hold it. Run the workload with the label agentid.io/inject=true and ask the sidecar (SIDECAR_URL) for tokens`,
  };
}

// ---- pods ----

function exchangeVolumes(pod: unknown): JsonObject[] {
  return volumesOf(pod).filter((v) =>
    (arrayAt(objectAt(v, "projected"), "sources") ?? []).some((s) =>
      isExchangeAudience(stringAt(objectAt(s, "serviceAccountToken"), "audience")),
    ),
  );
}

/** Whether any volume of the pod projects a service-account token for the exchange audience. */
export function projectsExchangeToken(pod: unknown): boolean {
  return exchangeVolumes(pod).length > 0;
}

function mounts(container: JsonObject): string[] {
  return (arrayAt(container, "volumeMounts") ?? []).flatMap((m) => {
    const name = stringAt(m, "name");
    return name === undefined ? [] : [name];
  });
}

/**
 * Where the sidecar sits, against where the mutating webhook puts it (mutate.ts): with native sidecars an
 * init container with restartPolicy Always; without, the first regular container beside at least one app
 * container. Anything else is no pod we inject, and one shape is an attack: the sidecar as the only
 * regular container is what the API server picks for an exec or attach that names no container.
 */
export function placementProblem(pod: unknown, sidecar: ContainerView, native: boolean): string | undefined {
  const restartPolicy = stringAt(sidecar.raw, "restartPolicy");
  if (native) {
    return sidecar.field === "initContainers" && restartPolicy === "Always"
      ? undefined
      : "placement: not an init container with restartPolicy Always (a native sidecar)";
  }
  const regular = containersOf(pod, "containers");
  return sidecar.field === "containers" &&
    sidecar.index === 0 &&
    regular.length >= 2 &&
    restartPolicy === undefined
    ? undefined
    : "placement: not the first of the pod's containers, beside at least one app container";
}

export type Expected =
  | { ok: true; target: InjectionTarget; settings: SidecarSettings }
  /** The identity that binds the pod's ServiceAccount cannot be injected now (not Ready, not admitted...). */
  | { ok: false; refusal: Refusal };

/**
 * A pod CREATE that projects an exchange-audience token for a ServiceAccount `identity` binds: allowed
 * only when it is exactly what the mutating webhook produces for that identity, i.e. the pod-side checks
 * of an injected pod pass (no other container mounts the token volume, no other exchange-token volume, no
 * shared process namespace, no host network...), the token volume is the rendered one, and the sidecar
 * runs the rendered image and command with the rendered environment and mounts.
 */
export function podCreateRefusals(pod: unknown, identity: string, expected: Expected): Refusal[] {
  const head = `the pod projects a service-account token for ${TOKEN_AUDIENCE} of a ServiceAccount that AgentIdentity ${identity} binds (such a token acts as every agent of its blueprint), but it is not the pod agentid injects`;
  const fix =
    "label the pod (template) agentid.io/inject=true and remove your own token volume, sidecar and mounts: the webhook adds them";
  if (!expected.ok) {
    return [
      {
        reason: "NotInjected",
        message: `${head}: ${expected.refusal.message}`,
      },
    ];
  }
  const { target, settings } = expected;
  if (!target.projectedToken) {
    return [
      {
        reason: "NotInjected",
        message: `${head}: AgentIdentity ${identity} does not use workload identity, so no pod of it projects that token; remove the volume`,
      },
    ];
  }
  const sidecar = findSidecar(pod);
  const volumes = exchangeVolumes(pod);
  const tokenVol = volumes.find((v) => stringAt(v, "name") === TOKEN_VOLUME);
  if (!sidecar || !tokenVol) {
    return [{ reason: "NotInjected", message: `${head}; ${fix}` }];
  }
  const port = listenPortOf(sidecar.raw) ?? target.port;
  // The pod-side checks of the mutating webhook, for a pod that carries our sidecar: they refuse any other
  // container mounting the token volume, any other exchange-token volume, hostNetwork, hostPID, a shared
  // process namespace, host ports, the client secret read by an app container.
  const out = podRefusals({
    pod,
    port,
    secretNames: target.secretNames,
    injected: true,
    sidecarAt: sidecar,
  });
  // Over the size cap: that refusal alone, nothing more is compared.
  if (out[0]?.reason === "TooLarge") return out;
  const wrong = sidecarDifferences(pod, sidecar.raw, target, settings);
  const placement = placementProblem(pod, sidecar, settings.native);
  if (placement) wrong.push(placement);
  const expectedSources = (tokenVolume(target).projected as JsonObject).sources;
  if (!isDeepStrictEqual(objectAt(tokenVol, "projected")?.sources, expectedSources))
    wrong.push(`volume ${TOKEN_VOLUME}`);
  if (wrong.length > 0) {
    out.push({
      reason: "NotInjected",
      message: `${head}: its ${SIDECAR_CONTAINER} differs from what AgentIdentity ${identity} renders (${wrong.join(", ")}); ${fix} (if the AgentIdentity or the manager's sidecar image changed meanwhile, create the pod again)`,
    });
  }
  return out;
}

/** Containers (any kind) that mount a volume projecting the exchange token, or that are our sidecar. */
function holdsToken(c: ContainerView, tokenVolumes: ReadonlySet<string>): boolean {
  return c.name === SIDECAR_CONTAINER || mounts(c.raw).some((m) => tokenVolumes.has(m));
}

/**
 * A pod UPDATE (images are the only container field an UPDATE may change): refused when a container that
 * holds the token (mounts an exchange-token volume, or is the agentid sidecar) gets another image. Other
 * containers' images may change as before.
 */
export function podUpdateRefusals(pod: unknown, oldPod: unknown): Refusal[] {
  const tokenVolumes = new Set(exchangeVolumes(oldPod).map((v) => stringAt(v, "name") ?? ""));
  const before = new Map(allContainers(oldPod).map((c) => [c.name, stringAt(c.raw, "image")]));
  const out: Refusal[] = [];
  for (const c of allContainers(pod)) {
    if (!before.has(c.name) || before.get(c.name) === stringAt(c.raw, "image")) continue;
    if (!holdsToken(c, tokenVolumes)) continue;
    out.push({
      reason: "SidecarImageChanged",
      message: `container '${truncate(c.name)}' holds the service-account token for ${TOKEN_AUDIENCE} (it acts as every agent of the blueprint); its image cannot change in place. Change the pod template and let the webhook inject a new pod`,
    });
  }
  return out;
}

/**
 * An UPDATE of pods/ephemeralcontainers: a new ephemeral container may neither mount an exchange-token
 * volume nor target (share the processes of) a container that holds the token.
 */
export function ephemeralGuardRefusals(pod: unknown, oldPod: unknown): Refusal[] {
  const tokenVolumes = new Set(exchangeVolumes(pod).map((v) => stringAt(v, "name") ?? ""));
  const before = new Set(containersOf(oldPod, "ephemeralContainers").map((c) => c.name));
  const holders = new Set(
    allContainers(pod)
      .filter((c) => c.field !== "ephemeralContainers" && holdsToken(c, tokenVolumes))
      .map((c) => c.name),
  );
  const out: Refusal[] = [];
  for (const c of containersOf(pod, "ephemeralContainers")) {
    if (before.has(c.name)) continue;
    if (mounts(c.raw).some((m) => tokenVolumes.has(m))) {
      out.push({
        reason: "TokenVolumeMount",
        message: `ephemeral container '${truncate(c.name)}' mounts a volume with the service-account token for ${TOKEN_AUDIENCE}, which only the agentid sidecar may hold; remove the volumeMount`,
      });
    }
    const target = stringAt(c.raw, "targetContainerName");
    if (target !== undefined && holders.has(target)) {
      out.push({
        reason: "EphemeralTargetsSidecar",
        message: `ephemeral container '${truncate(c.name)}' targets '${truncate(target)}', which holds the service-account token for ${TOKEN_AUDIENCE}; target an app container instead`,
      });
    }
  }
  return out;
}

/** Whether a pod carries the mark of an injection (its sidecar's image is then protected on UPDATE). */
export function markedInjected(pod: unknown): boolean {
  return annotationsOf(pod)[ANNOTATION_INJECTED] !== undefined;
}

// ---- pods/exec, pods/attach ----

/**
 * The container an exec or attach reaches, resolved as the API server does (validateContainer in
 * k8s.io/kubernetes pkg/registry/core/pod/strategy.go): the named one; with no name, the pod's only
 * regular container, and when there are none or several the API server refuses the request itself
 * (undefined). The `kubectl.kubernetes.io/default-container` annotation is kubectl's, read on the client,
 * so it does not count here. `pod` is undefined when it does not exist (the API server answers 404).
 */
export function connectTarget(requested: string, pod: unknown): string | undefined {
  if (requested !== "") return requested;
  if (pod === undefined) return undefined;
  const regular = containersOf(pod, "containers");
  return regular.length === 1 ? regular[0]?.name : undefined;
}

export function connectRefusal(subResource: string, container: string, named = true): Refusal | undefined {
  if (container !== SIDECAR_CONTAINER) return undefined;
  const verb = subResource === "attach" ? "attach to" : "exec into (and kubectl cp with)";
  const which = named
    ? ""
    : ` (the request names no container, and ${SIDECAR_CONTAINER} is the pod's only regular container, which the API server would pick)`;
  return {
    reason: "SidecarExec",
    message: `${verb} the container ${SIDECAR_CONTAINER} is refused${which}: it holds the service-account token that acts as every agent of the blueprint. Exec into your app container and call the sidecar's API (SIDECAR_URL), or use kubectl port-forward`,
  };
}
