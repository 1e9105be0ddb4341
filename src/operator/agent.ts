import { authorityHostOf } from "../api/cloud.ts";
import type { AgentIdentity, AgentIdentityBlueprint } from "../api/types.ts";
import type { AgentRemoved, GraphActor, GraphAgents, GraphFailure } from "./graph.ts";
import type { Observations } from "./status.ts";

/**
 * The agent identity lifecycle: a named agent is taken as it is (the blueprint's allow-list admitted
 * it); `agent.create` makes the operator create one under the blueprint through Graph, once, and record
 * it in status; the finalizer deletes it again (deletionPolicy Delete).
 */

/** Whose Graph permission creates and deletes agents for this blueprint (agentCreation.credential). */
export function agentActor(blueprint: AgentIdentityBlueprint): GraphActor {
  return blueprint.spec.agentCreation?.credential === "Blueprint"
    ? { as: "Blueprint", clientId: blueprint.spec.clientId, authorityHost: authorityHostOf(blueprint) }
    : { as: "Manager" };
}

/**
 * The tag that marks an agent the operator created for this AgentIdentity: its uid, which no other object
 * ever has (a recreated AgentIdentity of the same name gets a new one). Before creating, the operator looks
 * for an agent with this tag and adopts it, so a crash between Graph's answer and the status write does
 * not create a second agent.
 */
export function agentMarker(identity: AgentIdentity): string {
  const uid = identity.metadata.uid;
  if (!uid) throw new Error(`AgentIdentity ${identity.metadata.name} has no uid`);
  return `agentid.io/agentidentity-uid:${uid}`;
}

export async function observeAgent(
  identity: AgentIdentity,
  blueprint: AgentIdentityBlueprint,
  agents: GraphAgents | undefined,
): Promise<Observations["agent"]> {
  const named = identity.spec.agent.clientId;
  if (named) return { state: "known", status: { clientId: named } };
  const create = identity.spec.agent.create;
  if (!create)
    return { state: "failed", reason: "InvalidSpec", message: "spec.agent names no agent.", retry: false };
  const recorded = identity.status?.agent;
  if (recorded?.created && recorded.clientId) return { state: "known", status: recorded };
  if (!agents) {
    return {
      state: "failed",
      reason: "GraphNotConfigured",
      message:
        "spec.agent.create needs the manager's Graph credential (--graph-client-id and a token or secret file).",
      retry: false,
    };
  }
  const outcome = await agents.create(
    blueprint.spec.tenantId,
    blueprint.spec.clientId,
    create.displayName,
    agentActor(blueprint),
    agentMarker(identity),
  );
  if (!outcome.ok)
    return { ...outcome, state: "failed", reason: `AgentCreation${outcome.reason.replace(/^Graph/, "")}` };
  return {
    state: "known",
    status: { clientId: outcome.clientId, objectId: outcome.objectId, created: true },
    ...(outcome.adopted ? { adopted: true } : {}),
  };
}

export async function removeCreatedAgent(
  agents: GraphAgents,
  blueprint: AgentIdentityBlueprint,
  objectId: string,
): Promise<AgentRemoved | GraphFailure> {
  return agents.remove(blueprint.spec.tenantId, objectId, agentActor(blueprint));
}
