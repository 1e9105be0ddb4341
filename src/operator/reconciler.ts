import { API_VERSION, FINALIZER_FEDERATED_CREDENTIAL, PLURAL } from "../api/constants.ts";
import { type AgentIdentity, credentialKind, federationMode } from "../api/types.ts";
import { findBindingConflicts, validateAgentIdentity } from "../api/validate.ts";
import { isApiError, type KubeClient } from "../kube/client.ts";
import type { Informer } from "../kube/informer.ts";
import type { WorkResult } from "../kube/queue.ts";
import { splitKey } from "../kube/store.ts";
import type { Logger } from "../lib/log.ts";
import { conditionTransitions } from "./conditions.ts";
import type { EventSink } from "./events.ts";
import { verificationFingerprint } from "./federation.ts";
import { observeFederation } from "./federation-step.ts";
import type { GraphFederation } from "./graph.ts";
import type { IssuerSource } from "./issuer.ts";
import { type VerificationPolicy, verificationDueAt } from "./schedule.ts";
import { readReferencedSecret } from "./secret.ts";
import {
  ensureServiceAccount,
  releaseStaleServiceAccounts,
  type ServiceAccountObject,
} from "./service-account.ts";
import { desiredStatus, jsonEqual, type Observations } from "./status.ts";
import type { Verifier } from "./verify.ts";

export interface ReconcilerDeps {
  kube: KubeClient;
  identities: Informer<AgentIdentity>;
  serviceAccounts: Informer<ServiceAccountObject>;
  issuer: IssuerSource;
  /** Absent when verification is turned off. */
  verifier?: Verifier;
  /** Absent when the manager has no Graph credential. */
  graph?: GraphFederation;
  events: EventSink;
  policy: VerificationPolicy;
  logger: Logger;
  now?: () => Date;
  /** Wait after writing a Graph credential before verifying it (default 15 s). */
  graphPropagationMs?: number;
  /** Called with the resourceVersion of every status the reconciler wrote, so its own echo can be ignored. */
  onStatusWritten?: (key: string, resourceVersion: string) => void;
}

/** After a new Graph credential, give Entra a moment before proving it (real Entra propagates in seconds). */
const GRAPH_PROPAGATION_MS = 15_000;

export function identityPath(namespace: string, name?: string): string {
  const base = `/apis/${API_VERSION}/namespaces/${encodeURIComponent(namespace)}/${PLURAL}`;
  return name ? `${base}/${encodeURIComponent(name)}` : base;
}

