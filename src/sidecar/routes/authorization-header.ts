import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { RouteName } from "../config/types.ts";
import type { CachedToken } from "../tokens/cache.ts";
import { authenticate, authenticateIfPresent, inboundOf, methodNotAllowed } from "./auth.ts";
import { type Resolved, type RouteContext, resolve, tokenFor } from "./context.ts";
import { type KnownUrls, UNAUTHENTICATED_HEADER_ROUTE } from "./known-urls.ts";
import { sendJsonText } from "./ok.ts";
import type { QueryValue } from "./overrides.ts";
import type { Inbound } from "./plan.ts";
import { ProblemError, sendAcquisitionProblem, sendProblem } from "./problem.ts";

/** Methods ASP.NET answers 405 for on a GET-only route (HEAD is answered as GET, as fastify does). */
export const OTHER_THAN_GET = ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

type Req = FastifyRequest<{ Params: { apiName: string }; Querystring: Record<string, QueryValue> }>;

function sendHeader(reply: FastifyReply, token: CachedToken): FastifyReply {
  return sendJsonText(reply, token.headerBody);
}

export function registerAuthorizationHeaderRoutes(
  app: FastifyInstance,
  ctx: RouteContext,
  byUrl: KnownUrls,
): void {
  async function handle(
    route: RouteName,
    request: Req,
    reply: FastifyReply,
    inbound: Inbound | undefined,
    resolved?: Resolved,
  ) {
    let r = resolved;
    try {
      r ??= resolve(ctx, route, request.params.apiName, request.query, inbound);
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

  app.get(UNAUTHENTICATED_HEADER_ROUTE, { preHandler: authenticateIfPresent(ctx) }, (request: Req, reply) => {
    // With a (valid) bearer token the answer depends on the caller, not only on the URL.
    const inbound = inboundOf(request);
    if (inbound || request.headers.authorization)
      return handle("GetAuthorizationHeaderUnauthenticated", request, reply, inbound);
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

  app.get("/AuthorizationHeader/:apiName", { preHandler: authenticate(ctx) }, (request: Req, reply) =>
    handle("GetAuthorizationHeader", request, reply, inboundOf(request)),
  );
  for (const url of [UNAUTHENTICATED_HEADER_ROUTE, "/AuthorizationHeader/:apiName"])
    app.route({ method: OTHER_THAN_GET, url, handler: methodNotAllowed("GET") });
}
