import { CONDITION_READY } from "./constants.ts";
import type { AgentIdentity, Condition } from "./types.ts";

/**
 * Readers' view of an AgentIdentity's status (the webhook, the CLI, tests): whether it is Ready for its
 * current spec, and which agent it acts as.
 */

export function readyCondition(identity: AgentIdentity): Condition | undefined {
  return identity.status?.conditions?.find((c) => c.type === CONDITION_READY);
}

/**
 * Ready=True written for the object's current generation. A Ready condition from an older generation
 * says nothing about the current spec (the operator has not looked at it yet), so it does not count.
 */
export function isIdentityReady(identity: AgentIdentity): boolean {
  const ready = readyCondition(identity);
  if (ready?.status !== "True") return false;
  const generation = identity.metadata.generation;
  if (generation === undefined) return true;
  return ready.observedGeneration === generation && identity.status?.observedGeneration === generation;
}

/**
 * The client id of the agent identity the pods act as: spec.agent.clientId when named, else the one the
 * operator created and recorded in status.agent.clientId; undefined until it exists. Only the operator
 * writes status (users get no agentidentities/status permission), and a status from a spec that named
 * another agent is ignored.
 */
export function agentClientIdOf(identity: AgentIdentity): string | undefined {
  const named = identity.spec.agent.clientId;
  if (named) return named;
  if (!identity.spec.agent.create) return undefined;
  const recorded = identity.status?.agent;
  return recorded?.created === true && recorded.clientId ? recorded.clientId : undefined;
}
