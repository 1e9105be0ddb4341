import { MAX_OBJECT_NAME, printable } from "../lib/text.ts";
import { ANNOTATION_IDENTITY } from "./constants.ts";
import type { AgentIdentity } from "./types.ts";

/**
 * Which AgentIdentity holds a ServiceAccount when several bind it: the oldest (creation time, then name)
 * that is not being deleted. A newer one cannot take a working identity away, so writing a second
 * AgentIdentity is not a way to switch someone else's off (it gets Ready=False, ServiceAccountTaken).
 */
export function serviceAccountHolder(
  candidates: readonly AgentIdentity[],
  namespace: string,
  serviceAccountName: string,
): AgentIdentity | undefined {
  let holder: AgentIdentity | undefined;
  for (const c of candidates) {
    if (c.metadata.namespace !== namespace || c.metadata.deletionTimestamp) continue;
    if (c.spec.serviceAccountName !== serviceAccountName) continue;
    if (!holder || olderThan(c, holder)) holder = c;
  }
  return holder;
}

/** Creation time first; equal times (one-second resolution) fall back to the name, so every reader agrees. */
export function olderThan(a: AgentIdentity, b: AgentIdentity): boolean {
  const ta = Date.parse(a.metadata.creationTimestamp ?? "");
  const tb = Date.parse(b.metadata.creationTimestamp ?? "");
  const na = Number.isFinite(ta) ? ta : Number.POSITIVE_INFINITY;
  const nb = Number.isFinite(tb) ? tb : Number.POSITIVE_INFINITY;
  if (na !== nb) return na < nb;
  return a.metadata.name < b.metadata.name;
}

/**
 * Which AgentIdentity a pod gets: the one its `agentid.io/identity` annotation names, or,
 * without the annotation, the one that holds the pod's ServiceAccount. The identity must bind the pod's
 * ServiceAccount and hold it: a pod cannot borrow another account's identity, nor one that lost its
 * account to an older identity. Pure, for the webhook; `candidates` are the identities of the pod's namespace.
 */
export type Selection =
  | { ok: true; identity: AgentIdentity }
  | {
      ok: false;
      reason: "NotFound" | "ServiceAccountMismatch" | "ServiceAccountTaken" | "Deleting";
      message: string;
      /**
       * The identity the refusal is about, when there is one (the one the annotation names, found in the
       * pod's namespace): the webhook records its Event there. Never set for NotFound.
       */
      identity?: AgentIdentity;
    };

/**
 * What the messages quote of the pod's own fields: bounded, control characters replaced (a review posted
 * straight to the webhook's port carries whatever its sender wrote, src/lib/text.ts).
 */
function show(value: string): string {
  return printable(value, MAX_OBJECT_NAME);
}

export function selectIdentityForPod(
  pod: { namespace: string; serviceAccountName?: string; annotations?: Record<string, string> },
  candidates: readonly AgentIdentity[],
): Selection {
  const sa = pod.serviceAccountName || "default";
  const inNamespace = candidates.filter((c) => c.metadata.namespace === pod.namespace);
  const holder = serviceAccountHolder(inNamespace, pod.namespace, sa);
  const named = pod.annotations?.[ANNOTATION_IDENTITY];
  if (named !== undefined) {
    const identity = inNamespace.find((c) => c.metadata.name === named);
    if (!identity) {
      return {
        ok: false,
        reason: "NotFound",
        message: `AgentIdentity ${show(named)} does not exist in namespace ${show(pod.namespace)}`,
      };
    }
    if (identity.metadata.deletionTimestamp) {
      return {
        ok: false,
        reason: "Deleting",
        message: `AgentIdentity ${show(named)} is being deleted`,
        identity,
      };
    }
    if (identity.spec.serviceAccountName !== sa) {
      return {
        ok: false,
        reason: "ServiceAccountMismatch",
        message: `AgentIdentity ${show(named)} binds ServiceAccount ${show(identity.spec.serviceAccountName)}, but the pod runs as ${show(sa)}`,
        identity,
      };
    }
    if (holder && holder.metadata.name !== identity.metadata.name) {
      return {
        ok: false,
        reason: "ServiceAccountTaken",
        message: `ServiceAccount ${show(sa)} is held by the older AgentIdentity ${show(holder.metadata.name)}, not ${show(named)}`,
        identity,
      };
    }
    return { ok: true, identity };
  }
  if (holder) return { ok: true, identity: holder };
  return {
    ok: false,
    reason: "NotFound",
    message: `no AgentIdentity in namespace ${show(pod.namespace)} binds ServiceAccount ${show(sa)}; name one with the ${ANNOTATION_IDENTITY} annotation`,
  };
}
