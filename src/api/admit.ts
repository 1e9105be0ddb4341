import type { AgentIdentity, AgentIdentityBlueprint, LabelSelector } from "./types.ts";

/**
 * Who may use a blueprint (the trust model): the blueprint's owner decides, in
 * AgentIdentityBlueprint spec.admits; nothing an AgentIdentity's author writes widens it. Pure: the
 * operator and the admission webhook ask the same question and get the same answer.
 */

export type Admission =
  | { allowed: true }
  | {
      allowed: false;
      reason:
        | "BlueprintDeleting"
        | "NamespaceNotAdmitted"
        | "AgentNotAllowed"
        | "AgentCreationNotAllowed"
        | "DevelopmentSecretsNotAllowed"
        | "SidecarWideningNotAllowed";
      message: string;
    };

export interface NamespaceInfo {
  name: string;
  labels?: Record<string, string>;
}

/** Kubernetes label-selector semantics (matchLabels AND every matchExpression). */
export function selectorMatches(selector: LabelSelector, labels: Record<string, string> = {}): boolean {
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const value = labels[e.key];
    const values = e.values ?? [];
    switch (e.operator) {
      case "In":
        if (!has || value === undefined || !values.includes(value)) return false;
        break;
      case "NotIn":
        if (has && value !== undefined && values.includes(value)) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
      default:
        // An operator this code does not know admits nothing (fail closed).
        return false;
    }
  }
  return true;
}

/** Whether the blueprint admits the namespace: by name in admits.namespaces, or by admits.namespaceSelector. */
export function namespaceAdmitted(blueprint: AgentIdentityBlueprint, namespace: NamespaceInfo): boolean {
  const admits = blueprint.spec.admits;
  if (admits?.namespaces?.includes(namespace.name)) return true;
  return (
    admits?.namespaceSelector !== undefined && selectorMatches(admits.namespaceSelector, namespace.labels)
  );
}

/**
 * Whether `blueprint` lets `namespace` act as an agent. `agentClientId` is the agent an AgentIdentity names
 * (spec.agent.clientId), checked against admits.agents.allowed; `undefined` means the AgentIdentity asks
 * the operator to create one (spec.agent.create), which admits.agents.create must permit. An agent the
 * operator created for an AgentIdentity is that identity's own: check it with `undefined` (or call
 * `blueprintAdmitsIdentity`), never against the allow-list.
 */
export function blueprintAdmits(
  blueprint: AgentIdentityBlueprint,
  namespace: NamespaceInfo,
  agentClientId: string | undefined,
): Admission {
  const name = blueprint.metadata.name;
  if (blueprint.metadata.deletionTimestamp) {
    return {
      allowed: false,
      reason: "BlueprintDeleting",
      message: `AgentIdentityBlueprint ${name} is being deleted.`,
    };
  }
  if (!namespaceAdmitted(blueprint, namespace)) {
    return {
      allowed: false,
      reason: "NamespaceNotAdmitted",
      message: `AgentIdentityBlueprint ${name} does not admit namespace ${namespace.name}: ask its owner to add the namespace to spec.admits.namespaces or to label it to match spec.admits.namespaceSelector.`,
    };
  }
  const agents = blueprint.spec.admits?.agents;
  if (agentClientId === undefined) {
    if (agents?.create === true) return { allowed: true };
    return {
      allowed: false,
      reason: "AgentCreationNotAllowed",
      message: `AgentIdentityBlueprint ${name} does not let the operator create agent identities (spec.admits.agents.create is not true); name an allowed agent in spec.agent.clientId instead.`,
    };
  }
  const wanted = agentClientId.toLowerCase();
  if (agents?.allowed?.some((a) => a.toLowerCase() === wanted)) return { allowed: true };
  return {
    allowed: false,
    reason: "AgentNotAllowed",
    message: `AgentIdentityBlueprint ${name} does not allow agent ${agentClientId}: ask its owner to add it to spec.admits.agents.allowed.`,
  };
}

/**
 * The whole admission question for one AgentIdentity: namespace, agent (named or to be created), and a
 * development secret only where the blueprint allows them.
 */
export function blueprintAdmitsIdentity(
  blueprint: AgentIdentityBlueprint,
  namespace: NamespaceInfo,
  identity: AgentIdentity,
): Admission {
  const admission = blueprintAdmits(blueprint, namespace, identity.spec.agent.clientId);
  if (!admission.allowed) return admission;
  if (identity.spec.clientSecretRef && blueprint.spec.admits?.developmentSecrets !== true) {
    return {
      allowed: false,
      reason: "DevelopmentSecretsNotAllowed",
      message: `AgentIdentityBlueprint ${blueprint.metadata.name} does not allow development client secrets (spec.admits.developmentSecrets is not true); remove spec.clientSecretRef.`,
    };
  }
  const widening = sidecarWideningNotAllowed(blueprint, identity);
  if (widening) return { allowed: false, reason: "SidecarWideningNotAllowed", message: widening };
  return admission;
}

/**
 * The agent lock is the blueprint owner's: `spec.sidecar.allowBlueprintToken` hands the pod the blueprint's
 * own token and `allowFmiPathOverride` every agent of the blueprint (a T1 for any fmi_path), so an
 * AgentIdentity may ask for either only where the blueprint's spec.admits.sidecar allows it. Returns the
 * refusal's message, or undefined when nothing is widened beyond what the blueprint allows.
 */
export function sidecarWideningNotAllowed(
  blueprint: AgentIdentityBlueprint,
  identity: AgentIdentity,
): string | undefined {
  const asked = identity.spec.sidecar ?? {};
  const allowed = blueprint.spec.admits?.sidecar ?? {};
  const refused: string[] = [];
  if (asked.allowBlueprintToken === true && allowed.allowBlueprintToken !== true)
    refused.push("spec.sidecar.allowBlueprintToken (the blueprint's own token)");
  if (asked.allowFmiPathOverride === true && allowed.allowFmiPathOverride !== true)
    refused.push("spec.sidecar.allowFmiPathOverride (any agent of the blueprint)");
  if (refused.length === 0) return undefined;
  return `AgentIdentityBlueprint ${blueprint.metadata.name} does not allow ${refused.join(" or ")}: its spec.admits.sidecar keeps the sidecar locked to this identity's agent; remove the field or ask the blueprint's owner.`;
}
