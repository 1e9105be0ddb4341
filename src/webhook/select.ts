import { ANNOTATION_IDENTITY, LABEL_INJECT } from "../api/constants.ts";
import { type Selection, selectIdentityForPod } from "../api/select.ts";
import type { AgentIdentity } from "../api/types.ts";
import { annotationsOf, objectAt, serviceAccountOf, stringAt } from "./raw.ts";
import type { Refusal } from "./refusals.ts";

/**
 * Which AgentIdentity a pod gets: the one its `agentid.io/identity` annotation names, or else the one
 * that holds the pod's ServiceAccount (src/api/select.ts decides, the same rule the operator applies).
 * The cache answers first; when it finds nothing the API server is asked, so an identity created just
 * before the pod (the cache a few milliseconds behind) is not missed. A refusal the cache decided is
 * checked against the API server once more before it stands (review.ts).
 */

export interface IdentitySource {
  /** From the shared cache. */
  cached(namespace: string, name: string): AgentIdentity | undefined;
  cachedList(namespace: string): AgentIdentity[];
  /** From the API server (cache misses, and once before a refusal the cache decided). */
  read(namespace: string, name: string): Promise<AgentIdentity | undefined>;
  list(namespace: string): Promise<AgentIdentity[]>;
}

/**
 * `identity` on a refusal: the identity it concerns (named by the annotation and found in the pod's
 * namespace), where its Event goes. `fresh`: the answer comes from the API server, not the cache.
 */
export type Selected =
  | { ok: true; identity: AgentIdentity; fresh: boolean }
  | { ok: false; refusal: Refusal; identity?: AgentIdentity; fresh: boolean };

/** Whether the pod asked for injection at all (the namespace-wide webhook entry also sends pods that did not). */
export function wantsInjection(pod: unknown): boolean {
  const labels = objectAt(objectAt(pod, "metadata"), "labels");
  return stringAt(labels, LABEL_INJECT) === "true" || annotationsOf(pod)[ANNOTATION_IDENTITY] !== undefined;
}

const HINTS: Record<Exclude<Selection, { ok: true }>["reason"], string> = {
  NotFound: `create the AgentIdentity, fix the annotation ${ANNOTATION_IDENTITY}, or run the pod as the ServiceAccount of an AgentIdentity`,
  ServiceAccountMismatch:
    "run the pod as the ServiceAccount the AgentIdentity binds (spec.serviceAccountName)",
  ServiceAccountTaken:
    "name the AgentIdentity that holds the ServiceAccount, or give this one its own ServiceAccount",
  Deleting: "name another AgentIdentity",
};

const REASONS = {
  NotFound: "IdentityNotFound",
  ServiceAccountMismatch: "ServiceAccountMismatch",
  ServiceAccountTaken: "ServiceAccountMismatch",
  Deleting: "IdentityNotReady",
} as const;

/**
 * The answer is there at once when the cache decides (nearly every pod); a promise only when the API
 * server must be asked, so a review does not wait a turn of the event loop for what it already knows.
 */
export function selectIdentity(
  pod: unknown,
  namespace: string,
  source: IdentitySource,
): Selected | Promise<Selected> {
  const view = {
    namespace,
    serviceAccountName: serviceAccountOf(pod),
    annotations: annotationsOf(pod),
  };
  const cached = selectIdentityForPod(view, source.cachedList(namespace));
  if (cached.ok || cached.reason !== "NotFound") return selected(cached, false);
  return selectFromApi(pod, namespace, source);
}

/**
 * The same choice from the API server's list of the namespace's identities (one GET): on a cache miss,
 * and once before refusing what the cache said (an identity that was being deleted, not Ready or bound
 * to another ServiceAccount a moment ago may be fine now).
 */
export function selectFromApi(pod: unknown, namespace: string, source: IdentitySource): Promise<Selected> {
  const view = {
    namespace,
    serviceAccountName: serviceAccountOf(pod),
    annotations: annotationsOf(pod),
  };
  return source.list(namespace).then((list) => selected(selectIdentityForPod(view, list), true));
}

function selected(selection: Selection, fresh: boolean): Selected {
  if (selection.ok) return { ok: true, identity: selection.identity, fresh };
  return {
    ok: false,
    refusal: {
      reason: REASONS[selection.reason],
      message: `${selection.message}; ${HINTS[selection.reason]}`,
    },
    ...(selection.identity ? { identity: selection.identity } : {}),
    fresh,
  };
}
