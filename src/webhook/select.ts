import { ANNOTATION_IDENTITY, LABEL_INJECT } from "../api/constants.ts";
import { type Selection, selectIdentityForPod } from "../api/select.ts";
import type { AgentIdentity } from "../api/types.ts";
import { annotationsOf, objectAt, serviceAccountOf, stringAt } from "./raw.ts";
import { ReadBudget } from "./reads.ts";
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
  /**
   * From the API server (cache misses, and once before a refusal the cache decided), under the review's
   * budget (reads.ts).
   */
  read(namespace: string, name: string, budget: ReadBudget): Promise<AgentIdentity | undefined>;
  list(namespace: string, budget: ReadBudget): Promise<AgentIdentity[]>;
}

/**
 * `identity` on a refusal: the identity it concerns (named by the annotation and found in the pod's
 * namespace), where its Event goes. `fresh`: the answer comes from the API server, not the cache.
 * `cause`: src/api/select.ts's reason (ServiceAccountTaken is about another identity: its re-check lists).
 */
export type Selected =
  | { ok: true; identity: AgentIdentity; fresh: boolean }
  | {
      ok: false;
      refusal: Refusal;
      identity?: AgentIdentity;
      fresh: boolean;
      cause: Exclude<Selection, { ok: true }>["reason"];
    };

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
 * The cache's answer, at once (nearly every pod); `undefined` when the cache knows no such identity and
 * the API server must be asked (selectFromApi). Never a promise, never a read.
 */
export function selectCached(pod: unknown, namespace: string, source: IdentitySource): Selected | undefined {
  const view = {
    namespace,
    serviceAccountName: serviceAccountOf(pod),
    annotations: annotationsOf(pod),
  };
  const cached = selectIdentityForPod(view, source.cachedList(namespace));
  if (cached.ok || cached.reason !== "NotFound") return selected(cached, false);
  return undefined;
}

/** The cache first, the API server on a miss (under `budget`, or a budget of its own). */
export function selectIdentity(
  pod: unknown,
  namespace: string,
  source: IdentitySource,
  budget?: ReadBudget,
): Selected | Promise<Selected> {
  return (
    selectCached(pod, namespace, source) ?? selectFromApi(pod, namespace, source, budget ?? new ReadBudget())
  );
}

/**
 * The same choice from the API server: on a cache miss, and once before refusing what the cache said (an
 * identity that was being deleted, not Ready or bound to another ServiceAccount a moment ago may be fine
 * now). A pod that names its identity costs one GET of that identity; which other identity holds the
 * ServiceAccount comes from the cache then (a newer one cannot take it away, and one that lost it to an
 * older one is not Ready, src/api/select.ts), unless `list`: the refusal was that another identity holds
 * the account (ServiceAccountTaken), which only the namespace's list can tell. A pod that names none costs
 * one LIST of its namespace (concurrent ones share it, reads.ts).
 */
export async function selectFromApi(
  pod: unknown,
  namespace: string,
  source: IdentitySource,
  budget: ReadBudget,
  list = false,
): Promise<Selected> {
  const view = {
    namespace,
    serviceAccountName: serviceAccountOf(pod),
    annotations: annotationsOf(pod),
  };
  const named = view.annotations[ANNOTATION_IDENTITY];
  if (named !== undefined && !list) {
    const fresh = await source.read(namespace, named, budget);
    const others = source.cachedList(namespace).filter((i) => i.metadata.name !== named);
    const selection = selectIdentityForPod(view, fresh ? [...others, fresh] : others);
    // A holder the cache named may be gone: that one refusal is not fresh (its re-check lists).
    return selected(selection, selection.ok || selection.reason !== "ServiceAccountTaken");
  }
  return selected(selectIdentityForPod(view, await source.list(namespace, budget)), true);
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
    cause: selection.reason,
  };
}
