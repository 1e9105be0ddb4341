import { ANNOTATION_IDENTITY, LABEL_INJECT } from "../api/constants.ts";
import { type Selection, selectIdentityForPod } from "../api/select.ts";
import type { AgentIdentity } from "../api/types.ts";
import { annotationsOf, objectAt, serviceAccountOf, stringAt } from "./raw.ts";
import type { Refusal } from "./refusals.ts";

/**
 * Which AgentIdentity a pod gets: the one its `agentid.io/identity` annotation names, or else the one
 * that holds the pod's ServiceAccount (src/api/select.ts decides, the same rule the operator applies).
 * The cache answers first; when it finds nothing the API server is asked, so an identity created just
 * before the pod (the cache a few milliseconds behind) is not missed.
 */

export interface IdentitySource {
  /** From the shared cache. */
  cached(namespace: string, name: string): AgentIdentity | undefined;
  cachedList(namespace: string): AgentIdentity[];
  /** From the API server (cache misses only). */
  read(namespace: string, name: string): Promise<AgentIdentity | undefined>;
  list(namespace: string): Promise<AgentIdentity[]>;
}

export type Selected = { ok: true; identity: AgentIdentity } | { ok: false; refusal: Refusal };

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

export async function selectIdentity(
  pod: unknown,
  namespace: string,
  source: IdentitySource,
): Promise<Selected> {
  const view = {
    namespace,
    serviceAccountName: serviceAccountOf(pod),
    annotations: annotationsOf(pod),
  };
  let selection = selectIdentityForPod(view, source.cachedList(namespace));
  if (!selection.ok && selection.reason === "NotFound") {
    selection = selectIdentityForPod(view, await source.list(namespace));
  }
  if (selection.ok) return { ok: true, identity: selection.identity };
  return {
    ok: false,
    refusal: {
      reason: REASONS[selection.reason],
      message: `${selection.message}; ${HINTS[selection.reason]}`,
    },
  };
}
