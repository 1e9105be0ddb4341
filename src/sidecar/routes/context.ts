import type { Logger } from "pino";
import type { TokenService } from "../acquire/service.ts";
import type { RouteName, SidecarConfig } from "../config/types.ts";
import type { DownstreamClient } from "../downstream.ts";
import type { InboundValidator } from "../inbound.ts";
import type { CachedToken } from "../tokens/cache.ts";
import { cacheKey } from "../tokens/keys.ts";
import { enforceAgentLock } from "./agent-lock.ts";
import { parseQuery, type QueryValue } from "./overrides.ts";
import { type EffectiveApi, effectiveApi, type Inbound, planToken } from "./plan.ts";
import { ProblemError } from "./problem.ts";

export interface RouteContext {
  config: SidecarConfig;
  tokens: TokenService;
  inbound: InboundValidator;
  downstream: DownstreamClient;
  state: { ready: boolean; shuttingDown: boolean };
  /** The sidecar's logger (fastify itself runs without one, see server.ts). */
  log: Logger;
  /** Loads what the first token request needs; called after the first ready answer (see start.ts). */
  warmUp?: () => void;
}

export interface Resolved {
  api: EffectiveApi;
  key: string;
  force: boolean;
  request: ReturnType<typeof planToken>;
  warnings: string[];
}

/**
 * Everything between the request and the cache key (pure but for the ProblemErrors it throws):
 * the API lookup, query parsing, the per-route override gate and the flow decision.
 */
export function resolve(
  ctx: RouteContext,
  route: RouteName,
  apiName: string,
  query: Record<string, QueryValue>,
  inbound: Inbound | undefined,
): Resolved {
  const configured = ctx.config.apis.get(apiName);
  if (!configured)
    throw new ProblemError(404, `The API '${apiName}' is not configured (DownstreamApis:${apiName}).`);
  const parsed = parseQuery(query);
  if ("problems" in parsed) throw new ProblemError(400, parsed.problems.join("; "));
  const warnings: string[] = [];
  if (parsed.overrides.baseUrlIgnored) warnings.push("optionsOverride.BaseUrl is always ignored");
  if ((parsed.overrides.present || parsed.agentGiven) && !ctx.config.allowOverrides[route]) {
    throw new ProblemError(
      403,
      `optionsOverride and agent parameters are disabled on this route; set Sidecar__AllowOverrides__${route}=true to allow them.`,
    );
  }
  const api = effectiveApi(configured, parsed);
  const request = planToken(ctx.config, api, parsed.agent, inbound);
  enforceAgentLock(ctx.config.agentLock, parsed, request);
  const force = request.forceRefresh === true || request.claims !== undefined;
  return { api, key: cacheKey(request), force, request, warnings };
}

/** A token for a resolved request: the cache's answer when it has one, else an acquisition. */
export function tokenFor(ctx: RouteContext, resolved: Resolved): CachedToken | Promise<CachedToken> {
  if (!resolved.force) {
    const hit = ctx.tokens.lookup(resolved.key);
    if (hit) return hit;
  }
  return ctx.tokens.acquire(resolved.request, resolved.key);
}
