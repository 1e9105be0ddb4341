import type { AgentLock } from "../config/types.ts";
import type { TokenRequest } from "../tokens/keys.ts";
import type { ParsedQuery } from "./overrides.ts";
import { ProblemError } from "./problem.ts";

/**
 * The agent lock (`Sidecar__AgentIdentity`, our addition, rendered by the webhook): a sidecar locked to
 * one agent acts as that agent and nothing else, so an app that can reach it cannot ask for another
 * agent's token, for an arbitrary `fmi_path` (the blueprint's exchange token for any agent), or for
 * the blueprint's own, more powerful token. Agent users count as the locked agent only: their flow
 * names the agent (`AgentIdentity`) and that must be the locked one. Throws a 403 problem (pure).
 */
export function enforceAgentLock(
  lock: AgentLock | undefined,
  parsed: ParsedQuery,
  request: TokenRequest,
): void {
  if (!lock) return;
  const named = parsed.agent.agentIdentity;
  if (named !== undefined && named.toLowerCase() !== lock.agentId.toLowerCase()) {
    throw new ProblemError(
      403,
      `This sidecar is locked to the agent identity ${lock.agentId} (Sidecar:AgentIdentity); AgentIdentity=${named} is refused.`,
    );
  }
  if (parsed.overrides.acquireTokenOptions.fmiPath !== undefined && !lock.allowFmiPathOverride) {
    throw new ProblemError(
      403,
      "This sidecar is locked to one agent identity (Sidecar:AgentIdentity): optionsOverride.AcquireTokenOptions.FmiPath is refused unless Sidecar:AllowFmiPathOverride is true.",
    );
  }
  const blueprintOwn = request.flow === "app" || request.flow === "obo";
  if (blueprintOwn && request.fmiPath === undefined && !lock.allowBlueprintToken) {
    throw new ProblemError(
      403,
      `This sidecar is locked to the agent identity ${lock.agentId} (Sidecar:AgentIdentity): a request without AgentIdentity asks for the blueprint's own token, which is refused unless Sidecar:AllowBlueprintToken is true. Add AgentIdentity=${lock.agentId}.`,
    );
  }
}
