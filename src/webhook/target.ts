import { blueprintAdmitsIdentity, type NamespaceInfo } from "../api/admit.ts";
import { isIdentityReady, readyCondition } from "../api/ready.ts";
import { renderSidecarSettings } from "../api/render.ts";
import type { AgentIdentity, AgentIdentityBlueprint, SidecarResources } from "../api/types.ts";
import type { Resolved } from "./review.ts";
import type { Resources } from "./types.ts";

/**
 * The one place that reads the AgentIdentity API: an identity, its blueprint and its namespace → an
 * InjectionTarget for the pure mutation, or the refusal that says why it cannot be used. The questions
 * themselves (ready? admitted? what environment?) are src/api's pure functions, shared with the operator.
 */

export interface TargetInput {
  identity: AgentIdentity;
  /** Undefined when the blueprint it names does not exist. */
  blueprint: AgentIdentityBlueprint | undefined;
  namespace: NamespaceInfo;
  allowedAuthorityHosts: readonly string[];
}

function resources(r: SidecarResources | undefined): Resources | undefined {
  if (!r) return undefined;
  const list = (l: Record<string, number | string> | undefined) =>
    l ? Object.fromEntries(Object.entries(l).map(([k, v]) => [k, String(v)])) : undefined;
  const out: Resources = {};
  const requests = list(r.requests);
  const limits = list(r.limits);
  if (requests) out.requests = requests;
  if (limits) out.limits = limits;
  return out;
}

export function resolveTarget(input: TargetInput): Resolved {
  const { identity, blueprint, namespace } = input;
  const name = identity.metadata.name;
  const blueprintName = identity.spec.blueprintRef.name;
  if (!isIdentityReady(identity)) {
    const ready = readyCondition(identity);
    const why = ready
      ? ready.observedGeneration !== identity.metadata.generation
        ? "the operator has not yet looked at its current spec"
        : `${ready.reason}: ${ready.message}`
      : "the operator has not reported on it yet";
    return {
      ok: false,
      refusal: {
        reason: "IdentityNotReady",
        message: `AgentIdentity ${name} is not Ready (${why}); fix what its status reports (kubectl describe agentidentity ${name}) and create the pod again`,
      },
    };
  }
  if (!blueprint) {
    return {
      ok: false,
      refusal: {
        reason: "BlueprintNotFound",
        message: `AgentIdentity ${name} names AgentIdentityBlueprint ${blueprintName}, which does not exist; fix spec.blueprintRef.name or ask the platform team for the blueprint`,
      },
    };
  }
  const admission = blueprintAdmitsIdentity(blueprint, namespace, identity);
  if (!admission.allowed)
    return { ok: false, refusal: { reason: "BlueprintRefused", message: admission.message } };
  const rendered = renderSidecarSettings(identity, blueprint, {
    allowedAuthorityHosts: input.allowedAuthorityHosts,
  });
  if (!rendered.ok) return { ok: false, refusal: { reason: "BlueprintRefused", message: rendered.message } };
  const s = rendered.settings;
  const own = resources(s.resources);
  return {
    ok: true,
    target: {
      identity: {
        name,
        namespace: identity.metadata.namespace,
        generation: identity.metadata.generation ?? 0,
        serviceAccountName: identity.spec.serviceAccountName,
      },
      port: s.port,
      env: s.sidecarEnv,
      appEnv: s.appEnv.flatMap((e) => ("value" in e ? [{ name: e.name, value: e.value }] : [])),
      projectedToken: s.credential === "workloadIdentity",
      tokenExpirationSeconds: s.tokenExpirationSeconds,
      ...(own ? { resources: own } : {}),
      secretNames: s.secretRef ? [s.secretRef.name] : [],
    },
  };
}
