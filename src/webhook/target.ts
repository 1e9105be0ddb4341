import { CONDITION_READY, DEFAULT_SIDECAR_PORT } from "../api/constants.ts";
import { renderSidecarSettings } from "../api/render.ts";
import { type AgentIdentity, credentialKind } from "../api/types.ts";
import type { Resolved } from "./review.ts";

/**
 * The one place that reads the AgentIdentity API: an identity (and what it refers to) → an
 * InjectionTarget for the pure mutation, or the refusal that says why it cannot be used.
 */

export const DEFAULT_TOKEN_EXPIRATION_SECONDS = 3600;

export function isReady(identity: AgentIdentity): { ready: boolean; why: string } {
  const ready = identity.status?.conditions?.find((c) => c.type === CONDITION_READY);
  if (ready?.status === "True") return { ready: true, why: "" };
  return {
    ready: false,
    why: ready ? `${ready.reason}: ${ready.message}` : "the operator has not reported on it yet",
  };
}

export function resolveTarget(identity: AgentIdentity): Resolved {
  const name = identity.metadata.name;
  const readiness = isReady(identity);
  if (!readiness.ready) {
    return {
      ok: false,
      refusal: {
        reason: "IdentityNotReady",
        message: `AgentIdentity ${name} is not Ready (${readiness.why}); fix what its status reports (kubectl describe agentidentity ${name}) and create the pod again`,
      },
    };
  }
  const rendered = renderSidecarSettings(identity);
  const kind = credentialKind(identity.spec);
  const secret = identity.spec.blueprint.credential?.clientSecret?.secretRef.name;
  return {
    ok: true,
    target: {
      identity: {
        name,
        namespace: identity.metadata.namespace,
        generation: identity.metadata.generation ?? 0,
        serviceAccountName: identity.spec.serviceAccountName,
      },
      port: rendered.port ?? DEFAULT_SIDECAR_PORT,
      env: rendered.sidecarEnv,
      projectedToken: kind === "workloadIdentity",
      tokenExpirationSeconds: DEFAULT_TOKEN_EXPIRATION_SECONDS,
      secretNames: secret ? [secret] : [],
    },
  };
}
