import type { AgentIdentity } from "../api/types.ts";
import type { ReadBudget } from "./reads.ts";
import type { Refusal } from "./refusals.ts";
import type { Resolved, ResolveTarget } from "./review.ts";
import { type IdentitySource, type Selected, selectFromApi } from "./select.ts";
import type { InjectionTarget } from "./types.ts";

/**
 * A refusal the cache decided (an identity deleting, not Ready or bound to another ServiceAccount;
 * namespace labels that do not admit it) is checked against the API server once before it stands: the
 * cache may be a moment behind a change made just before the pod. The mutating webhook and the guard ask
 * the same question, so that one does not refuse what the other admitted.
 *
 * Bounded: at most one extra read per review, on the refusal path only (the caller comes here only with a
 * refusal), so a stream of pods naming a broken identity costs the API server one GET of that identity each,
 * as their own creation does (a LIST only for a pod that names none, or when another identity holds the
 * ServiceAccount; concurrent LISTs of a namespace are one, reads.ts). What the API server was read for
 * already (a cache miss, `fresh`) is not read again, nor anything this review read before (the blueprint:
 * the budget's memo, reads.ts). A refusal with no identity to look at again (none named or bound in the
 * namespace) was a cache miss read already. Every read shares the review's one budget.
 */

export type Rechecked =
  | { ok: true; identity: AgentIdentity; target: InjectionTarget }
  | { ok: false; refusal: Refusal; identity?: AgentIdentity };

export interface RecheckDeps {
  identities: IdentitySource;
  resolve: ResolveTarget;
}

/** `resolved` is the answer for `first.identity` when the selection succeeded (undefined otherwise). */
export async function recheckRefusal(
  pod: unknown,
  namespace: string,
  deps: RecheckDeps,
  first: Selected,
  firstResolved: Resolved | undefined,
  budget: ReadBudget,
): Promise<Rechecked> {
  let selected = first;
  let resolved = firstResolved;
  const resolve = (identity: AgentIdentity, freshNamespace?: boolean) =>
    deps.resolve(identity, namespace, freshNamespace ? { freshNamespace, budget } : { budget });
  if (!first.ok) {
    if (!first.fresh && first.identity) {
      const list = first.cause === "ServiceAccountTaken";
      selected = await selectFromApi(pod, namespace, deps.identities, budget, list);
      resolved = selected.ok ? await resolve(selected.identity) : undefined;
    }
  } else if (firstResolved && !firstResolved.ok) {
    if (firstResolved.recheck === "identity" && !first.fresh) {
      selected = await selectFromApi(pod, namespace, deps.identities, budget);
      resolved = selected.ok ? await resolve(selected.identity) : undefined;
    } else if (firstResolved.recheck === "namespace") {
      resolved = await resolve(first.identity, true);
    }
  }
  if (!selected.ok) {
    return {
      ok: false,
      refusal: selected.refusal,
      ...(selected.identity ? { identity: selected.identity } : {}),
    };
  }
  if (!resolved) throw new Error("an identity was selected but not resolved");
  if (!resolved.ok) return { ok: false, refusal: resolved.refusal, identity: selected.identity };
  return { ok: true, identity: selected.identity, target: resolved.target };
}
