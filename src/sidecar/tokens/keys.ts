import { createHash } from "node:crypto";

/** The token flows the sidecar runs; each is a distinct cache partition. */
export type Flow = "app" | "agent-app" | "obo" | "agent-obo" | "agent-user";

export type AgentUser = { kind: "oid"; value: string } | { kind: "upn"; value: string };

/** Everything that decides which token a request gets. Two requests share a token only if all of it matches. */
export interface TokenRequest {
  flow: Flow;
  tenant: string;
  scopes: string[];
  agentId?: string;
  user?: AgentUser;
  /** The inbound user token (OBO). Hashed into the key, never stored in it. */
  assertion?: string;
  /**
   * A long-running OBO session key (OBO flows only): the entry is the session's, whatever inbound
   * token started or renewed it; hashed into the key, never stored in it.
   */
  sessionKey?: string;
  fmiPath?: string;
  claims?: string;
  correlationId?: string;
  forceRefresh?: boolean;
}

export function hashAssertion(assertion: string): string {
  return createHash("sha256").update(assertion).digest("base64url");
}

const SEP = "\u0000";

/**
 * The cache key. Tenant, UPN and scopes compare case-insensitively at Entra, so they are lower-cased;
 * scope order does not change the token, so scopes are sorted. The separator cannot occur in any part.
 */
export function cacheKey(request: TokenRequest, assertionHash?: string): string {
  const scopes = request.scopes.map((s) => s.toLowerCase()).sort();
  const user = request.user ? `${request.user.kind}:${request.user.value.toLowerCase()}` : "";
  return [
    request.flow,
    request.tenant.toLowerCase(),
    request.agentId?.toLowerCase() ?? "",
    user,
    scopes.join(" "),
    request.fmiPath ?? "",
    request.sessionKey !== undefined
      ? `session:${hashAssertion(request.sessionKey)}`
      : request.assertion
        ? (assertionHash ?? hashAssertion(request.assertion))
        : "",
  ].join(SEP);
}
