import type { DownstreamApi, SidecarConfig } from "../config/types.ts";
import { isMetaTenant } from "../config/values.ts";
import type { TokenRequest } from "../tokens/keys.ts";
import type { ParsedQuery } from "./overrides.ts";
import { ProblemError } from "./problem.ts";

/** The effective options of one request: the configured API with the allowed overrides applied. */
export interface EffectiveApi extends Omit<DownstreamApi, "scopes"> {
  scopes: string[];
}

export function effectiveApi(api: DownstreamApi, parsed: ParsedQuery | undefined): EffectiveApi {
  const o = parsed?.overrides;
  const scopes = o?.scopes ?? api.scopes ?? [];
  if (scopes.length === 0) {
    throw new ProblemError(
      400,
      `No scopes found for the API '${api.name}' or in optionsOverride. 'scopes' needs to be either a single value or a list of values.`,
    );
  }
  if (!o?.present) return { ...api, scopes };
  return {
    ...api,
    scopes,
    requestAppToken: api.requestAppToken || o.requestAppToken === true,
    relativePath: o.relativePath ?? api.relativePath,
    httpMethod: o.httpMethod ?? api.httpMethod,
    acceptHeader: o.acceptHeader ?? api.acceptHeader,
    contentType: o.contentType ?? api.contentType,
    extraHeaders: { ...api.extraHeaders, ...o.extraHeaders },
    extraQuery: { ...api.extraQuery, ...o.extraQuery },
    acquireTokenOptions: { ...api.acquireTokenOptions, ...o.acquireTokenOptions },
  };
}

/**
 * Decides the token flow (pure). A named agent user always means the agent-user flow; otherwise an
 * app token when RequestAppToken is set; otherwise a token on behalf of the inbound user.
 */
export interface Inbound {
  token: string;
  /** The verified token's `tid`, when it has one. */
  tenant?: string;
}

/**
 * The tenant a request's tokens come from: the override or the API's setting, else the configured
 * tenant; with a multi-tenant alias (`common`, `organizations`) configured, a user's own tenant for
 * tokens on their behalf, and nothing for the rest (Entra issues app and agent tokens in a tenant).
 */
function tenantFor(config: SidecarConfig, api: EffectiveApi, inbound: Inbound | undefined, forUser: boolean) {
  const chosen = api.acquireTokenOptions.tenant;
  if (chosen) return chosen;
  if (!isMetaTenant(config.tenantId)) return config.tenantId;
  if (forUser && inbound?.tenant) return inbound.tenant;
  throw new ProblemError(
    400,
    `AzureAd:TenantId is '${config.tenantId}': the API '${api.name}' needs a tenant for this token (DownstreamApis:${api.name}:AcquireTokenOptions:Tenant or optionsOverride.AcquireTokenOptions.Tenant).`,
  );
}

export function planToken(
  config: SidecarConfig,
  api: EffectiveApi,
  agent: ParsedQuery["agent"] | undefined,
  inbound: Inbound | undefined,
): TokenRequest {
  const ato = api.acquireTokenOptions;
  const inboundToken = inbound?.token;
  const sessionKey = ato.longRunningWebApiSessionKey;
  const forUser = !(agent?.user && agent.agentIdentity) && !api.requestAppToken;
  const base = {
    tenant: tenantFor(config, api, inbound, forUser),
    ...(ato.claims ? { claims: ato.claims } : {}),
    ...(ato.correlationId ? { correlationId: ato.correlationId } : {}),
    ...(ato.forceRefresh ? { forceRefresh: true } : {}),
  };
  const agentId = agent?.agentIdentity;
  if (agent?.user && agentId) {
    return { ...base, flow: "agent-user", agentId, user: agent.user, scopes: api.scopes };
  }
  if (api.requestAppToken) {
    const scope = api.scopes[0]!;
    if (!scope.endsWith("/.default")) {
      throw new ProblemError(400, `App tokens need a scope ending in '/.default'; '${scope}' does not`);
    }
    if (agentId) return { ...base, flow: "agent-app", agentId, scopes: [scope] };
    return { ...base, flow: "app", scopes: [scope], ...(ato.fmiPath ? { fmiPath: ato.fmiPath } : {}) };
  }
  if (sessionKey !== undefined) {
    // A long-running session: started (or renewed) with the inbound token, continued without one.
    const session = { sessionKey, ...(inboundToken ? { assertion: inboundToken } : {}) };
    if (agentId) return { ...base, flow: "agent-obo", agentId, scopes: api.scopes, ...session };
    return { ...base, flow: "obo", scopes: api.scopes, ...session };
  }
  if (!inboundToken) {
    throw new ProblemError(
      401,
      `The API '${api.name}' requests a user token, and this request carries no user: call /AuthorizationHeader with the user's bearer token, or request an app token (RequestAppToken).`,
    );
  }
  if (agentId) return { ...base, flow: "agent-obo", agentId, scopes: api.scopes, assertion: inboundToken };
  return { ...base, flow: "obo", scopes: api.scopes, assertion: inboundToken };
}
