import type { AgentIdentity } from "../api/types.ts";
import type { Refusal } from "./refusals.ts";
import type { Resolved, ResolveOptions } from "./review.ts";
import { type IdentitySource, type Selected, selectFromApi } from "./select.ts";
import type { InjectionTarget } from "./types.ts";

/**
 * A refusal the cache decided (an identity deleting, not Ready or bound to another ServiceAccount;
 * namespace labels that do not admit it) is checked against the API server once before it stands: the
 * cache may be a moment behind a change made just before the pod. The mutating webhook and the guard ask
 * the same question, so that one does not refuse what the other admitted.
 *
 * Bounded: at most one extra read per review, on the refusal path only (the caller comes here only with a
 * refusal), so a stream of pods naming a broken identity costs the API server one GET each, as their own
 * creation does. What the API server was read for already (a cache miss, `fresh`) is not read again. A
 * refusal with no identity to look at again (none named or bound in the namespace) was a cache miss read
 * already.
 */

export type Rechecked =
  | { ok: true; identity: AgentIdentity; target: InjectionTarget }
  | { ok: false; refusal: Refusal; identity?: AgentIdentity };

export interface RecheckDeps {
  identities: IdentitySource;
  resolve(identity: AgentIdentity, namespace: string, options?: ResolveOptions): Resolved | Promise<Resolved>;
}

/** `resolved` is the answer for `first.identity` when the selection succeeded (undefined otherwise). */
export async function recheckRefusal(
  pod: unknown,
  namespace: string,
  deps: RecheckDeps,
  first: Selected,
  firstResolved: Resolved | undefined,
): Promise<Rechecked> {
  let selected = first;
  let resolved = firstResolved;
  if (!first.ok) {
    if (!first.fresh && first.identity) {
      selected = await selectFromApi(pod, namespace, deps.identities);
      resolved = selected.ok ? await deps.resolve(selected.identity, namespace) : undefined;
    }
  } else if (firstResolved && !firstResolved.ok) {
    if (firstResolved.recheck === "identity" && !first.fresh) {
      selected = await selectFromApi(pod, namespace, deps.identities);
      resolved = selected.ok ? await deps.resolve(selected.identity, namespace) : undefined;
    } else if (firstResolved.recheck === "namespace") {
      resolved = await deps.resolve(first.identity, namespace, { freshNamespace: true });
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