export function createReconciler(deps: ReconcilerDeps): (key: string) => Promise<WorkResult | undefined> {
  const now = deps.now ?? (() => new Date());
  /**
   * The object each status write returned, with the version it replaced. Until the watch delivers the
   * write, the cache still holds the replaced version; reconciling from it would only end in a 409.
   */
  const recent = new Map<string, { over: string; written: AgentIdentity }>();

  async function removeFinalizer(identity: AgentIdentity): Promise<void> {
    const finalizers = identity.metadata.finalizers ?? [];
    const index = finalizers.indexOf(FINALIZER_FEDERATED_CREDENTIAL);
    if (index < 0) return;
    // test+remove: fails with 422 instead of removing someone else's finalizer if the list moved.
    await deps.kube.patch(identityPath(identity.metadata.namespace, identity.metadata.name), "json", [
      { op: "test", path: `/metadata/finalizers/${index}`, value: FINALIZER_FEDERATED_CREDENTIAL },
      { op: "remove", path: `/metadata/finalizers/${index}` },
    ]);
  }

  async function finalize(identity: AgentIdentity): Promise<WorkResult | undefined> {
    if (!identity.metadata.finalizers?.includes(FINALIZER_FEDERATED_CREDENTIAL)) return undefined;
    const name = identity.status?.federatedCredential?.name;
    // Another live identity of this ServiceAccount and blueprint now relies on the same credential.
    const heir = deps.identities
      .list(identity.metadata.namespace)
      .find(
        (other) =>
          other.metadata.name !== identity.metadata.name &&
          !other.metadata.deletionTimestamp &&
          other.spec.serviceAccountName === identity.spec.serviceAccountName &&
          other.spec.blueprint.clientId.toLowerCase() === identity.spec.blueprint.clientId.toLowerCase(),
      );
    if (name && deps.graph && !heir) {
      const outcome = await deps.graph.remove(identity.spec.tenantId, identity.spec.blueprint.clientId, name);
      if (!outcome.ok) {
        await deps.events.emit({
          ...ref(identity),
          type: "Warning",
          reason: outcome.reason,
          message: `Cannot remove the federated credential yet: ${outcome.message}`,
        });
        return { requeue: true };
      }
      await deps.events.emit({
        ...ref(identity),
        type: "Normal",
        reason: outcome.reason,
        message: outcome.message,
      });
    }
    if (name && !deps.graph && !heir) {
      await deps.events.emit({
        ...ref(identity),
        type: "Warning",
        reason: "CredentialLeftInPlace",
        message: `The manager has no Graph credential, so federated credential ${name} stays on blueprint ${identity.spec.blueprint.clientId}; remove it by hand if no longer needed.`,
      });
    }
    await removeFinalizer(identity);
    return undefined;
  }

  /** Writes the status the observations call for, unless the object already says exactly that. */
  async function writeStatus(identity: AgentIdentity, obs: Observations): Promise<undefined> {
    const { namespace, name } = identity.metadata;
    const status = desiredStatus(identity, obs, now());
    if (jsonEqual(status, identity.status ?? {})) return undefined;
    const written = await deps.kube.replace<AgentIdentity>(`${identityPath(namespace, name)}/status`, {
      ...identity,
      status,
    });
    if (written?.metadata.resourceVersion) {
      deps.onStatusWritten?.(`${namespace}/${name}`, written.metadata.resourceVersion);
      if (identity.metadata.resourceVersion) {
        recent.set(`${namespace}/${name}`, { over: identity.metadata.resourceVersion, written });
      }
    }
    for (const t of conditionTransitions(identity.status?.conditions, status.conditions ?? [])) {
      // A first Unknown is not news; every other transition is.
      if (t.from === undefined && t.to === "Unknown") continue;
      await deps.events.emit({
        ...ref(identity),
        type: t.to === "False" ? "Warning" : "Normal",
        reason: t.reason,
        message: `${t.type} is ${t.to}: ${t.message}`,
      });
    }
    return undefined;
  }

  async function reconcileOnce(identity: AgentIdentity): Promise<WorkResult | undefined> {
    const { namespace, name } = identity.metadata;
    if (identity.metadata.deletionTimestamp) return finalize(identity);
    const validation = validateAgentIdentity(identity);
    if (!validation.ok)
      return writeStatus(identity, { ...blockedObservations(), invalid: validation.problems });
    const graphMode =
      federationMode(identity.spec) === "Graph" && credentialKind(identity.spec) === "workloadIdentity";
    const hasFinalizer = identity.metadata.finalizers?.includes(FINALIZER_FEDERATED_CREDENTIAL) ?? false;
    if (graphMode && !hasFinalizer) {
      // Before creating anything in Graph, so that a deletion can never skip the clean-up.
      const finalizers = [...(identity.metadata.finalizers ?? []), FINALIZER_FEDERATED_CREDENTIAL];
      identity = await deps.kube.patch<AgentIdentity>(identityPath(namespace, name), "merge", {
        metadata: { finalizers, resourceVersion: identity.metadata.resourceVersion },
      });
    } else if (!graphMode && hasFinalizer) {
      // Switching to Manual hands the credential over to the user: keep it, stop owning it.
      await removeFinalizer(identity);
      return { requeueAfterMs: 0 };
    }

    const obs: Observations = {
      ...blockedObservations(),
      conflicts: findBindingConflicts(identity, deps.identities.list(namespace)),
    };
    let secretValue: string | undefined;
    if (obs.conflicts.length === 0) {
      obs.serviceAccount = await ensureServiceAccount(
        deps.kube,
        identity,
        deps.serviceAccounts.get(namespace, identity.spec.serviceAccountName),
      );
      if (obs.serviceAccount.state === "ready") {
        await releaseStaleServiceAccounts(deps.kube, identity, deps.serviceAccounts.list(namespace));
      }
      const secret = await readReferencedSecret(deps.kube, identity);
      obs.secret = secret.observation;
      secretValue = secret.value;
    }
    // A conflicting identity must not touch Graph: the other one may own the same credential.
    const federation =
      obs.conflicts.length > 0
        ? {
            obs: {
              state: "skipped" as const,
              message: "Waiting for the ServiceAccount conflict to be resolved.",
            },
            fresh: false,
          }
        : await observeFederation(identity, deps);
    obs.federation = federation.obs;

    let requeueAfterMs: number | undefined;
    const blocked =
      obs.conflicts.length > 0 ||
      obs.serviceAccount.state !== "ready" ||
      obs.secret.state === "problem" ||
      obs.federation.state === "issuerUnknown" ||
      obs.federation.state === "graphFailed";
    if (!blocked) {
      const kind = credentialKind(identity.spec);
      if (!deps.verifier) obs.verification = { state: "disabled" };
      else if (kind === "managedIdentity") {
        obs.verification = {
          state: "notVerifiable",
          message:
            "A managed identity's token exists only on Azure compute; the sidecar proves it at run time.",
        };
      } else if (federation.fresh) {
        obs.verification = {
          state: "pending",
          message: "The federated credential was just written; verifying shortly.",
        };
        requeueAfterMs = deps.graphPropagationMs ?? GRAPH_PROPAGATION_MS;
      } else {
        const fingerprint = verificationFingerprint(
          identity,
          "issuer" in federation ? federation.issuer : undefined,
        );
        const dueAt = verificationDueAt(identity, fingerprint, deps.policy);
        const at = now().getTime();
        if (dueAt <= at) {
          const result = await deps.verifier.verify(
            identity,
            kind === "clientSecret"
              ? { kind: "clientSecret", secret: secretValue ?? "" }
              : { kind: "serviceAccountToken" },
            {
              tenantId: identity.spec.tenantId,
              blueprintClientId: identity.spec.blueprint.clientId,
              ...(identity.spec.agentId ? { agentId: identity.spec.agentId } : {}),
              ...(obs.federation.state === "manual" || obs.federation.state === "graph"
                ? { azCommand: obs.federation.credential.azCommand }
                : {}),
            },
          );
          obs.verification = { ...result, fingerprint };
          requeueAfterMs = result.state === "verified" ? deps.policy.intervalMs : deps.policy.retryMs;
        } else {
          obs.verification = { state: "unchanged" };
          requeueAfterMs = dueAt - at;
        }
      }
    }
    secretValue = undefined;

    await writeStatus(identity, obs);
    if (
      obs.federation.state === "graphFailed" ||
      obs.federation.state === "issuerUnknown" ||
      obs.serviceAccount.state === "error" ||
      // Secrets are not watched (least privilege: no list/watch on Secrets), so a missing or incomplete
      // one is looked at again with the queue's backoff (0.5 s doubling to 5 min) until it is in order.
      obs.secret.state === "problem"
    ) {
      return { requeue: true };
    }
    return requeueAfterMs !== undefined ? { requeueAfterMs: Math.max(requeueAfterMs, 100) } : undefined;
  }

  return async function reconcile(key: string): Promise<WorkResult | undefined> {
    const { namespace, name } = splitKey(key);
    if (!namespace) return undefined;
    let identity = deps.identities.get(namespace, name);
    const mine = recent.get(key);
    if (mine && identity?.metadata.resourceVersion === mine.over) identity = mine.written;
    else recent.delete(key);
    for (let attempt = 0; identity && attempt < 3; attempt++) {
      try {
        return await reconcileOnce(identity);
      } catch (error) {
        if (!isApiError(error, 409)) throw error;
        // Someone wrote in between: re-read and decide again on the fresh object.
        identity = await deps.kube.getOptional<AgentIdentity>(identityPath(namespace, name));
      }
    }
    return identity ? { requeue: true } : undefined;
  };
}

/** The starting point of a reconcile: nothing checked yet, verification waiting. */
function blockedObservations(): Observations {
  return {
    conflicts: [],
    serviceAccount: { state: "skipped" },
    secret: { state: "notRequired" },
    federation: { state: "notRequired", message: "Not checked yet." },
    verification: {
      state: "pending",
      message: "Waiting until the ServiceAccount, Secret and federated credential are in order.",
    },
  };
}

function ref(identity: AgentIdentity) {
  return {
    namespace: identity.metadata.namespace,
    name: identity.metadata.name,
    ...(identity.metadata.uid ? { uid: identity.metadata.uid } : {}),
  };
}
