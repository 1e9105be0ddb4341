import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { RouteName } from "../config/types.ts";
import type { CachedToken } from "../tokens/cache.ts";
import { authenticate, callerOf } from "./auth.ts";
import { type Resolved, type RouteContext, resolve, tokenFor } from "./context.ts";
import { sendJsonText } from "./ok.ts";
import type { QueryValue } from "./overrides.ts";
import { ProblemError, sendAcquisitionProblem, sendProblem } from "./problem.ts";
import { anyQuery, apiNameParams, authorizationHeaderResult, problemSchema } from "./schemas.ts";

type Req = FastifyRequest<{ Params: { apiName: string }; Querystring: Record<string, QueryValue> }>;

function sendHeader(reply: FastifyReply, token: CachedToken): FastifyReply {
  return sendJsonText(reply, token.headerBody);
}

/**
 * Unauthenticated requests are fully described by their URL, so the resolved cache key is remembered
 * per URL: the hot path is then two Map lookups and a pre-serialised body.
 */
class ResolvedByUrl {
  readonly #map = new Map<string, Resolved>();
  readonly #max: number;
  constructor(max: number) {
    this.#max = max;
  }
  get(url: string): Resolved | undefined {
    return this.#map.get(url);
  }
  set(url: string, resolved: Resolved): void {
    if (resolved.force || resolved.warnings.length > 0) return;
    if (this.#map.size >= this.#max) this.#map.clear();
    this.#map.set(url, resolved);
  }
}

export function registerAuthorizationHeaderRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const schema = {
    params: apiNameParams,
    querystring: anyQuery,
    response: { 200: authorizationHeaderResult, "4xx": problemSchema, "5xx": problemSchema },
  };

  async function handle(
    route: RouteName,
    request: Req,
    reply: FastifyReply,
    token: string | undefined,
    resolved?: Resolved,
  ) {
    let r = resolved;
    try {
      r ??= resolve(ctx, route, request.params.apiName, request.query, token);
    } catch (error) {
      if (error instanceof ProblemError) return sendProblem(reply, error.status, error.message);
      throw error;
    }
    for (const w of r.warnings) ctx.log.warn(w);
    try {
      const result = tokenFor(ctx, r);
      return sendHeader(reply, result instanceof Promise ? await result : result);
    } catch (error) {
      return sendAcquisitionProblem(reply, error, ctx.log);
    }
  }

  const byUrl = new ResolvedByUrl(1000);
  app.get("/AuthorizationHeaderUnauthenticated/:apiName", { schema }, (request: Req, reply) => {
    const known = byUrl.get(request.url);
    if (known) {
      const hit = ctx.tokens.lookup(known.key);
      if (hit) return sendHeader(reply, hit);
      return handle("GetAuthorizationHeaderUnauthenticated", request, reply, undefined, known);
    }
    let resolved: Resolved;
    try {
      resolved = resolve(
        ctx,
        "GetAuthorizationHeaderUnauthenticated",
        request.params.apiName,
        request.query,
        undefined,
      );
    } catch (error) {
      if (error instanceof ProblemError) return sendProblem(reply, error.status, error.message);
      throw error;
    }
    byUrl.set(request.url, resolved);
    return handle("GetAuthorizationHeaderUnauthenticated", request, reply, undefined, resolved);
  });

  app.get("/AuthorizationHeader/:apiName", { schema, preHandler: authenticate(ctx) }, (request: Req, reply) =>
    handle("GetAuthorizationHeader", request, reply, callerOf(request)?.token),
  );
}
