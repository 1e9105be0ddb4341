import { ANNOTATION_IDENTITY, LABEL_INJECT } from "../api/constants.ts";
import { truncate } from "./annotations.ts";
import { annotationsOf, objectAt, serviceAccountOf, stringAt } from "./raw.ts";
import type { Refusal } from "./refusals.ts";

/**
 * Which AgentIdentity a pod gets: the one its `agentid.io/identity` annotation names, or else the single
 * identity of its namespace that binds the pod's ServiceAccount. The cache answers first; on a miss the
 * API server is asked, so an identity created just before the pod (the cache a few milliseconds behind)
 * is not missed. The identity must bind the pod's ServiceAccount: a pod cannot borrow another account's
 * identity (the federated credential trusts the account, not the pod).
 */

export interface IdentityLike {
  metadata: { name: string; namespace?: string; deletionTimestamp?: string };
}

export interface IdentitySource<T extends IdentityLike> {
  /** From the shared cache. */
  cached(namespace: string, name: string): T | undefined;
  cachedList(namespace: string): T[];
  /** From the API server (cache misses only). */
  read(namespace: string, name: string): Promise<T | undefined>;
  list(namespace: string): Promise<T[]>;
  /** The ServiceAccount an identity binds. */
  serviceAccountOf(identity: T): string;
}

export type Selected<T> = { ok: true; identity: T } | { ok: false; refusal: Refusal };

/** Whether the pod asked for injection at all (the namespace-wide webhook entry also sends pods that did not). */
export function wantsInjection(pod: unknown): boolean {
  const labels = objectAt(objectAt(pod, "metadata"), "labels");
  return stringAt(labels, LABEL_INJECT) === "true" || annotationsOf(pod)[ANNOTATION_IDENTITY] !== undefined;
}

export async function selectIdentity<T extends IdentityLike>(
  pod: unknown,
  namespace: string,
  source: IdentitySource<T>,
): Promise<Selected<T>> {
  const sa = serviceAccountOf(pod);
  const named = annotationsOf(pod)[ANNOTATION_IDENTITY];
  if (named !== undefined) {
    const identity = source.cached(namespace, named) ?? (await source.read(namespace, named));
    if (!identity) {
      return {
        ok: false,
        refusal: {
          reason: "IdentityNotFound",
          message: `AgentIdentity '${truncate(named)}' (annotation ${ANNOTATION_IDENTITY}) does not exist in namespace ${namespace}; create it or fix the annotation`,
        },
      };
    }
    if (identity.metadata.deletionTimestamp) {
      return {
        ok: false,
        refusal: {
          reason: "IdentityNotReady",
          message: `AgentIdentity ${named} is being deleted; name another one`,
        },
      };
    }
    const bound = source.serviceAccountOf(identity);
    if (bound !== sa) {
      return {
        ok: false,
        refusal: {
          reason: "ServiceAccountMismatch",
          message: `AgentIdentity ${named} binds ServiceAccount ${bound}, but the pod runs as ${sa}; set spec.serviceAccountName: ${bound} on the pod`,
        },
      };
    }
    return { ok: true, identity };
  }
  const binding = (list: T[]) =>
    list.filter((i) => !i.metadata.deletionTimestamp && source.serviceAccountOf(i) === sa);
  let candidates = binding(source.cachedList(namespace));
  if (candidates.length === 0) candidates = binding(await source.list(namespace));
  const only = candidates[0];
  if (candidates.length === 1 && only) return { ok: true, identity: only };
  if (candidates.length === 0) {
    return {
      ok: false,
      refusal: {
        reason: "IdentityNotFound",
        message: `no AgentIdentity in namespace ${namespace} binds ServiceAccount ${sa}; run the pod as the ServiceAccount of an AgentIdentity or name one with the annotation ${ANNOTATION_IDENTITY}`,
      },
    };
  }
  return {
    ok: false,
    refusal: {
      reason: "IdentityAmbiguous",
      message: `AgentIdentities ${candidates
        .map((c) => c.metadata.name)
        .sort()
        .join(", ")} all bind ServiceAccount ${sa}; name one with the annotation ${ANNOTATION_IDENTITY}`,
    },
  };
}
