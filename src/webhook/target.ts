import { blueprintAdmitsIdentity, type NamespaceInfo } from "../api/admit.ts";
import { isIdentityReady, readyCondition } from "../api/ready.ts";
import { renderSidecarSettings } from "../api/render.ts";
import type { AgentIdentity, AgentIdentityBlueprint, SidecarResources } from "../api/types.ts";
import { deepFrozen } from "./json-text.ts";
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
  return checkTarget(input) ?? renderTarget(input.identity, input.blueprint as AgentIdentityBlueprint, input);
}

/**
 * What refuses the identity in this namespace before anything is rendered (readiness, blueprint, admission).
 * `recheck` names the input a stale cache could have got wrong (the identity made Ready, the namespace
 * labelled a moment before the pod): the review reads that one from the API server once before refusing.
 */
function checkTarget(input: TargetInput): Extract<Resolved, { ok: false }> | undefined {
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
      recheck: "identity",
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
    return {
      ok: false,
      // Every answer but a deleting blueprint depends on which rules the namespace's labels match.
      ...(admission.reason !== "BlueprintDeleting" ? { recheck: "namespace" as const } : {}),
      refusal: { reason: "BlueprintRefused", message: admission.message },
    };
  return undefined;
}

/** The rendering: the identity and its blueprint only (not the namespace or the pod). */
function renderTarget(
  identity: AgentIdentity,
  blueprint: AgentIdentityBlueprint,
  input: Pick<TargetInput, "allowedAuthorityHosts">,
): Resolved {
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
        name: identity.metadata.name,
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

/**
 * resolveTarget with the rendering memoised per version of the identity and its blueprint (uid and
 * resourceVersion of each: every change to either, status included, is a new version) and the authority
 * hosts. The checks (readiness, blueprint, namespace admission) are redone whenever the identity,
 * blueprint or namespace-labels object differs from the last one seen for that identity object (the
 * informer replaces an object when it changes; nobody mutates one). A memoised target is deep-frozen:
 * the mutation then renders its sidecar once too (memo.ts). Objects without a uid or resourceVersion
 * (not from the API server) are rendered every time. At most `limit` versions are kept, oldest dropped.
 */
export function createTargetCache(limit = 1024): (input: TargetInput) => Resolved {
  const rendered = new Map<string, Resolved>();
  // The informer hands out the same objects until the next change: the whole answer (checks included)
  // is kept per identity object, for the blueprint and namespace-labels objects it was given with.
  const byObject = new WeakMap<
    AgentIdentity,
    {
      blueprint: AgentIdentityBlueprint | undefined;
      namespace: string;
      labels: Record<string, string> | undefined;
      hosts: readonly string[];
      result: Resolved;
    }
  >();
  const render = (identity: AgentIdentity, blueprint: AgentIdentityBlueprint, input: TargetInput) => {
    const i = identity.metadata;
    const b = blueprint.metadata;
    if (!i.uid || !i.resourceVersion || !b.uid || !b.resourceVersion)
      return renderTarget(identity, blueprint, input);
    const key = `${i.uid}/${i.resourceVersion}|${b.uid}/${b.resourceVersion}|${input.allowedAuthorityHosts.join(",")}`;
    let result = rendered.get(key);
    if (!result) {
      result = deepFrozen(renderTarget(identity, blueprint, input));
      if (rendered.size >= limit) rendered.delete(rendered.keys().next().value as string);
      rendered.set(key, result);
    }
    return result;
  };
  return (input) => {
    const { identity, blueprint, namespace, allowedAuthorityHosts: hosts } = input;
    const hit = byObject.get(identity);
    if (
      hit &&
      hit.blueprint === blueprint &&
      hit.namespace === namespace.name &&
      hit.labels === namespace.labels &&
      sameList(hit.hosts, hosts)
    )
      return hit.result;
    const result = checkTarget(input) ?? render(identity, blueprint as AgentIdentityBlueprint, input);
    // Only objects from the API server (what the rendering cache keeps too); others are judged each time.
    if (fromServer(identity.metadata) && (!blueprint || fromServer(blueprint.metadata)))
      byObject.set(identity, {
        blueprint,
        namespace: namespace.name,
        labels: namespace.labels,
        hosts: [...hosts],
        result,
      });
    return result;
  };
}

const fromServer = (m: { uid?: string; resourceVersion?: string }) => Boolean(m.uid && m.resourceVersion);

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
