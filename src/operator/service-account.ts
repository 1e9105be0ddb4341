import {
  API_VERSION,
  KIND,
  LABEL_MANAGED_BY,
  LABEL_SERVICE_ACCOUNT_BINDING,
  MANAGER_NAME,
} from "../api/constants.ts";
import type { AgentIdentity } from "../api/types.ts";
import { isApiError, type KubeClient } from "../kube/client.ts";
import type { KubeObject } from "../kube/store.ts";
import type { Observations } from "./status.ts";

export interface ServiceAccountObject extends KubeObject {
  metadata: KubeObject["metadata"] & { namespace: string };
}

export function serviceAccountPath(namespace: string, name?: string): string {
  const base = `/api/v1/namespaces/${encodeURIComponent(namespace)}/serviceaccounts`;
  return name ? `${base}/${encodeURIComponent(name)}` : base;
}

/**
 * The manager watches only ServiceAccounts that carry the binding label (created by the operator, or
 * opted in by their owners): never a cluster-wide list of every account.
 */
export const SERVICE_ACCOUNT_SELECTOR = LABEL_SERVICE_ACCOUNT_BINDING;

/** The ServiceAccount the operator creates: owned by the identity (garbage-collected with it) and labelled for it. */
export function desiredServiceAccount(identity: AgentIdentity): ServiceAccountObject {
  return {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: {
      name: identity.spec.serviceAccountName,
      namespace: identity.metadata.namespace,
      labels: { [LABEL_MANAGED_BY]: MANAGER_NAME, [LABEL_SERVICE_ACCOUNT_BINDING]: identity.metadata.name },
      ownerReferences: [
        {
          apiVersion: API_VERSION,
          kind: KIND,
          name: identity.metadata.name,
          uid: identity.metadata.uid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
  };
}

export function ownedBy(sa: ServiceAccountObject, identity: AgentIdentity): boolean {
  const refs = sa.metadata.ownerReferences as Array<{ uid?: string }> | undefined;
  return identity.metadata.uid !== undefined && (refs ?? []).some((o) => o.uid === identity.metadata.uid);
}

/**
 * Whether the identity may take over an account the operator created for another AgentIdentity that is
 * gone (or going): the account is the operator's own (managed-by label, owned by an AgentIdentity) and
 * none of its owners is live. This is how the next identity takes over when the holder is deleted; an
 * account a user created (no managed-by label) is never taken over.
 */
export function adoptable(sa: ServiceAccountObject, liveIdentityUids: ReadonlySet<string>): boolean {
  if (sa.metadata.labels?.[LABEL_MANAGED_BY] !== MANAGER_NAME) return false;
  const refs =
    (sa.metadata.ownerReferences as
      | Array<{ kind?: string; apiVersion?: string; uid?: string }>
      | undefined) ?? [];
  return (
    refs.length > 0 &&
    refs.every((r) => r.kind === KIND && r.apiVersion === API_VERSION && !liveIdentityUids.has(r.uid ?? ""))
  );
}

/** The decision for one ServiceAccount as it stands: pure. */
export function judgeServiceAccount(
  identity: AgentIdentity,
  sa: ServiceAccountObject,
): Observations["serviceAccount"] {
  const label = sa.metadata.labels?.[LABEL_SERVICE_ACCOUNT_BINDING];
  if (label === identity.metadata.name) return { state: "ready", created: ownedBy(sa, identity), object: sa };
  return {
    state: "notOptedIn",
    message: `ServiceAccount ${sa.metadata.name} exists and is not opted in: the operator uses an existing ServiceAccount (and mints tokens for it) only when it carries the label ${LABEL_SERVICE_ACCOUNT_BINDING}=${identity.metadata.name}${label ? ` (it is labelled for ${label})` : ""}.`,
  };
}

/**
 * Ensures the ServiceAccount: a cached (labelled) one is judged as it is; a missing one is created. A 409
 * means it exists without the label (the cache only holds labelled accounts), so it is read once to judge.
 */
export async function ensureServiceAccount(
  kube: KubeClient,
  identity: AgentIdentity,
  cached: ServiceAccountObject | undefined,
  liveIdentityUids: ReadonlySet<string> = new Set(),
): Promise<Observations["serviceAccount"]> {
  const { namespace } = identity.metadata;
  const saName = identity.spec.serviceAccountName;
  if (cached) {
    const judged = judgeServiceAccount(identity, cached);
    if (judged.state === "notOptedIn" && adoptable(cached, liveIdentityUids))
      return adopt(kube, identity, cached);
    return judged;
  }
  try {
    const created = await kube.create<ServiceAccountObject>(
      serviceAccountPath(namespace),
      desiredServiceAccount(identity),
    );
    return { state: "ready", created: true, object: created };
  } catch (error) {
    if (!isApiError(error, 409))
      return {
        state: "error",
        message: `Cannot create ServiceAccount ${saName}: ${(error as Error).message}`,
      };
  }
  const current = await kube.getOptional<ServiceAccountObject>(serviceAccountPath(namespace, saName));
  if (!current)
    return { state: "error", message: `ServiceAccount ${saName} vanished while being created; retrying` };
  const judged = judgeServiceAccount(identity, current);
  if (judged.state === "notOptedIn" && adoptable(current, liveIdentityUids))
    return adopt(kube, identity, current);
  return judged;
}

/**
 * Takes over an account the operator created for an identity that is gone, as the garbage collector would
 * have: delete it (only that exact object, by uid and resourceVersion) and create this identity's own.
 * The manager never patches a ServiceAccount (least privilege), so relabelling is not an option.
 */
async function adopt(
  kube: KubeClient,
  identity: AgentIdentity,
  sa: ServiceAccountObject,
): Promise<Observations["serviceAccount"]> {
  const path = serviceAccountPath(identity.metadata.namespace, sa.metadata.name);
  try {
    await kube.delete(path, {
      apiVersion: "v1",
      kind: "DeleteOptions",
      preconditions: { uid: sa.metadata.uid, resourceVersion: sa.metadata.resourceVersion },
    });
  } catch (error) {
    if (!isApiError(error, 404))
      return {
        state: "error",
        message: `Cannot take over ServiceAccount ${sa.metadata.name}: ${(error as Error).message}`,
      };
  }
  try {
    const created = await kube.create<ServiceAccountObject>(
      serviceAccountPath(identity.metadata.namespace),
      desiredServiceAccount(identity),
    );
    return { state: "ready", created: true, object: created };
  } catch (error) {
    return {
      state: "error",
      message: `Cannot create ServiceAccount ${sa.metadata.name}: ${(error as Error).message}`,
    };
  }
}

/**
 * ServiceAccounts this identity created earlier but no longer binds (its serviceAccountName changed) are
 * deleted. Accounts its owners opted in are left as they are: the label is theirs.
 */
export async function releaseStaleServiceAccounts(
  kube: KubeClient,
  identity: AgentIdentity,
  inNamespace: readonly ServiceAccountObject[],
): Promise<void> {
  const stale = inNamespace.filter(
    (sa) =>
      sa.metadata.name !== identity.spec.serviceAccountName &&
      sa.metadata.labels?.[LABEL_SERVICE_ACCOUNT_BINDING] === identity.metadata.name &&
      ownedBy(sa, identity),
  );
  for (const sa of stale) {
    try {
      await kube.delete(serviceAccountPath(identity.metadata.namespace, sa.metadata.name));
    } catch (error) {
      if (!isApiError(error, 404)) throw error;
    }
  }
}
