import { olderThan } from "./select.ts";
import type { AdmitRule, AgentIdentity, AgentIdentityBlueprint, LabelSelector } from "./types.ts";

/**
 * Who may use a blueprint (the trust model): the blueprint's owner decides, in
 * AgentIdentityBlueprint spec.admits, a list of rules that each tie namespaces to what they may do (so
 * namespace A may act as agent X and namespace B as agent Y under one blueprint); nothing an
 * AgentIdentity's author writes widens it. Pure: the
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

/** Namespaces no blueprint can admit, whatever its rules say (see namespaceExcluded). */
export const ALWAYS_EXCLUDED_NAMESPACES: readonly string[] = ["kube-system"];

/**
 * Whether AgentIdentities in `namespace` are refused before any blueprint is asked: `kube-system` and the
 * manager's own namespace. The webhooks never see those namespaces (so that a broken webhook cannot stop
 * the cluster or the manager itself), so neither the sidecar's agent lock nor the guard would hold there,
 * and a blueprint rule with an empty namespaceSelector would otherwise admit them.
 */
export function namespaceExcluded(
  namespace: string,
  managerNamespace: string | undefined,
): { reason: "NamespaceExcluded"; message: string } | undefined {
  if (!ALWAYS_EXCLUDED_NAMESPACES.includes(namespace) && namespace !== managerNamespace) return undefined;
  const which = namespace === managerNamespace ? "the agentid manager's own namespace" : namespace;
  return {
    reason: "NamespaceExcluded",
    message: `AgentIdentities in ${which} are never served: the admission webhooks do not see this namespace, so the sidecar's agent lock and the token guard would not hold. Create the AgentIdentity in an application namespace.`,
  };
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

/** Whether one rule of spec.admits admits the namespace: by name in namespaces, or by namespaceSelector. */
export function ruleAdmits(rule: AdmitRule, namespace: NamespaceInfo): boolean {
  if (rule.namespaces?.includes(namespace.name)) return true;
  return rule.namespaceSelector !== undefined && selectorMatches(rule.namespaceSelector, namespace.labels);
}

/**
 * What a namespace may do with a blueprint: the union of every rule that admits it (a namespace two rules
 * admit may act as the agents of both). `undefined` when no rule admits it.
 */
export interface NamespaceGrant {
  /** Agent client ids it may name, lower-cased. */
  agents: ReadonlySet<string>;
  create: boolean;
  developmentSecrets: boolean;
  allowBlueprintToken: boolean;
  allowFmiPathOverride: boolean;
  /** How many of its identities may use the blueprint; undefined: no cap (some admitting rule sets none). */
  maxIdentities: number | undefined;
}

function grantOf(rules: readonly AdmitRule[]): NamespaceGrant {
  const agents = new Set<string>();
  let maxIdentities: number | undefined = 0;
  for (const rule of rules) {
    for (const agent of rule.agents?.allowed ?? []) agents.add(agent.toLowerCase());
    // The most generous rule wins, as for everything else: absent means no cap.
    if (maxIdentities !== undefined)
      maxIdentities =
        rule.maxIdentities === undefined ? undefined : Math.max(maxIdentities, rule.maxIdentities);
  }
  return {
    agents,
    create: rules.some((r) => r.agents?.create === true),
    developmentSecrets: rules.some((r) => r.developmentSecrets === true),
    allowBlueprintToken: rules.some((r) => r.sidecar?.allowBlueprintToken === true),
    allowFmiPathOverride: rules.some((r) => r.sidecar?.allowFmiPathOverride === true),
    maxIdentities,
  };
}

export function namespaceGrant(
  blueprint: AgentIdentityBlueprint,
  namespace: NamespaceInfo,
): NamespaceGrant | undefined {
  const rules = (blueprint.spec.admits ?? []).filter((rule) => ruleAdmits(rule, namespace));
  return rules.length > 0 ? grantOf(rules) : undefined;
}

/** Whether any rule of the blueprint admits the namespace. */
export function namespaceAdmitted(blueprint: AgentIdentityBlueprint, namespace: NamespaceInfo): boolean {
  return (blueprint.spec.admits ?? []).some((rule) => ruleAdmits(rule, namespace));
}

/**
 * Whether `blueprint` lets `namespace` act as an agent. `agentClientId` is the agent an AgentIdentity names
 * (spec.agent.clientId), checked against the agents.allowed of the rules that admit the namespace;
 * `undefined` means the AgentIdentity asks the operator to create one (spec.agent.create), which one of
 * those rules' agents.create must permit. An agent the operator created for an AgentIdentity is that
 * identity's own: check it with `undefined` (or call `blueprintAdmitsIdentity`), never against the
 * allow-list.
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
  const grant = namespaceGrant(blueprint, namespace);
  if (!grant) {
    return {
      allowed: false,
      reason: "NamespaceNotAdmitted",
      message: `AgentIdentityBlueprint ${name} does not admit namespace ${namespace.name}: ask its owner to add the namespace to the namespaces of a spec.admits rule or to label it to match a rule's namespaceSelector.`,
    };
  }
  if (agentClientId === undefined) {
    if (grant.create) return { allowed: true };
    return {
      allowed: false,
      reason: "AgentCreationNotAllowed",
      message: `AgentIdentityBlueprint ${name} does not let namespace ${namespace.name} have the operator create agent identities (no spec.admits rule that admits it sets agents.create); name an allowed agent in spec.agent.clientId instead.`,
    };
  }
  if (grant.agents.has(agentClientId.toLowerCase())) return { allowed: true };
  return {
    allowed: false,
    reason: "AgentNotAllowed",
    message: `AgentIdentityBlueprint ${name} does not allow namespace ${namespace.name} to act as agent ${agentClientId}: ask its owner to add it to agents.allowed of a spec.admits rule that admits this namespace.`,
  };
}

/**
 * The whole admission question for one AgentIdentity: namespace, agent (named or to be created), and a
 * development secret or a sidecar widening only where a rule admitting the namespace allows it.
 */
export function blueprintAdmitsIdentity(
  blueprint: AgentIdentityBlueprint,
  namespace: NamespaceInfo,
  identity: AgentIdentity,
): Admission {
  const admission = blueprintAdmits(blueprint, namespace, identity.spec.agent.clientId);
  if (!admission.allowed) return admission;
  if (identity.spec.clientSecretRef && !developmentSecretsAllowed(blueprint, namespace)) {
    return {
      allowed: false,
      reason: "DevelopmentSecretsNotAllowed",
      message: `AgentIdentityBlueprint ${blueprint.metadata.name} does not allow development client secrets in namespace ${namespace.name} (no spec.admits rule that admits it sets developmentSecrets); remove spec.clientSecretRef.`,
    };
  }
  const widening = sidecarWideningNotAllowed(blueprint, identity, namespace);
  if (widening) return { allowed: false, reason: "SidecarWideningNotAllowed", message: widening };
  return admission;
}

/**
 * What the rules admitting `namespace` allow; without a namespace, what any rule allows (an upper bound,
 * for callers that have already asked `blueprintAdmitsIdentity` with the namespace, like the renderer).
 */
function grantFor(blueprint: AgentIdentityBlueprint, namespace: NamespaceInfo | undefined): NamespaceGrant {
  const grant = namespace ? namespaceGrant(blueprint, namespace) : grantOf(blueprint.spec.admits ?? []);
  return grant ?? grantOf([]);
}

/** Whether an AgentIdentity may use a development client secret (spec.clientSecretRef). */
export function developmentSecretsAllowed(
  blueprint: AgentIdentityBlueprint,
  namespace?: NamespaceInfo,
): boolean {
  return grantFor(blueprint, namespace).developmentSecrets;
}

/**
 * The agent lock is the blueprint owner's: `spec.sidecar.allowBlueprintToken` hands the pod the blueprint's
 * own token and `allowFmiPathOverride` every agent of the blueprint (a T1 for any fmi_path), so an
 * AgentIdentity may ask for either only where a spec.admits rule's sidecar allows it (for `namespace`, a
 * rule that admits it). Returns the refusal's message, or undefined when nothing is widened beyond that.
 */
export function sidecarWideningNotAllowed(
  blueprint: AgentIdentityBlueprint,
  identity: AgentIdentity,
  namespace?: NamespaceInfo,
): string | undefined {
  const asked = identity.spec.sidecar ?? {};
  const allowed = grantFor(blueprint, namespace);
  const refused: string[] = [];
  if (asked.allowBlueprintToken === true && !allowed.allowBlueprintToken)
    refused.push("spec.sidecar.allowBlueprintToken (the blueprint's own token)");
  if (asked.allowFmiPathOverride === true && !allowed.allowFmiPathOverride)
    refused.push("spec.sidecar.allowFmiPathOverride (any agent of the blueprint)");
  if (refused.length === 0) return undefined;
  return `AgentIdentityBlueprint ${blueprint.metadata.name} does not allow ${refused.join(" or ")}: its spec.admits rules' sidecar keep the sidecar locked to this identity's agent; remove the field or ask the blueprint's owner.`;
}

/**
 * The per-namespace cap (admits[].maxIdentities): a workload identity takes one of the blueprint's
 * federated credentials (Entra allows 20 per application), so one namespace must not be able to take them
 * all. Of the identities of `identity`'s namespace that use this blueprint (not being deleted, otherwise
 * admitted, holding their ServiceAccount), the oldest `maxIdentities` by creation time, then name, keep
 * it, as with a taken ServiceAccount: a newer identity cannot push an older one out. Returns the refusal
 * for an identity beyond the cap, or undefined. Pure: `sameNamespace` is the namespace's identities.
 */
export function namespaceLimitReached(
  blueprint: AgentIdentityBlueprint,
  namespace: NamespaceInfo,
  identity: AgentIdentity,
  sameNamespace: readonly AgentIdentity[],
): { reason: "NamespaceLimitReached"; message: string } | undefined {
  const cap = namespaceGrant(blueprint, namespace)?.maxIdentities;
  if (cap === undefined) return undefined;
  const name = blueprint.metadata.name;
  const candidates = sameNamespace.some((i) => i.metadata.name === identity.metadata.name)
    ? sameNamespace
    : [...sameNamespace, identity];
  // Who holds each ServiceAccount (one pass): an identity refused as ServiceAccountTaken takes no place.
  const holders = new Map<string, AgentIdentity>();
  for (const c of candidates) {
    if (c.metadata.deletionTimestamp || c.metadata.namespace !== namespace.name) continue;
    const held = holders.get(c.spec.serviceAccountName);
    if (!held || olderThan(c, held)) holders.set(c.spec.serviceAccountName, c);
  }
  let older = 0;
  for (const c of candidates) {
    if (c.metadata.name === identity.metadata.name || c.metadata.deletionTimestamp) continue;
    if (c.metadata.namespace !== namespace.name || c.spec.blueprintRef.name !== name) continue;
    if (holders.get(c.spec.serviceAccountName)?.metadata.name !== c.metadata.name) continue;
    if (!olderThan(c, identity)) continue;
    if (!blueprintAdmitsIdentity(blueprint, namespace, c).allowed) continue;
    older++;
  }
  if (older < cap) return undefined;
  return {
    reason: "NamespaceLimitReached",
    message: `AgentIdentityBlueprint ${name} lets namespace ${namespace.name} use it for at most ${cap} AgentIdentities (spec.admits[].maxIdentities), and ${older} older ones hold those places; delete one of them or ask the blueprint's owner to raise the cap.`,
  };
}
