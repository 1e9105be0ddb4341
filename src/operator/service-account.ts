import { ANNOTATION_IDENTITY, API_VERSION, KIND, LABEL_MANAGED_BY, MANAGER_NAME } from "../api/constants.ts";
import type { AgentIdentity } from "../api/types.ts";
import { isApiError, jsonPointerSegment, type KubeClient } from "../kube/client.ts";
import type { KubeObject } from "../kube/store.ts";
import type { Observations } from "./status.ts";

export interface ServiceAccountObject extends KubeObject {
  metadata: KubeObject["metadata"] & { namespace: string };
}

export function serviceAccountPath(namespace: string, name?: string): string {
  const base = `/api/v1/namespaces/${encodeURIComponent(namespace)}/serviceaccounts`;
  return name ? `${base}/${encodeURIComponent(name)}` : base;
}

/** The ServiceAccount the operator creates: owned by the identity (garbage-collected with it) and marked. */
export function desiredServiceAccount(identity: AgentIdentity): ServiceAccountObject {
  return {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: {
      name: identity.spec.serviceAccountName,
      namespace: identity.metadata.namespace,
      labels: { [LABEL_MANAGED_BY]: MANAGER_NAME },
      annotations: { [ANNOTATION_IDENTITY]: identity.metadata.name },
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

/**
 * Ensures the ServiceAccount exists (when the identity asks for it) and carries the agentid.io/identity
 * annotation. Reads come from the informer cache; only a missing or unmarked account costs a request.
 */
export async function ensureServiceAccount(
  kube: KubeClient,
  identity: AgentIdentity,
  cached: ServiceAccountObject | undefined,
): Promise<Observations["serviceAccount"]> {
  const { namespace, name: identityName } = identity.metadata;
  const saName = identity.spec.serviceAccountName;
  let current = cached;
  let created = false;
  if (!current) {
    if (identity.spec.createServiceAccount === false) return { state: "missing" };
    try {
      current = await kube.create<ServiceAccountObject>(
        serviceAccountPath(namespace),
        desiredServiceAccount(identity),
      );
      created = true;
    } catch (error) {
      if (!isApiError(error, 409))
        return {
          state: "error",
          message: `Cannot create ServiceAccount ${saName}: ${(error as Error).message}`,
        };
      // The cache lagged behind: it exists after all.
      current = await kube.getOptional<ServiceAccountObject>(serviceAccountPath(namespace, saName));
      if (!current)
        return { state: "error", message: `ServiceAccount ${saName} vanished while being created; retrying` };
    }
  }
  if (current.metadata.annotations?.[ANNOTATION_IDENTITY] !== identityName) {
    const annotationPath = `/metadata/annotations/${jsonPointerSegment(ANNOTATION_IDENTITY)}`;
    const ops = current.metadata.annotations
      ? [{ op: "add", path: annotationPath, value: identityName }]
      : [{ op: "add", path: "/metadata/annotations", value: { [ANNOTATION_IDENTITY]: identityName } }];
    try {
      await kube.patch(serviceAccountPath(namespace, saName), "json", ops);
    } catch (error) {
      if (isApiError(error, 404))
        return identity.spec.createServiceAccount === false
          ? { state: "missing" }
          : { state: "error", message: `ServiceAccount ${saName} was deleted; recreating` };
      return {
        state: "error",
        message: `Cannot annotate ServiceAccount ${saName}: ${(error as Error).message}`,
      };
    }
  }
  return { state: "ready", created };
}

/**
 * ServiceAccounts this identity marked earlier but no longer binds (its serviceAccountName changed): the
 * ones it created are deleted, the others lose the mark. Pods still running under them keep their tokens
 * until they restart; new pods of that account no longer get this identity.
 */
export async function releaseStaleServiceAccounts(
  kube: KubeClient,
  identity: AgentIdentity,
  inNamespace: readonly ServiceAccountObject[],
): Promise<void> {
  const stale = inNamespace.filter(
    (sa) =>
      sa.metadata.name !== identity.spec.serviceAccountName &&
      sa.metadata.annotations?.[ANNOTATION_IDENTITY] === identity.metadata.name,
  );
  for (const sa of stale) {
    const path = serviceAccountPath(identity.metadata.namespace, sa.metadata.name);
    const owned = (sa.metadata.ownerReferences as Array<{ uid?: string }> | undefined)?.some(
      (o) => o.uid === identity.metadata.uid,
    );
    try {
      if (owned) {
        await kube.delete(path);
      } else {
        await kube.patch(path, "json", [
          {
            op: "test",
            path: `/metadata/annotations/${jsonPointerSegment(ANNOTATION_IDENTITY)}`,
            value: identity.metadata.name,
          },
          { op: "remove", path: `/metadata/annotations/${jsonPointerSegment(ANNOTATION_IDENTITY)}` },
        ]);
      }
    } catch (error) {
      // Gone already, or re-marked by someone else in between: nothing left to release.
      if (!isApiError(error, 404) && !isApiError(error, 422)) throw error;
    }
  }
}
