import { ANNOTATION_IDENTITY } from "./constants.ts";
import type { AgentIdentity } from "./types.ts";

/**
 * Which AgentIdentity a pod gets: the one its `agentid.io/identity` annotation names, or,
 * without the annotation, the only live identity of its namespace that binds the pod's ServiceAccount.
 * The identity must bind the pod's ServiceAccount: a pod cannot borrow another account's identity.
 * Pure, for the webhook; `candidates` are the identities of the pod's namespace.
 */
export type Selection =
  | { ok: true; identity: AgentIdentity }
  | { ok: false; reason: "NotFound" | "Ambiguous" | "ServiceAccountMismatch" | "Deleting"; message: string };

export function selectIdentityForPod(
  pod: { namespace: string; serviceAccountName?: string; annotations?: Record<string, string> },
  candidates: readonly AgentIdentity[],
): Selection {
  const sa = pod.serviceAccountName || "default";
  const inNamespace = candidates.filter((c) => c.metadata.namespace === pod.namespace);
  const named = pod.annotations?.[ANNOTATION_IDENTITY];
  if (named !== undefined) {
    const identity = inNamespace.find((c) => c.metadata.name === named);
    if (!identity) {
      return {
        ok: false,
        reason: "NotFound",
        message: `AgentIdentity ${named} does not exist in namespace ${pod.namespace}`,
      };
    }
    if (identity.metadata.deletionTimestamp) {
      return { ok: false, reason: "Deleting", message: `AgentIdentity ${named} is being deleted` };
    }
    if (identity.spec.serviceAccountName !== sa) {
      return {
        ok: false,
        reason: "ServiceAccountMismatch",
        message: `AgentIdentity ${named} binds ServiceAccount ${identity.spec.serviceAccountName}, but the pod runs as ${sa}`,
      };
    }
    return { ok: true, identity };
  }
  const binding = inNamespace.filter(
    (c) => c.spec.serviceAccountName === sa && !c.metadata.deletionTimestamp,
  );
  if (binding.length === 1 && binding[0]) return { ok: true, identity: binding[0] };
  if (binding.length === 0) {
    return {
      ok: false,
      reason: "NotFound",
      message: `no AgentIdentity in namespace ${pod.namespace} binds ServiceAccount ${sa}; name one with the ${ANNOTATION_IDENTITY} annotation`,
    };
  }
  return {
    ok: false,
    reason: "Ambiguous",
    message: `AgentIdentities ${binding
      .map((b) => b.metadata.name)
      .sort()
      .join(", ")} all bind ServiceAccount ${sa}; name one with the ${ANNOTATION_IDENTITY} annotation`,
  };
}
